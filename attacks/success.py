"""When an attack succeeds, and the sparsest success kept per sample.

Two success criteria are in use and they differ only on exact ties of the top
scores: :func:`is_adversarial` asks for a positive difference of logits (a tie
is no success), :func:`is_adversarial_argmax` reads the predicted class with
``argmax`` (the first of tied classes wins), which is the harness's check in
``bench.verify``. Each attack keeps the one it was written with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attacks.losses import adversarial_cross_entropy, logit_margin
from attacks.norms import l0_elements

__all__ = ["SparsestSuccess", "is_adversarial", "is_adversarial_argmax", "per_sample", "success_and_gradient"]


def is_adversarial(logits: Tensor, labels: Tensor, *, targeted: bool) -> Tensor:
    """Boolean ``(B,)``: misclassified (untargeted) or classified as ``labels`` (targeted).

    Strict: a tie between the top logits does not count as success.
    """
    return logit_margin(logits, labels, targeted=targeted) > 0


def is_adversarial_argmax(scores: Tensor, labels: Tensor, *, targeted: bool) -> Tensor:
    """Boolean: the ``argmax`` over the last axis of ``scores`` (logits or probabilities)
    is ``labels`` (targeted) or is not (untargeted); ``labels`` broadcasts against it."""
    prediction = scores.argmax(-1)
    return prediction == labels if targeted else prediction != labels


def success_and_gradient(
    model: nn.Module, adversarial: Tensor, labels: Tensor, *, targeted: bool, gradient: bool = True,
    loss: str = "ce", switch_margin: float = 0.5,
) -> tuple[Tensor, Tensor | None]:
    """One forward pass at ``adversarial``: :func:`is_adversarial` per sample and, when
    ``gradient``, the gradient with respect to ``adversarial`` of the summed per-sample loss
    (one backward pass); ``None`` and no graph otherwise.

    ``loss``: ``"ce"`` ascends :func:`attacks.losses.adversarial_cross_entropy`, ``"margin"``
    :func:`attacks.losses.logit_margin`, and ``"switch"`` the margin for the samples within
    ``switch_margin`` logits of success and the cross-entropy for the others.
    """
    adversarial = adversarial.requires_grad_(gradient)
    with torch.set_grad_enabled(gradient):
        logits = model(adversarial)
        margin = logit_margin(logits, labels, targeted=targeted)
    success = margin.detach() > 0
    if not gradient:
        return success, None
    if loss == "margin":
        ascended = margin
    else:
        ascended = adversarial_cross_entropy(logits, labels, targeted=targeted)
        if loss == "switch":
            ascended = torch.where(margin.detach() > -switch_margin, margin, ascended)
    (grad,) = torch.autograd.grad(ascended.sum(), adversarial)
    return success, grad


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """``values`` ``(B,)`` viewed as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return values.view(-1, *[1] * (like.dim() - 1))


class SparsestSuccess:
    """Per sample, the successful example with the fewest changed elements seen so far.

    Tensor operations only (no host synchronisation). ``example`` starts as
    ``fallback`` (what a sample without any success gets) and ``l0`` as
    ``C*H*W + 1``, above any real count.
    """

    def __init__(self, fallback: Tensor) -> None:
        self.example = fallback.clone()
        self.l0 = torch.full((fallback.shape[0],), fallback[0].numel() + 1, dtype=torch.long, device=fallback.device)

    def update(self, inputs: Tensor, candidate: Tensor, success: Tensor, *, l0: Tensor | None = None) -> Tensor:
        """Keep ``candidate`` where it succeeds with fewer changed elements (``l0_elements``
        against ``inputs``) than the best so far; returns where it did, boolean ``(B,)``.

        ``l0``, when the caller already knows it, must equal
        ``l0_elements(inputs, candidate)``; it saves that pass over the batch.
        """
        if l0 is None:
            l0 = l0_elements(inputs, candidate)
        better = success & (l0 < self.l0)
        self.example = torch.where(per_sample(better, inputs), candidate, self.example)
        self.l0 = torch.where(better, l0, self.l0)
        return better
