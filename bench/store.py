"""The results store: one SQLite file per benchmark campaign.

Tables
------
runs
    One row per run: its config (JSON), seed, versions of the project, torch
    and each attack library, git commit and hardware.
units
    One row per (run, dataset, model, attack, mode): the attack's resolved
    hyperparameters, the samples planned and the batch size they run in.
samples
    One row per attacked sample: ids, label, target, the harness's verdict
    and sizes, passes, seconds and the peak device memory of its batch.
examples
    The adversarial example itself, stored as a change list against the
    clean input (indices and float32 values, zlib-compressed), or whole when
    most values changed. With the clean data it rebuilds the exact example,
    so transfer and re-checks need no re-run.

Every batch is written in one transaction: a run killed at any point keeps
whole batches only, and a resumed run redoes the batch that was cut off. The
primary keys make a duplicate row an error rather than a silent double count.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bench.errors import SparseBenchError

__all__ = ["ResultsStore", "SampleRow", "decode_example", "encode_example"]

SCHEMA_VERSION = 2
"""2 added ``units.batch_size`` and ``samples.peak_memory_mib``; a version-1 store is upgraded on opening."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created TEXT NOT NULL,
    finished TEXT,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    versions TEXT NOT NULL,
    git_commit TEXT,
    hardware TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    mode TEXT NOT NULL,
    attack_name TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    samples_planned INTEGER NOT NULL,
    candidates_seen INTEGER NOT NULL,
    clean_correct INTEGER NOT NULL,
    batch_size INTEGER,
    PRIMARY KEY (run_id, dataset, model, attack, mode)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    mode TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    input_sha1 TEXT NOT NULL,
    batch INTEGER NOT NULL,
    label INTEGER NOT NULL,
    target INTEGER,
    adversarial_prediction INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    violation TEXT NOT NULL,
    success INTEGER NOT NULL,
    l0_elements INTEGER NOT NULL,
    l0_pixels INTEGER NOT NULL,
    l1 REAL NOT NULL,
    l2 REAL NOT NULL,
    linf REAL NOT NULL,
    forward_passes REAL NOT NULL,
    backward_passes REAL NOT NULL,
    seconds REAL NOT NULL,
    peak_memory_mib REAL,
    PRIMARY KEY (run_id, dataset, model, attack, mode, sample_id)
);
CREATE TABLE IF NOT EXISTS examples (
    run_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    mode TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    shape TEXT NOT NULL,
    format TEXT NOT NULL,
    indices BLOB,
    "values" BLOB NOT NULL,
    PRIMARY KEY (run_id, dataset, model, attack, mode, sample_id)
);
"""

UNIT_KEY = ("dataset", "model", "attack", "mode")

_UPGRADES = {
    # from version: statements that bring a store of that version to the next
    1: ("ALTER TABLE units ADD COLUMN batch_size INTEGER", "ALTER TABLE samples ADD COLUMN peak_memory_mib REAL"),
}


@dataclass(frozen=True)
class SampleRow:
    """One attacked sample as stored (see the ``samples`` table)."""

    sample_id: str
    sample_index: int
    input_sha1: str
    batch: int
    label: int
    target: int | None
    adversarial_prediction: int
    valid: bool
    violation: str
    success: bool
    l0_elements: int
    l0_pixels: int
    l1: float
    l2: float
    linf: float
    forward_passes: float
    backward_passes: float
    seconds: float
    peak_memory_mib: float | None = None
    """Peak device memory allocated while the attack ran on this sample's batch (CUDA), None elsewhere."""


