"""The one error type for problems a user can fix.

A bad config, an unknown attack or model, a store that cannot be used, a
model or dataset that cannot be loaded: each raises
:class:`SparseBenchError` with a message that names the thing, the value
and what would work. The command line prints that message on one line and
exits 2; any other exception is a bug, and shows its traceback.

It subclasses ``ValueError``, so code that caught the ``ValueError`` these
problems raised before keeps working.
"""

from __future__ import annotations

__all__ = ["SparseBenchError"]


class SparseBenchError(ValueError):
    """A user-facing problem: the message says what is wrong and how to fix it."""
