"""Training of SparseBench's own models: standard, PGD-AT and Fast-AT.

:func:`train_small_cnn` trains one of :data:`bench.architectures.ARCHITECTURES`
on Fashion-MNIST or MNIST in one of :data:`FLAVOURS`, with a Linf PGD
(:func:`_linf_pgd`) both for adversarial training and for the robust-accuracy
evaluation it records. :func:`_training_settings` checks the overrides
``bench.models.load_model(..., training=...)`` passes on (their keys:
:data:`TRAINING_KEYS`); :mod:`bench.cache` stores the result.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from bench.architectures import ARCHITECTURES, prepare_model
from bench.data import DATASETS, get_batch, load_dataset
from bench.errors import SparseBenchError

__all__ = [
    "FLAVOURS",
    "SMALL_CNN_EPS",
    "TRAINING_KEYS",
    "train_small_cnn",
]


FLAVOURS = ("standard", "pgd-at", "fast-at")

#: Linf radius of adversarial training and of the PGD evaluation, per dataset.
#: 0.3 is MNIST's usual radius (Madry et al., arXiv:1706.06083); on
#: Fashion-MNIST it is too strong (an eps-0.3 box can wipe out the texture
#: that separates shirt, T-shirt, pullover and coat, and robust accuracy
#: collapses), so the usual choice there, as here, is 0.1.
SMALL_CNN_EPS: dict[str, float] = {"fashion-mnist": 0.1, "mnist": 0.3}


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
    """Train a SmallCNN (or another of :data:`~bench.architectures.ARCHITECTURES`), deterministically for a given seed on CPU.

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
        A key of :data:`~bench.architectures.ARCHITECTURES` (default ``"smallcnn"``).

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
