"""Outside models, datasets and the Python API: what a user hands in goes through the harness's own paths."""

from __future__ import annotations

import lying_attacks
import pandas as pd
import pytest
import torch
from PIL import Image

from bench import evaluate
from bench.config import parse_config
from bench.data import get_batch, load_dataset
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports import summarize

IFGSM = {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 10}}


def _config(datasets, models=(), attacks=(IFGSM,)):
    return parse_config({"name": "outside", "seed": 2, "n_samples": 8, "batch_size": 4, "modes": ["untargeted"],
                         "datasets": datasets, "models": list(models), "attacks": list(attacks)})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("weights") / "linear.pt"
    torch.save(tiny_model.state_dict(), path)
    return path


def test_outside_model_and_dataset_by_function(tmp_path, checkpoint, tiny_model):
    """No loader handed in: the runner builds the outside model, loads its checkpoint, and attacks it."""
    config = _config([{"name": "subset", "function": "outside_contracts:fashion_subset", "num_classes": 10,
                       "family": "mnist", "models": ["linear"]}],
                     models=[{"name": "linear", "function": "outside_contracts:linear_model",
                              "checkpoint": str(checkpoint), "datasets": ["subset"]}])
    with ResultsStore(tmp_path / "s.sqlite") as store:
        rows = store.samples(run_benchmark(config, store, progress=False))
    assert len(rows) == 8 and rows["valid"].all() and rows["success"].sum() >= 6
    assert (rows["dataset"] == "subset").all() and (rows["model"] == "linear").all()
    images, labels = get_batch(load_dataset("fashion-mnist"), rows["sample_index"].tolist())
    assert (tiny_model(images).argmax(1) == labels).all()  # the checkpoint's weights chose these samples


def test_outside_folder_uses_registered_models(tmp_path, tiny_model):
    """An ImageFolder of grey PNGs, attacked with the models registered for Fashion-MNIST (``models_of``)."""
    images, labels = get_batch(load_dataset("fashion-mnist"), list(range(30)))
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "folder" / f"class{int(label):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0] * 255).round().byte().numpy(), mode="L").save(folder / f"{i:03d}.png")
    # class folders sorted by name give the class indices: every label 0-9 appears in the first 30 images
    assert len(list((tmp_path / "folder").iterdir())) == 10
    config = _config([{"name": "pngs", "folder": str(tmp_path / "folder"), "models_of": "fashion-mnist",
                       "models": ["smallcnn-standard"]}])
    asked = []

    def loader(name, dataset, device):
        asked.append((name, dataset))
        return tiny_model

    with ResultsStore(tmp_path / "s.sqlite") as store:
        rows = store.samples(run_benchmark(config, store, load_model=loader, progress=False))
    assert asked == [("smallcnn-standard", "fashion-mnist")]  # the registered weights of models_of
    assert len(rows) == 8 and rows["valid"].all() and rows["success"].sum() >= 6


@pytest.mark.parametrize("models,datasets,message", [
    ([{"name": "m", "function": "outside_contracts:linear_model", "checkpoint": "/nowhere.pt",
       "datasets": ["fashion-mnist"]}], None, r"config.models\[0\].checkpoint: '/nowhere.pt' does not exist"),
    ([{"name": "smallcnn-standard", "function": "outside_contracts:linear_model", "datasets": ["fashion-mnist"]}],
     None, r"'smallcnn-standard' is a registered model; give yours another name"),
    ([{"name": "m", "function": "outside_contracts:linear_model", "datasets": ["cifar100"]}], None,
     r"config.models\[0\].datasets: 'cifar100' is not one of"),
    ([], [{"name": "x", "function": "outside_contracts:fashion_subset", "models": ["smallcnn-standard"]}],
     r"needs 'num_classes' \(or 'models_of'"),
    ([], [{"name": "x", "function": "outside_contracts:fashion_subset", "num_classes": 10,
           "models": ["smallcnn-standard"]}], r"needs 'family'"),
    ([], [{"name": "x", "folder": "/a", "function": "outside_contracts:fashion_subset", "models_of": "mnist",
           "models": ["smallcnn-standard"]}], r"give 'folder' or 'function', not both"),
    ([], [{"name": "mnist", "folder": "/a", "models_of": "mnist", "models": ["smallcnn-standard"]}],
     r"'mnist' is a registered dataset; give yours another name"),
    ([], [{"name": "fashion-mnist", "models": ["smallcnn-standard"], "num_classes": 3}],
     r"'num_classes' describe an outside dataset"),
])
def test_outside_config_errors(models, datasets, message):
    with pytest.raises(ValueError, match=message):
        _config(datasets or [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}], models=models)


