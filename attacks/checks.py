"""Argument checks that attacks share: a bad value gets a ``ValueError`` naming the field, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_choice", "check_inputs", "check_int", "check_real"]


def check_inputs(inputs: Tensor, labels: Tensor) -> None:
    """The contract's inputs: float images ``(B, C, H, W)`` in [0, 1] and integer classes ``(B,)``.

    The registry's :class:`bench.registry.Attack` checks them once per call, for every attack.
    """
    if inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError(f"inputs: expected float images (B, C, H, W), got {inputs.dtype} of shape "
                         f"{tuple(inputs.shape)}")
    if tuple(labels.shape) != tuple(inputs.shape[:1]) or labels.is_floating_point():
        raise ValueError(f"labels: expected integer classes of shape {tuple(inputs.shape[:1])}, got {labels.dtype} "
                         f"of shape {tuple(labels.shape)}")
    if inputs.numel():
        low, high = torch.stack(torch.aminmax(inputs)).tolist()  # one read from the device, not two
        if low < 0 or high > 1:
            raise ValueError(f"inputs: expected images in [0, 1], got [{low:.4g}, {high:.4g}] "
                             "(models hold their own normalisation)")


def check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    """``value`` is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}: {value!r} is not {allowed}")


def check_real(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """``value`` lies in the interval from ``low`` to ``high`` (either end open or absent); NaN never does."""
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):
        if high is None:
            allowed = f"a number {'>' if low_open else '>='} {low!r}"
        elif low is None:
            allowed = f"a number {'<' if high_open else '<='} {high!r}"
        else:
            allowed = f"a number in {'(' if low_open else '['}{low!r}, {high!r}{')' if high_open else ']'}"
        raise ValueError(f"{name}: {value!r} is not {allowed}")


def check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
