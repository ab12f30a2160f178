"""Several processes on one results store: each batch is claimed or skipped, written once, never lost.

The workers are real processes running this file (``python tests/test_concurrency.py STORE GO``): each
trains the same tiny model, waits at a barrier so that all start the run at the same moment, runs
:func:`bench.runner.run_benchmark` on the shared SQLite file and prints how many batches it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.config import parse_config
from bench.provenance import git_commit, versions
from bench.runner import run_benchmark
from bench.store import ResultsStore, SampleRow, _process_start

TESTS = Path(__file__).parent
KEY = ["dataset", "model", "attack", "mode", "sample_id"]
VOLATILE = ["seconds", "peak_memory_mib"]  # timing differs between any two runs
CONFIG = {
    "name": "shared", "seed": 5, "n_samples": 12, "batch_size": 2,
    "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
    "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.2, "alpha": 0.002, "steps": 300}}],
}
BATCHES = 2 * 6  # 2 modes x 12 samples in batches of 2


def worker(store_path: str, go: str) -> None:
    import torch
    from tiny import train_linear

    torch.set_num_threads(1)  # as the suite (tests/conftest.py)
    model = train_linear(n=1000, steps=60)
    Path(f"{go}.ready.{os.getpid()}").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    wrote = []
    with ResultsStore(store_path) as store:
        put = store.put_batch

        def counting_put(run_id, key, rows, examples):
            rows = list(rows)
            written = put(run_id, key, rows, examples)
            if written is not False:
                wrote.append([*key, rows[0].batch])
            return written

        store.put_batch = counting_put
        run_benchmark(parse_config(CONFIG), store, load_model=lambda *_: model, progress=False)
    print(json.dumps({"pid": os.getpid(), "wrote": wrote}))


def _start(store: Path, go: Path, n: int) -> list[subprocess.Popen]:
    processes = [subprocess.Popen([sys.executable, __file__, str(store), str(go)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + 120
    while len(list(go.parent.glob(f"{go.name}.ready.*"))) < n:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
            [p.communicate() for p in processes if p.poll() is not None]
        time.sleep(0.02)
    go.touch()  # all at once: they race for the run's record, its units and its batches
    return processes


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same benchmark run by a single process."""
    from tiny import train_linear

    model = train_linear(n=1000, steps=60)
    store = ResultsStore(tmp_path_factory.mktemp("single") / "single.sqlite")
    run_id = run_benchmark(parse_config(CONFIG), store, load_model=lambda *_: model, progress=False)
    yield store, run_id
    store.close()


