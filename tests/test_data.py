"""Tests of bench.data on real files: the Debian Fashion-MNIST and a tiny ImageNet-like folder."""

from __future__ import annotations

import gzip
import pathlib
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import (
    DATASETS,
    DEBIAN_FASHION_MNIST_DIR,
    DataUnavailableError,
    IdxFormatError,
    ImageFolderDataset,
    TensorImageDataset,
    default_cache_dir,
    get_batch,
    load_dataset,
    read_idx,
)

needs_debian_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs the Debian package dataset-fashion-mnist",
)


def write_idx(path: pathlib.Path, array: np.ndarray, *, magic: bytes | None = None) -> None:
    """Write ``array`` (uint8) as a gzip-compressed IDX file, optionally with a forged magic number."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_registry() -> None:
    assert DATASETS["fashion-mnist"].shape == (1, 28, 28)
    assert DATASETS["fashion-mnist"].family == "mnist"
    assert DATASETS["mnist"].num_classes == 10
    assert DATASETS["cifar10"].shape == (3, 32, 32)
    assert DATASETS["imagenet"].num_classes == 1000
    assert DATASETS["imagenet"].shape == (3, 224, 224)
    with pytest.raises(AttributeError):
        DATASETS["mnist"].num_classes = 3  # type: ignore[misc]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SPARSEBENCH_CACHE")
    assert default_cache_dir() == pathlib.Path.home() / ".cache" / "sparsebench"


@needs_debian_fashion_mnist
@pytest.mark.parametrize("split, size", [("test", 10_000), ("train", 60_000)])
def test_fashion_mnist_from_debian_files(monkeypatch: pytest.MonkeyPatch, split: str, size: int) -> None:
    monkeypatch.delenv("SPARSEBENCH_FASHION_MNIST_DIR", raising=False)
    dataset = load_dataset("fashion-mnist", split=split)
    assert isinstance(dataset, TensorImageDataset)
    assert len(dataset) == size
    assert dataset.images.dtype == torch.uint8  # kept compact in memory
    image, label = dataset[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.max()) > 0.5  # scaled by 255, not by 255**2
    assert dataset.labels.min() == 0 and dataset.labels.max() == 9
    assert torch.equal(dataset.labels.bincount(), torch.full((10,), size // 10))  # balanced classes

    indices = [0, 17, 3, 9999]
    images, labels = dataset.get_batch(indices)
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(images, torch.stack([dataset[i][0] for i in indices]))
    assert labels.tolist() == [dataset[i][1] for i in indices]
    generic_images, generic_labels = get_batch(dataset, torch.tensor(indices))
    assert torch.equal(generic_images, images) and torch.equal(generic_labels, labels)


@needs_debian_fashion_mnist
def test_fashion_mnist_directory_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([4, 0, 9]))
    monkeypatch.setenv("SPARSEBENCH_FASHION_MNIST_DIR", str(tmp_path))
    dataset = load_dataset("fashion-mnist")
    assert len(dataset) == 3
    assert dataset[2][1] == 9
    assert torch.equal(dataset[1][0][0], torch.from_numpy(images[1]).float() / 255)


def test_no_source_raises_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """No IDX files and no download: one DataUnavailableError naming both remedies.

    This machine is offline, so a real download attempt would only fail after
    network timeouts. The one thing replaced is torchvision's download
    function, by one that fails the way it does offline (URLError); the rest
    of torchvision's FashionMNIST runs for real.
    """
    import torchvision.datasets.mnist

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SPARSEBENCH_FASHION_MNIST_DIR", str(empty))
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path / "cache"))
    attempts: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        attempts.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataUnavailableError) as caught:
        load_dataset("fashion-mnist", split="test")
    message = str(caught.value)
    assert attempts, "torchvision's download was not attempted"
    assert "apt-get install dataset-fashion-mnist" in message
    assert "torchvision" in message and "download" in message
    assert str(empty) in message
    assert isinstance(caught.value, RuntimeError)


def test_no_source_without_download(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path, allow_download=False)
    with pytest.raises(DataUnavailableError, match="mnist"):
        load_dataset("mnist", root=tmp_path, allow_download=False)


def test_bad_idx_magic_raises(tmp_path: pathlib.Path) -> None:
    labels = np.array([1, 2, 3])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, magic=b"\x01\x02\x08\x01")
    with pytest.raises(IdxFormatError, match="not an IDX file"):
        load_dataset("fashion-mnist", root=tmp_path)
    # Images and labels swapped: the magic numbers say 1 dimension, not 3.
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", labels)
    with pytest.raises(IdxFormatError, match="expected 3"):
        load_dataset("fashion-mnist", root=tmp_path)
    # Unknown type code.
    write_idx(tmp_path / "x.gz", labels, magic=b"\x00\x00\x07\x01")
    with pytest.raises(IdxFormatError, match="type code 0x07"):
        read_idx(tmp_path / "x.gz")
    # Payload shorter than the header says.
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x00" * 9)
    with pytest.raises(IdxFormatError, match="file holds 9"):
        read_idx(path)
    assert issubclass(IdxFormatError, ValueError)


def test_read_idx_plain_and_gzip(tmp_path: pathlib.Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    (tmp_path / "a").write_bytes(gzip.decompress((tmp_path / "a.gz").read_bytes()))
    assert np.array_equal(read_idx(tmp_path / "a.gz", expected_ndim=3), array)
    assert np.array_equal(read_idx(tmp_path / "a"), array)


@pytest.mark.parametrize(
    "kwargs, field, value",
    [
        ({"name": "svhn"}, "dataset", "'svhn'"),
        ({"name": "fashion-mnist", "split": "validation"}, "split", "'validation'"),
        ({"name": "imagenet", "split": "train", "root": "."}, "split", "'train'"),
    ],
)
def test_unknown_values_raise(kwargs: dict, field: str, value: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_dataset(**kwargs)
    message = str(caught.value)
    assert message.startswith(f"{field}:")
    assert value in message
    allowed = {"dataset": "'fashion-mnist'", "split": "'test'"}[field]
    assert allowed in message


def test_imagenet_needs_root() -> None:
    with pytest.raises(ValueError, match="root"):
        load_dataset("imagenet")


def _fake_imagenet(root: pathlib.Path) -> dict[str, tuple[int, int, int]]:
    """Two wnid folders of small PNGs, each a solid colour; returns the colour of each file."""
    colours = {}
    layout = {
        "n01440764": ["ILSVRC2012_val_00000293.JPEG", "ILSVRC2012_val_00002138.JPEG"],
        "n01443537": ["ILSVRC2012_val_00000236.JPEG", "ILSVRC2012_val_00000262.JPEG"],
    }
    for k, (wnid, files) in enumerate(layout.items()):
        (root / "val" / wnid).mkdir(parents=True)
        for j, file in enumerate(files):
            colour = (40 * k + 10 * j, 100, 200 - 50 * j)
            # PNG content behind ImageNet's .JPEG names: PIL reads by content.
            Image.new("RGB", (300, 260), colour).save(root / "val" / wnid / file, format="PNG")
            colours[f"{wnid}/{file}"] = colour
    return colours


def test_imagenet_folder(tmp_path: pathlib.Path) -> None:
    colours = _fake_imagenet(tmp_path)
    dataset = load_dataset("imagenet", root=tmp_path)
    assert isinstance(dataset, ImageFolderDataset)
    assert dataset.classes == ["n01440764", "n01443537"]
    assert len(dataset) == 4
    assert [label for _, label in dataset.samples] == [0, 0, 1, 1]
    image, label = dataset[2]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert label == 1
    expected = torch.tensor(colours["n01443537/ILSVRC2012_val_00000236.JPEG"]) / 255
    assert torch.allclose(image[:, 112, 112], expected, atol=1e-6)
    images, labels = dataset.get_batch([3, 0])
    assert images.shape == (2, 3, 224, 224)
    assert labels.tolist() == [1, 0]
    assert torch.equal(images[1], dataset[0][0])
    # The val folder itself can be the root too.
    assert len(load_dataset("imagenet", root=tmp_path / "val")) == 4


def test_imagenet_id_list_restricts_and_orders(tmp_path: pathlib.Path) -> None:
    _fake_imagenet(tmp_path)
    (tmp_path / "imagenet_test_image_ids.txt").write_text(
        "val/n01443537/ILSVRC2012_val_00000262.JPEG\n"
        "val/n01440764/ILSVRC2012_val_00000293.JPEG\n"
        "n01443537/ILSVRC2012_val_00000236.JPEG\n"
    )
    dataset = load_dataset("imagenet", root=tmp_path)
    assert [path.name for path, _ in dataset.samples] == [
        "ILSVRC2012_val_00000262.JPEG",
        "ILSVRC2012_val_00000293.JPEG",
        "ILSVRC2012_val_00000236.JPEG",
    ]
    assert [label for _, label in dataset.samples] == [1, 0, 1]
    assert dataset.get_batch([0, 1, 2])[1].tolist() == [1, 0, 1]

    (tmp_path / "imagenet_test_image_ids.txt").write_text("val/n01440764/ILSVRC2012_val_99999999.JPEG\n")
    with pytest.raises(DataUnavailableError, match="ILSVRC2012_val_99999999"):
        load_dataset("imagenet", root=tmp_path)


def test_imagenet_missing_folder(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_dataset("imagenet", root=tmp_path / "nowhere")
    with pytest.raises(DataUnavailableError, match="no class sub-folders"):
        load_dataset("imagenet", root=tmp_path)
