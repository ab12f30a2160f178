"""Models: a registry of classifiers, trained or downloaded once and cached.

Every model returned by :func:`load_model` takes inputs in [0, 1] (any
normalisation is a layer inside it), returns logits, is in eval mode and has
frozen parameters (:func:`prepare_model`).

Sources (:data:`MODELS`, one :class:`ModelEntry` each):

- ``sparsebench``: :class:`SmallCNN` on Fashion-MNIST / MNIST, trained here on
  first use in three flavours (standard, PGD-AT, Fast-AT) and cached.
- ``robustbench``: models of the RobustBench model zoo (Croce et al., 2021,
  arXiv:2010.09670), Linf threat model, through ``robustbench.load_model``.
- ``torchvision``: ImageNet classifiers with torchvision's IMAGENET1K_V1
  weights, read from torchvision's cache (``$TORCH_HOME``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import pathlib
import pickle
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from bench.data import DATASETS, default_cache_dir, get_batch, load_dataset
from bench.errors import SparseBenchError

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

FLAVOURS = ("standard", "pgd-at", "fast-at")

#: Linf radius of adversarial training and of the PGD evaluation, per dataset.
#: 0.3 is MNIST's usual radius (Madry et al., arXiv:1706.06083); on
#: Fashion-MNIST it is too strong (an eps-0.3 box can wipe out the texture
#: that separates shirt, T-shirt, pullover and coat, and robust accuracy
#: collapses), so the usual choice there, as here, is 0.1.
SMALL_CNN_EPS: dict[str, float] = {"fashion-mnist": 0.1, "mnist": 0.3}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelUnavailableError(SparseBenchError, RuntimeError):
    """A model's weights are neither cached nor obtainable (offline, no file)."""


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
        For SparseBench's own models, a key of :data:`ARCHITECTURES`.
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
    from bench.registry import plugin_entries

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


def prepare_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Put a model in the state the harness evaluates it in.

    Eval mode, all parameters frozen (``requires_grad=False``), moved to ``device``.

    Returns
    -------
    nn.Module
        The same module, modified in place.
    """
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device)


# --------------------------------------------------------------------------
# SmallCNN and its training


class SmallCNN(nn.Module):
    """A small CNN for 1x28x28 inputs in [0, 1]: conv16-pool-conv32-pool-fc128-fc.

    3x3 convolutions (padding 1) with ReLU, 2x2 max-pooling, then a hidden
    fully connected layer of 128 units. The widths (16, 32) rather than the
    classic (32, 64) keep adversarial training of all three flavours within a
    few minutes on two CPU cores; clean accuracy on Fashion-MNIST stays ~90%.

    Parameters
    ----------
    num_classes : int
        Number of logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
        # channels-last convolutions are ~25% faster on CPU (oneDNN).
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.classifier(self.features(inputs))


class SmallMLP(nn.Module):
    """A fully connected classifier for 1x28x28 inputs in [0, 1]: fc256-fc256-fc.

    No convolution and no pooling, so that examples made on a SmallCNN meet
    a model that sees the image differently when they transfer.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, num_classes),
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return self.classifier(inputs)


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {"smallcnn": SmallCNN, "mlp": SmallMLP}


def _linf_pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Linf PGD on the cross-entropy from a uniform random start in the eps-ball.

    Madry et al., ICLR 2018, arXiv:1706.06083. With ``steps=1`` and
    ``step_size=1.25 * eps`` it is the FGSM step of Fast-AT (Wong et al.,
    ICLR 2020, arXiv:2001.03994).

    Returns
    -------
    Tensor
        Adversarial images in [0, 1], detached.
    """
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype)
    delta = (noise.to(images.device) * 2 - 1) * eps
    delta = (images + delta).clamp_(0, 1) - images
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(images + delta), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_size * grad.sign()).clamp_(-eps, eps)
        delta = (images + delta).clamp_(0, 1) - images
    return (images + delta).detach()


def _accuracy(model: nn.Module, dataset: Any, indices: Sequence[int], batch_size: int, device: str | torch.device) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            images, labels = get_batch(dataset, indices[start : start + batch_size])
            logits = model(images.to(device))
            correct += int((logits.argmax(1).cpu() == labels).sum())
    return correct / len(indices)


