"""Attacks that lie, each in one way, for tests/test_hostile.py (named in configs as ``lying_attacks:<name>``).

Every one follows the contract's signature, so the config accepts it; what
each does is what a careless or dishonest attack could do to be credited
with successes it did not find, or to hide what it cost.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from attacks.ifgsm import i_fgsm


def _other_class(model: nn.Module, inputs: Tensor) -> Tensor:
    with torch.no_grad():
        return (model(inputs).argmax(1) + 1) % 10


def overwrite_labels(model, inputs, labels, *, targeted=False):
    """Relabels the samples in place so that the unchanged inputs look misclassified (or on target)."""
    labels.copy_(_other_class(model, inputs) if not targeted else model(inputs).argmax(1))
    return inputs


def write_into_inputs(model, inputs, labels, *, targeted=False):
    """Writes a dense perturbation into the input tensor and returns that same tensor: L0 0 if judged on it."""
    adversarial = i_fgsm(model, inputs, labels, targeted=targeted, eps=0.3, alpha=0.05, steps=10)
    inputs.copy_(adversarial)
    return inputs


def train_mode(model, inputs, labels, *, targeted=False):
    """Leaves the model in training mode, where its dropout misclassifies clean inputs."""
    model.train()
    return inputs


def forward_hook(model, inputs, labels, *, targeted=False):
    """Registers a hook that rewrites every later output of a layer, and leaves it there."""
    layer = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    layer.register_forward_hook(lambda module, args, output: -output)
    return inputs


def global_hook(model, inputs, labels, *, targeted=False):
    """Registers a hook on every module of every model, through torch's global registry."""
    nn.modules.module.register_module_forward_hook(
        lambda module, args, output: -output if isinstance(module, nn.Linear) else output)
    return inputs


def patch_argmax(model, inputs, labels, *, targeted=False):
    """Rebinds ``torch.Tensor.argmax`` so that every prediction reads as class 0 or 1."""
    original = torch.Tensor.argmax
    torch.Tensor.argmax = lambda self, *args, **kwargs: (original(self, *args, **kwargs) == 0).long()
    return inputs


def patch_linear(model, inputs, labels, *, targeted=False):
    """Rebinds ``nn.Linear.forward`` for every model in the process."""
    nn.Linear.forward = lambda self, x: -nn.functional.linear(x, self.weight, self.bias)
    return inputs


def patch_instance_forward(model, inputs, labels, *, targeted=False):
    """Puts a ``forward`` on the model instance that shifts every logit off the true class."""
    inner = model.model
    original = inner.forward
    inner.forward = lambda x: original(x).roll(1, dims=1)
    return inputs


def zero_weights(model, inputs, labels, *, targeted=False):
    """Zeroes the last layer's weights and biases: every output becomes one class."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.data.zero_()
            module.bias.data.copy_(torch.arange(module.bias.numel(), dtype=module.bias.dtype))
    return inputs


def hidden_passes(model, inputs, labels, *, targeted=False):
    """Makes 7 forward passes past the wrapper (its ``model`` attribute, and that model's ``forward``) and then
    rewinds the wrapper's counter; the harness must still count all 7, plus the one honest pass."""
    with torch.no_grad():
        for _ in range(4):
            model.model(inputs)
        for _ in range(3):
            model.model.forward(inputs)
        model(inputs)
    model.reset()
    return inputs


def hidden_gradient(model, inputs, labels, *, targeted=False):
    """Takes 5 gradients through ``model.model``; the harness must count 5 forward and 5 backward passes."""
    x = inputs.clone().requires_grad_(True)
    for _ in range(5):
        loss = nn.functional.cross_entropy(model.model(x), labels)
        torch.autograd.grad(loss, x)
    return inputs


def returns_numpy(model, inputs, labels, *, targeted=False):
    return np.clip(inputs.cpu().numpy() + 0.5, 0, 1)


def returns_none(model, inputs, labels, *, targeted=False):
    return None


def returns_uint8(model, inputs, labels, *, targeted=False):
    return (inputs * 255).to(torch.uint8)


def returns_bool(model, inputs, labels, *, targeted=False):
    return inputs > 0.5


def returns_nan(model, inputs, labels, *, targeted=False):
    return torch.full_like(inputs, float("nan"))


def returns_inf(model, inputs, labels, *, targeted=False):
    return torch.full_like(inputs, float("inf"))


def returns_outside_box(model, inputs, labels, *, targeted=False):
    return inputs * 4 - 2


def returns_wrong_shape(model, inputs, labels, *, targeted=False):
    return inputs[:, :, :-1]


def returns_meta(model, inputs, labels, *, targeted=False):
    return torch.empty_like(inputs, device="meta")


class Liar(Tensor):
    """A tensor that answers every comparison with ``True`` (so any box check passes)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        result = super().__torch_function__(func, types, args, kwargs or {})
        if func in (Tensor.__ge__, Tensor.__le__, torch.isfinite):
            return torch.ones_like(result.as_subclass(Tensor), dtype=torch.bool)
        return result


def returns_subclass(model, inputs, labels, *, targeted=False):
    return (inputs * 40 - 20).as_subclass(Liar)


def raises(model, inputs, labels, *, targeted=False):
    raise RuntimeError("out of ideas")


def half_outside_box(model, inputs, labels, *, targeted=False):
    """i-fgsm's examples, with every other one pushed outside [0, 1] by one pixel."""
    adversarial = i_fgsm(model, inputs, labels, targeted=targeted, eps=0.3, alpha=0.05, steps=10)
    adversarial[::2, 0, 0, 0] = 1.5
    return adversarial
