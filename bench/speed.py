"""Running attacks fast: reduced precision, channels-last layout, and batches that fill the device.

Three options, all off by default, and none of them touches what the
harness measures with:

* ``precision`` (``"bf16"`` or ``"fp16"``) runs the *attacked* model under
  :func:`torch.autocast`. Inputs, gradients and logits stay float32 at the
  model's boundary, so attacks need no change. ``fp16`` needs CUDA; ``bf16``
  also runs on CPUs.
* ``channels_last`` keeps the attacked model's weights and inputs in NHWC
  layout, which convolutions on tensor cores prefer.
* :func:`largest_batch` predicts the largest batch an attack can run on the
  device from its measured memory at two small batches.

The attack sees :func:`speed_up`'s copy of the model; selection and the
harness's verification use the float32, NCHW original. A faster model can
therefore change *what the attack finds* (an example a bf16 model is fooled
by may not fool the float32 one, and then it counts as a failure) but never
how it is judged. ``tests/test_speed.py`` checks that fooling rate and L0
stay within the tolerance stated there, per option, on a trained model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attacks.checks import check_choice, check_int, check_real
from bench.counting import CountingModel
from bench.errors import SparseBenchError
from bench.vocabulary import Precision

__all__ = ["PRECISIONS", "BatchEstimate", "FastModel", "largest_batch", "repeat_to", "speed_up"]

PRECISIONS = tuple(Precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

CPU_BATCH = 256
"""``largest_batch`` on a CPU: memory is not what limits a CPU, and past a few hundred samples larger batches stop paying."""


class FastModel(nn.Module):
    """``model`` under autocast and/or channels-last, with float32 logits.

    Built by :func:`speed_up`; holds its own copy of the weights when the
    layout changes, so the float32 original stays as it was.
    """

    def __init__(self, model: nn.Module, precision: str = "fp32", channels_last: bool = False) -> None:
        super().__init__()
        check_choice("precision", precision, PRECISIONS)
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        self._dtype = _DTYPES.get(precision)

    def forward(self, inputs: Tensor) -> Tensor:
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if self._dtype is None:
            return self.model(inputs)
        with torch.autocast(device_type=inputs.device.type, dtype=self._dtype):
            logits = self.model(inputs)
        return logits.float()

    def extra_repr(self) -> str:
        return f"precision={self.precision!r}, channels_last={self.channels_last}"


def speed_up(model: nn.Module, *, precision: str = "fp32", channels_last: bool = False,
             device: torch.device | str | None = None) -> nn.Module:
    """The model an attack should run on: ``model`` itself with both options off, else a :class:`FastModel`.

    Raises ``ValueError`` for ``fp16`` off CUDA (CPU autocast is bf16 only).
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32" and not channels_last:
        return model
    if device is None:
        device = next(model.parameters()).device
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise SparseBenchError(f"precision: 'fp16' needs a CUDA device, not {device}; use 'bf16' or 'fp32'")
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return FastModel(model, precision, channels_last)


@dataclass(frozen=True)
class BatchEstimate:
    """What :func:`largest_batch` measured and chose."""

    batch_size: int
    probe_sizes: tuple[int, ...]
    probe_peak_mib: tuple[float, ...]
    mib_per_sample: float | None
    available_mib: float | None
    reason: str


def repeat_to(tensor: Tensor, size: int) -> Tensor:
    """The first ``size`` rows of ``tensor`` repeated as often as needed."""
    reps = math.ceil(size / tensor.shape[0])
    return tensor.repeat(reps, *([1] * (tensor.dim() - 1)))[:size]


def largest_batch(attack, model: nn.Module, inputs: Tensor, labels: Tensor, *, targets: Tensor | None = None,
                  limit: int, probe: int = 8, memory_fraction: float = 0.8) -> BatchEstimate:
    """The largest batch of ``attack`` on ``model`` that fits the device, at most ``limit``.

    On CUDA the attack runs twice, on ``probe`` and ``2 * probe`` samples
    (``inputs`` repeated as needed), and the peak memory it allocates is
    measured each time. Memory grows linearly with the batch in all
    registered attacks (their state is per sample), so the two peaks give a
    per-sample cost and a fixed part; the batch chosen is the largest whose
    predicted peak stays within ``memory_fraction`` of the memory free for
    this process (free on the device plus what torch holds unused). The
    fraction leaves room for the allocator's fragmentation and for
    verification. Extrapolating from two probes rather than trying ever
    larger batches keeps the search to two small runs, which also serve as
    the warm-up. Anywhere else the answer is ``min(limit, CPU_BATCH)``.
    """
    check_int("limit", limit, 1)
    check_int("probe", probe, 1)
    check_real("memory_fraction", memory_fraction, low=0.0, high=1.0, low_open=True)
    device = inputs.device
    if device.type != "cuda":
        size = min(limit, CPU_BATCH)
        return BatchEstimate(size, (), (), None, None, f"{device.type}: min(limit, {CPU_BATCH})")
    sizes = (min(probe, limit), min(2 * probe, limit))
    if sizes[0] == sizes[1]:
        return BatchEstimate(limit, (), (), None, None, "limit <= probe")
    counting = CountingModel(model)
    peaks = []
    for size in sizes:
        batch_inputs, batch_labels = repeat_to(inputs, size), repeat_to(labels, size)
        goal = repeat_to(targets, size) if targets is not None else batch_labels
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        attack(counting, batch_inputs, goal, targeted=targets is not None)
        torch.cuda.synchronize(device)
        peaks.append((torch.cuda.max_memory_allocated(device) - base) / 2**20)
        del batch_inputs, batch_labels, goal
    free, _ = torch.cuda.mem_get_info(device)
    available = (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)) / 2**20
    per_sample = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    fixed = peaks[0] - per_sample * sizes[0]
    if per_sample <= 0:
        size, reason = limit, "memory did not grow with the batch"
    else:
        size = int((memory_fraction * available - max(fixed, 0.0)) // per_sample)
        size, reason = max(1, min(limit, size)), f"{memory_fraction:.0%} of {available:.0f} MiB free"
    return BatchEstimate(size, sizes, tuple(peaks), per_sample, available, reason)
