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
host-device synchronisation). The same expression reads
``F * t_forward + B * (t_forward_backward - t_forward)``: each backward costs
what a gradient step adds to a forward, which also covers attacks that take
several gradients through one forward (SparseFool's per-class gradients
make ``B > F``).

Seconds depend on the machine; operations do not. With ``operations`` the
attack runs once more, untimed, with every tensor operation counted
(:func:`bench.counting.count_ops`): ``op_ratio`` is its operations over the
bare model's for the same calls, which is what a step costs on a GPU bound
by kernel launches (a step on a few samples); ``attack_ops_per_call`` and
``syncs_per_call`` are the attack's own operations and host-device
synchronisations per forward call. A CPU measures them as a GPU would.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.checks import check_int
from bench.counting import CountingModel, OpCounts, count_ops, synchronize, timed
from bench.guard import AttackCall, AttackVoid, Guard, call_attack
from bench.speed import repeat_to
from bench.verify import verify

__all__ = ["OPERATION_FIGURES", "Efficiency", "bare_pass_seconds", "call_seconds", "measure_efficiency", "model_ops",
           "operation_figures"]


def bare_pass_seconds(model: nn.Module, inputs: Tensor, labels: Tensor, *, repeats: int = 21,
                      clock: str = "wall") -> tuple[float, float]:
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
            with timed(device, clock) as seconds:
                step()
            times.append(seconds[0])
        results.append(statistics.median(times) / batch)
    return results[0], results[1]


def call_seconds(model: nn.Module, inputs: Tensor, labels: Tensor, forward_sizes: Mapping[int, int],
                 backward_sizes: Mapping[int, int], *, repeats: int = 5, clock: str = "wall") -> float:
    """Seconds the bare model needs for the same calls an attack made, each at its own batch size.

    The per-pass figure prices a call on 3 samples at 3/256 of a call on 256;
    on a GPU it costs nearly as much as the full one. Here each call of ``n``
    samples is priced at the bare model's time for a call of ``n``: measured
    at the powers of two around ``n`` (inputs repeated where ``n`` exceeds
    the batch) and interpolated linearly, a backward at the forward+backward
    time minus the forward's. An attack at ``1.0`` against this spends nothing
    beyond its calls; what the per-pass ratio shows above this one is the
    cost of steps on few samples.
    """
    measured: dict[int, tuple[float, float]] = {}

    def per_call(size: int) -> tuple[float, float]:
        if size not in measured:
            t_f, t_fb = bare_pass_seconds(model, repeat_to(inputs, size), repeat_to(labels, size), repeats=repeats,
                                          clock=clock)
            measured[size] = (t_f * size, t_fb * size)
        return measured[size]

    def priced(size: int) -> tuple[float, float]:
        low = 1 << (size.bit_length() - 1)
        if low == size:
            return per_call(size)
        (f_low, fb_low), (f_high, fb_high) = per_call(low), per_call(2 * low)
        weight = (size - low) / low
        return f_low + weight * (f_high - f_low), fb_low + weight * (fb_high - fb_low)

    total = 0.0
    for size, count in forward_sizes.items():
        total += count * priced(size)[0]
    for size, count in backward_sizes.items():
        t_f, t_fb = priced(size)
        total += count * (t_fb - t_f)
    return total


OPERATION_FIGURES = ("op_ratio", "attack_ops_per_call", "syncs_per_call")
"""The :class:`Efficiency` fields that ``operations=True`` measures (NaN otherwise)."""


def _guarded(attack, model: nn.Module, *, clock: str = "wall") -> Callable[[Tensor, Tensor, Tensor | None], AttackCall]:
    """Calls of ``attack`` as the runner makes them: on its own copy of ``model``, counted and guarded, on copies of
    the inputs (:func:`bench.guard.call_attack`); a call that raised or tampered raises :class:`AttackVoid`. The
    bare passes are timed on ``model`` itself, which carries no counting hooks."""
    own = copy.deepcopy(model)
    counting, guard = CountingModel(own), Guard(own)

    def call(inputs: Tensor, labels: Tensor, targets: Tensor | None) -> AttackCall:
        result = call_attack(attack, counting, guard, inputs, labels, targets, clock=clock)
        if result.void:
            raise AttackVoid(result.void)
        return result

    return call


