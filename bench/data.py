"""Datasets: what SparseBench evaluates on and how it reads them.

Every dataset returned by :func:`load_dataset` yields ``(image, label)`` with
``image`` a float32 tensor of shape ``(C, H, W)`` in [0, 1] and ``label`` an
``int``; it also has ``get_batch(indices)`` returning the stacked images and an
int64 label tensor, which for the in-memory datasets (Fashion-MNIST, MNIST,
CIFAR-10) is one indexing operation instead of a Python loop.

Sources
-------
- Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747): the IDX files of the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
  when present, else torchvision's download.
- MNIST (LeCun et al., 1998) and CIFAR-10 (Krizhevsky, 2009): torchvision.
- ImageNet (Russakovsky et al., 2015, arXiv:1409.0575): the validation set in a
  folder the user names, preprocessed as RobustBench does (Croce et al., 2021,
  arXiv:2010.09670): resize to 256, center crop 224; restricted to RobustBench's
  5,000-image list when the folder holds ``imagenet_test_image_ids.txt``.
"""

from __future__ import annotations

import functools
import gzip
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attacks.io import CACHE_ENV as CACHE_ENV
from attacks.io import default_cache_dir
from baselines.generators import TrainingData, set_training_source
from bench.errors import SparseBenchError

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataUnavailableError",
    "DatasetInfo",
    "IdxFormatError",
    "ImageFolderDataset",
    "TensorImageDataset",
    "default_cache_dir",
    "get_batch",
    "imagenet_transform",
    "load_dataset",
    "read_idx",
]

SPLITS = ("train", "test")

DEBIAN_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DIR_ENV = "SPARSEBENCH_FASHION_MNIST_DIR"
IMAGENET_ID_LIST = "imagenet_test_image_ids.txt"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetInfo:
    """What the harness needs to know about a dataset.

    Attributes
    ----------
    name : str
        Registry name (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``, ``"imagenet"``).
    num_classes : int
        Number of classes of the classifiers trained on it.
    shape : tuple of int
        ``(C, H, W)`` of one image as the models receive it.
    family : str
        Which default hyperparameters of an attack apply
        (``"mnist"``, ``"cifar10"`` or ``"imagenet"``).
    """

    name: str
    num_classes: int
    shape: tuple[int, int, int]
    family: str


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, (1, 28, 28), "mnist"),
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), "mnist"),
    "cifar10": DatasetInfo("cifar10", 10, (3, 32, 32), "cifar10"),
    "imagenet": DatasetInfo("imagenet", 1000, (3, 224, 224), "imagenet"),
}


class DataUnavailableError(SparseBenchError, RuntimeError):
    """No source of a dataset works (files absent and no download possible)."""


class IdxFormatError(SparseBenchError):
    """A file is not a well-formed IDX file of the expected kind."""


# --------------------------------------------------------------------------
# Dataset classes


class TensorImageDataset(Dataset):
    """Images held in memory as uint8 (converted to float in [0, 1] on access) or as float in [0, 1].

    Parameters
    ----------
    images : Tensor
        uint8 or float tensor of shape ``(N, C, H, W)``.
    labels : Tensor
        Integer tensor of shape ``(N,)``.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if not (images.dtype == torch.uint8 or images.is_floating_point()) or images.ndim != 4:
            raise SparseBenchError(
                f"images: expected a uint8 or float tensor (N, C, H, W), got {images.dtype} "
                f"of shape {tuple(images.shape)}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise SparseBenchError(
                f"labels: expected shape ({len(images)},), got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def _as_float(self, images: Tensor) -> Tensor:
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float().clone()

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._as_float(self.images[index]), int(self.labels[index])

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Images ``(B, C, H, W)`` float32 in [0, 1] and labels ``(B,)`` int64."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return self._as_float(self.images[index]), self.labels[index].clone()


class ImageFolderDataset(Dataset):
    """Images read from files, one class per sub-folder, transformed on access.

    Parameters
    ----------
    samples : sequence of (pathlib.Path, int)
        Image file and class index, in dataset order.
    classes : sequence of str
        Class folder names (ImageNet wnids); ``classes[i]`` has index ``i``.
    transform : callable
        PIL image -> float tensor ``(C, H, W)`` in [0, 1].
    mode : str
        The PIL mode every image is converted to first: ``"RGB"`` (3
        channels), or ``"L"`` (grey, 1 channel).
    """

    def __init__(
        self,
        samples: Sequence[tuple[pathlib.Path, int]],
        classes: Sequence[str],
        transform: object,
        mode: str = "RGB",
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image  # with torchvision: only for an image folder's files

        path, label = self.samples[index]
        with Image.open(path) as image:
            tensor = self.transform(image.convert(self.mode))  # type: ignore[operator]
        return tensor, label

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Images ``(B, C, H, W)`` float32 in [0, 1] and labels ``(B,)`` int64."""
        return get_batch(self, indices)


