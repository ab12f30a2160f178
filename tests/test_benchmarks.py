"""pytest-benchmark tests of the hot paths, so that a slowdown shows up in their figures.

They run as ordinary tests under the default ``--benchmark-disable`` (one call
each, with their assertions); to measure, run

    OMP_NUM_THREADS=1 pytest tests/test_benchmarks.py --benchmark-enable --benchmark-columns=min,median,max

and compare ``test_wrapped_forward_backward`` with ``test_bare_forward_backward``
(the counting wrapper's cost) and ``test_lin2025_step`` with the bare pass it
makes. Figures recorded in ``docs/measured/hot-paths-cpu.md``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attacks.lin2025 import lin2025
from bench.architectures import SmallCNN
from bench.counting import CountingModel
from bench.data import get_batch

BATCH = 256


@pytest.fixture(scope="module")
def batch(fashion_test):
    return get_batch(fashion_test, list(range(BATCH)))


@pytest.fixture(scope="module")
def cnn():
    """The offline benchmark's architecture (untrained: only its cost matters here)."""
    torch.manual_seed(0)
    return SmallCNN().eval().requires_grad_(False)


def _forward_backward(model, images, labels):
    x = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    return torch.autograd.grad(loss, x)[0]


def test_bare_forward_backward(benchmark, cnn, batch):
    images, labels = batch
    gradient = benchmark(_forward_backward, cnn, images, labels)
    assert gradient.shape == images.shape and gradient.abs().sum() > 0


def test_wrapped_forward_backward(benchmark, cnn, batch):
    images, labels = batch
    counting = CountingModel(cnn)
    gradient = benchmark(_forward_backward, counting, images, labels)
    # The wrapper changes nothing but the counts: same gradient, one pass each way per call.
    assert torch.equal(gradient, _forward_backward(cnn, images, labels))
    calls = counting.forward_samples // BATCH - 1  # minus the comparison call above
    assert counting.forward_samples == counting.backward_samples == (calls + 1) * BATCH


def test_lin2025_step(benchmark, cnn, batch):
    """One SGD step of the proposed attack on top of a one-step I-FGSM start.

    Its passes per sample: I-FGSM 1 forward + 1 backward, the dense
    prediction 1 forward, the mask checked before and after the step
    2 forwards, the step 1 forward + 1 backward.
    """
    images, labels = batch
    counting = CountingModel(cnn)

    def step():
        counting.reset()
        return lin2025(counting, images, labels, ifgsm_steps=1, steps=1)

    adversarial = benchmark(step)
    assert adversarial.shape == images.shape and adversarial.min() >= 0 and adversarial.max() <= 1
    assert (counting.forward_samples, counting.backward_samples) == (5 * BATCH, 2 * BATCH)
