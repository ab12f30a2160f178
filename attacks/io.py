"""Files that attacks and the harness share: SparseBench's cache folder and whole-or-nothing writes.

:func:`default_cache_dir` is the root of every cache (data, models, the learned
attacks' generators); :func:`atomic_write` is how each of them writes a file.
Both live here, in the lowest layer, so that an attack that caches what it
learns (``baselines.generators``) and the harness (``bench.data``,
``bench.cache``, which re-export them) use the same ones.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

__all__ = ["CACHE_ENV", "atomic_write", "default_cache_dir"]

CACHE_ENV = "SPARSEBENCH_CACHE"


def default_cache_dir() -> pathlib.Path:
    """Root of SparseBench's caches (data, models).

    Returns
    -------
    pathlib.Path
        ``$SPARSEBENCH_CACHE`` if set, else ``~/.cache/sparsebench``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "sparsebench"


def atomic_write(path: pathlib.Path, write: Callable[[pathlib.Path], object]) -> None:
    """Write ``path`` whole or not at all.

    ``write`` gets a temporary path beside ``path`` (``.<name>.<pid>.tmp``,
    same folder, so the rename stays on one file system) and writes the file
    there; it is then renamed over ``path`` with :func:`os.replace`. If
    ``write`` raises (``KeyboardInterrupt`` included), the temporary file is
    removed and ``path`` is as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
