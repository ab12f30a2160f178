"""Shared fixtures: real Fashion-MNIST data and tiny models trained in seconds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tiny import train_linear
from torch import nn

from bench.data import get_batch, load_dataset


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: its batches are tiny, and on a shared 2-core
    machine two threads ran the same tests up to twenty times slower (oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Nothing a test trains (generators, models) lands in the user's ~/.cache/sparsebench."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SPARSEBENCH_CACHE", str(tmp_path_factory.mktemp("sparsebench-cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fashion_test():
    """The real Fashion-MNIST test split (from the Debian package on this machine)."""
    return load_dataset("fashion-mnist", split="test")


@pytest.fixture(scope="session")
def tiny_model() -> nn.Module:
    return train_linear()


@pytest.fixture(scope="session")
def samples(tiny_model, fashion_test):
    """Up to 32 test images the tiny model classifies correctly, their labels and targets (label + 3)."""
    images, labels = get_batch(fashion_test, list(range(60)))
    correct = tiny_model(images).argmax(1) == labels
    images, labels = images[correct][:32], labels[correct][:32]
    return images, labels, (labels + 3) % 10
