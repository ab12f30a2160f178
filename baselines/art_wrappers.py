"""Thin wrappers of the Adversarial Robustness Toolbox's L0 attacks (ART 1.20.1, arXiv:1807.01069).

ART is an optional extra: ``pip install adversarial-robustness-toolbox==1.20.1``
adds scikit-learn, joblib, threadpoolctl, narwhals, cloudpickle and six
(about 70 MB) and changes none of SparseBench's pins. ART works on numpy
arrays on the host: each call copies the batch to the host and back, and
the model runs through ART's ``PyTorchClassifier`` on the inputs' device.
Defaults are ART's own, so a result under ``art/<name>`` is what a user of
that library gets; nothing is fixed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["cw_l0"]


def _import_art() -> Any:
    try:
        from art.attacks.evasion import CarliniL0Method
        from art.estimators.classification import PyTorchClassifier
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ART is not installed: pip install adversarial-robustness-toolbox==1.20.1"
        ) from error
    return CarliniL0Method, PyTorchClassifier


def cw_l0(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    confidence: float = 0.0, learning_rate: float = 0.01, binary_search_steps: int = 10,
    max_iter: int = 10, initial_const: float = 0.01, max_halving: int = 5, max_doubling: int = 5,
    batch_size: int = 1,
) -> Tensor:
    """C&W L0 (Carlini & Wagner, S&P 2017, arXiv:1608.04644) from ART's ``CarliniL0Method``.

    ``max_iter`` is the number of line-search steps of each inner L2 attack
    and ``binary_search_steps`` the number of ``c`` values tried. Two
    properties of ART 1.20.1 matter when reading its numbers: its outer loop
    runs ``x.shape[1] + 1`` times, which for ``(B, C, H, W)`` images is
    ``C + 1`` (2 on Fashion-MNIST), so at most ``C + 1`` values are ever
    fixed; and values it leaves "unchanged" come back through the tanh
    change of variables and differ from the input by up to ~1e-6, which the
    harness's exact L0 counts as changed.
    """
    carlini_l0, classifier_class = _import_art()
    classifier = classifier_class(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(inputs.shape[1:]),
        nb_classes=int(model(inputs[:1]).shape[1]), clip_values=(0.0, 1.0), device_type=(
            "gpu" if inputs.device.type == "cuda" else "cpu"),
    )
    attack = carlini_l0(
        classifier, confidence=confidence, targeted=targeted, learning_rate=learning_rate,
        binary_search_steps=binary_search_steps, max_iter=max_iter, initial_const=initial_const,
        max_halving=max_halving, max_doubling=max_doubling, batch_size=batch_size, verbose=False,
    )
    adversarial = attack.generate(inputs.detach().cpu().numpy().astype(np.float32), y=labels.cpu().numpy())
    return torch.from_numpy(adversarial).to(device=inputs.device, dtype=inputs.dtype).clamp(0, 1)
