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
claims
    Which process is attacking which batch, so that several processes (and
    Ray drivers) can share one store: see :meth:`ResultsStore.claim_batch`.

Every batch is written in one transaction: a run killed at any point keeps
whole batches only, and a resumed run redoes the batch that was cut off. The
primary keys make a duplicate row an error rather than a silent double count;
:meth:`ResultsStore.put_batch` skips a batch that is already stored, so two
processes that both attacked a batch store it once.

Concurrency: a process *claims* a batch before attacking it
(:meth:`ResultsStore.claim_batch`, one ``BEGIN IMMEDIATE`` transaction) and
skips batches that are stored or claimed by another live process. A claim
whose owner is gone can be taken over, so a killed process loses no batch:

* an owner on this host is gone when its pid is not running, is a zombie, or
  (Linux) now belongs to a process that started at another time (a reused pid);
* an owner on another host (or, without ``/proc``, a live pid) is presumed
  gone when its heartbeat is older than ``claim_expiry`` seconds (default
  :data:`CLAIM_EXPIRY_S`); an owner refreshes the heartbeat of all its claims
  whenever it claims or stores a batch, so only a single batch that runs
  longer than that can be taken over while it still runs, and then it is
  stored once all the same.

Read-only use: ``ResultsStore(path, readonly=True)`` opens the file with
SQLite's ``mode=ro`` and writes nothing (no schema, no upgrade, no journal
mode); an older schema is read through temporary views. Every reading
command opens its store so. Problems with the file itself (missing,
a folder, not SQLite, damaged, not a SparseBench store, read-only for a
writing command) raise :class:`~bench.errors.SparseBenchError` naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import socket
import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bench.errors import SparseBenchError

__all__ = ["CLAIM_EXPIRY_S", "DEFAULT_STORE", "ResultsStore", "SampleRow", "decode_example", "encode_example",
           "open_run"]

DEFAULT_STORE = Path("results") / "sparsebench.sqlite"
"""The results store the commands read and write by default (``--store``)."""

SCHEMA_VERSION = 3
"""2 added ``units.batch_size`` and ``samples.peak_memory_mib``; 3 added ``samples.git_commit`` (the code that
wrote each row). An older store is upgraded when a writing command opens it (a reading one reads it as it is).

The ``claims`` table needs no version: it only coordinates writers, a writing open adds it when missing
(``CREATE TABLE IF NOT EXISTS``), readers never read it, and an older SparseBench ignores it."""

CLAIM_EXPIRY_S = 3600.0
"""Seconds without a heartbeat after which a claim whose owner cannot be checked (another host) is stale."""

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
    git_commit TEXT,
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

_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    mode TEXT NOT NULL,
    batch INTEGER NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (run_id, dataset, model, attack, mode, batch)
)
"""

class UnitKey(NamedTuple):
    """What identifies a unit of a run: one attack, in one mode, on one model of one dataset."""

    dataset: str
    model: str
    attack: str
    """The attack's label in the config."""
    mode: str


UNIT_KEY = UnitKey._fields
"""The unit key's column names, in the store's tables and in every per-sample frame."""

