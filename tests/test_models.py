"""Tests of bench.models and the modules it joins (bench.architectures, bench.training, bench.cache, bench.zoo):
SmallCNN training and cache, RobustBench and torchvision loaders, offline."""

from __future__ import annotations

import ast
import json
import pathlib
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import bench.architectures
import bench.cache
import bench.models
import bench.training
import bench.zoo
from bench.architectures import Normalize, SmallCNN, SmallMLP, prepare_model
from bench.data import DATASETS, DEBIAN_FASHION_MNIST_DIR
from bench.models import MODELS, load_model, model_metadata, model_names, small_cnn_cache_path
from bench.training import FLAVOURS, train_small_cnn
from bench.zoo import ModelUnavailableError, torchvision_classifier

needs_debian_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs the Debian package dataset-fashion-mnist",
)

#: Training settings that take about a second per flavour.
FAST = {"train_subset": 2000, "epochs": 1, "eval_pgd_images": 100, "eval_pgd_steps": 10}


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Never read or write the user's caches, whatever a test forgets to pass."""
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path / "sparsebench-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


# --------------------------------------------------------------------------
# Registry


def test_registry_is_consistent() -> None:
    for name, entry in MODELS.items():
        assert entry.name == name
        assert entry.source in {"sparsebench", "robustbench", "torchvision"}
        assert set(entry.datasets) <= set(DATASETS)
        assert entry.citation and entry.description
        if entry.source != "sparsebench":
            assert name.startswith(entry.source + "/")
    assert model_names("fashion-mnist") == ["smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at", "mlp-standard"]
    assert model_names("cifar10") == [
        "robustbench/Standard", "robustbench/Engstrom2019Robustness", "robustbench/Wong2020Fast",
    ]
    assert set(model_names("imagenet")) == {
        "robustbench/Engstrom2019Robustness", "robustbench/Wong2020Fast",
        "torchvision/vgg16", "torchvision/vgg19", "torchvision/resnet50",
        "torchvision/resnet101", "torchvision/resnet152",
    }


