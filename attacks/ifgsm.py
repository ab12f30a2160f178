"""I-FGSM, the dense reference (Kurakin, Goodfellow & Bengio, arXiv:1607.02533)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attacks.losses import adversarial_cross_entropy

__all__ = ["i_fgsm"]


def i_fgsm(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    targeted: bool = False,
    eps: float = 4 / 255,
    alpha: float = 1 / 255,
    steps: int = 10,
) -> Tensor:
    """Iterative FGSM in the Linf ball, as Lin et al. use it for their start.

    Untargeted (Lin et al., eq. 3): ``x_{n+1} = x_n + alpha * sign(grad J(x_n, y))``;
    targeted (eq. 4): ``x_{n+1} = x_n - alpha * sign(grad J(x_n, t))``. Each
    step is projected onto the eps-ball around ``inputs`` and onto [0, 1].
    It is dense: nearly every value changes, which is why it is the
    reference the sparse attacks are measured against.

    Follows the attack contract (:class:`bench.registry.AttackFunction`): ``model``, ``inputs``,
    ``labels`` (targets when ``targeted``) and the returned images in [0, 1].

    Parameters
    ----------
    eps : float
        Linf radius, in input units ([0, 1] scale). Default 4/255 (Lin et al., Section 5.1).
    alpha : float
        Step size per iteration, in input units. Default 1/255.
    steps : int
        Number of iterations. Default 10.
    """
    lower = (inputs - eps).clamp_(0, 1)
    upper = (inputs + eps).clamp_(0, 1)
    x = inputs.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = adversarial_cross_entropy(model(x), labels, targeted=targeted).sum()
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + alpha * grad.sign(), lower), upper)
    return x.detach()