_UPGRADES = {
    # from version: statements that bring a store of that version to the next
    1: ("ALTER TABLE units ADD COLUMN batch_size INTEGER", "ALTER TABLE samples ADD COLUMN peak_memory_mib REAL"),
    2: ("ALTER TABLE samples ADD COLUMN git_commit TEXT",),
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
    git_commit: str | None = None
    """The commit of the code that attacked this sample's batch (:func:`bench.provenance.git_commit`)."""


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


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


_IDENTITY: dict[int, tuple[str, str, int, str | None]] = {}


def _identity() -> tuple[str, str, int, str | None]:
    """This process as a claim owner: ``(token, host, pid, start)``; a forked child gets its own."""
    pid = os.getpid()
    if pid not in _IDENTITY:
        _IDENTITY.clear()
        _IDENTITY[pid] = (uuid.uuid4().hex, socket.gethostname(), pid, _process_start(pid))
    return _IDENTITY[pid]


def _owner_gone(pid: int, start: str | None) -> bool | None:
    """Whether process ``pid`` of this host (started at ``start``) has ended: True, False, or None (cannot tell)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: running, as another user
        pass
    if _process_state(pid) in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    now = _process_start(pid)
    if now is None or start is None:
        return None  # alive by its pid, but no /proc to tell a reused pid
    return now != start


_SQLITE_HINTS = (
    ("file is not a database", "is not an SQLite file (or is damaged)"),
    ("malformed", "is damaged (truncated or corrupted)"),
    ("readonly database", "is read-only (the file or its folder cannot be written)"),
    ("unable to open", "cannot be opened (check the file, its folder and their permissions)"),
    ("locked", "is locked by another process"),
    ("disk i/o error", "could not be read or written (disk I/O error)"),
    ("no such table", "is not a complete SparseBench store"),
    ("no such column", "is not a complete SparseBench store"),
)


def _sqlite_cause(error: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite error behind ``error`` (pandas wraps them) when it is about the file, not a misuse of the API."""
    if isinstance(error, pd.errors.DatabaseError):
        error = error.__cause__
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
        return error
    return None


class ResultsStore:
    """An SQLite results store at ``path``.

    Writing (the default): created with its folders if missing; an older schema is upgraded. With
    ``readonly=True`` the file must exist and be a SparseBench store; it is opened with SQLite's
    ``mode=ro`` and never written (no schema, no upgrade, no journal mode). ``claim_expiry``: see the
    module's notes on concurrency. A file that cannot be used raises :class:`SparseBenchError` naming it.
    """

    _db: sqlite3.Connection  # set by _open_readonly or _open_writing: unset only while __init__ fails

    def __init__(self, path: str | Path, *, readonly: bool = False, claim_expiry: float = CLAIM_EXPIRY_S) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.claim_expiry = claim_expiry
        memory = str(path) == ":memory:"
        if not memory and self.path.is_dir():
            raise SparseBenchError(f"store: {self.path} is a folder, not a store file; give the path of a "
                                   f".sqlite file (e.g. {self.path / 'sparsebench.sqlite'})")
        try:
            if readonly:
                self._open_readonly(memory)
            else:
                self._open_writing(memory)
        except BaseException as error:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            if _sqlite_cause(error) is not None:
                raise self._error(error) from error
            raise

    def _error(self, error: BaseException) -> SparseBenchError:
        """A one-line :class:`SparseBenchError` naming the store, for an SQLite error about the file."""
        cause = _sqlite_cause(error) or error
        text = " ".join(str(cause).split())
        hint = next((h for needle, h in _SQLITE_HINTS if needle in text.lower()), "cannot be used")
        return SparseBenchError(f"store: {self.path} {hint}: {text}")

    def _schema_version(self) -> int | None:
        """The store's schema version, None for an empty database; raises unless it is a SparseBench store."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables:
            raise SparseBenchError(f"store: {self.path} is an SQLite file but not a SparseBench store "
                                   f"(no meta table; it holds {', '.join(sorted(tables))})")
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise SparseBenchError(f"store: {self.path} has no schema version (its meta row is "
                                   f"{'missing' if row is None else repr(row[0])}): it is damaged, or not a "
                                   "SparseBench store")
        found = int(row[0])
        if found > SCHEMA_VERSION:
            raise SparseBenchError(f"store: {self.path} has schema version {found}; this SparseBench reads "
                             f"{SCHEMA_VERSION} and older: upgrade SparseBench")
        return found

    def _open_readonly(self, memory: bool) -> None:
        if memory:
            raise SparseBenchError("store: ':memory:' cannot be opened read-only: it is always empty")
        if not self.path.exists():
            raise SparseBenchError(f"store: {self.path} does not exist; run `sparsebench run` first")
        uri = self.path.resolve().as_uri()
        try:
            self._db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60)
            self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as error:
            if "unable to open" not in str(error) or os.access(self.path.parent, os.W_OK):
                raise
            # A store in WAL mode in a folder that cannot be written: SQLite cannot make the shared-memory
            # file it reads through, and no writer can be at work there either. Read the file as it is.
            if getattr(self, "_db", None) is not None:
                self._db.close()
            self._db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=60)
        found = self._schema_version()
        if found is None:
            raise SparseBenchError(f"store: {self.path} is empty, not a SparseBench store; run `sparsebench run` "
                                   "first")
        views: dict[str, list[str]] = {}
        for version in range(found, SCHEMA_VERSION):  # an older store, read as the current schema
            for statement in _UPGRADES[version]:
                added = re.fullmatch(r"ALTER TABLE (\w+) ADD COLUMN (\w+) .*", statement)
                if added:
                    views.setdefault(added.group(1), []).append(added.group(2))
        for table, columns in views.items():  # TEMP objects live outside the file and shadow its tables
            self._db.execute(f"CREATE TEMP VIEW {table} AS SELECT *, "
                             f"{', '.join(f'NULL AS {c}' for c in columns)} FROM main.{table}")
        self._db.execute("PRAGMA query_only=ON")

    def _open_writing(self, memory: bool) -> None:
        if not memory:
            folder = self.path.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SparseBenchError(f"store: cannot create the folder {folder} of {self.path}: "
                                       f"{error.strerror or error}") from None
            if not os.access(folder, os.W_OK | os.X_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
                raise SparseBenchError(f"store: {self.path} is read-only (the file or its folder {folder} cannot be "
                                       "written), and this command writes to its store: make it writable, or "
                                       "give another --store")
        self._db = sqlite3.connect(self.path, timeout=60)
        if self._schema_version() is not None:  # refuse a file that is not a store, or damaged, before writing to it
            problem = " ".join(str(self._db.execute("PRAGMA quick_check(1)").fetchone()[0]).split())
            if problem != "ok":
                raise SparseBenchError(f"store: {self.path} is damaged (truncated or corrupted): {problem}; "
                                       "writing to it would lose more: give another --store (reading commands "
                                       "still read what they can)")
        if not memory:
            self._journal_mode_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._db:  # one transaction, under the write lock: a store is created or upgraded entirely or not at all
            self._db.execute("BEGIN IMMEDIATE")
            found = self._schema_version()  # again: another process may have created or upgraded it meanwhile
            if found is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                found = SCHEMA_VERSION
            while found < SCHEMA_VERSION:
                for statement in _UPGRADES[found]:
                    self._db.execute(statement)
                found += 1
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(found),))
            self._db.execute(_CLAIMS)

    def _journal_mode_wal(self) -> None:
        """WAL (readers never wait for the writer); switching needs a moment alone with the file: retry."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL").fetchone()
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self._db is not None:
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
                   versions: Mapping[str, Any], git_commit: str | None, hardware: Mapping[str, Any],
                   exist_ok: bool = False) -> bool:
        """Add a run; with ``exist_ok`` a run already there (another process made it) is kept as it is.

        Returns whether this call added it (one atomic insert: of processes racing, exactly one does).
        """
        with self._db:
            cursor = self._db.execute(
                f"INSERT {'OR IGNORE ' if exist_ok else ''}INTO runs "
                "(run_id, name, created, config, seed, versions, git_commit, hardware) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, created, json.dumps(config, sort_keys=True), seed,
                 json.dumps(versions, sort_keys=True), git_commit, json.dumps(hardware, sort_keys=True)),
            )
        return cursor.rowcount == 1

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
        with self._db:  # insert unless there (another process may be recording the same unit), then compare
            self._db.execute(
                "INSERT OR IGNORE INTO units (run_id, dataset, model, attack, mode, attack_name, hyperparameters, "
                "samples_planned, candidates_seen, clean_correct, batch_size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        existing = self._db.execute(
            "SELECT attack_name, hyperparameters, samples_planned, candidates_seen, clean_correct, batch_size "
            "FROM units WHERE run_id=? AND dataset=? AND model=? AND attack=? AND mode=?", (run_id, *key)).fetchone()
        if tuple(existing[:5]) != row[5:10] or existing[5] not in (None, batch_size):
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
                  examples: Iterable[tuple[str, list[int], str, bytes | None, bytes]]) -> bool:
        """Write one batch's rows and examples in a single transaction, unless the batch is already stored.

        Returns whether it wrote them: a batch that another process stored first is skipped whole (its claim,
        if any, is dropped either way).
        """
        rows, examples = list(rows), list(examples)
        batches = sorted({r.batch for r in rows})
        if not batches:
            return False
        unit = (run_id, *key)
        marks = ", ".join("?" * len(batches))
        where = f"run_id=? AND dataset=? AND model=? AND attack=? AND mode=? AND batch IN ({marks})"
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # the check and the insert under one write lock
            if self._has_claims():
                self._db.execute(f"DELETE FROM claims WHERE {where}", (*unit, *batches))
                self._db.execute("UPDATE claims SET claimed_at=? WHERE owner=?", (time.time(), _identity()[0]))
            if self._db.execute(f"SELECT 1 FROM samples WHERE {where} LIMIT 1", (*unit, *batches)).fetchone():
                return False
            self._db.executemany(
                f"INSERT INTO samples ({', '.join(_SAMPLE_COLUMNS)}) VALUES ({', '.join('?' * len(_SAMPLE_COLUMNS))})",
                [(*unit, *(getattr(r, name) for name in _SAMPLE_COLUMNS[5:])) for r in rows],
            )
            self._db.executemany(
                "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*unit, sample_id, json.dumps(shape), fmt, indices, values)
                 for sample_id, shape, fmt, indices, values in examples],
            )
        return True

    # claims ----------------------------------------------------------------
    def _has_claims(self) -> bool:
        """Whether the file has the claims table (a writing open adds it; a read-only one may lack it)."""
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='claims'").fetchone() is not None

    def _claim_is_stale(self, host: str, pid: int, pid_start: str | None, claimed_at: float) -> bool:
        _, my_host, my_pid, my_start = _identity()
        if host == my_host and pid == my_pid and pid_start == my_start:
            return True  # this very process, before it re-executed or reloaded this module
        if host == my_host:
            gone = _owner_gone(pid, pid_start)
            if gone is not None:
                return gone
        return time.time() - claimed_at > self.claim_expiry

    def claim_batch(self, run_id: str, key: Sequence[str], batch: int) -> bool:
        """Claim a batch for this process: True when it may attack it now.

        False when the batch is stored, or another process that is still alive holds it (see the module's
        notes for when an owner counts as gone). Claiming also refreshes the heartbeat of this process's
        other claims. One ``BEGIN IMMEDIATE`` transaction: of processes racing for a batch, one gets it.
        """
        token, host, pid, start = _identity()
        unit = (run_id, *key, batch)
        where = "run_id=? AND dataset=? AND model=? AND attack=? AND mode=? AND batch=?"
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute(f"SELECT 1 FROM samples WHERE {where} LIMIT 1", unit).fetchone():
                return False
            held = self._db.execute(f"SELECT owner, host, pid, pid_start, claimed_at FROM claims WHERE {where}",
                                    unit).fetchone()
            if held is not None and held[0] != token and not self._claim_is_stale(*held[1:]):
                return False
            now = time.time()
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (*unit, token, host, pid, start, now))
            self._db.execute("UPDATE claims SET claimed_at=? WHERE owner=?", (now, token))
        return True

    def release_claims(self, run_id: str) -> None:
        """Drop this process's claims on a run (when it stops early, so that others need not wait for them)."""
        if self.readonly or not self._has_claims():
            return
        with self._db:
            self._db.execute("DELETE FROM claims WHERE run_id=? AND owner=?", (run_id, _identity()[0]))

    def samples(self, run_id: str | None = None) -> pd.DataFrame:
        """Per-sample rows, of one run or of all."""
        if run_id is None:
            return pd.read_sql_query("SELECT * FROM samples", self._db)
        return pd.read_sql_query("SELECT * FROM samples WHERE run_id=?", self._db, params=(run_id,))

    def run_samples(self, run_id: str) -> pd.DataFrame:
        """One run's rows; :class:`SparseBenchError` saying so plainly when it has none yet."""
        rows = self.samples(run_id)
        if rows.empty:
            raise SparseBenchError(f"run {run_id} in {self.path} has no samples yet: it stopped before its first "
                                   "batch was stored; run its config again to resume it")
        return rows

    def examples(self, run_id: str, key: Sequence[str] | None = None) -> Iterator[tuple[tuple[str, ...], str, str, str, bytes | None, bytes]]:
        """Stored examples: ``(unit key, sample_id, format, shape, indices, values)``."""
        query = "SELECT dataset, model, attack, mode, sample_id, format, shape, indices, \"values\" FROM examples WHERE run_id=?"
        params: tuple[Any, ...] = (run_id,)
        if key is not None:
            query += " AND dataset=? AND model=? AND attack=? AND mode=?"
            params += tuple(key)
        for row in self._db.execute(query + " ORDER BY dataset, model, attack, mode, sample_id", params):
            yield tuple(row[:4]), row[4], row[5], row[6], row[7], row[8]