def model_ops(model: nn.Module, inputs: Tensor) -> tuple[int, int]:
    """Tensor operations of one bare forward call and of one backward to the inputs (they do not depend on the batch)."""
    x = inputs[:1].clone().requires_grad_(True)
    with count_ops() as forward:
        logits = model(x)
    seed = torch.ones_like(logits)
    with count_ops() as backward:
        torch.autograd.grad(logits, x, seed)
    return forward[0].ops, backward[0].ops


@dataclass(frozen=True)
class Efficiency:
    """One attack's measured cost against its passes' cost, per sample.

    With several rounds, ``seconds_per_sample`` and the bare times are the
    medians over rounds and ``ratio`` is the median of the rounds' own ratios;
    ``ratio_low`` and ``ratio_high`` are the lowest and highest of those.
    """

    attack: str
    mode: str
    batch_size: int
    clock: str
    rounds: int
    seconds_per_sample: float
    forward_per_sample: float
    backward_per_sample: float
    forward_calls: int
    """Forward calls on the batch (steps, roughly): with few passes per sample but many calls, the
    attack spends its time on steps over few remaining samples, which a GPU prices near a full batch."""
    backward_calls: int
    bare_forward_seconds: float
    bare_forward_backward_seconds: float
    expected_seconds_per_sample: float
    ratio: float
    ratio_low: float
    ratio_high: float
    call_expected_seconds_per_sample: float
    """What the bare model needs for the attack's calls, each priced at its own batch size (:func:`call_seconds`)."""
    call_ratio: float
    """``seconds_per_sample / call_expected_seconds_per_sample`` (median over rounds): the attack's cost beyond
    its calls, steps on few samples included at what they really cost."""
    peak_memory_mib: float | None
    """Peak device memory the attack allocated (CUDA; the largest over rounds), None on other devices."""
    op_ratio: float = float("nan")
    """Tensor operations the attack ran over those of the bare model's calls (forward calls x its forward's,
    backward calls x its backward's): the cost of a step where every operation costs one launch."""
    attack_ops_per_call: float = float("nan")
    """The attack's own operations (all it ran minus the model's) per forward call."""
    syncs_per_call: float = float("nan")
    """Host-device synchronisations per forward call (:func:`bench.counting.count_ops`)."""
    fooling_rate: float = float("nan")
    """Share of the batch the last round's examples fool, as :func:`bench.verify.verify` judges them: what was
    timed is an attack that works."""

    def as_dict(self) -> dict:
        return asdict(self)


