"""Thin wrappers of torchattacks' L0 attacks (torchattacks 3.5.1, arXiv:2010.01950).

Each wrapper turns a torchattacks class into SparseBench's contract
``attack(model, inputs, labels, *, targeted=False, **hyperparameters)`` and
keeps torchattacks' own defaults, so a result under ``torchattacks/<name>``
is what a user of that library gets. Nothing is fixed here: where the
library is weak or wrong, the native baseline (a separate registry entry)
is the place for the fix.

torchattacks 3.5.1 pins ``requests~=2.25.1``; install it with
``pip install --no-deps torchattacks==3.5.1`` (its other requirements,
numpy, scipy and tqdm, are SparseBench's own).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["jsma", "onepixel", "pixle", "sparsefool"]


def _import_torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "torchattacks is not installed: pip install --no-deps torchattacks==3.5.1"
        ) from error
    return torchattacks


def _run(class_name: str, model: nn.Module, inputs: Tensor, labels: Tensor, targeted: bool, **kwargs: Any) -> Tensor:
    attack = getattr(_import_torchattacks(), class_name)(model, **kwargs)
    if targeted:
        # "by label": torchattacks then reads the labels it is given as targets,
        # which is SparseBench's contract for targeted attacks.
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(inputs, labels).detach()


def sparsefool(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    steps: int = 10, lam: float = 3.0, overshoot: float = 0.02,
) -> Tensor:
    """SparseFool (Modas et al., CVPR 2019, arXiv:1811.02248) from torchattacks; untargeted only.

    ``steps`` bounds the outer linearisations, ``lam`` scales the DeepFool
    boundary point, ``overshoot`` pushes past the boundary.
    """
    return _run("SparseFool", model, inputs, labels, targeted, steps=steps, lam=lam, overshoot=overshoot)


def onepixel(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    pixels: int = 1, steps: int = 10, popsize: int = 10, inf_batch: int = 128,
) -> Tensor:
    """OnePixel (Su et al., IEEE TEVC 2019, arXiv:1710.08864) from torchattacks.

    A fixed-budget attack: ``pixels`` positions, searched by differential
    evolution for ``steps`` generations. torchattacks' population is
    ``max(1, popsize // (pixels * (2 + C))) * pixels * (2 + C)`` candidates,
    not ``popsize`` per pixel.

    Known weakness, kept as the library has it (the native ``onepixel`` is
    the fix): the fitness is ``1 - p_target`` (targeted) or ``p_true``
    (untargeted) in float32, and ``1 - p`` is exactly 1 for every
    ``p < 6e-8``. On a confident model all candidates then tie, differential
    evolution cannot select, and the targeted attack reaches its target only
    where the target already has some probability (measured on the tiny
    Fashion-MNIST model: 1 of 8 targets with 5 or 20 pixels, against 3 of 8
    for the native attack with 5; untargeted 5-6 of 8 against 8 of 8).
    Targeted mode itself is wired correctly (the given labels are the targets).
    """
    return _run("OnePixel", model, inputs, labels, targeted, pixels=pixels, steps=steps, popsize=popsize, inf_batch=inf_batch)


def jsma(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    theta: float = 1.0, gamma: float = 0.1,
) -> Tensor:
    """JSMA (Papernot et al., EuroS&P 2016, arXiv:1511.07528) from torchattacks.

    ``theta`` is the change per chosen value, ``gamma`` the largest fraction
    of values it may change. Untargeted, torchattacks aims at class
    ``(label + 1) mod 10``, so untargeted results are a targeted attack's.
    """
    return _run("JSMA", model, inputs, labels, targeted, theta=theta, gamma=gamma)


def pixle(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    x_dimensions: tuple[float, float] = (2, 10), y_dimensions: tuple[float, float] = (2, 10),
    pixel_mapping: str = "random", restarts: int = 20, max_iterations: int = 10,
    update_each_iteration: bool = False,
) -> Tensor:
    """Pixle (Pomponi et al., IJCNN 2022, arXiv:2202.02236) from torchattacks.

    Black-box: rearranges patches of the image's own pixels by random search
    (``restarts`` x ``max_iterations`` queries per sample at most).
    """
    return _run(
        "Pixle", model, inputs, labels, targeted,
        x_dimensions=tuple(x_dimensions), y_dimensions=tuple(y_dimensions),
        pixel_mapping=pixel_mapping, restarts=restarts, max_iterations=max_iterations,
        update_each_iteration=update_each_iteration,
    )
