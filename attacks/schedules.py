"""Schedules that attacks share: step sizes, and when to look at the host."""

from __future__ import annotations

import math

__all__ = ["cosine_annealing", "host_check_due"]


def cosine_annealing(initial: float, final: float, step: int, steps: int) -> float:
    """``initial`` at ``step = 0`` to ``final`` at ``step = steps`` along half a cosine."""
    return final + (initial - final) * (1 + math.cos(math.pi * step / steps)) / 2


def host_check_due(step: int, every: int = 16) -> bool:
    """Whether an attack should synchronise with the host at ``step`` (to see which samples are done).

    At steps 1, 2, 4, 8, ... and then every ``every`` steps: early checks let
    easy samples finish at once, later ones cost one sync per ``every`` steps.
    """
    return step > 0 and (step % every == 0 or step & (step - 1) == 0)