def _assert_same_as_single_process(path: Path, reference) -> None:
    ref_store, ref_id = reference
    with ResultsStore(path, readonly=True) as store:
        assert store.runs()["run_id"].tolist() == [ref_id]  # one run, not one per process
        rows = store.samples(ref_id)
        assert len(rows) == 24 and not rows.duplicated(KEY).any()  # every row exactly once
        ordered = rows.drop(columns=VOLATILE).sort_values(KEY).reset_index(drop=True)
        expected = ref_store.samples(ref_id).drop(columns=VOLATILE).sort_values(KEY).reset_index(drop=True)
        pd.testing.assert_frame_equal(ordered, expected)
        assert list(store.examples(ref_id)) == list(ref_store.examples(ref_id))
        pd.testing.assert_frame_equal(store.units(ref_id), ref_store.units(ref_id))
        assert store.get_run(ref_id)["finished"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim ended with its batch


def test_three_processes_share_one_store_and_write_each_batch_once(tmp_path, reference):
    store = tmp_path / "shared.sqlite"
    processes = _start(store, tmp_path / "go", 3)
    outputs = [p.communicate(timeout=240) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert "Traceback" not in err
    wrote = [json.loads(out.splitlines()[-1])["wrote"] for out, _ in outputs]
    assert sum(len(w) for w in wrote) == BATCHES  # each batch written by exactly one process
    assert len({tuple(b) for w in wrote for b in w}) == BATCHES
    assert sum(1 for w in wrote if w) >= 2, wrote  # they did share the work
    _assert_same_as_single_process(store, reference)


def test_a_process_killed_holding_a_claim_loses_no_batch(tmp_path, reference):
    """One of two workers is killed while it holds a claim; the other takes the batch over and finishes."""
    store = tmp_path / "shared.sqlite"
    victim, survivor = _start(store, tmp_path / "go", 2)
    deadline = time.monotonic() + 120
    held = None

    def victims_claim():
        try:
            with contextlib.closing(sqlite3.connect(store, timeout=5)) as db:
                return db.execute("SELECT mode, batch FROM claims WHERE pid=?", (victim.pid,)).fetchone()
        except sqlite3.OperationalError:  # the claims table is not made yet
            return None

    while held is None and time.monotonic() < deadline and victim.poll() is None:
        if victims_claim() is not None:
            victim.send_signal(signal.SIGSTOP)  # frozen, its claim cannot end before the kill
            held = victims_claim()
            if held is None:
                victim.send_signal(signal.SIGCONT)
        if held is None:
            time.sleep(0.005)
    assert held is not None, "the victim finished before it could be killed holding a claim"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    out, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err
    assert list(held) in [b[3:] for b in json.loads(out.splitlines()[-1])["wrote"]]  # taken over
    _assert_same_as_single_process(store, reference)


# claims, one rule at a time ------------------------------------------------------------------------------

UNIT = ("fashion-mnist", "m", "a", "untargeted")


def _row(batch: int, index: int) -> SampleRow:
    return SampleRow(sample_id=f"test/{index}", sample_index=index, input_sha1="0" * 40, batch=batch, label=1,
                     target=None, adversarial_prediction=2, valid=True, violation="", success=True, l0_elements=1,
                     l0_pixels=1, l1=0.5, l2=0.5, linf=0.5, forward_passes=1.0, backward_passes=1.0, seconds=0.1)


def _store(path: Path, **options) -> ResultsStore:
    store = ResultsStore(path, **options)
    store.create_run("r", name="r", created="2026-01-01T00:00:00+00:00", config={}, seed=0, versions={},
                     git_commit=None, hardware={})
    return store


def _hold(path: Path, batch: int, *, host: str, pid: int, start: str | None, age: float = 0.0) -> None:
    """A claim as another process would have left it."""
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO claims VALUES ('r', ?, ?, ?, ?, ?, 'someone-else', ?, ?, ?, ?)",
                   (*UNIT, batch, host, pid, start, time.time() - age))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_put_batch_is_idempotent(tmp_path):
    with _store(tmp_path / "s.sqlite") as store:
        assert store.put_batch("r", UNIT, [_row(0, 1), _row(0, 2)], []) is True
        assert store.put_batch("r", UNIT, [_row(0, 1), _row(0, 2)], []) is False  # stored: skipped, no error
        assert len(store.samples("r")) == 2


def test_claim_rules(tmp_path):
    path = tmp_path / "s.sqlite"
    with _store(path, claim_expiry=60) as store, subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            here = socket.gethostname()
            assert store.claim_batch("r", UNIT, 0) and store.claim_batch("r", UNIT, 0)  # its own: again
            store.put_batch("r", UNIT, [_row(0, 1)], [])
            assert not store.claim_batch("r", UNIT, 0)  # stored
            _hold(path, 1, host=here, pid=sleeper.pid, start=_process_start(sleeper.pid))
            assert not store.claim_batch("r", UNIT, 1)  # alive on this host, however old its claim
            _hold(path, 1, host=here, pid=sleeper.pid, start=_process_start(sleeper.pid), age=3600)
            assert not store.claim_batch("r", UNIT, 1) or _process_start(sleeper.pid) is None
            _hold(path, 2, host=here, pid=_dead_pid(), start=None)
            assert store.claim_batch("r", UNIT, 2)  # its process is gone
            if _process_start(sleeper.pid) is not None:
                _hold(path, 3, host=here, pid=sleeper.pid, start="1")
                assert store.claim_batch("r", UNIT, 3)  # the pid is another process's now
            _hold(path, 4, host="elsewhere", pid=1, start=None, age=10)
            assert not store.claim_batch("r", UNIT, 4)  # another host, heartbeat fresh
            _hold(path, 4, host="elsewhere", pid=1, start=None, age=120)
            assert store.claim_batch("r", UNIT, 4)  # another host, heartbeat older than claim_expiry
            store.release_claims("r")
            with sqlite3.connect(path) as db:
                assert db.execute("SELECT batch FROM claims").fetchall() == [(1,)]  # only the live sleeper's
        finally:
            sleeper.kill()


def test_runner_waits_for_a_live_claim_then_takes_it_over_when_its_owner_dies(tmp_path, tiny_model):
    config = parse_config({**CONFIG, "attacks": [{"name": "i-fgsm", "overrides": {"steps": 5}}], "modes": ["untargeted"]})
    path = tmp_path / "s.sqlite"
    run_id = f"{config.name}-{config.fingerprint()}"
    with ResultsStore(path) as store, subprocess.Popen(["sleep", "60"]) as sleeper:
        store.create_run(run_id, name="r", created="2026-01-01T00:00:00+00:00", config={}, seed=0,
                         versions=versions(), git_commit=git_commit(), hardware={})  # another process, same code
        key = ("fashion-mnist", "smallcnn-standard", "i-fgsm", "untargeted")
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, 3, 'other', ?, ?, ?, ?)",
                       (run_id, *key, socket.gethostname(), sleeper.pid, _process_start(sleeper.pid), time.time()))
        killed_at, written = [], {}
        put = store.put_batch

        def timed_put(run_id, key, rows, examples):
            rows = list(rows)
            written[rows[0].batch] = time.monotonic()
            return put(run_id, key, rows, examples)

        def kill_sleeper():
            killed_at.append(time.monotonic())
            sleeper.kill()
            sleeper.wait()

        store.put_batch = timed_put
        timer = threading.Timer(1.5, kill_sleeper)
        timer.start()
        try:
            run_benchmark(config, store, run_id=run_id, load_model=lambda *_: tiny_model, progress=False)
        finally:
            timer.cancel()
        assert killed_at and written[3] > killed_at[0] > max(t for b, t in written.items() if b != 3)
        rows = store.samples(run_id)
        assert len(rows) == 12 and sorted(rows["batch"].unique()) == list(range(6))
        assert store.get_run(run_id)["finished"]


