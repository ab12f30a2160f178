"""A greedy saliency attack, written the way any outside attack is: a plain function under the contract."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def saliency_flip(model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
                  pixels_per_step: int = 2, max_steps: int = 100) -> Tensor:
    """Set pixels to the box corner the gradient prefers, a few at a time, until each sample succeeds.

    Each step takes one gradient of the cross-entropy for the samples still
    unsolved, scores every pixel by the first-order gain of moving all its
    channels to 0 or 1, and sets the ``pixels_per_step`` best pixels not yet
    changed. A sample stops changing once the model's answer is wrong
    (untargeted) or the target (targeted). ``labels`` are the targets when
    ``targeted``. Returns images in [0, 1].
    """
    adversarial = inputs.clone()
    changed = torch.zeros_like(inputs[:, :1], dtype=torch.bool)
    active = torch.arange(len(inputs), device=inputs.device)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        x = adversarial[active].requires_grad_(True)
        logits = model(x)
        goal = labels[active]
        done = logits.argmax(1) == goal if targeted else logits.argmax(1) != goal
        loss = F.cross_entropy(logits, goal, reduction="sum")
        (gradient,) = torch.autograd.grad(-loss if targeted else loss, x)
        corner = (gradient > 0).to(x.dtype)
        gain = (gradient * (corner - x.detach())).sum(1, keepdim=True)
        gain = gain.masked_fill(changed[active], float("-inf")).flatten(1)
        chosen = torch.zeros_like(gain, dtype=torch.bool)
        chosen.scatter_(1, gain.topk(pixels_per_step, dim=1).indices, True)
        chosen = chosen.view_as(changed[active]) & ~done.view(-1, 1, 1, 1)
        adversarial[active] = torch.where(chosen, corner, x.detach())
        changed[active] |= chosen
        active = active[~done]
    return adversarial
