"""A store that cannot be used: one line naming it, exit 2, no traceback, and the file as it was.

Reading commands (runs, report, leaderboard, transfer, baseline, check, interpret) open the store read-only
(SQLite ``mode=ro``: no schema, no upgrade, no journal mode) and read what they can; ``run`` refuses a store
it cannot write safely before it writes anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import parse_config
from bench.errors import SparseBenchError
from bench.runner import run_benchmark
from bench.store import ResultsStore

CONFIG = {"name": "faults", "seed": 1, "n_samples": 6, "batch_size": 3, "budgets": [1, 10], "modes": ["untargeted"],
          "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
          "attacks": [{"name": "i-fgsm", "overrides": {"steps": 3}}]}
CONFIG_TOML = ('name = "faults"\nn_samples = 6\nbatch_size = 3\n[[datasets]]\nname = "fashion-mnist"\n'
               'models = ["smallcnn-standard"]\n[[attacks]]\nname = "i-fgsm"\n')


@pytest.fixture(scope="module")
def good(tmp_path_factory, tiny_model):
    """A real store of one small run, a baseline of it and a config: ``(store, baseline, config)``."""
    directory = tmp_path_factory.mktemp("good")
    store = directory / "good.sqlite"
    with ResultsStore(store) as results:
        run_benchmark(parse_config(CONFIG), results, load_model=lambda *_: tiny_model, progress=False)
    baseline = directory / "baseline.toml"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["baseline", "--store", str(store), "--out", str(baseline)]) == 0
    config = directory / "c.toml"
    config.write_text(CONFIG_TOML)
    return store, baseline, config


def _commands(store: Path, baseline: Path, config: Path, out: Path, *, models: bool = True) -> dict[str, list[str]]:
    """Every command that opens the store, by name. ``models``: also those that load models once the store
    opens (transfer, interpret, run), for stores that cannot open."""
    s, o = str(store), str(out)
    commands = {
        "runs": ["runs", "--store", s],
        "report": ["report", "--store", s, "--out", o],
        "leaderboard": ["leaderboard", "--store", s, "--out", o],
        "baseline": ["baseline", "--store", s, "--out", str(out / "baseline.toml")],
        "check": ["check", "--baseline", str(baseline), "--store", s],
    }
    if models:
        commands["transfer"] = ["transfer", "--store", s, "--out", o]
        if importlib.util.find_spec("pytorch_grad_cam") is not None:
            commands["interpret"] = ["interpret", "--store", s, "--out", o, "--attack", "i-fgsm",
                                     "--model", "smallcnn-standard"]
        commands["run"] = ["run", "--config", str(config), "--store", s, "--out", o, "--no-progress"]
    return commands


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _state(path: Path):
    """What must not change: a file's bytes and mtime, or a folder's listing."""
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    return path.read_bytes(), path.stat().st_mtime_ns


def _assert_one_line_error(code: int, err: str, store: Path, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("sparsebench: error: store: ") and str(store) in lines[0], err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], err


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupted(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100:1100] = bytes(range(256)) * 3 + bytes(232)  # page 1: the schema's own b-tree
    path.write_bytes(bytes(data))


def _not_sqlite(path: Path) -> None:
    path.write_text("dataset,model,attack\n" * 200)


def _meta_deleted(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM meta")


def _a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage, words", [
    (_truncated, ["damaged"]),
    (_corrupted, ["damaged"]),
    (_not_sqlite, ["not an SQLite file"]),
    (_meta_deleted, ["no schema version", "meta row is missing"]),
    (_a_folder, ["is a folder"]),
], ids=["truncated", "corrupted", "not-sqlite", "meta-row-deleted", "a-folder"])
def test_an_unusable_store_is_one_line_and_left_untouched(tmp_path, good, damage, words):
    store = tmp_path / "s.sqlite"
    shutil.copy(good[0], store)
    damage(store)
    before = _state(store)
    for name, argv in _commands(store, good[1], good[2], tmp_path / "out").items():
        code, _, err = _cli(argv)
        _assert_one_line_error(code, err, store, *words)
        assert _state(store) == before, f"{name} changed the store"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == ["s.sqlite"]  # nothing beside it


def test_a_store_damaged_past_its_runs_lists_them_but_nothing_more(tmp_path, good):
    """Reading commands read what they can: the runs table of a store whose samples are garbage."""
    store = tmp_path / "s.sqlite"
    shutil.copy(good[0], store)
    with contextlib.closing(sqlite3.connect(store)) as db:
        page = db.execute("SELECT rootpage FROM sqlite_master WHERE name='samples'").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(store.read_bytes())
    data[(page - 1) * size: page * size] = b"\xff" * size
    store.write_bytes(bytes(data))
    before = _state(store)
    commands = _commands(store, good[1], good[2], tmp_path / "out")
    code, out, _ = _cli(commands.pop("runs"))
    assert code == 0 and "faults-" in out
    for name, argv in commands.items():
        code, _, err = _cli(argv)
        _assert_one_line_error(code, err, store, "damaged")
        assert _state(store) == before, f"{name} changed the store"


def test_reading_a_missing_store_creates_nothing(tmp_path, good):
    store = tmp_path / "typo" / "dir" / "x.sqlite"
    for name, argv in _commands(store, good[1], good[2], tmp_path / "out").items():
        if name == "run":
            continue
        code, _, err = _cli(argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err, (name, err)
        assert not (tmp_path / "typo").exists(), f"{name} created folders"
    with pytest.raises(SparseBenchError, match="does not exist"):
        ResultsStore(store, readonly=True)
    assert not (tmp_path / "typo").exists()
    # The real command line, in its own process: one line on stderr, exit 2.
    done = subprocess.run([sys.executable, "-m", "bench.cli", "runs", "--store", "typo/dir/x.sqlite"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "x.sqlite does not exist" in done.stderr
    assert not (tmp_path / "typo").exists()


def _read_commands_work_and_leave_it(store: Path, good, out: Path) -> None:
    before = _state(store)
    for name, argv in _commands(store, good[1], good[2], out, models=False).items():
        code, stdout, err = _cli(argv)
        assert code == 0 and "Traceback" not in err, (name, err)
        assert _state(store) == before, f"{name} changed the store"
    assert "faults-" in _cli(["runs", "--store", str(store)])[1]


def test_reading_an_old_schema_store_does_not_upgrade_it(tmp_path, good):
    store = tmp_path / "old.sqlite"
    shutil.copy(good[0], store)
    with contextlib.closing(sqlite3.connect(store)) as db, db:  # back to schema 1, as tests/test_speed.py does
        db.execute("ALTER TABLE units DROP COLUMN batch_size")
        db.execute("ALTER TABLE samples DROP COLUMN peak_memory_mib")
        db.execute("ALTER TABLE samples DROP COLUMN git_commit")
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    _read_commands_work_and_leave_it(store, good, tmp_path / "out")
    with ResultsStore(store, readonly=True) as results:  # read as the current schema, through temporary views
        assert results.samples()["peak_memory_mib"].isna().all() and results.samples()["git_commit"].isna().all()
    with ResultsStore(store), contextlib.closing(sqlite3.connect(store)) as db:  # a writing open upgrades it
        assert db.execute("SELECT value FROM meta").fetchone()[0] == "3"


def test_reading_a_rollback_journal_store_does_not_switch_it_to_wal(tmp_path, good):
    store = tmp_path / "journal.sqlite"
    shutil.copy(good[0], store)
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA journal_mode=DELETE").fetchone()
    _read_commands_work_and_leave_it(store, good, tmp_path / "out")


# read-only files and folders ---------------------------------------------------------------------------

_SCRIPT = """
import contextlib, io, json, sys, traceback
from bench.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException:
            traceback.print_exc()
            code = "raised"
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


