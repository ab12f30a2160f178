"""Step-size schedules that attacks share."""

from __future__ import annotations

import math

__all__ = ["cosine_annealing"]


def cosine_annealing(initial: float, final: float, step: int, steps: int) -> float:
    """``initial`` at ``step = 0`` to ``final`` at ``step = steps`` along half a cosine."""
    return final + (initial - final) * (1 + math.cos(math.pi * step / steps)) / 2
