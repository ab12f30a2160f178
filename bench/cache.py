"""SparseBench's cache of its own trained models, and the atomic writes every cache here uses.

A SmallCNN (or SmallMLP) is trained once per dataset, flavour, seed and
training settings and kept under ``<cache>/models/<dataset>/``
(:func:`small_cnn_weights_path`): the weights (``.pt``) and the training
metadata (``.json``), each written with :func:`atomic_write`, weights first,
so that a file that exists is complete. :func:`_load_small_cnn` reads that
pair, or trains (:func:`bench.training.train_small_cnn`) and writes it.

The names it takes are checked against the model registry by its callers
(:func:`bench.models.load_model`, :func:`bench.models.small_cnn_cache_path`);
this module does not import :mod:`bench.models`.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shlex
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attacks.io import atomic_write
from bench.architectures import ARCHITECTURES
from bench.data import DATASETS, default_cache_dir
from bench.errors import SparseBenchError
from bench.training import _training_settings, train_small_cnn

__all__ = ["atomic_write", "small_cnn_weights_path"]


def small_cnn_weights_path(
    name: str,
    dataset: str,
    *,
    cache_dir: pathlib.Path | None = None,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Where the weights of SparseBench's own model ``name`` are cached (metadata: same path, ``.json``).

    ``cache_dir/models/<dataset>/<name>-seed<seed>.pt`` for the default
    training; non-default settings add ``-custom-<hash of the settings>`` so
    that a quickly trained model never passes for the real one.

    ``name`` is not checked against the registry (:func:`bench.models.small_cnn_cache_path`
    checks it, then calls this); ``training`` is (its keys must be
    :data:`bench.training.TRAINING_KEYS`).
    """
    settings = _training_settings(training)
    stem = f"{name}-seed{seed}"
    if settings:
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        stem += f"-custom-{digest}"
    root = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / dataset / f"{stem}.pt"


def _load_small_cnn(
    name: str,
    dataset: str,
    *,
    flavour: str,
    architecture: str,
    cache_dir: pathlib.Path | None,
    device: str | torch.device,
    progress: bool,
    allow_download: bool,
    seed: int,
    training: Mapping[str, Any] | None,
) -> nn.Module:
    """The registered model ``name`` (``flavour`` of ``architecture``) from the cache, trained and cached if absent.

    Not prepared (:func:`bench.architectures.prepare_model` is the caller's).

    Raises
    ------
    SparseBenchError
        A cached file that cannot be read (truncated, corrupted, another
        model's weights): the message names both files and the ``rm``
        command that makes the next use retrain.
    """
    path = small_cnn_weights_path(name, dataset, cache_dir=cache_dir, seed=seed, training=training)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        model = ARCHITECTURES[architecture](DATASETS[dataset].num_classes)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            json.loads(meta_path.read_text())
        except Exception as error:  # truncated, corrupted, or another model's file: all fixed by retraining
            raise SparseBenchError(
                f"{name}: the cached model {path} cannot be used ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'no detail'}); delete it and {meta_path.name} "
                f"to retrain it on next use: rm {shlex.quote(str(path))} {shlex.quote(str(meta_path))}"
            ) from None
        return model
    model, metadata = train_small_cnn(
        dataset, flavour, seed=seed, device=device, progress=progress,
        allow_download=allow_download, architecture=architecture, **_training_settings(training),
    )
    metadata["model"] = name
    metadata["training_settings"] = _training_settings(training) or "default"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    # Weights first, metadata last: a cache entry counts only when both exist,
    # so an interruption anywhere leaves at worst a retraining, never a mismatch.
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(metadata, indent=2) + "\n"))
    return model