def test_two_new_runs_in_the_same_second_get_distinct_ids(tmp_path, monkeypatch):
    """`sparsebench run --new-run` twice at once: two runs, not one merged."""
    import bench.cli
    import bench.runner
    from bench.cli import main

    config = tmp_path / "c.toml"
    config.write_text('name = "n"\nn_samples = 2\nbatch_size = 2\n[[datasets]]\nname = "fashion-mnist"\n'
                      'models = ["smallcnn-standard"]\n[[attacks]]\nname = "i-fgsm"\n')
    started = []

    def fake_run(config, store, *, run_id, **_):
        started.append(bench.runner.start_run(config, store, run_id, bench.runner.resolve_device("cpu")))
        return run_id

    monkeypatch.setattr(bench.cli, "run_benchmark", fake_run)
    monkeypatch.setattr(bench.cli, "_report", lambda *a, **k: {})
    monkeypatch.setattr(time, "strftime", lambda *_: "-20260101T000000")  # the same second
    for _ in range(2):
        assert main(["run", "--config", str(config), "--store", str(tmp_path / "s.sqlite"), "--new-run",
                     "--no-progress"]) == 0
    assert len(set(started)) == 2
    with ResultsStore(tmp_path / "s.sqlite", readonly=True) as store:
        assert sorted(store.runs()["run_id"]) == sorted(started)


class _Ref:
    def __init__(self, call):
        self.call = call


class _FakeRay:
    """Ray's API as run_distributed uses it, running each task in this process when its result is asked."""

    def __init__(self):
        self.submitted: list[tuple[float, tuple]] = []

    def is_initialized(self):
        return True

    def remote(self, function):
        ray = self

        class Task:
            def options(self, **_):
                return self

            def remote(self, config, shard, **kwargs):
                ray.submitted.append((time.monotonic(), shard))
                return _Ref(lambda: function(config, shard, **kwargs))

        return Task()

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        return ref.call()

    def cancel(self, ref, force=False):
        pass


def test_ray_driver_leaves_a_batch_another_process_holds_until_its_owner_dies(tmp_path, tiny_model, monkeypatch):
    import bench.distributed
    from bench.distributed import run_distributed

    ray = _FakeRay()
    monkeypatch.setattr(bench.distributed, "_import_ray", lambda: ray)
    config = parse_config({**CONFIG, "attacks": [{"name": "i-fgsm", "overrides": {"steps": 5}}], "modes": ["untargeted"]})
    run_id = f"{config.name}-{config.fingerprint()}"
    path = tmp_path / "s.sqlite"
    key = ("fashion-mnist", "smallcnn-standard", "i-fgsm", "untargeted")
    with ResultsStore(path) as store, subprocess.Popen(["sleep", "60"]) as sleeper:
        store.create_run(run_id, name="r", created="2026-01-01T00:00:00+00:00", config={}, seed=0,
                         versions=versions(), git_commit=git_commit(), hardware={})  # another process, same code
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, 2, 'other', ?, ?, ?, ?)",
                       (run_id, *key, socket.gethostname(), sleeper.pid, _process_start(sleeper.pid), time.time()))
        killed_at = []

        def kill_sleeper():
            killed_at.append(time.monotonic())
            sleeper.kill()
            sleeper.wait()

        timer = threading.Timer(1.5, kill_sleeper)
        timer.start()
        try:
            run_distributed(config, store, run_id=run_id, load_model=lambda *_: tiny_model, batches_per_shard=2,
                            progress=False)
        finally:
            timer.cancel()
        assert killed_at
        with_2 = [when for when, shard in ray.submitted if 2 in shard.batches]
        assert len(with_2) == 1 and with_2[0] > killed_at[0]  # only once its owner was gone
        rows = store.samples(run_id)
        assert len(rows) == 12 and not rows.duplicated(KEY).any()
        assert store.get_run(run_id)["finished"]


if __name__ == "__main__":
    worker(*sys.argv[1:3])