def _robust_accuracy(
    model: nn.Module,
    dataset: Any,
    indices: Sequence[int],
    *,
    eps: float,
    steps: int,
    batch_size: int,
    seed: int,
    device: str | torch.device,
) -> float:
    """Fraction of images classified correctly both clean and after Linf PGD."""
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for start in range(0, len(indices), batch_size):
        images, labels = get_batch(dataset, indices[start : start + batch_size])
        images, labels = images.to(device), labels.to(device)
        adversarial = _linf_pgd(
            model, images, labels, eps=eps, step_size=2.5 * eps / steps, steps=steps,
            generator=generator,
        )
        with torch.no_grad():
            ok = (model(images).argmax(1) == labels) & (model(adversarial).argmax(1) == labels)
        correct += int(ok.sum())
    return correct / len(indices)


#: Training defaults per flavour, chosen to fit a 2-core CPU budget (about
#: 30 s, 2 min and 1 min on the 60,000 Fashion-MNIST training images).
_TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "standard": {"epochs": 3},
    "pgd-at": {"epochs": 2, "pgd_steps": 5},
    "fast-at": {"epochs": 3},
}
TRAINING_KEYS = ("epochs", "train_subset", "batch_size", "lr", "pgd_steps", "eval_pgd_steps", "eval_pgd_images")


