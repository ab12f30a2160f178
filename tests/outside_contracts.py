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
