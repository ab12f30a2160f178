"""Reports: tables, plots and checks computed from the results store.

``from reports import summarize`` turns per-sample rows (a run's, or
:func:`bench.evaluate`'s) into the report's summary table.
"""

from typing import Any

__all__ = ["summarize"]


def __getattr__(name: str) -> Any:
    if name == "summarize":
        # on first use: importing any reports module (the pytest plugin, loaded in every pytest session) runs
        # this file, which stays light
        from reports.tables import summarize

        return summarize
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
