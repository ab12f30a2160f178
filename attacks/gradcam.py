"""Grad-CAM on a batch of tensors, and which layer it reads for each family of architecture.

Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM:
Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017, arXiv:1610.02391) of class ``c`` on an image, at a layer whose
output is the feature maps ``A`` ``(K, h, w)``:

* ``w_k = mean_{i,j} d y_c / d A_k[i, j]``, with ``y_c`` the class's logit;
* ``map = relu(sum_k w_k A_k)``, upsampled bilinearly to the input's size and
  scaled to [0, 1] per image (``(map - min) / (max - min)``; 0 everywhere
  when the class has no positive evidence, or a map is constant).

:func:`grad_cam` computes it for a whole batch in one forward pass and one
backward pass that stops at the layer, through a forward hook that is
removed before it returns. It agrees with ``GradCAM`` of the pytorch-grad-cam
package 1.5.7 (``tests/test_interpret.py`` compares them), without the
package. EGS-TSSA (:mod:`baselines.egs_tssa`) picks its groups with it, and
the interpretation report (:mod:`reports.interpret`) splits perturbations by
it.

The target layer
----------------
:data:`TARGET_LAYERS` is the table: the first entry whose ``marker``, an
attribute holding a module, some module of the model has (outermost first,
so a wrapper such as the harness's ``CountingModel`` or
``Sequential(normalize, model)`` is looked through) gives the layer:

============================================  =========  ======================================================
family                                        marker     layer
============================================  =========  ======================================================
SmallCNN (:mod:`bench.architectures`),        features   the ReLU after the last ``Conv2d`` of ``features``:
torchvision VGG and AlexNet                              the rectified maps of the last convolution (SmallCNN
                                                         ``features[4]``, 14x14 at 28x28; VGG-16
                                                         ``features[29]``, 14x14 at 224); where the last part
                                                         of ``features`` holding a convolution is a block
                                                         (DenseNet, MobileNet), that block
ResNets: torchvision's ResNet, ResNeXt and    layer4     ``layer4[-1]``, the last residual block (7x7 at 224
Wide ResNet; RobustBench's ResNet-50                     for ResNet-50; 4x4 at 32 for PreActResNet-18)
(ImageNet) and PreActResNet-18 (CIFAR-10)
RobustBench's WideResNet (WRN-28-10           block3     ``relu``, the ReLU after the last BatchNorm: the
``Standard`` and its kin)                                rectified maps of the last block (8x8 at 32)
============================================  =========  ======================================================

A model none of them matches gets its last ``Conv2d``; a model without one
(``SmallMLP``, a linear model) has no Grad-CAM, and :func:`default_target_layer`
raises a ``ValueError`` that says so. A caller may name another layer, as a
module or by its dotted name (:func:`resolve_target_layer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["TARGET_LAYERS", "TargetLayer", "default_target_layer", "grad_cam", "resolve_target_layer"]


@dataclass(frozen=True)
class TargetLayer:
    """One row of :data:`TARGET_LAYERS`.

    Attributes
    ----------
    family : str
        The architectures it serves.
    marker : str
        An attribute that a module of that family holds (a module).
    layer : str
        Which layer it takes, in words.
    select : callable
        ``select(module) -> nn.Module | None``: the layer, given the module
        with the marker; None where that module turns out not to fit.
    """

    family: str
    marker: str
    layer: str
    select: Callable[[nn.Module], nn.Module | None]


def _contains_convolution(module: nn.Module) -> bool:
    return any(isinstance(part, nn.Conv2d) for part in module.modules())


def _after_last_convolution(module: nn.Module) -> nn.Module | None:
    features = getattr(module, "features", None)
    if not isinstance(features, nn.Sequential):
        return None
    layers = list(features)
    holding = [i for i, layer in enumerate(layers) if _contains_convolution(layer)]
    if not holding:
        return None
    last = layers[holding[-1]]
    if not isinstance(last, nn.Conv2d):
        return last  # a block ending in its own activation (DenseNet, MobileNet)
    after = [layer for layer in layers[holding[-1]:] if isinstance(layer, nn.ReLU)]
    return after[0] if after else last


def _last_residual_block(module: nn.Module) -> nn.Module | None:
    layer4 = getattr(module, "layer4", None)
    return layer4[-1] if isinstance(layer4, nn.Sequential) and len(layer4) else None


def _final_relu(module: nn.Module) -> nn.Module | None:
    relu = getattr(module, "relu", None)
    return relu if isinstance(relu, nn.ReLU) else None


#: Which layer Grad-CAM reads, per family of architecture (the module docstring shows it as a table).
TARGET_LAYERS: tuple[TargetLayer, ...] = (
    TargetLayer("SmallCNN, torchvision VGG and AlexNet", "features",
                "the ReLU after the last Conv2d of features (or the last block holding a convolution)",
                _after_last_convolution),
    TargetLayer("ResNets: torchvision's ResNet/ResNeXt/Wide ResNet, RobustBench's ResNet-50 and PreActResNet-18",
                "layer4", "layer4[-1], the last residual block", _last_residual_block),
    TargetLayer("RobustBench's WideResNet", "block3", "relu, the ReLU after the last BatchNorm", _final_relu),
)


def default_target_layer(model: nn.Module) -> nn.Module:
    """The layer :data:`TARGET_LAYERS` gives for ``model``, else its last ``Conv2d``.

    Raises
    ------
    ValueError
        The model has no ``Conv2d`` layer, so no Grad-CAM.
    """
    for module in model.modules():  # outermost first: a wrapper is looked through
        for row in TARGET_LAYERS:
            if isinstance(getattr(module, row.marker, None), nn.Module):
                layer = row.select(module)
                if layer is not None:
                    return layer
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"target_layer: {type(model).__name__} has no Conv2d layer, so no Grad-CAM; "
                         "pass a layer (a module or its dotted name) whose output is (B, C, H, W)")
    return convolutions[-1]


def resolve_target_layer(model: nn.Module, target_layer: nn.Module | str | None = None) -> nn.Module:
    """``target_layer`` as a module of ``model``: None for :func:`default_target_layer`, or a dotted name."""
    if target_layer is None:
        return default_target_layer(model)
    if isinstance(target_layer, str):
        try:
            return model.get_submodule(target_layer)
        except AttributeError:
            names = [name for name, _ in model.named_modules() if name]
            raise ValueError(f"target_layer: {target_layer!r} is not a layer of {type(model).__name__}; "
                             f"layers: {', '.join(names[:40])}{' ...' if len(names) > 40 else ''}") from None
    return target_layer


def grad_cam(model: nn.Module, inputs: Tensor, classes: Tensor | None = None, *,
             target_layer: nn.Module | str | None = None) -> tuple[Tensor, Tensor]:
    """Grad-CAM of ``classes[i]`` on ``inputs[i]``, in [0, 1] per image; one forward and one backward pass.

    Parameters
    ----------
    model : nn.Module
        Returns logits. Its parameters may be frozen: the input is made to
        require gradients so that the layer's output carries them.
    inputs : Tensor
        ``(B, C, H, W)``.
    classes : Tensor, optional
        ``(B,)`` int64, the class explained per image; None: the model's
        prediction.
    target_layer : nn.Module or str, optional
        See :func:`resolve_target_layer`.

    Returns
    -------
    tuple of Tensor
        The maps ``(B, H, W)`` (detached, the inputs' dtype and device) and
        the logits ``(B, num_classes)`` (detached) of the forward pass.

    Raises
    ------
    ValueError
        No layer to read (see :func:`default_target_layer`), or the layer
        did not run or does not return ``(B, C, h, w)``.
    """
    layer = resolve_target_layer(model, target_layer)
    outputs: list[Tensor] = []

    def keep(module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, Tensor):
            outputs.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(inputs.detach().requires_grad_(True))
    finally:
        handle.remove()
    if not outputs or outputs[-1].dim() != 4 or outputs[-1].shape[0] != inputs.shape[0]:
        seen = tuple(outputs[-1].shape) if outputs else "nothing"
        raise ValueError(f"target_layer: {type(layer).__name__} returned {seen} in the forward pass; Grad-CAM "
                         f"needs feature maps (B, C, h, w) with B = {inputs.shape[0]}")
    activations = outputs[-1]  # the layer's last call, where it runs more than once
    classes = logits.detach().argmax(1) if classes is None else classes
    score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
    (gradients,) = torch.autograd.grad(score, activations)
    weights = gradients.mean((2, 3), keepdim=True)
    cam = F.relu((weights * activations.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    low = cam.flatten(1).amin(1).view(-1, 1, 1)
    span = cam.flatten(1).amax(1).view(-1, 1, 1) - low  # 0 for a constant map, which becomes 0 everywhere
    return ((cam - low) / span.clamp_min(torch.finfo(cam.dtype).tiny)).to(inputs.dtype), logits.detach()