@pytest.mark.parametrize("function,weights,message", [
    ("outside_contracts:wrong_logits", None, r"model 'm': on images of shape \(1, 28, 28\) it returns \(2, 7\); "
                                             r"expected logits of shape \(batch, 10\)"),
    ("outside_contracts:not_a_module", None, r"returned a str, not an nn.Module"),
    ("outside_contracts:wrong_logits", "good", r"checkpoint .* does not fit outside_contracts:wrong_logits\(\)"),
    ("outside_contracts:linear_model", "truncated", r"checkpoint .* cannot be read as weights"),
])
def test_outside_model_load_errors(tmp_path, checkpoint, function, weights, message):
    """Each fails with a message naming the model, before any attack runs."""
    path = None
    if weights == "good":
        path = str(checkpoint)
    elif weights == "truncated":
        path = str(tmp_path / "truncated.pt")
        (tmp_path / "truncated.pt").write_bytes(checkpoint.read_bytes()[:200])
    config = _config([{"name": "fashion-mnist", "models": ["m"]}],
                     models=[{"name": "m", "function": function, "datasets": ["fashion-mnist"],
                              **({"checkpoint": path} if path else {})}])
    with ResultsStore(tmp_path / "s.sqlite") as store, pytest.raises(ValueError, match=message):
        run_benchmark(config, store, progress=False)


def test_outside_dataset_outside_the_box_is_refused(tmp_path):
    config = _config([{"name": "x", "function": "outside_contracts:outside_box", "models_of": "fashion-mnist",
                       "models": ["smallcnn-standard"]}])
    with ResultsStore(tmp_path / "s.sqlite") as store, pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        run_benchmark(config, store, progress=False)


def test_relative_paths_are_read_from_the_config_file(tmp_path, checkpoint):
    from bench.config import load_config

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.pt").write_bytes(checkpoint.read_bytes())
    (tmp_path / "c.toml").write_text(
        'modes = ["untargeted"]\n[[models]]\nname = "m"\nfunction = "outside_contracts:linear_model"\n'
        'checkpoint = "weights/w.pt"\ndatasets = ["fashion-mnist"]\n'
        '[[datasets]]\nname = "fashion-mnist"\nmodels = ["m"]\n[[attacks]]\nname = "i-fgsm"\n')
    config = load_config(tmp_path / "c.toml")
    assert config.models[0].checkpoint == str(tmp_path / "weights" / "w.pt")


def test_evaluate_a_callable_on_tensors(tiny_model, samples):
    """The API runs the runner: a half-lying callable keeps only its honest half; summarize reads the rows."""
    images, labels, _ = samples
    rows = evaluate(lying_attacks.half_outside_box, tiny_model, inputs=images[:12], labels=labels[:12],
                    modes=["untargeted", "targeted"], batch_size=4)
    assert len(rows) == 24 and set(rows["dataset"]) == {"tensors"} and set(rows["attack"]) == {"half-outside-box"}
    assert (rows["violation"].str.startswith("outside [0, 1]") == ~rows["valid"].astype(bool)).all()
    assert not rows.loc[~rows["valid"].astype(bool), "success"].any()
    summary = summarize(rows, budgets=[10])
    assert list(summary["samples"]) == [12, 12] and (summary["invalid"] == 6).all()
    # A lie against the model is caught here as in a run.
    lied = evaluate(lying_attacks.zero_weights, tiny_model, inputs=images[:4], labels=labels[:4])
    assert not lied["success"].any() and lied["violation"].str.contains("changed the values").all()


def test_evaluate_registered_names(tiny_model, tmp_path):
    """A registered attack on a model object and a dataset, written to a store that a rerun resumes."""
    rows = evaluate("i-fgsm", tiny_model, n_samples=6, overrides={"eps": 0.3, "alpha": 0.05}, batch_size=3,
                    store=tmp_path / "api.sqlite")
    assert len(rows) == 6 and rows["valid"].all() and rows["success"].sum() >= 5
    again = evaluate("i-fgsm", tiny_model, n_samples=6, overrides={"eps": 0.3, "alpha": 0.05}, batch_size=3,
                     store=tmp_path / "api.sqlite")
    pd.testing.assert_frame_equal(rows, again)  # resumed: the same rows, seconds included
    with pytest.raises(ValueError, match="does not support targeted"):
        evaluate("torchattacks/sparsefool", tiny_model, modes=["targeted"])
    with pytest.raises(ValueError, match="'stepz'"):
        evaluate("i-fgsm", tiny_model, overrides={"stepz": 1})
    with pytest.raises(ValueError, match="takes 2 positional"):
        evaluate(lambda model, inputs: inputs, tiny_model)