def _lr_factor(step: int, total: int) -> float:
    """Piecewise-linear one-cycle schedule: 0 -> 1 over the first 30%, then -> 0.

    Cyclic learning rates are what makes Fast-AT fast and stable
    (Wong et al., arXiv:2001.03994, Section 5.1); all flavours use the same one.
    """
    warmup = max(1, int(0.3 * total))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train_small_cnn(
    dataset: str,
    flavour: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    train_subset: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    lr: float = 2e-3,
    pgd_steps: int | None = None,
    eval_pgd_steps: int = 20,
    eval_pgd_images: int = 1000,
    progress: bool = False,
    data_root: str | os.PathLike | None = None,
    allow_download: bool = True,
    architecture: str = "smallcnn",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a :class:`SmallCNN` (or another of :data:`ARCHITECTURES`), deterministically for a given seed on CPU.

    Flavours:

    - ``"standard"``: cross-entropy on clean images.
    - ``"pgd-at"``: PGD adversarial training (Madry et al., ICLR 2018,
      arXiv:1706.06083): each batch is replaced by Linf PGD examples
      (uniform random start, ``pgd_steps`` steps of size 2.5 eps / steps).
    - ``"fast-at"``: Fast-AT (Wong et al., ICLR 2020, arXiv:2001.03994): one
      FGSM step of size 1.25 eps from a uniform random start in the eps-ball.

    eps is :data:`SMALL_CNN_EPS` (0.1 for Fashion-MNIST: MNIST's 0.3 is too
    strong for Fashion-MNIST, whose classes differ by texture that an
    eps-0.3 perturbation can erase; 0.3 for MNIST). Adam with a one-cycle
    learning rate (peak ``lr``), batches of ``batch_size``.

    Parameters
    ----------
    dataset : str
        ``"fashion-mnist"`` or ``"mnist"``.
    flavour : str
        One of :data:`FLAVOURS`.
    seed : int
        Seeds the initialisation, the batch order and the random starts.
    epochs : int, optional
        Passes over the training set (default: 3 standard, 2 PGD-AT, 3 Fast-AT).
    train_subset : int, optional
        Train on the first ``train_subset`` training images only (for tests).
    device : str or torch.device
        Where to train.
    batch_size : int
        Training batch size.
    lr : float
        Peak learning rate of Adam.
    pgd_steps : int, optional
        PGD steps during PGD-AT (default 5); ignored by other flavours.
    eval_pgd_steps : int
        Steps of the Linf PGD evaluation (step size 2.5 eps / steps, random start).
    eval_pgd_images : int
        The PGD evaluation uses the first this many test images.
    progress : bool
        Show a tqdm bar over the training batches.
    data_root : path-like, optional
        Passed to :func:`bench.data.load_dataset`.
    allow_download : bool
        Passed to :func:`bench.data.load_dataset`.
    architecture : str
        A key of :data:`ARCHITECTURES` (default ``"smallcnn"``).

    Returns
    -------
    model : nn.Module
        The trained model, prepared (eval mode, frozen, on ``device``).
    metadata : dict
        dataset, flavour, seed, epochs, eps, training settings,
        ``training_seconds`` (wall clock) and ``training_cpu_seconds``,
        ``clean_accuracy`` (full test split),
        ``pgd_accuracy`` (correct both clean and under PGD on the first
        ``eval_pgd_images`` test images; see ``pgd_evaluation``),
        ``torch_version``.
    """
    if dataset not in SMALL_CNN_EPS:
        raise SparseBenchError(
            f"dataset: {dataset!r} has no SmallCNN; allowed: {', '.join(map(repr, SMALL_CNN_EPS))}"
        )
    if flavour not in FLAVOURS:
        raise SparseBenchError(f"flavour: unknown value {flavour!r}; allowed: {', '.join(map(repr, FLAVOURS))}")
    if architecture not in ARCHITECTURES:
        raise SparseBenchError(f"architecture: unknown value {architecture!r}; allowed: {', '.join(map(repr, ARCHITECTURES))}")
    defaults = _TRAINING_DEFAULTS[flavour]
    epochs = defaults["epochs"] if epochs is None else epochs
    pgd_steps = defaults.get("pgd_steps", 0) if pgd_steps is None else pgd_steps
    for field, value in [("epochs", epochs), ("batch_size", batch_size), ("eval_pgd_steps", eval_pgd_steps),
                         ("eval_pgd_images", eval_pgd_images)]:
        if value < 1:
            raise SparseBenchError(f"{field}: {value!r} must be >= 1")
    if flavour == "pgd-at" and pgd_steps < 1:
        raise SparseBenchError(f"pgd_steps: {pgd_steps!r} must be >= 1 for PGD-AT")
    eps = SMALL_CNN_EPS[dataset]

    train = load_dataset(dataset, split="train", root=data_root, allow_download=allow_download)
    test = load_dataset(dataset, split="test", root=data_root, allow_download=allow_download)
    n_train = len(train) if train_subset is None else min(int(train_subset), len(train))
    if n_train < 1:
        raise SparseBenchError(f"train_subset: {train_subset!r} must be >= 1")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[architecture](DATASETS[dataset].num_classes)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batches_per_epoch = (n_train + batch_size - 1) // batch_size
    total_steps = epochs * batches_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total_steps))

    started, started_cpu = time.perf_counter(), time.process_time()
    bar = tqdm(total=total_steps, desc=f"{flavour} {dataset}", unit="batch", disable=not progress,
               leave=False, file=sys.stderr)
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=generator)
        for start in range(0, n_train, batch_size):
            images, labels = get_batch(train, order[start : start + batch_size])
            images, labels = images.to(device), labels.to(device)
            if flavour == "pgd-at":
                images = _linf_pgd(model, images, labels, eps=eps, step_size=2.5 * eps / pgd_steps,
                                   steps=pgd_steps, generator=generator)
            elif flavour == "fast-at":
                images = _linf_pgd(model, images, labels, eps=eps, step_size=1.25 * eps, steps=1,
                                   generator=generator)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    training_seconds = time.perf_counter() - started
    training_cpu_seconds = time.process_time() - started_cpu

    prepare_model(model, device)
    eval_batch = 500
    clean_accuracy = _accuracy(model, test, list(range(len(test))), eval_batch, device)
    n_pgd = min(eval_pgd_images, len(test))
    pgd_accuracy = _robust_accuracy(model, test, list(range(n_pgd)), eps=eps, steps=eval_pgd_steps,
                                    batch_size=eval_batch, seed=seed, device=device)
    metadata = {
        "dataset": dataset,
        "flavour": flavour,
        "seed": seed,
        "epochs": epochs,
        "eps": eps,
        "train_images": n_train,
        "train_subset": train_subset,
        "batch_size": batch_size,
        "optimizer": "Adam, one-cycle learning rate",
        "lr": lr,
        "pgd_steps": pgd_steps if flavour == "pgd-at" else None,
        "pgd_step_size": 2.5 * eps / pgd_steps if flavour == "pgd-at" else None,
        "fgsm_step_size": 1.25 * eps if flavour == "fast-at" else None,
        "training_seconds": round(training_seconds, 3),
        "training_cpu_seconds": round(training_cpu_seconds, 3),
        "num_threads": torch.get_num_threads(),
        "device": str(device),
        "clean_accuracy": clean_accuracy,
        "clean_evaluation": f"full test split ({len(test)} images)",
        "pgd_accuracy": pgd_accuracy,
        "pgd_evaluation": {
            "attack": "Linf PGD on cross-entropy, uniform random start",
            "eps": eps,
            "steps": eval_pgd_steps,
            "step_size": 2.5 * eps / eval_pgd_steps,
            "images": f"first {n_pgd} images of the test split",
            "counts": "correct both clean and adversarial",
        },
        "torch_version": torch.__version__,
    }
    return model, metadata


def _training_settings(training: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = dict(training or {})
    unknown = sorted(set(settings) - set(TRAINING_KEYS))
    if unknown:
        raise SparseBenchError(
            f"training: unknown keys {unknown}; allowed: {', '.join(TRAINING_KEYS)}"
        )
    return settings


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
    """
    _entry(name, dataset)
    settings = _training_settings(training)
    stem = f"{name}-seed{seed}"
    if settings:
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        stem += f"-custom-{digest}"
    root = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / dataset / f"{stem}.pt"


def _atomic_write(path: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_small_cnn(
    entry: ModelEntry,
    dataset: str,
    cache_dir: pathlib.Path | None,
    device: str | torch.device,
    progress: bool,
    allow_download: bool,
    seed: int,
    training: Mapping[str, Any] | None,
) -> nn.Module:
    path = small_cnn_cache_path(entry.name, dataset, cache_dir=cache_dir, seed=seed, training=training)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        model = ARCHITECTURES[entry.architecture](DATASETS[dataset].num_classes)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model
    model, metadata = train_small_cnn(
        dataset, entry.target, seed=seed, device=device, progress=progress,
        allow_download=allow_download, architecture=entry.architecture, **_training_settings(training),
    )
    metadata["model"] = entry.name
    metadata["training_settings"] = _training_settings(training) or "default"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    # Weights first, metadata last: a cache entry counts only when both exist,
    # so an interruption anywhere leaves at worst a retraining, never a mismatch.
    _atomic_write(path, lambda tmp: torch.save(state, tmp))
    _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(metadata, indent=2) + "\n"))
    return model


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
# torchvision


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a model.

    Parameters
    ----------
    mean, std : sequence of float
        One value per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, inputs: Tensor) -> Tensor:
        return (inputs - self.mean) / self.std


