"""A tiny real model for tests, trained in about a second (shared by fixtures and subprocess workers)."""

from __future__ import annotations

import torch
from torch import nn

from bench.counting import CountingModel
from bench.data import get_batch, load_dataset
from bench.verify import verify


def train_linear(n: int = 3000, steps: int = 150, seed: int = 0) -> nn.Module:
    """Softmax regression on the first ``n`` Fashion-MNIST training images: ~80% accuracy in about a second."""
    torch.manual_seed(seed)
    train = load_dataset("fashion-mnist", split="train")
    images, labels = get_batch(train, list(range(n)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


def run_verified(attack, model, samples, mode, n=None, **hyperparameters):
    """Run ``attack`` through a counting wrapper on ``samples`` (images, labels, targets) and verify it.

    Returns the verdicts and the passes counted (a :class:`~bench.counting.PassTotals`); the wrapper's
    hooks are removed, so that a later wrapper on the same model counts alone.
    """
    images, labels, targets = (tensor[:n] for tensor in samples)
    targeted = mode == "targeted"
    counting = CountingModel(model)
    adversarial = attack(counting, images, targets if targeted else labels, targeted=targeted, **hyperparameters)
    counting.close()
    verified = verify(model, images, adversarial, labels, targets=targets if targeted else None)
    return verified, counting.since_reset()


class _NoGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits):
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("a black-box attack asked for a gradient")


class OutputsOnly(nn.Module):
    """A model that only answers queries: no grad mode, no inputs that require grad, no backward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs):
        assert not torch.is_grad_enabled() and not inputs.requires_grad
        return _NoGradient.apply(self.model(inputs))


class TinyCNN(nn.Module):
    """One 3x3 convolution (4 maps), ReLU, 4x4 max-pooling, a linear layer: Grad-CAM reads ``features[1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 7 * 7, 10))

    def forward(self, inputs):
        return self.classifier(self.features(inputs))


def train_cnn(n: int = 500, steps: int = 30, seed: int = 0) -> nn.Module:
    """:class:`TinyCNN` trained for a few seconds on the first ``n`` Fashion-MNIST training images (~80% test
    accuracy), in eval mode with frozen parameters."""
    torch.manual_seed(seed)
    images, labels = get_batch(load_dataset("fashion-mnist", split="train"), list(range(n)))
    model = TinyCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return model.eval().requires_grad_(False)
