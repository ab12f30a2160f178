"""Small generator networks that learned attacks train once, their training data and their cache.

An attack that learns before it attacks (EGS-TSSA's perturbation generator,
``baselines.egs_tssa``, trained against the source model; GreedyFool's
distortion map, ``baselines.greedyfool``, trained on the images alone) builds its
network from :class:`ConvGenerator`, draws its training batches from
:func:`training_batches` and gets the trained network from
:func:`ensure_generator`, which

* returns the generator from an in-process dictionary when this process has
  it already (so the attack's timed call neither trains nor reads a file),
* else loads it from ``cache_dir/generators/<dataset>/<attack>-<key>.pt``,
* else trains it (seeded, a tqdm bar when ``progress``) and writes that file
  atomically.

``<key>`` hashes the training settings (mode included) and, for a generator
trained against a model, :func:`model_fingerprint` of that model: a hash of
its parameter and buffer values, so a ``CountingModel`` wrapper and the bare
model it wraps share one key and any other weights get another.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import pathlib
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from attacks.io import atomic_write, default_cache_dir

__all__ = [
    "ConvGenerator",
    "TrainingData",
    "ensure_generator",
    "forget_generators",
    "generator_path",
    "model_fingerprint",
    "set_training_source",
    "training_batches",
    "training_data",
]

GENERATOR_DIR = "generators"

# (attack, key) -> trained generator (CPU, eval mode); then one copy per device.
_TRAINED: dict[tuple[str, str], nn.Module] = {}
_ON_DEVICE: dict[tuple[str, str, str], nn.Module] = {}
# id of a model's first state tensor -> (a weak reference to it, identity and version of all its tensors,
# fingerprint). Tensors compare element-wise, so they cannot be keys of a WeakKeyDictionary.
_FINGERPRINTS: dict[int, tuple[weakref.ref, tuple[tuple[int, int], ...], str]] = {}


@dataclass(frozen=True)
class TrainingData:
    """What a learned attack needs of a dataset: its images' channels, its classes and its training split.

    The harness describes its datasets (:func:`set_training_source`); this layer
    does not read them itself.

    Attributes
    ----------
    channels : int
        Channels of one image.
    num_classes : int
        Classes of the classifiers trained on it.
    load : callable
        ``load()`` returns the training split, with ``len()`` (called only
        when a generator is trained; :func:`training_batches` keeps the
        last few splits).
    get_batch : callable
        ``get_batch(split, indices)`` returns images ``(B, C, H, W)`` in
        [0, 1] and labels ``(B,)`` int64.
    """

    channels: int
    num_classes: int
    load: Callable[[], Any]
    get_batch: Callable[[Any, Tensor], tuple[Tensor, Tensor]]


_SOURCE: list[Callable[[str], TrainingData]] = []


def set_training_source(source: Callable[[str], TrainingData]) -> None:
    """Where the learned attacks get a dataset by name: ``source(dataset) -> TrainingData``.

    SparseBench's harness sets its own datasets when :mod:`bench.data` is
    imported; another harness sets its own the same way.
    """
    _SOURCE[:] = [source]
    _training_split.cache_clear()


def training_data(dataset: str) -> TrainingData:
    """The :class:`TrainingData` of ``dataset`` from the source :func:`set_training_source` set."""
    if not _SOURCE:
        raise RuntimeError(f"no training data for {dataset!r}: a learned attack trains on a dataset's training "
                           "split, which the harness provides (import bench.data, or call "
                           "baselines.generators.set_training_source)")
    return _SOURCE[0](dataset)


# --------------------------------------------------------------------------
# Networks


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return F.relu(inputs + self.body(inputs))


class ConvGenerator(nn.Module):
    """An image-to-image network: conv, one stride-2 conv, residual blocks, a transposed conv, heads.

    A scaled-down version of the ResNet generators of the generative attacks
    (Johnson et al.'s layout: down-sample, residual blocks, up-sample), small
    enough to train in a minute on a CPU for 28x28 images. Each head is a 3x3
    convolution returning raw values (the attack applies its own ``tanh`` or
    ``sigmoid``); the output is cropped to the input's height and width.

    Parameters
    ----------
    in_channels : int
        Channels of the input (image channels plus any conditioning planes).
    head_channels : sequence of int
        Output channels of each head.
    width : int
        Channels of the first layer (the middle has twice as many).
    blocks : int
        Residual blocks at the lower resolution.
    """

    def __init__(self, in_channels: int, head_channels: Sequence[int], *, width: int = 16, blocks: int = 1) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            *[_Residual(2 * width) for _ in range(blocks)],
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Conv2d(width, channels, 3, padding=1) for channels in head_channels)

    def forward(self, inputs: Tensor) -> list[Tensor]:
        height, width = inputs.shape[-2:]
        features = self.encode(inputs)[..., :height, :width]
        return [head(features) for head in self.heads]


# --------------------------------------------------------------------------
# Keys and paths


def model_fingerprint(model: nn.Module) -> str:
    """A hash (hex) of the values of ``model``'s parameters and buffers, in order.

    Names are left out, so a wrapper holding the model as a submodule (the
    harness's ``CountingModel``) gives the same fingerprint as the bare
    model. The hash is remembered for as long as the model's tensors live
    and are not modified in place, so asking again costs no pass over the
    weights.
    """
    tensors = list(model.state_dict(keep_vars=True).values())
    if not tensors:
        return hashlib.sha256(type(model).__qualname__.encode()).hexdigest()
    identity = tuple((id(t), t._version) for t in tensors)
    known = _FINGERPRINTS.get(id(tensors[0]))
    if known is not None and known[0]() is tensors[0] and known[1] == identity:
        return known[2]
    digest = hashlib.sha256()
    for tensor in tensors:
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    fingerprint = digest.hexdigest()
    for key in [key for key, (alive, _, _) in _FINGERPRINTS.items() if alive() is None]:
        del _FINGERPRINTS[key]
    _FINGERPRINTS[id(tensors[0])] = (weakref.ref(tensors[0]), identity, fingerprint)
    return fingerprint


def _key(settings: Mapping[str, Any], model: nn.Module | None) -> str:
    payload = {"settings": dict(settings), "model": model_fingerprint(model) if model is not None else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generator_path(attack: str, dataset: str, settings: Mapping[str, Any], *, model: nn.Module | None = None,
                   cache_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Where :func:`ensure_generator` caches a generator: ``cache_dir/generators/<dataset>/<attack>-<key>.pt``."""
    root = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / GENERATOR_DIR / dataset / f"{attack}-{_key(settings, model)}.pt"


def forget_generators() -> None:
    """Empty the in-process dictionary of generators (the files stay): the next call loads or trains."""
    _TRAINED.clear()
    _ON_DEVICE.clear()


# --------------------------------------------------------------------------
# Training


@functools.lru_cache(maxsize=4)
def _training_split(dataset: str) -> tuple[Any, Callable[[Any, Tensor], tuple[Tensor, Tensor]]]:
    data = training_data(dataset)
    return data.load(), data.get_batch


def training_batches(dataset: str, *, steps: int, batch_size: int, seed: int, device: torch.device,
                     progress: bool, desc: str) -> Iterator[tuple[Tensor, Tensor]]:
    """``steps`` batches of the training split of ``dataset``, drawn with replacement by a generator seeded
    with ``seed``, on ``device``; a tqdm bar (``desc``) when ``progress``."""
    split, get_batch = _training_split(dataset)
    sampler = torch.Generator().manual_seed(seed)
    with tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False, file=sys.stderr) as bar:
        for _ in range(steps):
            images, labels = get_batch(split, torch.randint(len(split), (batch_size,), generator=sampler))
            yield images.to(device), labels.to(device)
            bar.update(1)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNGs (CPU, and ``device`` if it is a GPU) inside the block and restore them after."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def ensure_generator(
    attack: str,
    settings: Mapping[str, Any],
    *,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module, torch.device, bool], None],
    dataset: str,
    model: nn.Module | None = None,
    cache_dir: pathlib.Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> nn.Module:
    """The trained generator of ``attack`` for these settings (and model), trained here if nothing has it.

    Parameters
    ----------
    attack : str
        The attack's name, the file name's prefix.
    settings : mapping
        Everything the training depends on (JSON-serialisable, ``seed``
        included); hashed into the key with the model's fingerprint.
    build : callable
        ``build() -> nn.Module``, the untrained network (called under the
        seed, so its initial weights are seeded too).
    train : callable
        ``train(generator, device, progress)`` trains it in place (its own
        model passes, if any, go through ``model`` and are not the attack's).
    dataset : str
        The dataset whose training split it learns from (the cache folder).
    model : nn.Module, optional
        The source model it is trained against; ``None`` for a generator
        that does not depend on a model.
    cache_dir : pathlib.Path, optional
        Default :func:`bench.data.default_cache_dir`.
    device : torch.device or str
        Where to train it and where the returned copy lives.
    progress : bool
        A tqdm bar while training.

    Returns
    -------
    nn.Module
        The generator in eval mode with frozen parameters, on ``device``.
    """
    device = torch.device(device)
    path = generator_path(attack, dataset, settings, model=model, cache_dir=cache_dir)
    memo = (attack, path.stem)
    placed = _ON_DEVICE.get(memo + (str(device),))
    if placed is not None:
        return placed
    generator = _TRAINED.get(memo)
    if generator is None:
        with _seeded(int(settings.get("seed", 0)), device):
            generator = build()
            if path.is_file():
                generator.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state"])
            else:
                generator.to(device).train()
                started = time.perf_counter()
                train(generator, device, progress)
                _save(path, generator, {
                    "attack": attack, "dataset": dataset, "settings": json.dumps(dict(settings), sort_keys=True),
                    "model": model_fingerprint(model) if model is not None else "",
                    "training_seconds": round(time.perf_counter() - started, 3),
                    "num_threads": torch.get_num_threads(), "device": str(device), "torch_version": str(torch.__version__),
                })
        generator = generator.cpu().eval().requires_grad_(False)
        _TRAINED[memo] = generator
    placed = generator if device.type == "cpu" else copy.deepcopy(generator).to(device)
    _ON_DEVICE[memo + (str(device),)] = placed
    return placed


def _save(path: pathlib.Path, generator: nn.Module, metadata: dict[str, Any]) -> None:
    state = {name: value.detach().cpu() for name, value in generator.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save({"state": state, "metadata": metadata}, tmp))