def _torchvision_weights_file(arch: str, weights: str) -> tuple[pathlib.Path, str]:
    """Where torchvision caches the weights file, and its URL."""
    from torchvision import models

    weights_enum = models.get_model_weights(arch)[weights]
    url = weights_enum.url
    return pathlib.Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path), url


def torchvision_classifier(
    arch: str,
    *,
    weights: str | None = "IMAGENET1K_V1",
    allow_download: bool = True,
    progress: bool = True,
) -> nn.Module:
    """A torchvision ImageNet classifier taking inputs in [0, 1].

    ImageNet normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225)
    is the first layer: ``nn.Sequential(normalize=Normalize, model=<torchvision>)``.

    Parameters
    ----------
    arch : str
        torchvision builder name (``"resnet50"``, ``"vgg16"``, ...).
    weights : str or None
        Weights name of that builder (IMAGENET1K_V1: the original weights the
        sparse-attack literature evaluates; their preprocessing is resize 256,
        crop 224, as :func:`bench.data.load_dataset` does); None: random init.
    allow_download : bool
        When the weights file is not in torchvision's cache
        (``$TORCH_HOME/hub/checkpoints``), download it if True, else raise
        without touching the network.
    progress : bool
        Show torchvision's download progress bar.

    Raises
    ------
    ModelUnavailableError
        The weights are not cached and cannot be downloaded.
    """
    from torchvision import models

    if weights is None:
        network = models.get_model(arch, weights=None)
    else:
        path, url = _torchvision_weights_file(arch, weights)
        advice = (
            f"Put the file {path.name} (from {url}) in {path.parent} "
            "(torchvision's cache; $TORCH_HOME/hub/checkpoints), or go online so "
            "that torchvision can download it."
        )
        if not path.is_file() and not allow_download:
            raise ModelUnavailableError(
                f"torchvision/{arch}: weights {weights} are not cached at {path} and downloads "
                f"are not allowed. {advice}"
            )
        try:
            network = models.get_model(arch, weights=weights, progress=progress)
        except Exception as error:  # URLError, RuntimeError (hash mismatch), OSError...
            raise ModelUnavailableError(
                f"torchvision/{arch}: could not load weights {weights} "
                f"({type(error).__name__}: {error}). {advice}"
            ) from error
    return nn.Sequential(OrderedDict(normalize=Normalize(IMAGENET_MEAN, IMAGENET_STD), model=network))


