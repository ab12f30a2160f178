"""Models: a registry of classifiers, trained or downloaded once and cached.

Every model returned by :func:`load_model` takes inputs in [0, 1] (any
normalisation is a layer inside it), returns logits, is in eval mode and has
frozen parameters (:func:`~bench.architectures.prepare_model`).

Sources (:data:`MODELS`, one :class:`ModelEntry` each):

- ``sparsebench``: :class:`~bench.architectures.SmallCNN` on Fashion-MNIST /
  MNIST, trained here on first use in three flavours (standard, PGD-AT,
  Fast-AT; :mod:`bench.training`) and cached (:mod:`bench.cache`).
- ``robustbench``: models of the RobustBench model zoo (Croce et al., 2021,
  arXiv:2010.09670), Linf threat model, through ``robustbench.load_model``
  (:mod:`bench.zoo`).
- ``torchvision``: ImageNet classifiers with torchvision's IMAGENET1K_V1
  weights, read from torchvision's cache (``$TORCH_HOME``; :mod:`bench.zoo`).

Installed packages add models (:data:`ENTRY_POINT_GROUP`), and a config adds
outside models (:mod:`bench.outside`). This module is the registry and the
one entry point, :func:`load_model`; the names of ``__all__`` that live in
:mod:`bench.architectures`, :mod:`bench.training` and :mod:`bench.zoo` are
re-exported here, so ``from bench.models import X`` works for each of them.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.architectures import ARCHITECTURES, Normalize, SmallCNN, SmallMLP, prepare_model
from bench.cache import _load_small_cnn, small_cnn_weights_path
from bench.data import DATASETS
from bench.errors import SparseBenchError
from bench.outside import load_outside_model
from bench.registry import plugin_entries
from bench.training import FLAVOURS, SMALL_CNN_EPS, train_small_cnn
from bench.zoo import (
    ModelUnavailableError,
    _load_robustbench,
    _untrained_robustbench,
    torchvision_classifier,
)

__all__ = [
    "ARCHITECTURES",
    "FLAVOURS",
    "MODELS",
    "SMALL_CNN_EPS",
    "ModelEntry",
    "ModelUnavailableError",
    "Normalize",
    "SmallCNN",
    "SmallMLP",
    "all_models",
    "load_model",
    "plugin_models",
    "model_metadata",
    "model_names",
    "prepare_model",
    "small_cnn_cache_path",
    "torchvision_classifier",
    "train_small_cnn",
    "untrained_model",
]


# --------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class ModelEntry:
    """What the harness knows about one model.

    Attributes
    ----------
    name : str
        Registry name (``source/`` prefix for models of other libraries).
    datasets : tuple of str
        Datasets (keys of :data:`bench.data.DATASETS`) it is available for.
    source : str
        ``"sparsebench"``, ``"robustbench"`` or ``"torchvision"``.
    target : str
        The name in its source: the training flavour (sparsebench), the model
        zoo name (robustbench) or the builder name (torchvision).
    description : str
        Architecture and training, in a sentence.
    citation : str
        The paper, with its arXiv id.
    weights : str or None
        torchvision weights name (``"IMAGENET1K_V1"``); None for other sources.
    architecture : str
        For SparseBench's own models, a key of :data:`bench.architectures.ARCHITECTURES`.
    function : str or None
        For a model from outside the package: ``"module:attribute"`` of a
        constructor returning the ``nn.Module`` (:mod:`bench.outside`).
    checkpoint : str or None
        With ``function``: a ``state_dict`` file, read with ``weights_only=True``.
    """

    name: str
    datasets: tuple[str, ...]
    source: str
    target: str
    description: str
    citation: str
    weights: str | None = None
    architecture: str = "smallcnn"
    function: str | None = None
    checkpoint: str | None = None


_MADRY = "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018, arXiv:1706.06083"
_WONG = "Wong et al., Fast is better than free: Revisiting adversarial training, ICLR 2020, arXiv:2001.03994"
_ROBUSTBENCH = "Croce et al., RobustBench, NeurIPS 2021 Datasets and Benchmarks, arXiv:2010.09670"
_RESNET = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"
_VGG = "Simonyan and Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015, arXiv:1409.1556"

MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry(
            "smallcnn-standard", ("fashion-mnist", "mnist"), "sparsebench", "standard",
            "SmallCNN (conv16-conv32-fc128), cross-entropy training",
            "SparseBench (this package)",
        ),
        ModelEntry(
            "smallcnn-pgd-at", ("fashion-mnist", "mnist"), "sparsebench", "pgd-at",
            "SmallCNN, Linf PGD adversarial training (eps 0.1 Fashion-MNIST, 0.3 MNIST)",
            _MADRY,
        ),
        ModelEntry(
            "smallcnn-fast-at", ("fashion-mnist", "mnist"), "sparsebench", "fast-at",
            "SmallCNN, Fast-AT: FGSM from a random start, step 1.25 eps",
            _WONG,
        ),
        ModelEntry(
            "mlp-standard", ("fashion-mnist", "mnist"), "sparsebench", "standard",
            "SmallMLP (fc256-fc256), cross-entropy training: a second architecture, so that "
            "transfer crosses architectures offline",
            "SparseBench (this package)", architecture="mlp",
        ),
        ModelEntry(
            "robustbench/Standard", ("cifar10",), "robustbench", "Standard",
            "WideResNet-28-10, standard training (RobustBench's non-robust reference)",
            _ROBUSTBENCH,
        ),
        ModelEntry(
            "robustbench/Engstrom2019Robustness", ("cifar10", "imagenet"), "robustbench",
            "Engstrom2019Robustness",
            "ResNet-50, Linf PGD adversarial training (eps 8/255 CIFAR-10, 4/255 ImageNet)",
            "Engstrom et al., Robustness (Python library), 2019, "
            "https://github.com/MadryLab/robustness; " + _MADRY,
        ),
        ModelEntry(
            "robustbench/Wong2020Fast", ("cifar10", "imagenet"), "robustbench", "Wong2020Fast",
            "Fast-AT: PreActResNet-18 (CIFAR-10, eps 8/255), ResNet-50 (ImageNet, eps 4/255; "
            "RobustBench evaluates it on 288x288 center crops)",
            _WONG,
        ),
        ModelEntry(
            "torchvision/vgg16", ("imagenet",), "torchvision", "vgg16",
            "VGG-16, torchvision IMAGENET1K_V1 weights", _VGG, "IMAGENET1K_V1",
        ),
        ModelEntry(
            "torchvision/vgg19", ("imagenet",), "torchvision", "vgg19",
            "VGG-19, torchvision IMAGENET1K_V1 weights", _VGG, "IMAGENET1K_V1",
        ),
        ModelEntry(
            "torchvision/resnet50", ("imagenet",), "torchvision", "resnet50",
            "ResNet-50, torchvision IMAGENET1K_V1 weights", _RESNET, "IMAGENET1K_V1",
        ),
        ModelEntry(
            "torchvision/resnet101", ("imagenet",), "torchvision", "resnet101",
            "ResNet-101, torchvision IMAGENET1K_V1 weights", _RESNET, "IMAGENET1K_V1",
        ),
        ModelEntry(
            "torchvision/resnet152", ("imagenet",), "torchvision", "resnet152",
            "ResNet-152, torchvision IMAGENET1K_V1 weights", _RESNET, "IMAGENET1K_V1",
        ),
    ]
}


ENTRY_POINT_GROUP = "sparsebench.models"
"""Installed packages add models here: each entry point names a :class:`ModelEntry` (with ``function``) or a
sequence of them."""


@functools.lru_cache(maxsize=None)
def plugin_models() -> Mapping[str, tuple[ModelEntry, str]]:
    """Models added by installed packages (entry point group ``sparsebench.models``), with each package's name.

    Each needs a ``function``; a name that clashes with a built-in model or another package's is an error.
    """
    found = plugin_entries(ENTRY_POINT_GROUP, ModelEntry, MODELS, "model")
    for entry, package in found.values():
        if entry.function is None:
            raise SparseBenchError(f"{package}: model {entry.name!r} has no 'function' (its constructor)")
    return found


def all_models() -> dict[str, ModelEntry]:
    """The built-in models, then those installed packages add."""
    return {**MODELS, **{name: entry for name, (entry, _) in plugin_models().items()}}


def model_names(dataset: str) -> list[str]:
    """Names of the models available for ``dataset``.

    Raises
    ------
    ValueError
        Unknown dataset.
    """
    if dataset not in DATASETS:
        raise SparseBenchError(
            f"dataset: unknown value {dataset!r}; allowed: {', '.join(map(repr, DATASETS))}"
        )
    return [name for name, entry in all_models().items() if dataset in entry.datasets]


def _entry(name: str, dataset: str) -> ModelEntry:
    allowed = model_names(dataset)
    if name not in allowed:
        known = " (it exists, for other datasets)" if name in all_models() else ""
        raise SparseBenchError(
            f"model: {name!r} is not available for dataset {dataset!r}{known}; "
            f"allowed: {', '.join(map(repr, allowed))}"
        )
    return all_models()[name]


# --------------------------------------------------------------------------
# Cache paths and metadata of SparseBench's own models (the cache itself: bench.cache)


def small_cnn_cache_path(
    name: str,
    dataset: str,
    *,
    cache_dir: pathlib.Path | None = None,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Where a SmallCNN's weights are cached (metadata: same path, ``.json``).

    ``cache_dir/models/<dataset>/<name>-seed<seed>.pt`` for the default
    training; non-default settings add ``-custom-<hash of the settings>`` so
    that a quickly trained model never passes for the real one.

    ``name`` must be a model of the registry available for ``dataset``; the
    layout itself is :func:`bench.cache.small_cnn_weights_path`.
    """
    _entry(name, dataset)
    return small_cnn_weights_path(name, dataset, cache_dir=cache_dir, seed=seed, training=training)


