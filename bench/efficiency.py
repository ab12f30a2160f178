"""How close an attack runs to the cost of the passes it makes.

An attack's time is mostly forward and backward passes through the model.
The harness counts them (:class:`~bench.counting.CountingModel`), times the
bare model's passes at the same batch size and device, and compares:

``expected = (F - B) * t_forward + B * t_forward_backward`` per sample, where
``F`` and ``B`` are the forward and backward passes per sample the attack
made, ``t_forward`` is the bare model's forward time per sample without
autograd (how attacks check candidates) and ``t_forward_backward`` its
forward with autograd plus the backward to the inputs (one gradient step).
``ratio = measured / expected``: 1.0 means the attack costs exactly its
passes; what lies above is its own overhead (bookkeeping, projections,
host-device synchronisation). Backward passes without a forward of their own
do not occur in these attacks, so ``B <= F``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.counting import CountingModel, synchronize, timed

__all__ = ["Efficiency", "bare_pass_seconds", "measure_efficiency"]


def bare_pass_seconds(model: nn.Module, inputs: Tensor, labels: Tensor, *, repeats: int = 21) -> tuple[float, float]:
    """Seconds per sample of the bare model: (forward without autograd, forward + backward to the inputs).

    Each is the median of ``repeats`` timed runs after one warm-up run: the
    attack's own time is an average over many steps, noise included, so the
    bare passes are summarised the same way (a best-of would flatter them).
    """
    device = inputs.device
    batch = inputs.shape[0]

    def forward() -> None:
        with torch.no_grad():
            model(inputs)

    def forward_backward() -> None:
        x = inputs.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        torch.autograd.grad(loss, x)

    results = []
    for step in (forward, forward_backward):
        step()
        synchronize(device)
        times = []
        for _ in range(repeats):
            with timed(device) as seconds:
                step()
            times.append(seconds[0])
        results.append(statistics.median(times) / batch)
    return results[0], results[1]


@dataclass(frozen=True)
class Efficiency:
    """One attack's measured cost against its passes' cost, per sample."""

    attack: str
    mode: str
    batch_size: int
    seconds_per_sample: float
    forward_per_sample: float
    backward_per_sample: float
    bare_forward_seconds: float
    bare_forward_backward_seconds: float
    expected_seconds_per_sample: float
    ratio: float

    def as_dict(self) -> dict:
        return asdict(self)


def measure_efficiency(attack, model: nn.Module, inputs: Tensor, labels: Tensor, *, targets: Tensor | None = None,
                       warmup: int = 8, repeats: int = 21) -> Efficiency:
    """Time ``attack`` on the batch and compare it with the bare model's passes.

    The attack first runs once on ``warmup`` samples (allocations, kernel
    selection), then once on the whole batch, timed and counted.
    """
    targeted = targets is not None
    goal = targets if targeted else labels
    counting = CountingModel(model)
    if warmup:
        attack(counting, inputs[:warmup], goal[:warmup], targeted=targeted)
    counting.reset()
    with timed(inputs.device) as seconds:
        attack(counting, inputs, goal, targeted=targeted)
    batch = inputs.shape[0]
    forward, backward = counting.forward_samples / batch, counting.backward_samples / batch
    t_forward, t_forward_backward = bare_pass_seconds(model, inputs, labels, repeats=repeats)
    expected = (forward - backward) * t_forward + backward * t_forward_backward
    measured = seconds[0] / batch
    return Efficiency(
        attack=getattr(attack, "name", getattr(attack, "__name__", repr(attack))),
        mode="targeted" if targeted else "untargeted",
        batch_size=batch,
        seconds_per_sample=measured,
        forward_per_sample=forward,
        backward_per_sample=backward,
        bare_forward_seconds=t_forward,
        bare_forward_backward_seconds=t_forward_backward,
        expected_seconds_per_sample=expected,
        ratio=measured / expected if expected > 0 else float("inf"),
    )