def encode_example(original: Tensor, adversarial: Tensor) -> tuple[str, bytes | None, bytes]:
    """Encode one adversarial example against its clean input.

    Returns ``(format, indices, values)``: ``"sparse"`` stores the flat
    indices (int32) and float32 values of the changed entries; ``"dense"``
    stores every value, which is smaller once more than half changed.
    """
    original = original.detach().cpu().float().flatten()
    adversarial = adversarial.detach().cpu().float().flatten()
    changed = torch.nonzero(adversarial != original).flatten()
    if 2 * changed.numel() <= adversarial.numel():
        indices = changed.to(torch.int32).numpy().tobytes()
        values = adversarial[changed].numpy().tobytes()
        return "sparse", zlib.compress(indices), zlib.compress(values)
    return "dense", None, zlib.compress(adversarial.numpy().tobytes())


def decode_example(original: Tensor, format: str, indices: bytes | None, values: bytes) -> Tensor:
    """Rebuild the adversarial example stored by :func:`encode_example`."""
    flat = original.detach().cpu().float().flatten().clone()
    data = torch.from_numpy(np.frombuffer(zlib.decompress(values), dtype=np.float32).copy())
    if format == "dense":
        return data.view(original.shape)
    if format != "sparse" or indices is None:
        raise SparseBenchError(f"format: {format!r} is not one of sparse, dense")
    where = torch.from_numpy(np.frombuffer(zlib.decompress(indices), dtype=np.int32).astype(np.int64))
    flat[where] = data
    return flat.view(original.shape)


_SAMPLE_COLUMNS = ("run_id", *UNIT_KEY, *(f.name for f in dataclasses.fields(SampleRow)))