_MOUNT_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0"'


def _unshare_works(folder: Path) -> bool:
    """Whether this process may bind-mount ``folder`` read-only in a private mount namespace (and it then is)."""
    if shutil.which("unshare") is None:
        return False
    folder.mkdir(exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", _MOUNT_READ_ONLY + ' && ! touch "$0/probe" 2>/dev/null',
                            str(folder)], capture_output=True, timeout=30)
    return probe.returncode == 0 and not (folder / "probe").exists()


def _run_read_only(made_read_only: Path, commands: list[list[str]]) -> list[list]:
    """Run the commands in a process that cannot write ``made_read_only`` (a file or a folder).

    Not root: permissions (chmod). Root writes whatever the permissions say, so there the commands run in
    a private mount namespace (``unshare``) where ``made_read_only`` is bind-mounted read-only (EROFS).
    """
    argv = [sys.executable, "-c", _SCRIPT, json.dumps(commands)]
    if os.geteuid() != 0:
        mode = made_read_only.stat().st_mode
        made_read_only.chmod(0o555 if made_read_only.is_dir() else 0o444)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        finally:
            made_read_only.chmod(mode)
    else:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", _MOUNT_READ_ONLY + ' && exec "$@"', str(made_read_only),
                               *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("what", ["file", "folder"])
def test_reading_commands_read_a_read_only_store(tmp_path, good, what):
    if os.geteuid() == 0 and not _unshare_works(tmp_path / "probe"):
        pytest.skip("running as root, which writes read-only files, and no `unshare` to mount them read-only")
    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "s.sqlite"
    shutil.copy(good[0], store)
    before = _state(store)
    commands = _commands(store, good[1], good[2], tmp_path / "out", models=False)
    results = _run_read_only(store if what == "file" else folder, list(commands.values()))
    for name, (code, out, err) in zip(commands, results):
        assert code == 0 and "Traceback" not in err, (name, err)
    assert "faults-" in results[0][1]  # runs listed the run
    assert _state(store) == before


@pytest.mark.parametrize("what", ["file", "folder"])
def test_run_on_a_read_only_store_is_one_line(tmp_path, good, what):
    if os.geteuid() == 0 and not _unshare_works(tmp_path / "probe"):
        pytest.skip("running as root, which writes read-only files, and no `unshare` to mount them read-only")
    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "s.sqlite"
    shutil.copy(good[0], store)
    before = _state(store)
    run = _commands(store, good[1], good[2], tmp_path / "out")["run"]
    [(code, _, err)] = _run_read_only(store if what == "file" else folder, [run])
    _assert_one_line_error(code, err, store, "read-only")
    assert _state(store) == before
