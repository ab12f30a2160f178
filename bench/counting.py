"""Count what an attack costs: forward and backward passes, and seconds.

The harness measures cost itself rather than asking the attack (as
AttackBench does, arXiv:2404.19460): the model is wrapped so that every
forward call adds its batch size to ``forward_samples`` and every backward
pass through its output adds the batch size to ``backward_samples``. Divided
by the number of samples attacked, these are passes per sample. It also
counts the calls (``forward_calls``, ``backward_calls``): on a GPU a call on
a few samples costs nearly what one on a full batch does, so calls against
passes show how much of an attack's time goes to steps on few samples. The
counts are host integers updated from shapes only, so counting never
synchronises with the device.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["CLOCKS", "CountingModel", "timed"]


class CountingModel(nn.Module):
    """Wraps a classifier and counts the samples sent forward and backward through it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.forward_samples = 0
        self.backward_samples = 0
        self.forward_calls = 0
        self.backward_calls = 0
        self.forward_sizes: Counter[int] = Counter()
        """Forward calls by batch size."""
        self.backward_sizes: Counter[int] = Counter()
        """Backward passes by batch size."""

    def _count_backward(self, n: int):
        def hook(grad: Tensor) -> None:
            self.backward_samples += n
            self.backward_calls += 1
            self.backward_sizes[n] += 1

        return hook

    def forward(self, inputs: Tensor) -> Tensor:
        logits = self.model(inputs)
        n = int(inputs.shape[0])
        self.forward_samples += n
        self.forward_calls += 1
        self.forward_sizes[n] += 1
        if logits.requires_grad:
            logits.register_hook(self._count_backward(n))
        return logits


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no MPS here
        torch.mps.synchronize()


CLOCKS = ("wall", "cpu")


@contextmanager
def timed(device: torch.device, clock: str = "wall") -> Iterator[list[float]]:
    """Seconds of the block, synchronised with ``device`` before and after.

    ``clock="wall"`` (default) measures wall time. ``clock="cpu"`` measures
    the CPU time of this process (all its threads), for CPU devices only: on
    a machine shared with other jobs it counts the work done rather than the
    time spent waiting for a core, so a ratio of two such times stays put
    when the load changes. Yields a one-element list that holds the seconds
    once the block ends.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock: {clock!r} is not one of {', '.join(CLOCKS)}")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise ValueError(f"clock: 'cpu' times CPU work only; device is {device}")
    now = time.perf_counter if clock == "wall" else time.process_time
    result = [0.0]
    synchronize(device)
    start = now()
    try:
        yield result
    finally:
        synchronize(device)
        result[0] = now() - start