@pytest.mark.parametrize(
    "name, dataset",
    [("resnet50", "imagenet"), ("torchvision/vgg16", "fashion-mnist"), ("robustbench/Standard", "imagenet")],
)
def test_unknown_model_raises(name: str, dataset: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_model(name, dataset)
    message = str(caught.value)
    assert message.startswith("model:")
    assert repr(name) in message
    for allowed in model_names(dataset):
        assert repr(allowed) in message


def test_unknown_dataset_raises() -> None:
    with pytest.raises(ValueError, match=r"^dataset: unknown value 'svhn'.*'cifar10'"):
        model_names("svhn")
    with pytest.raises(ValueError, match="^dataset:"):
        load_model("smallcnn-standard", "svhn")


def test_bad_training_settings_raise() -> None:
    with pytest.raises(ValueError, match="^training: unknown keys \\['epoch'\\]"):
        load_model("smallcnn-standard", "fashion-mnist", training={"epoch": 1})
    with pytest.raises(ValueError, match="^training:"):
        load_model("torchvision/vgg16", "imagenet", training={"epochs": 1})
    with pytest.raises(ValueError, match="^flavour: unknown value 'trades'"):
        train_small_cnn("fashion-mnist", "trades")


def test_prepare_model() -> None:
    model = SmallCNN().train()
    assert all(p.requires_grad for p in model.parameters())
    prepared = prepare_model(model, "cpu")
    assert prepared is model
    assert not prepared.training and not any(m.training for m in prepared.modules())
    assert not any(p.requires_grad for p in prepared.parameters())
    assert prepared(torch.rand(3, 1, 28, 28)).shape == (3, 10)


#: ``bench.models.__all__`` before architectures, training, cache and zoo were split out of it.
PUBLIC_BEFORE_THE_SPLIT = [
    "ARCHITECTURES", "FLAVOURS", "MODELS", "SMALL_CNN_EPS", "ModelEntry", "ModelUnavailableError", "Normalize",
    "SmallCNN", "SmallMLP", "all_models", "load_model", "plugin_models", "model_metadata", "model_names",
    "prepare_model", "small_cnn_cache_path", "torchvision_classifier", "train_small_cnn", "untrained_model",
]


def test_models_still_exports_every_public_name() -> None:
    """``from bench.models import X`` keeps working for every X it exported, and X is the defining module's object."""
    assert sorted(bench.models.__all__) == sorted(PUBLIC_BEFORE_THE_SPLIT)
    homes = [bench.architectures, bench.training, bench.zoo, bench.cache]
    for name in PUBLIC_BEFORE_THE_SPLIT:
        defined_in = [home for home in homes if name in home.__all__]
        assert len(defined_in) <= 1, name
        if defined_in:
            assert getattr(bench.models, name) is getattr(defined_in[0], name), name
        else:
            assert hasattr(bench.models, name), name


def test_model_modules_import_downwards_only() -> None:
    """architectures <- training <- cache, architectures <- zoo, and models above them all: no cycle, no way back up."""
    allowed = {
        "architectures": set(),
        "training": {"architectures"},
        "cache": {"architectures", "training"},
        "zoo": {"architectures"},
        "models": {"architectures", "training", "cache", "zoo"},
    }
    for module, may_import in allowed.items():
        tree = ast.parse(pathlib.Path(getattr(bench, module).__file__).read_text())
        imported = {node.module.split(".")[1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench.")}
        imported |= {alias.name.split(".")[1] for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names if alias.name.startswith("bench.")}
        assert imported & set(allowed) == may_import, module


def test_cache_path_still_checks_the_registry(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="^model: 'torchvision/vgg16' is not available for dataset 'mnist'"):
        small_cnn_cache_path("torchvision/vgg16", "mnist", cache_dir=tmp_path)
    assert bench.cache.small_cnn_weights_path("smallcnn-standard", "mnist", cache_dir=tmp_path) == (
        small_cnn_cache_path("smallcnn-standard", "mnist", cache_dir=tmp_path)
    )


# --------------------------------------------------------------------------
# SmallCNN: training, cache, determinism


def test_cache_paths(tmp_path: pathlib.Path) -> None:
    default = small_cnn_cache_path("smallcnn-pgd-at", "fashion-mnist", cache_dir=tmp_path, seed=3)
    assert default == tmp_path / "models" / "fashion-mnist" / "smallcnn-pgd-at-seed3.pt"
    fast = small_cnn_cache_path("smallcnn-pgd-at", "fashion-mnist", cache_dir=tmp_path, seed=3, training=FAST)
    assert fast.parent == default.parent and fast != default
    assert fast.name.startswith("smallcnn-pgd-at-seed3-custom-")
    other = small_cnn_cache_path("smallcnn-pgd-at", "fashion-mnist", cache_dir=tmp_path, seed=3,
                                 training={**FAST, "epochs": 2})
    assert other != fast
    assert small_cnn_cache_path("smallcnn-standard", "mnist").parent == (
        tmp_path / "sparsebench-cache" / "models" / "mnist"
    )


@needs_debian_fashion_mnist
def test_train_cache_and_reload(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"cache_dir": tmp_path, "progress": False, "training": FAST}
    assert model_metadata("smallcnn-standard", "fashion-mnist", tmp_path, training=FAST) is None
    first = load_model("smallcnn-standard", "fashion-mnist", **kwargs)

    path = small_cnn_cache_path("smallcnn-standard", "fashion-mnist", cache_dir=tmp_path, training=FAST)
    meta_path = path.with_suffix(".json")
    assert path.is_file() and meta_path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, meta_path.name])  # no temp files
    stamps = (path.stat().st_mtime_ns, meta_path.stat().st_mtime_ns)
    metadata = model_metadata("smallcnn-standard", "fashion-mnist", tmp_path, training=FAST)
    assert metadata == json.loads(meta_path.read_text())
    assert metadata["dataset"] == "fashion-mnist" and metadata["flavour"] == "standard"
    assert metadata["seed"] == 0 and metadata["epochs"] == 1 and metadata["eps"] == 0.1
    assert metadata["train_images"] == 2000
    assert metadata["training_seconds"] > 0
    assert metadata["torch_version"] == torch.__version__
    assert 0.5 < metadata["clean_accuracy"] <= 1.0  # 1 epoch on 2000 images: ~0.6-0.7
    assert 0.0 <= metadata["pgd_accuracy"] <= metadata["clean_accuracy"]
    assert metadata["clean_evaluation"] == "full test split (10000 images)"
    assert metadata["pgd_evaluation"]["images"] == "first 100 images of the test split"
    assert metadata["pgd_evaluation"]["steps"] == 10

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached model was retrained")

    monkeypatch.setattr(bench.cache, "train_small_cnn", no_training)
    second = load_model("smallcnn-standard", "fashion-mnist", **kwargs)
    assert _states_equal(first, second)
    assert (path.stat().st_mtime_ns, meta_path.stat().st_mtime_ns) == stamps
    assert not second.training and not any(p.requires_grad for p in second.parameters())
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(first(images), second(images))

    # The same settings trained afresh give the same weights (CPU determinism).
    monkeypatch.undo()
    retrained, _ = train_small_cnn("fashion-mnist", "standard", **FAST)
    assert _states_equal(first, retrained)


@needs_debian_fashion_mnist
def test_seed_changes_the_model() -> None:
    fast = {"train_subset": 500, "epochs": 1, "eval_pgd_images": 10, "eval_pgd_steps": 1}
    a, _ = train_small_cnn("fashion-mnist", "standard", seed=1, **fast)
    b, _ = train_small_cnn("fashion-mnist", "standard", seed=2, **fast)
    c, _ = train_small_cnn("fashion-mnist", "standard", seed=1, **fast)
    assert _states_equal(a, c)
    assert not _states_equal(a, b)


@needs_debian_fashion_mnist
@pytest.mark.parametrize("flavour", ["pgd-at", "fast-at"])
def test_adversarial_training_flavours(tmp_path: pathlib.Path, flavour: str) -> None:
    model = load_model(f"smallcnn-{flavour}", "fashion-mnist", cache_dir=tmp_path, progress=False,
                       training=FAST)
    metadata = model_metadata(f"smallcnn-{flavour}", "fashion-mnist", tmp_path, training=FAST)
    assert metadata is not None and metadata["flavour"] == flavour
    assert metadata["eps"] == 0.1
    assert 0.4 < metadata["clean_accuracy"]
    assert 0.0 <= metadata["pgd_accuracy"] <= metadata["clean_accuracy"]
    if flavour == "pgd-at":
        assert metadata["pgd_steps"] == 5 and metadata["pgd_step_size"] == pytest.approx(0.05)
    else:
        assert metadata["fgsm_step_size"] == pytest.approx(0.125)
    assert isinstance(model, SmallCNN) and not model.training


@needs_debian_fashion_mnist
def test_interrupted_write_leaves_no_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torch.save

    def save_then_die(obj: object, file: object, *args: object, **kwargs: object) -> None:
        real_save(obj, file, *args, **kwargs)  # the temporary file is complete...
        raise KeyboardInterrupt  # ...and the process is stopped before it is renamed

    monkeypatch.setattr(bench.cache.torch, "save", save_then_die)
    fast = {"train_subset": 256, "epochs": 1, "eval_pgd_images": 10, "eval_pgd_steps": 1}
    with pytest.raises(KeyboardInterrupt):
        load_model("smallcnn-standard", "fashion-mnist", cache_dir=tmp_path, progress=False, training=fast)
    folder = tmp_path / "models" / "fashion-mnist"
    assert list(folder.iterdir()) == []
    assert model_metadata("smallcnn-standard", "fashion-mnist", tmp_path, training=fast) is None


# --------------------------------------------------------------------------
# RobustBench


@pytest.fixture
def restore_robustbench_modules() -> Iterator[None]:
    """Put ``sys.modules`` back as it was for robustbench, autoattack and pkg_resources."""
    prefixes = ("robustbench", "autoattack", "pkg_resources")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in prefixes}
    yield
    for key in [k for k in sys.modules if k.split(".")[0] in prefixes]:
        del sys.modules[key]
    sys.modules.update(saved)