class ResultsStore:
    """An SQLite results store at ``path`` (created with its folders if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._db:
            fresh = self._db.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone() is None
            self._db.executescript(_SCHEMA)
            if fresh:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        found = int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SparseBenchError(f"store: {self.path} has schema version {found}; this SparseBench reads "
                             f"{SCHEMA_VERSION} and older: upgrade SparseBench")
        with self._db:  # one transaction: a store is upgraded entirely or not at all
            while found < SCHEMA_VERSION:
                for statement in _UPGRADES[found]:
                    self._db.execute(statement)
                found += 1
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(found),))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    # runs ------------------------------------------------------------------
    def create_run(self, run_id: str, *, name: str, created: str, config: Mapping[str, Any], seed: int,
                   versions: Mapping[str, Any], git_commit: str | None, hardware: Mapping[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, name, created, config, seed, versions, git_commit, hardware) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, created, json.dumps(config, sort_keys=True), seed,
                 json.dumps(versions, sort_keys=True), git_commit, json.dumps(hardware, sort_keys=True)),
            )

    def finish_run(self, run_id: str, finished: str) -> None:
        with self._db:
            self._db.execute("UPDATE runs SET finished=? WHERE run_id=?", (finished, run_id))

    def update_hardware(self, run_id: str, hardware: Mapping[str, Any]) -> None:
        """Replace a run's hardware record (a distributed run adds its workers' when it ends)."""
        with self._db:
            self._db.execute("UPDATE runs SET hardware=? WHERE run_id=?", (json.dumps(hardware, sort_keys=True), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        cursor = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        run = dict(zip([c[0] for c in cursor.description], row))
        for key in ("config", "versions", "hardware"):
            run[key] = json.loads(run[key])
        return run

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT run_id, name, created, finished, seed, git_commit FROM runs ORDER BY created", self._db)

    def latest_run_id(self) -> str | None:
        row = self._db.execute("SELECT run_id FROM runs ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # units -----------------------------------------------------------------
    def put_unit(self, run_id: str, key: Sequence[str], *, attack_name: str, hyperparameters: Mapping[str, Any],
                 samples_planned: int, candidates_seen: int, clean_correct: int, batch_size: int | None = None) -> None:
        """Record a unit; a resumed run must find the same plan it made before.

        ``batch_size`` of a unit stored before schema 2 is unknown (NULL) and
        matches any.
        """
        row = (run_id, *key, attack_name, json.dumps(hyperparameters, sort_keys=True, default=repr),
               samples_planned, candidates_seen, clean_correct, batch_size)
        existing = self._db.execute(
            "SELECT attack_name, hyperparameters, samples_planned, candidates_seen, clean_correct, batch_size "
            "FROM units WHERE run_id=? AND dataset=? AND model=? AND attack=? AND mode=?", (run_id, *key)).fetchone()
        if existing is None:
            with self._db:
                self._db.execute(
                    "INSERT INTO units (run_id, dataset, model, attack, mode, attack_name, hyperparameters, "
                    "samples_planned, candidates_seen, clean_correct, batch_size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        elif tuple(existing[:5]) != row[5:10] or existing[5] not in (None, batch_size):
            raise RuntimeError(
                f"store: unit {'/'.join(key)} of run {run_id} was planned as {existing}, now {row[5:]}; "
                "the data, model or code changed since the run started: start a new run (--new-run)"
            )

    def unit_batch_size(self, run_id: str, key: Sequence[str]) -> int | None:
        """The batch size a stored unit was planned with (None: no such unit, or stored before schema 2)."""
        row = self._db.execute("SELECT batch_size FROM units WHERE run_id=? AND dataset=? AND model=? AND attack=? "
                               "AND mode=?", (run_id, *key)).fetchone()
        return None if row is None else row[0]

    def units(self, run_id: str) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM units WHERE run_id=?", self._db, params=(run_id,))

    # samples ---------------------------------------------------------------
    def done_batches(self, run_id: str, key: Sequence[str]) -> set[int]:
        rows = self._db.execute(
            "SELECT DISTINCT batch FROM samples WHERE run_id=? AND dataset=? AND model=? AND attack=? AND mode=?",
            (run_id, *key))
        return {r[0] for r in rows}

    def stored_batches(self, run_id: str) -> list[tuple[str, str, str, str, int]]:
        """``(dataset, model, attack, mode, batch)`` of every batch of the run in the store."""
        return [tuple(row) for row in self._db.execute(
            "SELECT DISTINCT dataset, model, attack, mode, batch FROM samples WHERE run_id=?", (run_id,))]

    def put_batch(self, run_id: str, key: Sequence[str], rows: Iterable[SampleRow],
                  examples: Iterable[tuple[str, list[int], str, bytes | None, bytes]]) -> None:
        """Write one batch's rows and examples in a single transaction."""
        with self._db:
            self._db.executemany(
                f"INSERT INTO samples ({', '.join(_SAMPLE_COLUMNS)}) VALUES ({', '.join('?' * len(_SAMPLE_COLUMNS))})",
                [(run_id, *key, *(getattr(r, name) for name in _SAMPLE_COLUMNS[5:])) for r in rows],
            )
            self._db.executemany(
                "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *key, sample_id, json.dumps(shape), fmt, indices, values)
                 for sample_id, shape, fmt, indices, values in examples],
            )

    def samples(self, run_id: str | None = None) -> pd.DataFrame:
        """Per-sample rows, of one run or of all."""
        if run_id is None:
            return pd.read_sql_query("SELECT * FROM samples", self._db)
        return pd.read_sql_query("SELECT * FROM samples WHERE run_id=?", self._db, params=(run_id,))

    def examples(self, run_id: str, key: Sequence[str] | None = None) -> Iterator[tuple[tuple[str, ...], str, str, str, bytes | None, bytes]]:
        """Stored examples: ``(unit key, sample_id, format, shape, indices, values)``."""
        query = "SELECT dataset, model, attack, mode, sample_id, format, shape, indices, \"values\" FROM examples WHERE run_id=?"
        params: tuple[Any, ...] = (run_id,)
        if key is not None:
            query += " AND dataset=? AND model=? AND attack=? AND mode=?"
            params += tuple(key)
        for row in self._db.execute(query + " ORDER BY dataset, model, attack, mode, sample_id", params):
            yield tuple(row[:4]), row[4], row[5], row[6], row[7], row[8]
