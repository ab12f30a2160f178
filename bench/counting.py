"""Count what an attack costs: forward and backward passes, and seconds.

The harness measures cost itself rather than asking the attack (as
AttackBench does, arXiv:2404.19460). A forward pass of ``n`` samples adds
``n`` to ``forward_samples``; a backward pass that reaches the model adds
``n`` to ``backward_samples``. Divided by the number of samples attacked,
these are passes per sample. It also counts the calls (``forward_calls``,
``backward_calls``): on a GPU a call on a few samples costs nearly what one
on a full batch does, so calls against passes show how much of an attack's
time goes to steps on few samples. The counts are host integers updated
from shapes only, so counting never synchronises with the device.

Where the counting happens
--------------------------
An attack is handed a :class:`CountingModel`, but the counting is not in
its ``forward``: an attack could step around that by calling
``counting.model`` (or ``counting.model.forward``) directly. Instead every
*counted layer* of the wrapped model (each leaf module that holds
parameters or buffers: the convolutions, linear layers and norms a pass
cannot avoid) carries a forward hook, and its output a gradient hook. A
pass counts however it enters the network, and a layer reached through
``copy.deepcopy`` of the model still counts (the hooks are plain closures,
which ``deepcopy`` shares). The passes are the most any counted layer saw,
divided by how many times that layer runs in one pass of the whole model
(measured on the first call through the wrapper, normally 1), so running
part of the network costs a whole pass, never less.

Totals only grow. :meth:`CountingModel.reset` moves a baseline rather than
clearing them, and the runner reads :meth:`CountingModel.totals` before and
after each attack call: an attack that rewinds the counts is caught
(:func:`bench.guard`).

What this cannot see: an attack that copies the weights out and
re-implements the network with tensor operations. An attack runs in the
harness's process; the guards here catch mistakes and the lies in the
test suite, and a reviewer reading such code sees the rest.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bench.errors import SparseBenchError

__all__ = ["CLOCKS", "CountingModel", "OpCounts", "PassTotals", "count_ops", "counted_layers", "timed"]


def counted_layers(model: nn.Module) -> list[nn.Module]:
    """The leaf modules holding parameters or buffers (the model itself when there are none)."""
    layers = [module for module in model.modules()
              if not next(module.children(), None)
              and (next(module.parameters(recurse=False), None) is not None
                   or next(module.buffers(recurse=False), None) is not None)]
    return layers or [model]


@dataclass
class _Layer:
    """What one counted layer has seen."""

    forward_calls: int = 0
    forward_samples: int = 0
    forward_sizes: Counter[int] = field(default_factory=Counter)
    backward_calls: int = 0
    backward_samples: int = 0
    backward_sizes: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True)
class PassTotals:
    """Passes and calls, forward and backward, with the calls by batch size."""

    forward_samples: int = 0
    backward_samples: int = 0
    forward_calls: int = 0
    backward_calls: int = 0
    forward_sizes: Counter[int] = field(default_factory=Counter)
    backward_sizes: Counter[int] = field(default_factory=Counter)

    def __sub__(self, other: PassTotals) -> PassTotals:
        return PassTotals(self.forward_samples - other.forward_samples,
                          self.backward_samples - other.backward_samples,
                          self.forward_calls - other.forward_calls,
                          self.backward_calls - other.backward_calls,
                          self.forward_sizes - other.forward_sizes,
                          self.backward_sizes - other.backward_sizes)

    def covers(self, other: PassTotals) -> bool:
        """Whether these totals are at least ``other``'s everywhere (totals only grow)."""
        return (self.forward_samples >= other.forward_samples and self.backward_samples >= other.backward_samples
                and self.forward_calls >= other.forward_calls and self.backward_calls >= other.backward_calls)


def _first_tensor(output: object) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, Tensor)), None)
    return None


def _forward_hook(layers: list[_Layer], i: int):
    """A closure, not a bound method: ``copy.deepcopy`` of the model keeps counting into the same totals."""
    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        tensor = _first_tensor(output)
        if tensor is None or tensor.dim() == 0:
            return
        n = int(tensor.shape[0])
        layer = layers[i]
        layer.forward_calls += 1
        layer.forward_samples += n
        layer.forward_sizes[n] += 1
        if tensor.requires_grad:
            tensor.register_hook(_backward_hook(layer, n))

    return hook


def _backward_hook(layer: _Layer, n: int):
    def hook(grad: Tensor) -> None:
        layer.backward_calls += 1
        layer.backward_samples += n
        layer.backward_sizes[n] += 1

    return hook


def _remove(handles: list) -> None:
    for handle in handles:
        handle.remove()


_FINALIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class CountingModel(nn.Module):
    """Wraps a classifier; hooks on its layers count the samples sent forward and backward through it.

    The hooks are removed when the wrapper is garbage-collected or :meth:`close`\\ d. Two wrappers
    alive on one model both count every pass through it, whichever wrapper it came through: close
    one before counting with another.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # The wrapper's own mode is the model's: a library that saves the mode of the module it is
        # given and restores it afterwards (torchattacks does) must not put the model in training mode.
        self.training = model.training
        layers = counted_layers(model)
        self._layers = [_Layer() for _ in layers]
        self._multiplicity: list[int] | None = None
        handles = [layer.register_forward_hook(_forward_hook(self._layers, i)) for i, layer in enumerate(layers)]
        # Kept outside the module's attributes, so that a deep copy of the wrapper cannot remove them.
        _FINALIZERS[self] = weakref.finalize(self, _remove, handles)
        self._baseline = PassTotals()

    def close(self) -> None:
        """Remove the counting hooks from the wrapped model."""
        finalizer = _FINALIZERS.pop(self, None)
        if finalizer is not None:
            finalizer()

    def forward(self, inputs: Tensor) -> Tensor:
        if self._multiplicity is None:  # how often each layer runs in one pass: measured once
            before = [layer.forward_calls for layer in self._layers]
            logits = self.model(inputs)
            self._multiplicity = [layer.forward_calls - b for layer, b in zip(self._layers, before)]
            return logits
        return self.model(inputs)

    def totals(self) -> PassTotals:
        """Everything counted since the wrapper was made (never reset)."""
        multiplicity = self._multiplicity or [1] * len(self._layers)
        seen = [(layer, m) for layer, m in zip(self._layers, multiplicity) if m > 0] or [(self._layers[0], 1)]

        def most(samples: str, calls: str, sizes: str) -> tuple[int, int, Counter[int]]:
            layer, m = max(seen, key=lambda pair: getattr(pair[0], samples) // pair[1])
            return (getattr(layer, samples) // m, getattr(layer, calls) // m,
                    Counter({size: count // m for size, count in getattr(layer, sizes).items() if count // m}))

        forward = most("forward_samples", "forward_calls", "forward_sizes")
        backward = most("backward_samples", "backward_calls", "backward_sizes")
        return PassTotals(forward[0], backward[0], forward[1], backward[1], forward[2], backward[2])

    def reset(self) -> None:
        """Count from zero again (the totals themselves are kept: see :meth:`totals`)."""
        self._baseline = self.totals()

    def since_reset(self) -> PassTotals:
        return self.totals() - self._baseline

    @property
    def forward_samples(self) -> int:
        return self.since_reset().forward_samples

    @property
    def backward_samples(self) -> int:
        return self.since_reset().backward_samples

    @property
    def forward_calls(self) -> int:
        return self.since_reset().forward_calls

    @property
    def backward_calls(self) -> int:
        return self.since_reset().backward_calls

    @property
    def forward_sizes(self) -> Counter[int]:
        """Forward calls by batch size."""
        return self.since_reset().forward_sizes

    @property
    def backward_sizes(self) -> Counter[int]:
        """Backward passes by batch size."""
        return self.since_reset().backward_sizes


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
        raise SparseBenchError(f"clock: {clock!r} is not one of {', '.join(CLOCKS)}")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise SparseBenchError(f"clock: 'cpu' times CPU work only; device is {device}")
    now = time.perf_counter if clock == "wall" else time.process_time
    result = [0.0]
    synchronize(device)
    start = now()
    try:
        yield result
    finally:
        synchronize(device)
        result[0] = now() - start


# Reads that make the host wait for the device: a value a Python decision needs (``.item()``,
# ``bool(tensor)``) or an output whose shape depends on the values (``nonzero``, boolean indexing).
_SYNCING_OPS = frozenset({
    "aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten._unique2", "aten.unique_dim",
    "aten.unique_consecutive", "aten.equal", "aten.allclose", "aten.bincount"})
_BOOLEAN_INDEXED = frozenset({"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"})
_HOST_COPIES = frozenset({"tolist", "numpy", "cpu"})


@dataclass(frozen=True)
class OpCounts:
    """Tensor operations dispatched in a block (views aside), and how many made the host wait for the device."""

    ops: int = 0
    syncs: int = 0


def _is_sync(packet: str, args: tuple, kwargs: dict) -> bool:
    if packet in _SYNCING_OPS:
        return True
    if packet == "aten.repeat_interleave":  # without output_size, its length is read from the device
        return kwargs.get("output_size") is None and isinstance(args[0], Tensor) and len(args) < 3
    if packet in _BOOLEAN_INDEXED:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())
    return False


@contextmanager
def count_ops() -> Iterator[list[OpCounts]]:
    """Count the tensor operations run in the block, and the synchronisations among them.

    On a GPU each operation is at least one kernel launch, a few microseconds
    of host time whatever the batch: on few samples a step costs what its
    operations number, not what they compute. Views and aliases
    (``unsqueeze``, ``expand``, ``detach``, ...) launch nothing and are not
    counted. A synchronisation is an operation whose result the host waits
    for: ``.item()``, ``bool(t)``, ``nonzero``, boolean indexing,
    ``unique``, and ``.tolist()``, ``.numpy()`` and ``.cpu()`` (seen as
    Python calls: on a CPU tensor they dispatch nothing). Each stalls the
    host until the device has drained its queue, so the next launches wait
    for it. The counts do not depend on the device, so the CPU measures what
    a GPU will pay. Operations are counted through a ``TorchDispatchMode``
    (forward and backward alike) and the host copies through a profile
    function, so the block runs slower while counted: never time inside it.
    Yields a one-element list holding the :class:`OpCounts` once the block
    ends.
    """
    import sys

    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"ops": 0, "syncs": 0}

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if not func.is_view:  # a view or alias launches nothing
                counts["ops"] += 1
            if _is_sync(str(func.overloadpacket), args, kwargs):
                counts["syncs"] += 1
            return func(*args, **kwargs)

    def profile(frame, event: str, arg) -> None:
        if (event == "c_call" and getattr(arg, "__name__", None) in _HOST_COPIES
                and isinstance(getattr(arg, "__self__", None), Tensor)):
            counts["syncs"] += 1

    result = [OpCounts()]
    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        with Counting():
            yield result
    finally:
        sys.setprofile(previous)
        result[0] = OpCounts(counts["ops"], counts["syncs"])
