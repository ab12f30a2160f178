"""Output paths built from names that come from configs and stores, kept inside their folder."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import SparseBenchError

__all__ = ["DEFAULT_OUT", "inside"]

DEFAULT_OUT = Path("results")
"""Where the commands write tables, figures and reports by default: one subfolder per run (``--out``)."""


def inside(root: str | os.PathLike[str], *parts: str | os.PathLike[str]) -> Path:
    """``root / parts...``, refused unless it lies inside ``root``.

    ``parts`` are names a config or a results store supplies (a run id, a
    config name, a label): one that is absolute, climbs out with ``..`` or
    passes through a symbolic link that leads out of ``root`` raises
    :class:`SparseBenchError`, before anything is written. Both sides are
    compared resolved (links followed); the path returned is ``root`` as
    given joined with the normalised part below it.
    """
    root = Path(root)
    try:
        base = root.resolve()
        target = base.joinpath(*parts).resolve()
    except (OSError, ValueError, RuntimeError) as error:  # a NUL byte, a link loop
        raise SparseBenchError(f"output path: {'/'.join(map(str, parts))!r} under {str(root)!r} is not a usable "
                               f"path ({error})") from None
    if not target.is_relative_to(base):
        raise SparseBenchError(f"output path: {'/'.join(map(str, parts))!r} would write to {str(target)!r}, "
                               f"outside --out {str(root)!r}; a run id or name must not be absolute, hold '..' or lead out "
                               "through a link")
    return root.joinpath(target.relative_to(base))