def test_robustbench_loader_reads_checkpoint(tmp_path: pathlib.Path) -> None:
    """The real robustbench.load_model on an untrained PreActResNet-18 checkpoint, no network."""
    pytest.importorskip("pyautoattack")
    robustbench = bench.zoo._import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    constructor = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Wong2020Fast"]["model"]
    reference = constructor()
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for parameter in reference.parameters():  # weights no fresh initialisation can have
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    path = tmp_path / "robustbench" / "cifar10" / "Linf" / "Wong2020Fast.pt"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    model = load_model("robustbench/Wong2020Fast", "cifar10", cache_dir=tmp_path, allow_download=False)
    assert type(model).__name__ == "Wong2020FastNet"
    assert _states_equal(model, reference)
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert robustbench.load_model is not None


def test_robustbench_missing_checkpoint_offline(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pyautoattack")
    with pytest.raises(ModelUnavailableError) as caught:
        load_model("robustbench/Standard", "cifar10", cache_dir=tmp_path, allow_download=False)
    assert str(tmp_path / "robustbench" / "cifar10" / "Linf" / "Standard.pt") in str(caught.value)


def test_robustbench_broken_checkpoint(tmp_path: pathlib.Path) -> None:
    """A failed Google Drive download leaves an HTML page named like the checkpoint."""
    pytest.importorskip("pyautoattack")
    path = tmp_path / "robustbench" / "cifar10" / "Linf" / "Wong2020Fast.pt"
    path.parent.mkdir(parents=True)
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive</title></head></html>")
    with pytest.raises(ModelUnavailableError) as caught:
        load_model("robustbench/Wong2020Fast", "cifar10", cache_dir=tmp_path, allow_download=False)
    message = str(caught.value)
    assert str(path) in message and "delete it" in message


def test_robustbench_import_error_names_setuptools(restore_robustbench_modules: None) -> None:
    """Without pkg_resources (setuptools >= 81) the error says what to install.

    The real setuptools here is < 81, so its absence is simulated the way
    Python itself marks a module as unimportable: ``sys.modules[name] = None``.
    """
    # Re-run robustbench's modules that import pkg_resources (the model zoo stays imported).
    for key in ["robustbench", "robustbench.data", "robustbench.loaders", "robustbench.utils", "robustbench.eval"]:
        sys.modules.pop(key, None)
    sys.modules["pkg_resources"] = None  # type: ignore[assignment]
    with pytest.raises(ImportError, match=r"pkg_resources.*setuptools<81"):
        bench.zoo._import_robustbench()


# --------------------------------------------------------------------------
# torchvision


@pytest.mark.parametrize("arch", ["resnet50", "vgg16"])
def test_torchvision_classifier_normalises_inside(arch: str) -> None:
    model = prepare_model(torchvision_classifier(arch, weights=None), "cpu")
    assert isinstance(model[0], Normalize)
    assert model[0].mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert model[0].std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    images = torch.rand(2, 3, 224, 224)
    logits = model(images)
    assert logits.shape == (2, 1000)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(logits, model.model((images - mean) / std))


def test_torchvision_missing_weights_offline(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as caught:
        load_model("torchvision/resnet50", "imagenet", allow_download=False)
    message = str(caught.value)
    assert "resnet50-0676ba61.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_torchvision_weights_from_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A weights file in torchvision's cache is what load_model returns, with no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(7)
    reference = torchvision_classifier("resnet50", weights=None)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.model.state_dict(), checkpoints / "resnet50-0676ba61.pth")
    model = load_model("torchvision/resnet50", "imagenet", allow_download=False, progress=False)
    assert _states_equal(model.model, reference.model)
    assert isinstance(model[0], Normalize)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_flavours_have_entries(flavour: str) -> None:
    assert MODELS[f"smallcnn-{flavour}"].target == flavour


@needs_debian_fashion_mnist
def test_second_architecture_trains_caches_and_reloads(tmp_path: pathlib.Path) -> None:
    """mlp-standard: another architecture through the same training and cache, for cross-architecture transfer."""
    first = load_model("mlp-standard", "fashion-mnist", cache_dir=tmp_path, progress=False, training=FAST)
    second = load_model("mlp-standard", "fashion-mnist", cache_dir=tmp_path, progress=False, training=FAST)
    assert isinstance(first, SmallMLP) and isinstance(second, SmallMLP) and _states_equal(first, second)
    metadata = model_metadata("mlp-standard", "fashion-mnist", tmp_path, training=FAST)
    assert metadata["model"] == "mlp-standard" and 0.5 < metadata["clean_accuracy"]
    with pytest.raises(ValueError, match="architecture: unknown value 'transformer'"):
        train_small_cnn("fashion-mnist", "standard", architecture="transformer", **FAST)


@pytest.mark.parametrize("damage", ["truncated", "foreign", "metadata"])
def test_a_damaged_cache_file_names_itself_and_how_to_rebuild(tmp_path: pathlib.Path, damage: str) -> None:
    """No traceback from torch's unpickler: the file, the problem, and the command that fixes it."""
    path = small_cnn_cache_path("smallcnn-standard", "fashion-mnist", cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.with_suffix(".json").write_text("{}")
    state = SmallCNN(10).state_dict()
    if damage == "foreign":
        state = nn.Linear(3, 2).state_dict()  # another model's weights
    torch.save(state, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    if damage == "metadata":
        path.with_suffix(".json").write_text('{"clean_accu')
    with pytest.raises(ValueError, match=rf"smallcnn-standard: the cached model {path} cannot be used .*; delete "
                                         rf"it and {path.stem}.json to retrain it on next use: rm "):
        load_model("smallcnn-standard", "fashion-mnist", cache_dir=tmp_path, progress=False, allow_download=False)