def measure_efficiency(attack, model: nn.Module, inputs: Tensor, labels: Tensor, *, targets: Tensor | None = None,
                       warmup: int = 8, repeats: int = 21, rounds: int = 1, clock: str = "wall",
                       operations: bool = False) -> Efficiency:
    """Time ``attack`` on the batch and compare it with the bare model's passes.

    The attack first runs once on ``warmup`` samples (allocations, kernel
    selection), and the bare model once at the full batch's shape. Then, ``rounds`` times, it runs on the whole batch, timed and
    counted, and right after it the bare passes are timed: each round's ratio
    compares the attack with the bare model under the same conditions, so a
    machine whose load changes during the measurement (other jobs on a shared
    CPU) moves both sides of a round alike. The reported ratio is the median
    over rounds. ``clock`` is :func:`~bench.counting.timed`'s: ``"cpu"`` times
    CPU work rather than wall time (CPU devices only). Every round must make the same passes (they are counted, and
    an attack seeded alike makes them alike); the counts of the last are kept.
    With ``operations``, one more untimed run counts the attack's tensor operations
    and synchronisations (``op_ratio``, ``attack_ops_per_call``, ``syncs_per_call``).
    """
    check_int("rounds", rounds, 1)
    targeted = targets is not None
    guarded = _guarded(attack, model, clock=clock)

    def call(size: int) -> AttackCall:
        return guarded(inputs[:size], labels[:size], targets[:size] if targets is not None else None)

    if warmup:
        call(warmup)
        # The model's own kernels at the full batch's shape too: on a GPU the first call at a new shape
        # loads kernels and picks algorithms, and the H200 table's first attack paid for it (1.72).
        bare_pass_seconds(model, inputs, labels, repeats=1, clock=clock)
    batch = inputs.shape[0]
    measured, bare, ratios, peaks, call_expected, call_ratios = [], [], [], [], [], []
    for _ in range(rounds):
        result = call(batch)
        if result.peak_memory_mib is not None:
            peaks.append(result.peak_memory_mib)
        passes = result.passes
        forward, backward = passes.forward_samples / batch, passes.backward_samples / batch
        calls = passes.forward_calls, passes.backward_calls
        t_forward, t_forward_backward = bare_pass_seconds(model, inputs, labels, repeats=repeats, clock=clock)
        expected = (forward - backward) * t_forward + backward * t_forward_backward
        measured.append(result.seconds / batch)
        bare.append((t_forward, t_forward_backward))
        ratios.append(measured[-1] / expected if expected > 0 else float("inf"))
        call_expected.append(call_seconds(model, inputs, labels, passes.forward_sizes, passes.backward_sizes,
                                          clock=clock) / batch)
        call_ratios.append(measured[-1] / call_expected[-1] if call_expected[-1] > 0 else float("inf"))
    verified = verify(model, inputs, result.returned, labels, targets=targets)
    counted = ({key: value for key, value in operation_figures(attack, model, inputs, labels, targets=targets).items()
                if key in OPERATION_FIGURES} if operations else {})
    t_forward = statistics.median(t for t, _ in bare)
    t_forward_backward = statistics.median(t for _, t in bare)
    return Efficiency(
        attack=getattr(attack, "name", getattr(attack, "__name__", repr(attack))),
        mode="targeted" if targeted else "untargeted",
        batch_size=batch,
        clock=clock,
        rounds=rounds,
        seconds_per_sample=statistics.median(measured),
        forward_per_sample=forward,
        backward_per_sample=backward,
        forward_calls=calls[0],
        backward_calls=calls[1],
        bare_forward_seconds=t_forward,
        bare_forward_backward_seconds=t_forward_backward,
        expected_seconds_per_sample=(forward - backward) * t_forward + backward * t_forward_backward,
        ratio=statistics.median(ratios),
        ratio_low=min(ratios),
        ratio_high=max(ratios),
        call_expected_seconds_per_sample=statistics.median(call_expected),
        call_ratio=statistics.median(call_ratios),
        peak_memory_mib=max(peaks) if peaks else None,
        fooling_rate=float(verified.success.mean()),
        **counted,
    )


def operation_figures(attack, model: nn.Module, inputs: Tensor, labels: Tensor, *,
                      targets: Tensor | None = None) -> dict[str, float]:
    """Run the attack once, untimed and guarded as the runner does, with its operations counted.

    Returns :class:`Efficiency`'s ``op_ratio``, ``attack_ops_per_call`` and
    ``syncs_per_call``, and the ``forward_calls`` they are per (and the ``backward_calls``).
    """
    seen: list[list[OpCounts]] = []

    def counted(*args, **kwargs):
        with count_ops() as ops:
            seen.append(ops)  # filled when the block ends
            return attack(*args, **kwargs)

    result = _guarded(counted, model)(inputs, labels, targets)
    forward_ops, backward_ops = model_ops(model, inputs)
    calls = result.passes.forward_calls
    model_total = calls * forward_ops + result.passes.backward_calls * backward_ops
    total = seen[0][0]
    return {"op_ratio": total.ops / model_total if model_total else float("inf"),
            "attack_ops_per_call": (total.ops - model_total) / calls if calls else float("inf"),
            "syncs_per_call": total.syncs / calls if calls else float("inf"), "forward_calls": calls,
            "backward_calls": result.passes.backward_calls}
