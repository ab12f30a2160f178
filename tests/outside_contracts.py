"""Callables that break the attack contract, for tests/test_config.py."""

from __future__ import annotations


def two_arguments(model, inputs, *, targeted=False):
    return inputs


def no_targeted(model, inputs, labels):
    return inputs


def required_hyperparameter(model, inputs, labels, *, targeted=False, steps):
    return inputs


def good(model, inputs, labels, *, targeted=False, steps: int = 3, eps: float = 0.5):
    return inputs


NOT_CALLABLE = 3


def linear_model():
    """The tiny linear model's architecture (tests/tiny.py), untrained: an outside model's constructor."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def wrong_logits():
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 7))


def not_a_module():
    return "a model"


def fashion_subset():
    """The first 40 Fashion-MNIST test images and labels: an outside dataset's callable."""
    from bench.data import get_batch, load_dataset

    return get_batch(load_dataset("fashion-mnist"), list(range(40)))


def outside_box():
    images, labels = fashion_subset()
    return images * 2, labels


def buggy_dataset():
    """A dataset function with a bug in it: its ValueError is not a user's problem to fix from a message."""
    raise ValueError("internal bug: index out of step")