# --------------------------------------------------------------------------
# RobustBench


def _import_robustbench() -> Any:
    """Import robustbench, making its two import-time requirements work.

    robustbench 1.1.1 imports ``pkg_resources`` (setuptools < 81) and
    ``autoattack``, whose PyPI distribution ``pyautoattack`` installs the
    package as ``pyautoattack``; robustbench only needs it for its
    ``benchmark`` function, so when ``autoattack`` is absent but
    ``pyautoattack`` is there, it is registered under the name robustbench
    imports.
    """
    try:
        importlib.import_module("autoattack")
    except ImportError:
        try:
            pyautoattack = importlib.import_module("pyautoattack")
            sys.modules.setdefault("autoattack", pyautoattack)
            sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
        except ImportError:
            pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources and timm deprecation warnings
            return importlib.import_module("robustbench")
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing.split(".")[0] == "pkg_resources":
            raise ImportError(
                "robustbench 1.1.1 imports pkg_resources, which setuptools 81 removed: "
                "pip install 'setuptools<81' (or pip install 'sparsebench[robustbench]')"
            ) from error
        raise ImportError(
            f"RobustBench models need the robustbench package (import failed: {error}): "
            "pip install 'sparsebench[robustbench]'"
        ) from error


def _load_robustbench(
    entry: ModelEntry,
    dataset: str,
    cache_dir: pathlib.Path | None,
    allow_download: bool,
) -> nn.Module:
    robustbench = _import_robustbench()
    model_dir = (pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "robustbench"
    path = model_dir / dataset / "Linf" / f"{entry.target}.pt"
    advice = (
        f"Put RobustBench's checkpoint of {entry.target} ({dataset}, Linf) at {path}, "
        "or go online so that robustbench can download it there."
    )
    if not path.is_file() and not allow_download:
        raise ModelUnavailableError(
            f"{entry.name}: no checkpoint at {path} and downloads are not allowed. {advice}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return robustbench.load_model(
                model_name=entry.target, dataset=dataset, threat_model="Linf", model_dir=str(model_dir)
            )
    except pickle.UnpicklingError as error:
        raise ModelUnavailableError(
            f"{entry.name}: {path} is not a readable checkpoint ({error}). A file starting with "
            "'<' is the HTML page of a failed Google Drive download: delete it and load again "
            "online (RobustBench issues #72, #158). A checkpoint that holds more than tensors "
            "fails torch.load(weights_only=True), torch's default since 2.6; if you trust "
            "the file, set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."
        ) from error
    except Exception as error:
        if path.is_file():
            raise
        raise ModelUnavailableError(
            f"{entry.name}: robustbench could not download the checkpoint "
            f"({type(error).__name__}: {error}). {advice}"
        ) from error


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
        robustbench = _import_robustbench()
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

        del robustbench
        model = model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf][entry.target]["model"]()
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
        file raises :class:`ModelUnavailableError` without network access.
    seed : int
        SmallCNN only: the training seed.
    training : mapping, optional
        SmallCNN only: keyword arguments of :func:`train_small_cnn`
        (``epochs``, ``train_subset``, ...) overriding the defaults, e.g. for
        fast tests; such a model is cached under a distinct file name.

    Returns
    -------
    nn.Module
        The model, prepared by :func:`prepare_model`.

    Raises
    ------
    ValueError
        Unknown model or dataset, or a model not available for the dataset.
    ModelUnavailableError
        Weights missing and not obtainable.
    """
    entry = _entry(name, dataset)
    if entry.function is not None:
        from bench.outside import load_outside_model

        info = DATASETS[dataset]
        model = load_outside_model(entry.function, entry.checkpoint, num_classes=info.num_classes,
                                   shape=info.shape, name=entry.name)
    elif entry.source == "sparsebench":
        model = _load_small_cnn(entry, dataset, cache_dir, device, progress, allow_download, seed, training)
    elif training is not None:
        raise SparseBenchError(f"training: only SparseBench's own models are trained; {name!r} is from {entry.source}")
    elif entry.source == "robustbench":
        model = _load_robustbench(entry, dataset, cache_dir, allow_download)
    else:
        model = torchvision_classifier(
            entry.target, weights=entry.weights, allow_download=allow_download, progress=progress
        )
    return prepare_model(model, device)
