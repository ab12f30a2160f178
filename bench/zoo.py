"""Models of other libraries: torchvision's ImageNet classifiers and RobustBench's model zoo.

- :func:`torchvision_classifier`: a torchvision builder with its
  IMAGENET1K_V1 weights, read from torchvision's cache (``$TORCH_HOME``),
  behind :class:`bench.architectures.Normalize` so that it takes inputs in [0, 1].
- :func:`_load_robustbench`: a model of the RobustBench model zoo (Croce et
  al., 2021, arXiv:2010.09670), Linf threat model, through
  ``robustbench.load_model``, its checkpoint in SparseBench's cache;
  :func:`_import_robustbench` makes robustbench 1.1.1 importable.

A missing file that may not or cannot be downloaded raises
:class:`ModelUnavailableError`. :func:`bench.models.load_model` is the entry
point that picks among these.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import pickle
import sys
import warnings
from collections import OrderedDict
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from bench.architectures import IMAGENET_MEAN, IMAGENET_STD, Normalize
from bench.data import default_cache_dir
from bench.errors import SparseBenchError

__all__ = ["ModelUnavailableError", "torchvision_classifier"]


class ModelUnavailableError(SparseBenchError, RuntimeError):
    """A model's weights are neither cached nor obtainable (offline, no file)."""


# --------------------------------------------------------------------------
# torchvision


def _torchvision_weights_file(arch: str, weights: str) -> tuple[pathlib.Path, str]:
    """Where torchvision caches the weights file, and its URL."""
    from torchvision import models  # torchvision takes seconds to import: only where it is used

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
    from torchvision import models  # torchvision takes seconds to import: only where it is used

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
    name: str,
    target: str,
    dataset: str,
    cache_dir: pathlib.Path | None,
    allow_download: bool,
) -> nn.Module:
    robustbench = _import_robustbench()
    model_dir = (pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "robustbench"
    path = model_dir / dataset / "Linf" / f"{target}.pt"
    advice = (
        f"Put RobustBench's checkpoint of {target} ({dataset}, Linf) at {path}, "
        "or go online so that robustbench can download it there."
    )
    if not path.is_file() and not allow_download:
        raise ModelUnavailableError(
            f"{name}: no checkpoint at {path} and downloads are not allowed. {advice}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return robustbench.load_model(
                model_name=target, dataset=dataset, threat_model="Linf", model_dir=str(model_dir)
            )
    except pickle.UnpicklingError as error:
        raise ModelUnavailableError(
            f"{name}: {path} is not a readable checkpoint ({error}). A file starting with "
            "'<' is the HTML page of a failed Google Drive download: delete it and load again "
            "online (RobustBench issues #72, #158). A checkpoint that holds more than tensors "
            "fails torch.load(weights_only=True), torch's default since 2.6; if you trust "
            "the file, set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."
        ) from error
    except Exception as error:
        if path.is_file():
            raise
        raise ModelUnavailableError(
            f"{name}: robustbench could not download the checkpoint "
            f"({type(error).__name__}: {error}). {advice}"
        ) from error


def _untrained_robustbench(target: str, dataset: str) -> nn.Module:
    """RobustBench's zoo constructor for ``target`` (Linf, ``dataset``) called: random weights, nothing read."""
    robustbench = _import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    del robustbench
    return model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf][target]["model"]()
