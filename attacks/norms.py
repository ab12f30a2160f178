"""Perturbation sizes, counted once for attacks and harness alike.

Two L0 counts matter for sparse attacks and papers mix them up:

* ``l0_elements`` counts changed values out of C*H*W (what Lin et al. and
  the authors' code report, e.g. "150,523 of 150,528" for 224x224x3);
* ``l0_pixels`` counts spatial positions where any channel changed (what
  Sparse-RS, PGD-L0 and sigma-zero report).

Both are computed from ``adversarial != original`` rather than from a
difference compared with a tolerance: for finite IEEE floats ``a - b == 0``
exactly when ``a == b``, so nothing below float resolution is hidden.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["changed", "l0_elements", "l0_pixels", "lp_norms"]


def changed(original: Tensor, adversarial: Tensor) -> Tensor:
    """Boolean mask of the values that differ, shape ``(B, C, H, W)``."""
    if original.shape != adversarial.shape:
        raise ValueError(
            f"shape: adversarial {tuple(adversarial.shape)} != original {tuple(original.shape)}"
        )
    return adversarial != original


def l0_elements(original: Tensor, adversarial: Tensor) -> Tensor:
    """Number of changed values per sample (out of C*H*W), int64 ``(B,)``."""
    return changed(original, adversarial).flatten(1).sum(1)


def l0_pixels(original: Tensor, adversarial: Tensor) -> Tensor:
    """Number of positions where any channel changed per sample, int64 ``(B,)``.

    Inputs are ``(B, C, H, W)``; the channel axis is 1.
    """
    mask = changed(original, adversarial)
    if mask.dim() != 4:
        raise ValueError(f"inputs: expected (B, C, H, W), got {tuple(mask.shape)}")
    return mask.any(1).flatten(1).sum(1)


def lp_norms(original: Tensor, adversarial: Tensor) -> dict[str, Tensor]:
    """L1, L2 and Linf norms of the perturbation per sample (float32 ``(B,)``)."""
    delta = (adversarial.float() - original.float()).flatten(1)
    return {
        "l1": delta.abs().sum(1),
        "l2": delta.norm(p=2, dim=1),
        "linf": delta.abs().amax(1) if delta.shape[1] else delta.new_zeros(delta.shape[0]),
    }
