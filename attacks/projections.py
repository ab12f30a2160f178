"""L0 projections that attacks share."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_l0_box", "project_l0_elements", "top_k_mask"]


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean of ``scores``' shape: per sample (axis 0), True at the ``k`` largest entries (ties as ``topk`` breaks them)."""
    flat = scores.flatten(1)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
    return mask.view_as(scores)


def project_l0_elements(delta: Tensor, budget: Tensor) -> Tensor:
    """Keep, per sample, the ``budget`` entries of ``delta`` of largest magnitude and zero the rest.

    ``budget`` is ``(B,)``, one count of elements (out of C*H*W) per sample.
    Ties in ``|delta|`` are broken by position (a stable sort), so at most
    ``budget`` entries survive.
    """
    flat = delta.flatten(1)
    order = flat.abs().sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    keep = rank < budget.to(rank.dtype).unsqueeze(1)
    return (flat * keep).view_as(delta)


def project_l0_box(delta: Tensor, inputs: Tensor, k: int) -> Tensor:
    """Euclidean projection of ``delta`` onto {at most k changed pixels} ∩ {inputs + delta in [0, 1]}.

    For each pixel i, keeping it costs ``dist(delta_i, box_i)^2`` (its
    channels clipped to ``[-inputs, 1 - inputs]``) and dropping it (setting
    it to 0, which is in the box) costs ``||delta_i||^2``; the projection
    keeps the k pixels with the largest gain ``||delta_i||^2 - dist^2``,
    clipped, and zeroes the rest (Croce & Hein's projection for L0 + box,
    arXiv:1909.05040).

    Parameters
    ----------
    delta : Tensor
        Perturbations ``(B, C, H, W)``.
    inputs : Tensor
        Clean images ``(B, C, H, W)`` in [0, 1], defining the box.
    k : int
        Pixels to keep, ``1 <= k <= H * W``.
    """
    clipped = torch.minimum(torch.maximum(delta, -inputs), 1 - inputs)
    gain = (delta.square() - (delta - clipped).square()).sum(1)  # (B, H, W)
    return clipped * top_k_mask(gain, k)[:, None]