def _naming_the_store(method):
    """Wrap a store method: an SQLite error about the file becomes a :class:`SparseBenchError` naming it."""
    if method.__name__ == "examples":  # a generator: its rows are read as they are consumed
        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
                if _sqlite_cause(error) is None:
                    raise
                raise self._error(error) from error
        return generator

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
            if _sqlite_cause(error) is None:
                raise
            raise self._error(error) from error
    return wrapper


for _name in ("create_run", "finish_run", "update_hardware", "get_run", "runs", "latest_run_id", "put_unit",
              "unit_batch_size", "units", "done_batches", "stored_batches", "put_batch", "claim_batch",
              "release_claims", "samples", "examples"):
    setattr(ResultsStore, _name, _naming_the_store(getattr(ResultsStore, _name)))
del _name


def open_run(store_path: str | Path, run: str | None) -> tuple[ResultsStore, str]:
    """The store at ``store_path``, opened read-only, and a run id in it (default: its latest run).

    Raises :class:`SparseBenchError` when the file does not exist, holds no such run (or no run), or the
    run's samples cannot be read; the store is closed then. The caller closes it otherwise
    (``with store: ...``).
    """
    if not Path(store_path).exists():
        raise SparseBenchError(f"--store: {store_path} does not exist; run `sparsebench run` first")
    store = ResultsStore(store_path, readonly=True)
    run_id = run or store.latest_run_id()
    if run_id is None or store.get_run(run_id) is None:
        store.close()
        raise SparseBenchError(f"--run: {run!r} is not in {store_path}" if run else f"--store: {store_path} holds no run")
    try:
        store.run_samples(run_id)
    except SparseBenchError:
        store.close()
        raise
    return store, run_id
