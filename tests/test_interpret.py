"""Obscuring and leading noise: the rule on hand-built maps, Grad-CAM where the evidence is known, a real run."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from tiny import train_cnn
from torch import nn

from bench.architectures import Normalize, SmallCNN, SmallMLP, prepare_model
from bench.cli import build_parser
from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.interpret import (
    CATEGORIES,
    categorize,
    default_target_layer,
    evidence_region,
    grad_cam,
    guided_grad_cam,
    interpretation,
    noise_summary,
    resolve_target_layer,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_evidence_region_is_the_top_fraction_and_never_zero():
    cam = np.arange(100, dtype=float).reshape(10, 10) / 99
    region = evidence_region(cam, 0.2)
    assert region.sum() == 20 and region[8:].all() and not region[:8].any()
    assert evidence_region(cam, 1.0).sum() == 99  # every pixel but the one at 0
    assert not evidence_region(np.zeros((10, 10)), 0.2).any()  # no positive evidence: empty
    with pytest.raises(ValueError, match="quantile: 0 is not in"):
        evidence_region(cam, 0)


def test_categorize_counts_each_kind_and_fractions_sum_to_one():
    true_region = np.zeros((10, 10), bool)
    true_region[:5] = True  # top half
    adversarial_region = np.zeros((10, 10), bool)
    adversarial_region[:, :5] = True  # left half
    perturbed = np.zeros((10, 10), bool)
    for y, x in [(0, 9), (1, 8), (9, 0), (0, 0), (2, 3), (9, 9), (8, 9), (7, 7)]:
        perturbed[y, x] = True
    # top-right: obscuring (0,9), (1,8); bottom-left: leading (9,0); top-left: both (0,0), (2,3);
    # bottom-right: neither (9,9), (8,9), (7,7).
    codes = categorize(perturbed, true_region, adversarial_region)
    assert (codes[~perturbed] == -1).all()
    counts = np.bincount(codes[codes >= 0], minlength=4)
    assert dict(zip(CATEGORIES, counts.tolist())) == {"obscuring": 2, "leading": 1, "both": 2, "neither": 3}
    assert counts.sum() == perturbed.sum() and (counts / counts.sum()).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes"):
        categorize(perturbed, true_region[:5], adversarial_region)


def _patch_detector() -> nn.Module:
    """A SmallCNN whose class 0 is the image's brightness, passed through both convolutions; class 1 its opposite."""
    model = SmallCNN(2)
    with torch.no_grad():
        for conv in (model.features[0], model.features[3]):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[:, :, 1, 1] = 1.0
        model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 2))
        model.classifier[1].weight.copy_(torch.stack([torch.ones(32 * 7 * 7), -torch.ones(32 * 7 * 7)]))
        model.classifier[1].bias.zero_()
    return prepare_model(model, "cpu")


def test_grad_cam_peaks_where_the_evidence_is():
    model = _patch_detector()
    images = torch.zeros(2, 1, 28, 28)
    images[0, 0, 4:8, 18:22] = 1.0
    images[1, 0, 20:24, 2:6] = 1.0
    cams = grad_cam(model, images, [0, 0], batch_size=1)
    assert cams.shape == (2, 28, 28) and cams.min() >= 0 and cams.max() <= 1
    for cam, (ys, xs) in zip(cams, [(slice(4, 8), slice(18, 22)), (slice(20, 24), slice(2, 6))]):
        peak = np.unravel_index(cam.argmax(), cam.shape)
        assert ys.start <= peak[0] < ys.stop and xs.start <= peak[1] < xs.stop
        region = evidence_region(cam, 16 / 784)  # the 16 brightest cells are the patch
        assert region[ys, xs].all() and region.sum() == 16
    # Class 1 has only negative evidence: its map is 0 everywhere, so no region.
    assert not grad_cam(model, images[:1], [1]).any()
    layers = [type(m) for m in model.modules()]
    guided = guided_grad_cam(model, images[:1], [0], cams[:1])
    nonzero = np.argwhere(guided[0, 0] != 0)  # max-pooling passes one pixel per window: some of the patch
    assert guided.shape == (1, 1, 28, 28) and len(nonzero) > 0
    assert ((nonzero >= [4, 18]) & (nonzero < [8, 22])).all()
    assert [type(m) for m in model.modules()] == layers  # guided backpropagation swapped the ReLUs of a copy


