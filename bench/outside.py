"""Models and datasets from outside the package, under the same contracts as SparseBench's own.

A config (or an installed package's entry point) can name:

- a model: a constructor ``"module:attribute"`` that returns an
  ``nn.Module``, plus an optional checkpoint, a ``state_dict`` read with
  ``torch.load(..., weights_only=True)`` (no code runs from the file). Like
  every model here it takes images in [0, 1] and normalises inside itself;
  it is put in eval mode with frozen parameters, and one probe pass checks
  that it returns ``(batch, num_classes)`` logits for the dataset's images;
- a dataset: a folder in torchvision's ``ImageFolder`` layout (one
  sub-folder per class, sorted names give the class indices, images read
  as they are, without resizing), or a callable ``"module:attribute"``
  returning test images in [0, 1] ``(N, C, H, W)`` with integer labels
  ``(N,)`` (or any dataset whose items are such pairs).
"""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from bench.data import IMAGE_EXTENSIONS, ImageFolderDataset, TensorImageDataset, get_batch
from bench.errors import SparseBenchError

__all__ = ["import_object", "load_outside_dataset", "load_outside_model"]


def import_object(path: str, where: str) -> Any:
    """The object ``"module:attribute"`` names; ``ValueError`` saying why otherwise."""
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise SparseBenchError(f"{where}: {path!r} is not 'module:attribute'")
    try:
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise SparseBenchError(f"{where}: cannot import {path!r}: {error}") from None
    return value


def load_outside_model(function: str, checkpoint: str | None, *, num_classes: int, shape: tuple[int, ...],
                       name: str) -> nn.Module:
    """Build an outside model, load its checkpoint, and probe it on the dataset's image shape.

    Raises ``ValueError`` naming the model when the constructor does not return an ``nn.Module``,
    the checkpoint is missing or does not fit, or the logits have the wrong shape.
    """
    build: Callable[[], Any] = import_object(function, f"model {name!r}: function")
    model = build()
    if not isinstance(model, nn.Module):
        raise SparseBenchError(f"model {name!r}: {function}() returned a {type(model).__name__}, not an nn.Module")
    if checkpoint is not None:
        path = pathlib.Path(checkpoint).expanduser()
        if not path.is_file():
            raise SparseBenchError(f"model {name!r}: checkpoint {str(path)!r} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated file, a pickle of code, not a torch file at all
            raise SparseBenchError(f"model {name!r}: checkpoint {path} cannot be read as weights "
                             f"({type(error).__name__}: {error})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as error:
            raise SparseBenchError(f"model {name!r}: checkpoint {path} does not fit {function}(): {error}") from None
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(2, *shape))
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (2, num_classes):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise SparseBenchError(f"model {name!r}: on images of shape {tuple(shape)} it returns {got}; "
                         f"expected logits of shape (batch, {num_classes})")
    return model


def load_outside_dataset(*, name: str, folder: str | None = None, function: str | None = None,
                         num_classes: int) -> Dataset:
    """An outside test set, checked: images in [0, 1], labels in ``[0, num_classes)``."""
    if folder is not None:
        dataset: Dataset = _image_folder(name, pathlib.Path(folder).expanduser())
    else:
        assert function is not None
        loaded = import_object(function, f"dataset {name!r}: function")()
        if isinstance(loaded, tuple) and len(loaded) == 2:
            images, labels = loaded
            if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
                raise SparseBenchError(f"dataset {name!r}: {function}() must return float images (N, C, H, W)")
            if not isinstance(labels, Tensor) or labels.shape != images.shape[:1] or labels.is_floating_point():
                raise SparseBenchError(f"dataset {name!r}: {function}() must return integer labels (N,) beside the images")
            dataset = TensorImageDataset(images.float(), labels.long())
        elif isinstance(loaded, Dataset):
            dataset = loaded
        else:
            raise SparseBenchError(f"dataset {name!r}: {function}() returned a {type(loaded).__name__}; expected "
                             "(images, labels) or a torch Dataset")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise SparseBenchError(f"dataset {name!r}: holds no image")
    images, labels = get_batch(dataset, list(range(min(len(dataset), 64))))  # type: ignore[arg-type]
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise SparseBenchError(f"dataset {name!r}: images must lie in [0, 1]; found [{float(images.min()):.3g}, "
                         f"{float(images.max()):.3g}]")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise SparseBenchError(f"dataset {name!r}: labels must lie in [0, {num_classes}); found {int(labels.max())}")
    return dataset


def _image_folder(name: str, root: pathlib.Path) -> ImageFolderDataset:
    if not root.is_dir():
        raise SparseBenchError(f"dataset {name!r}: folder {str(root)!r} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    samples = [(path, index) for index, cls in enumerate(classes) for path in sorted((root / cls).iterdir())
               if path.suffix.lower() in IMAGE_EXTENSIONS]
    if not samples:
        raise SparseBenchError(f"dataset {name!r}: {root} has no images in class sub-folders (ImageFolder layout)")
    from PIL import Image  # PIL and torchvision (seconds to import) only for an image folder
    from torchvision.transforms import functional

    with Image.open(samples[0][0]) as first:  # grey stays one channel; anything else is read as RGB
        mode = "L" if first.mode in ("1", "L", "I;16", "I") else "RGB"
    return ImageFolderDataset(samples, classes, functional.to_tensor, mode=mode)


def image_shape(dataset: Dataset) -> tuple[int, ...]:
    """``(C, H, W)`` of the dataset's first image."""
    image, _ = dataset[0]
    return tuple(image.shape)
