"""Argument checks the native L0 baselines share (a bad value gets a ``ValueError`` naming it)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_inputs", "check_int"]


def check_inputs(inputs: Tensor, labels: Tensor) -> None:
    """``inputs`` is ``(B, C, H, W)`` and ``labels`` is ``(B,)``."""
    if inputs.dim() != 4:
        raise ValueError(f"inputs: expected (B, C, H, W), got shape {tuple(inputs.shape)}")
    if tuple(labels.shape) != tuple(inputs.shape[:1]):
        raise ValueError(f"labels: expected shape {tuple(inputs.shape[:1])}, got {tuple(labels.shape)}")


def check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    """``value`` is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}: {value!r} is not {allowed}")
