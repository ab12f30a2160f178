"""SparseBench: a benchmark harness for sparse (L0) adversarial attacks.

``from bench import evaluate`` is the Python API (:mod:`bench.api`); it is
imported on first use, so that ``bench`` itself stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from bench.api import evaluate

        return evaluate
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