def get_batch(dataset: Dataset, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """Stack items of any ``(image, label)`` dataset into one batch.

    A :class:`TensorImageDataset` is indexed in one operation; any other
    dataset is read item by item and stacked.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)``.
    indices : sequence of int
        Which items, in order.

    Returns
    -------
    tuple of Tensor
        Images ``(B, C, H, W)`` float32 and labels ``(B,)`` int64.
    """
    index_list = [int(i) for i in torch.as_tensor(indices, dtype=torch.int64).tolist()]
    if isinstance(dataset, TensorImageDataset):
        return dataset.get_batch(index_list)
    items = [dataset[i] for i in index_list]
    if not items:
        raise SparseBenchError("indices: expected at least one index, got none")
    images = torch.stack([image for image, _ in items])
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return images, labels


# --------------------------------------------------------------------------
# IDX files (the format of MNIST and Fashion-MNIST)

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike, *, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a numpy array.

    The header is two zero bytes, a type code (0x08 = uint8, ...), the number
    of dimensions, then each dimension as a big-endian uint32 (LeCun et al.,
    http://yann.lecun.com/exdb/mnist/). The magic number of an image file is
    thus 0x00000803 and of a label file 0x00000801.

    Parameters
    ----------
    path : path-like
        The file; it is decompressed when it starts with the gzip magic bytes.
    expected_ndim : int, optional
        Raise unless the file has this many dimensions (3 for images, 1 for labels).

    Returns
    -------
    numpy.ndarray
        The data, in native byte order.

    Raises
    ------
    IdxFormatError
        Bad magic number, unknown type code, unexpected number of dimensions,
        or a payload whose size does not match the header.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'empty'}; "
            "expected 0000 then a type code and the number of dimensions)"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise IdxFormatError(
            f"{path}: unknown IDX type code 0x{type_code:02x}; "
            f"allowed: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(
            f"{path}: IDX magic number 0x{int.from_bytes(raw[:4], 'big'):08x} says "
            f"{ndim} dimensions, expected {expected_ndim} "
            f"(magic 0x{0x800 | expected_ndim:08x})"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IdxFormatError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_size != expected_bytes:
        raise IdxFormatError(
            f"{path}: header says shape {shape} ({expected_bytes} bytes of data), "
            f"file holds {len(raw) - header_size}"
        )
    array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header_size)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _find_idx_pair(directory: pathlib.Path, prefix: str) -> tuple[pathlib.Path, pathlib.Path] | None:
    """The image and label IDX files of one split in ``directory``, if both exist."""
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [directory / f"{prefix}-{kind}{suffix}" for suffix in (".gz", "")]
        existing = [path for path in candidates if path.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found[0], found[1]


def _dataset_from_idx(images_path: pathlib.Path, labels_path: pathlib.Path) -> TensorImageDataset:
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IdxFormatError(
            f"{images_path}, {labels_path}: expected uint8 data, got {images.dtype} and {labels.dtype}"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
        )
    return TensorImageDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    )


# --------------------------------------------------------------------------
# Loaders


def _check_choice(field: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SparseBenchError(
            f"{field}: unknown value {value!r}; allowed: {', '.join(repr(a) for a in allowed)}"
        )


def load_dataset(
    name: str,
    *,
    split: str = "test",
    root: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> TensorImageDataset | ImageFolderDataset:
    """Load one split of a dataset.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    split : str
        ``"test"`` or ``"train"`` (ImageNet: ``"test"`` only, meaning the
        validation set, as in RobustBench).
    root : path-like, optional
        Fashion-MNIST: folder holding the four IDX files (else
        ``$SPARSEBENCH_FASHION_MNIST_DIR``, else the Debian package's folder),
        also where torchvision downloads to. MNIST, CIFAR-10: torchvision's
        root. Default for downloads: ``default_cache_dir() / "data"``.
        ImageNet: required, the validation folder (or a folder holding it as
        ``val/``), one sub-folder per wnid.
    allow_download : bool
        Whether torchvision may download a dataset that is not on disk.

    Returns
    -------
    Dataset
        Items ``(float32 image (C, H, W) in [0, 1], int label)``, with a
        ``get_batch(indices)`` method.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``split``, or ImageNet without ``root``.
    DataUnavailableError
        No source of the data works.
    """
    _check_choice("dataset", name, list(DATASETS))
    if name == "imagenet":
        _check_choice("split", split, ["test"])
        if root is None:
            raise SparseBenchError(
                "root: ImageNet needs the folder of its validation set "
                "(one sub-folder per wnid); got None"
            )
        return _load_imagenet(pathlib.Path(root))
    _check_choice("split", split, list(SPLITS))
    if name == "fashion-mnist":
        return _load_fashion_mnist(split, root, allow_download)
    return _load_torchvision(name, split, root, allow_download)


def _download_root(root: str | os.PathLike | None) -> pathlib.Path:
    return pathlib.Path(root) if root is not None else default_cache_dir() / "data"


def _load_fashion_mnist(
    split: str, root: str | os.PathLike | None, allow_download: bool
) -> TensorImageDataset:
    prefix = "train" if split == "train" else "t10k"
    if root is not None:
        search = [pathlib.Path(root), pathlib.Path(root) / "FashionMNIST" / "raw"]
    elif os.environ.get(FASHION_MNIST_DIR_ENV):
        search = [pathlib.Path(os.environ[FASHION_MNIST_DIR_ENV])]
    else:
        search = [DEBIAN_FASHION_MNIST_DIR]
    download_root = _download_root(root)
    search.append(download_root / "FashionMNIST" / "raw")
    for directory in search:
        pair = _find_idx_pair(directory, prefix)
        if pair is not None:
            return _dataset_from_idx(*pair)

    cause: BaseException | None = None
    if allow_download:
        try:
            from torchvision.datasets import FashionMNIST  # torchvision takes seconds to import: only where it is used

            data = FashionMNIST(str(download_root), train=split == "train", download=True)
            return TensorImageDataset(data.data.unsqueeze(1).contiguous(), data.targets)
        except Exception as error:  # torchvision raises RuntimeError, URLError, OSError...
            cause = error
    searched = ", ".join(str(d) for d in search)
    how_download = (
        f"torchvision could not download it into {download_root} ({type(cause).__name__}: "
        f"{str(cause).strip().splitlines()[0] if str(cause).strip() else ''})"
        if cause is not None
        else "downloads were not allowed (allow_download=False)"
    )
    raise DataUnavailableError(
        f"Fashion-MNIST ({split} split) is not available: no IDX files "
        f"({prefix}-images-idx3-ubyte[.gz], {prefix}-labels-idx1-ubyte[.gz]) in {searched}, "
        f"and {how_download}. Either install the Debian package "
        f"(`apt-get install dataset-fashion-mnist`, files in {DEBIAN_FASHION_MNIST_DIR}; "
        f"or point ${FASHION_MNIST_DIR_ENV} at a folder holding the four IDX files), "
        "or go online so that torchvision can download it (once; it is then cached)."
    ) from cause


def _load_torchvision(
    name: str, split: str, root: str | os.PathLike | None, allow_download: bool
) -> TensorImageDataset:
    from torchvision import datasets  # torchvision takes seconds to import: only where it is used

    download_root = _download_root(root)
    train = split == "train"
    try:
        if name == "mnist":
            mnist = datasets.MNIST(str(download_root), train=train, download=allow_download)
            return TensorImageDataset(mnist.data.unsqueeze(1).contiguous(), mnist.targets)
        cifar = datasets.CIFAR10(str(download_root), train=train, download=allow_download)
        images = torch.from_numpy(np.ascontiguousarray(cifar.data)).permute(0, 3, 1, 2)
        return TensorImageDataset(images.contiguous(), torch.as_tensor(cifar.targets))
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError...
        action = (
            "torchvision could not download it"
            if allow_download
            else "it is not there and downloads were not allowed (allow_download=False)"
        )
        raise DataUnavailableError(
            f"{name} ({split} split) is not available in {download_root}: {action} "
            f"({type(error).__name__}: {str(error).strip()[:300]}). Go online once so "
            f"that torchvision can download it there, or pass root= a folder holding "
            "torchvision's copy."
        ) from error


# --------------------------------------------------------------------------
# ImageNet


def imagenet_transform() -> object:
    """RobustBench's ImageNet preprocessing: resize 256, center crop 224, to [0, 1].

    Returns
    -------
    callable
        PIL image -> float32 tensor ``(3, 224, 224)``.
    """
    from torchvision import transforms  # torchvision takes seconds to import: only where it is used

    return transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]
    )


def _load_imagenet(root: pathlib.Path) -> ImageFolderDataset:
    if not root.is_dir():
        raise DataUnavailableError(f"ImageNet: folder {root} does not exist")
    folder = root / "val" if (root / "val").is_dir() else root
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not classes:
        raise DataUnavailableError(
            f"ImageNet: {folder} has no class sub-folders (expected one folder per wnid, "
            "e.g. n01440764/, holding the validation images of that class)"
        )
    class_index = {wnid: index for index, wnid in enumerate(classes)}
    id_list = root / IMAGENET_ID_LIST
    if id_list.is_file():
        samples = _samples_from_id_list(id_list, root, folder, class_index)
    else:
        samples = [
            (path, class_index[wnid])
            for wnid in classes
            for path in sorted((folder / wnid).iterdir())
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
        ]
    return ImageFolderDataset(samples, classes, imagenet_transform())


def _samples_from_id_list(
    id_list: pathlib.Path,
    root: pathlib.Path,
    folder: pathlib.Path,
    class_index: dict[str, int],
) -> list[tuple[pathlib.Path, int]]:
    """Images named in RobustBench's list (``val/<wnid>/<file>`` or ``<wnid>/<file>``)."""
    samples = []
    missing = []
    for line_number, line in enumerate(id_list.read_text().splitlines(), start=1):
        relative = line.strip()
        if not relative:
            continue
        candidates = [root / relative, folder / relative]
        parts = pathlib.PurePosixPath(relative).parts
        if len(parts) > 2:  # "val/<wnid>/<file>" while root is the val folder itself
            candidates.append(folder.joinpath(*parts[-2:]))
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(relative)
            continue
        wnid = path.parent.name
        if wnid not in class_index:
            raise DataUnavailableError(
                f"ImageNet: {id_list}:{line_number} names {relative}, whose folder {wnid!r} "
                f"is not a class folder of {folder}"
            )
        samples.append((path, class_index[wnid]))
    if missing:
        raise DataUnavailableError(
            f"ImageNet: {len(missing)} images listed in {id_list} are missing under {root} "
            f"(first: {missing[0]})"
        )
    return samples


def _training_data(name: str) -> TrainingData:
    """The learned attacks' view of a registered dataset (:func:`baselines.generators.set_training_source`)."""
    info = DATASETS[name]
    return TrainingData(channels=info.shape[0], num_classes=info.num_classes,
                        load=functools.partial(load_dataset, name, split="train"), get_batch=get_batch)


set_training_source(_training_data)
