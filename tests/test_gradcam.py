"""Grad-CAM on a batch (attacks/gradcam.py): the reference package's maps, the layer table, and the harness's guard."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from attacks.gradcam import TARGET_LAYERS, default_target_layer, grad_cam, resolve_target_layer
from bench.architectures import Normalize, SmallCNN, SmallMLP, prepare_model
from bench.counting import CountingModel
from bench.data import get_batch
from bench.guard import Guard


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    """An untrained SmallCNN (seeded): Grad-CAM at its features[4], 14x14 maps upsampled to 28x28."""
    torch.manual_seed(0)
    return prepare_model(SmallCNN(), "cpu")


def test_maps_agree_with_pytorch_grad_cam(cnn, fashion_test):
    package = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, _ = get_batch(fashion_test, list(range(6)))
    classes = torch.tensor([0, 1, 2, 3, 4, 9])
    ours, logits = grad_cam(cnn, images, classes)
    with package.GradCAM(model=cnn, target_layers=[cnn.features[4]]) as cam:
        reference = cam(input_tensor=images.clone().requires_grad_(True),
                        targets=[ClassifierOutputTarget(int(c)) for c in classes])
    assert ours.shape == (6, 28, 28) and ours.min() >= 0 and ours.max() <= 1
    assert (ours.flatten(1).amax(1) > 0).sum() >= 3  # most maps have some positive evidence
    assert np.allclose(ours.numpy(), reference, atol=1e-5)
    assert torch.equal(logits, cnn(images))


def test_default_class_is_the_prediction(cnn, fashion_test):
    images, _ = get_batch(fashion_test, list(range(4)))
    predicted, logits = grad_cam(cnn, images)
    assert torch.equal(predicted, grad_cam(cnn, images, logits.argmax(1))[0])


def test_layer_table_per_architecture():
    cnn = SmallCNN()
    assert default_target_layer(cnn) is cnn.features[4]  # the ReLU after the last convolution
    assert default_target_layer(nn.Sequential(Normalize([0.5], [0.5]), cnn)) is cnn.features[4]
    assert default_target_layer(CountingModel(cnn)) is cnn.features[4]  # through the harness's wrapper
    resnet = torchvision.models.resnet18(weights=None)
    assert default_target_layer(resnet) is resnet.layer4[-1]
    assert [row.marker for row in TARGET_LAYERS] == ["features", "layer4", "block3"]
    with pytest.raises(ValueError, match="SmallMLP has no Conv2d layer, so no Grad-CAM"):
        default_target_layer(SmallMLP())
    assert resolve_target_layer(cnn, "features.3") is cnn.features[3]
    with pytest.raises(ValueError, match="'features.9' is not a layer"):
        resolve_target_layer(cnn, "features.9")


def test_layer_table_for_robustbench_architectures():
    pytest.importorskip("robustbench")
    from robustbench.model_zoo.architectures.resnet import PreActResNet18
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    wide = WideResNet(depth=10, widen_factor=1).eval()
    assert default_target_layer(wide) is wide.relu
    preact = PreActResNet18().eval()
    assert default_target_layer(preact) is preact.layer4[-1]
    cams, _ = grad_cam(wide.requires_grad_(False), torch.rand(2, 3, 32, 32))  # its in-place ReLU is read fine
    assert cams.shape == (2, 32, 32) and torch.isfinite(cams).all()


def test_a_layer_that_gives_no_feature_maps_is_refused(cnn):
    with pytest.raises(ValueError, match=r"target_layer: Linear returned \(2, 10\)"):
        grad_cam(cnn, torch.rand(2, 1, 28, 28), target_layer="classifier.3")


def test_guarded_model_hooks_are_left_as_found_and_the_passes_counted(cnn, fashion_test):
    images, _ = get_batch(fashion_test, list(range(5)))
    attacked = copy.deepcopy(cnn)
    counting, guard = CountingModel(attacked), Guard(attacked)
    cams, _ = grad_cam(counting, images)
    assert cams.shape == (5, 28, 28) and (cams.flatten(1).amax(1) > 0).any()
    assert guard.check() == []  # the forward hook on features[1] is gone
    assert counting.forward_samples == 5 and counting.backward_samples == 5  # one pass each way
