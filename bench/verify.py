"""The harness's own check of every adversarial example.

What an attack says about its output counts for nothing: each returned
example is checked for shape, dtype, finiteness and the [0, 1] box, then
classified by the harness's own forward pass. Success is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from attacks.norms import l0_elements, l0_pixels, lp_norms

__all__ = ["Verified", "verify"]


@dataclass
class Verified:
    """Per-sample verdicts and sizes, as numpy arrays of length B."""

    valid: np.ndarray
    violation: list[str]
    adversarial_prediction: np.ndarray
    success: np.ndarray
    l0_elements: np.ndarray
    l0_pixels: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    adversarial: Tensor
    """The examples as checked (the inputs themselves where the attack's output was unusable)."""

    def markdown_cells(self, unit: str = "pixels") -> str:
        """``fooling rate (k/n) | median L0 | mean L0`` over the successes (L0 in ``unit``), for a Markdown row."""
        l0 = (self.l0_pixels if unit == "pixels" else self.l0_elements)[self.success]
        median = f"{np.median(l0):g}" if self.success.any() else "-"
        mean = f"{l0.mean():.1f}" if self.success.any() else "-"
        return f"{self.success.mean():.3f} ({int(self.success.sum())}/{len(self.success)}) | {median} | {mean}"


def _refusal(inputs: Tensor, adversarial: object) -> str:
    """Why a returned value cannot be an example at all ("" when it can be checked element-wise)."""
    if not isinstance(adversarial, Tensor):
        return f"returned a {type(adversarial).__name__}, not a Tensor"
    if type(adversarial) not in (Tensor, nn.Parameter):
        # A subclass can redefine every operation verification would apply to it.
        return f"returned a Tensor subclass ({type(adversarial).__name__})"
    if tuple(adversarial.shape) != tuple(inputs.shape):
        return f"shape {tuple(adversarial.shape)} != {tuple(inputs.shape)}"
    if not adversarial.is_floating_point():
        return f"dtype {adversarial.dtype} is not floating"
    if adversarial.device != inputs.device:
        return f"device {adversarial.device} != {inputs.device}"
    return ""


@torch.no_grad()
def verify(
    model: nn.Module,
    inputs: Tensor,
    adversarial: object,
    labels: Tensor,
    *,
    targets: Tensor | None = None,
) -> Verified:
    """Check adversarial examples and measure them.

    Parameters
    ----------
    model : nn.Module
        The bare model (not the counting wrapper), in eval mode.
    inputs, labels : Tensor
        Clean images in [0, 1] and their true classes.
    adversarial : Tensor
        What the attack returned.
    targets : Tensor, optional
        Target classes for a targeted attack; success then means the target
        is predicted, otherwise that the true class is not.

    Returns
    -------
    Verified
        An example is valid if it is a plain ``Tensor`` (not a subclass, not
        a numpy array or None) of the inputs' shape, on their device, of a
        floating dtype, with finite values inside [0, 1] exactly; an invalid
        example counts as a failure and its sizes are measured on the clean
        input.
    """
    batch = inputs.shape[0]
    violation = [""] * batch
    refused = _refusal(inputs, adversarial)
    if refused:
        violation = [refused] * batch
        checked = inputs.clone()
        valid = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
    else:
        assert isinstance(adversarial, Tensor)  # _refusal refused anything else
        checked = adversarial.detach().to(dtype=inputs.dtype)
        flat = checked.flatten(1)
        finite = torch.isfinite(flat).all(1)
        inside = ((flat >= 0) & (flat <= 1)).all(1)
        valid = finite & inside
        for i in torch.nonzero(~valid).flatten().tolist():
            if not bool(finite[i]):
                violation[i] = "not finite"
            else:
                low, high = float(flat[i].min()), float(flat[i].max())
                violation[i] = f"outside [0, 1]: min {low:.6g}, max {high:.6g}"
        checked = torch.where(valid.view(-1, *[1] * (inputs.dim() - 1)), checked, inputs)

    prediction = model(checked).argmax(1)
    hit = prediction == targets if targets is not None else prediction != labels
    success = hit & valid
    norms = lp_norms(inputs, checked)
    return Verified(
        valid=valid.cpu().numpy(),
        violation=violation,
        adversarial_prediction=prediction.cpu().numpy(),
        success=success.cpu().numpy(),
        l0_elements=l0_elements(inputs, checked).cpu().numpy(),
        l0_pixels=l0_pixels(inputs, checked).cpu().numpy(),
        l1=norms["l1"].cpu().numpy(),
        l2=norms["l2"].cpu().numpy(),
        linf=norms["linf"].cpu().numpy(),
        adversarial=checked,
    )
