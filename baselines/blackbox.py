"""Pieces the score-based black-box L0 baselines share (Sparse-RS, SA-MOO, BruSLeAttack).

They all search over sets of pixels, query the model under ``torch.no_grad``
and compare candidates by a loss read from the model's outputs: the helpers
here draw pixel sets and compute that loss, once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.losses import adversarial_cross_entropy, logit_margin

__all__ = ["draw_pixels", "search_loss", "search_loss_and_success"]

_ZERO_WEIGHT = -1e4
"""Key of an allowed pixel of weight 0: after every pixel of positive weight (whose log-weight
plus Gumbel noise stays far above it), before every pixel that is not allowed."""


def search_loss(logits: Tensor, labels: Tensor, *, targeted: bool) -> Tensor:
    """Loss a search minimises, per sample: the logit margin ``z_y - max_{j != y} z_j``
    untargeted, the cross-entropy of the target when targeted (Sparse-RS's and SA-MOO's)."""
    if targeted:
        return -adversarial_cross_entropy(logits, labels, targeted=True)
    return -logit_margin(logits, labels, targeted=False)


def search_loss_and_success(logits: Tensor, labels: Tensor, *, targeted: bool) -> tuple[Tensor, Tensor]:
    """:func:`search_loss` and :func:`attacks.success.is_adversarial`, from one logit margin (a search's
    step costs what its operations number on a GPU)."""
    margin = logit_margin(logits, labels, targeted=targeted)
    return (search_loss(logits, labels, targeted=True) if targeted else -margin), margin > 0


def draw_pixels(allowed: Tensor, count: int, weights: Tensor | None = None) -> Tensor:
    """``count`` distinct positions per row of ``allowed``, drawn without replacement.

    Parameters
    ----------
    allowed : Tensor
        Boolean ``(..., N)``: the positions that may be drawn.
    count : int
        Positions to draw per row, ``0 <= count <= N``; a row with fewer
        allowed positions is completed with positions that are not allowed.
    weights : Tensor, optional
        Non-negative ``(..., N)``. ``None``: uniform among the allowed
        positions. Otherwise successive draws proportional to the weights
        (Gumbel top-k, the law of drawing one position at a time and removing
        it); allowed positions of weight 0 come only after all of positive
        weight, in uniform random order.

    Returns
    -------
    Tensor
        Long ``(..., count)``, in the order drawn.
    """
    noise = torch.rand(allowed.shape, device=allowed.device)
    if weights is None:
        keys = noise.masked_fill(~allowed, -1.0)
    else:
        gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1 - 1e-7)))
        positive = weights > 0
        keys = torch.where(positive, weights.clamp_min(1e-30).log() + gumbel, _ZERO_WEIGHT + gumbel)
        keys = keys.masked_fill(~allowed, float("-inf"))
    return keys.topk(count, dim=-1).indices