def model_metadata(
    name: str,
    dataset: str,
    cache_dir: pathlib.Path | None = None,
    *,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The training metadata of a cached SmallCNN, or None if it is not cached.

    Models of other sources have no metadata here (None).
    """
    entry = _entry(name, dataset)
    if entry.source != "sparsebench":
        return None
    path = small_cnn_cache_path(name, dataset, cache_dir=cache_dir, seed=seed, training=training)
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    return json.loads(meta_path.read_text())


# --------------------------------------------------------------------------
# Untrained architectures, for timing


def untrained_model(name: str, dataset: str, *, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture of a registered model with random weights (seeded), prepared for attack.

    For timing where the weights do not matter (the cost of a pass does not
    depend on them) and cannot be had (no network): RobustBench's zoo
    constructor for the model (its normalisation included), torchvision's
    builder with ``weights=None`` behind the ImageNet normalisation, or our
    own architecture. Nothing is read from or written to any cache.
    """
    entry = _entry(name, dataset)
    torch.manual_seed(seed)
    if entry.source == "sparsebench":
        model = ARCHITECTURES[entry.architecture](DATASETS[dataset].num_classes)
    elif entry.source == "robustbench":
        model = _untrained_robustbench(entry.target, dataset)
    else:
        model = torchvision_classifier(entry.target, weights=None)
    return prepare_model(model, device)


# --------------------------------------------------------------------------
# The one entry point


def load_model(
    name: str,
    dataset: str,
    *,
    cache_dir: pathlib.Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    allow_download: bool = True,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Load a model of :data:`MODELS` for a dataset, ready to attack.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS` available for ``dataset`` (:func:`model_names`).
    dataset : str
        A key of :data:`bench.data.DATASETS`.
    cache_dir : pathlib.Path, optional
        SparseBench's cache (default :func:`bench.data.default_cache_dir`):
        SmallCNNs in ``models/<dataset>/``, RobustBench checkpoints in
        ``robustbench/``. torchvision weights stay in torchvision's cache.
    device : str or torch.device
        Where the model goes.
    progress : bool
        Progress bars (training, downloads).
    allow_download : bool
        Whether missing weights or data may be downloaded; if False, a missing
        file raises :class:`~bench.zoo.ModelUnavailableError` without network access.
    seed : int
        SmallCNN only: the training seed.
    training : mapping, optional
        SmallCNN only: keyword arguments of :func:`bench.training.train_small_cnn`
        (``epochs``, ``train_subset``, ...) overriding the defaults, e.g. for
        fast tests; such a model is cached under a distinct file name.

    Returns
    -------
    nn.Module
        The model, prepared by :func:`bench.architectures.prepare_model`.

    Raises
    ------
    ValueError
        Unknown model or dataset, or a model not available for the dataset.
    ModelUnavailableError
        Weights missing and not obtainable.
    """
    entry = _entry(name, dataset)
    if entry.function is not None:
        info = DATASETS[dataset]
        model = load_outside_model(entry.function, entry.checkpoint, num_classes=info.num_classes,
                                   shape=info.shape, name=entry.name)
    elif entry.source == "sparsebench":
        model = _load_small_cnn(entry.name, dataset, flavour=entry.target, architecture=entry.architecture,
                                cache_dir=cache_dir, device=device, progress=progress,
                                allow_download=allow_download, seed=seed, training=training)
    elif training is not None:
        raise SparseBenchError(f"training: only SparseBench's own models are trained; {name!r} is from {entry.source}")
    elif entry.source == "robustbench":
        model = _load_robustbench(entry.name, entry.target, dataset, cache_dir, allow_download)
    else:
        model = torchvision_classifier(
            entry.target, weights=entry.weights, allow_download=allow_download, progress=progress
        )
    return prepare_model(model, device)
