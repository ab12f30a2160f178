"""Losses that attacks share."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["adversarial_cross_entropy", "logit_margin"]


def adversarial_cross_entropy(logits: Tensor, labels: Tensor, *, targeted: bool) -> Tensor:
    """Per-sample loss to *increase*: CE of the true class, or minus CE of the target.

    Ascending this loss moves an untargeted example away from ``labels`` and a
    targeted one towards ``labels`` (the targets).
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def logit_margin(logits: Tensor, labels: Tensor, *, targeted: bool) -> Tensor:
    """Difference of logits (Carlini & Wagner), positive once the attack succeeds.

    Untargeted: ``max_{j != y} z_j - z_y``; targeted: ``z_t - max_{j != t} z_j``.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return own - others if targeted else others - own