def test_target_layer_per_architecture():
    import torchvision

    cnn = SmallCNN()
    assert default_target_layer(cnn) is cnn.features[4]
    assert default_target_layer(nn.Sequential(Normalize([0.5], [0.5]), cnn)) is cnn.features[4]
    resnet = torchvision.models.resnet18(weights=None)
    assert default_target_layer(resnet) is resnet.layer4[-1]
    assert resolve_target_layer(cnn, "features.3") is cnn.features[3]
    with pytest.raises(ValueError, match="'features.9' is not a layer"):
        resolve_target_layer(cnn, "features.9")
    with pytest.raises(ValueError, match="no Conv2d"):
        default_target_layer(SmallMLP())


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    model, images = SmallCNN(), torch.zeros(1, 1, 28, 28)
    cams = grad_cam(model, images, [0])  # the maps need only torch
    with pytest.raises(ImportError, match=r"sparsebench\[interpret\]"):
        guided_grad_cam(model, images, [0], cams)  # the figure's Guided Grad-CAM needs the package


@pytest.fixture(scope="module")
def tiny_cnn() -> nn.Module:
    """One convolution trained for a few seconds on 500 Fashion-MNIST training images (~80% test accuracy)."""
    return prepare_model(train_cnn(), "cpu")


def test_interpretation_of_a_real_run(tmp_path, tiny_cnn):
    config = parse_config({
        "name": "interpret", "n_samples": 6, "batch_size": 6, "modes": ["untargeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "fmn-l0", "overrides": {"steps": 50}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_cnn, progress=False)
        samples = store.samples(run_id)
        table = interpretation(store, run_id, lambda *_: tiny_cnn, attack="fmn-l0", model="smallcnn-standard",
                               n_samples=10, figure_samples=2, out=tmp_path / "out")
        with pytest.raises(ValueError, match="no samples of 'nope'.*fashion-mnist/smallcnn-standard/fmn-l0"):
            interpretation(store, run_id, lambda *_: tiny_cnn, attack="nope", model="smallcnn-standard")
    successful = samples[samples["success"].astype(bool)].set_index("sample_id")
    assert len(successful) > 0 and sorted(table["sample_id"]) == sorted(successful.index)
    # Every perturbed pixel is counted once: the four counts add up to the stored L0.
    counts = table[list(CATEGORIES)].sum(axis=1)
    assert (counts == table["perturbed_pixels"]).all()
    assert (table["perturbed_pixels"].to_numpy() == successful.loc[table["sample_id"], "l0_pixels"].to_numpy()).all()
    assert np.allclose(table[[f"{c}_fraction" for c in CATEGORIES]].sum(axis=1), 1.0)
    assert table["agrees"].all()
    summary = noise_summary(table)
    assert summary["samples"].tolist() == [len(table)]
    assert summary["obscuring_mean"].iloc[0] == pytest.approx(table["obscuring_fraction"].mean())
    assert (tmp_path / "out" / "interpret.png").read_bytes().startswith(PNG)
    report = (tmp_path / "out" / "interpret.md").read_text()
    assert "**obscuring**" in report and "top 0.2 fraction" in report and "](interpret.png)" in report
    assert f"{len(table)} samples: the first {len(table)}" in report
    assert len((tmp_path / "out" / "interpret-samples.csv").read_text().splitlines()) == len(table) + 1


def test_command_line(tmp_path, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["interpret", "--help"])
    assert "obscuring" in capsys.readouterr().out
    args = parser.parse_args(["interpret", "--store", str(tmp_path / "missing.sqlite"), "--attack", "fmn-l0",
                              "--attack", "lin2025", "--model", "smallcnn-standard", "--quantile", "0.1"])
    assert args.attack == ["fmn-l0", "lin2025"] and args.quantile == 0.1 and args.mode == "untargeted"
    with pytest.raises(ValueError, match="does not exist"):
        args.func(args)
