"""A benchmark fanned out over Ray's local cluster (2 workers) writes the single-process run's rows.

Ray starts once for the module (about 7 s here); each test then runs real
tasks in real worker processes, one of which is made to die.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import ray

from bench.config import parse_config
from bench.distributed import Shard, _write, plan_shards, run_distributed, run_shard
from bench.runner import run_benchmark
from bench.store import ResultsStore

VOLATILE = ["run_id", "seconds", "peak_memory_mib"]  # timing differs between any two runs
KEY = ["dataset", "model", "attack", "mode", "sample_id"]


def _config(**changes):
    return parse_config({
        "name": "fan-out", "seed": 3, "n_samples": 12, "batch_size": 4, "budgets": [5, 20],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": {"steps": 5}},
                    {"name": "sparse-rs", "overrides": {"k": 10, "n_queries": 40}}],  # random draws: seeds matter
        **changes,
    })


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tests = str(Path(__file__).parent)  # the workers import the lying attacks by name, as the runner does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
             object_store_memory=100 * 2**20, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}})
    assert ray.cluster_resources()["CPU"] == 2  # two one-CPU tasks at a time: two workers
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model):
    """The single-process run of the same config."""
    store = ResultsStore(tmp_path_factory.mktemp("single") / "store.sqlite")
    run_id = run_benchmark(_config(), store, load_model=lambda *_: tiny_model, progress=False)
    yield store, run_id
    store.close()


def _rows(store: ResultsStore, run_id: str) -> pd.DataFrame:
    return store.samples(run_id).drop(columns=VOLATILE).sort_values(KEY).reset_index(drop=True)


def _examples(store: ResultsStore, run_id: str) -> list[tuple]:
    return list(store.examples(run_id))


def _assert_same_run(store, run_id, reference):
    ref_store, ref_id = reference
    rows = _rows(store, run_id)
    assert len(rows) == 48 and not rows.duplicated(KEY).any()  # 2 attacks x 2 modes x 12 samples, once each
    pd.testing.assert_frame_equal(rows, _rows(ref_store, ref_id))
    assert _examples(store, run_id) == _examples(ref_store, ref_id)
    units = store.units(run_id).drop(columns="run_id")
    pd.testing.assert_frame_equal(units, ref_store.units(ref_id).drop(columns="run_id"))
    assert store.get_run(run_id)["finished"]


def test_two_workers_write_the_single_process_rows(tmp_path, tiny_model, cluster, reference):
    store = ResultsStore(tmp_path / "store.sqlite")
    run_id = run_distributed(_config(), store, load_model=lambda *_: tiny_model, batches_per_shard=2,
                             progress=False)
    _assert_same_run(store, run_id, reference)
    workers = store.get_run(run_id)["hardware"]["workers"]
    assert workers and all(w["device"] == "cpu" for w in workers)


def test_a_dead_worker_is_replaced_and_its_shard_retried(tmp_path, tiny_model, cluster, reference):
    crashed = tmp_path / "crashed"

    def load_model(*_):  # the first task to load a model kills its worker process
        if not crashed.exists():
            crashed.touch()
            os._exit(1)
        return tiny_model

    store = ResultsStore(tmp_path / "store.sqlite")
    run_id = run_distributed(_config(), store, load_model=load_model, batches_per_shard=3, retries=1,
                             progress=False)
    assert crashed.exists()
    _assert_same_run(store, run_id, reference)


def test_a_shard_that_keeps_failing_stops_the_run_and_names_itself(tmp_path, cluster):
    def load_model(*_):
        raise OSError("checkpoint unreadable")

    store = ResultsStore(tmp_path / "store.sqlite")
    with pytest.raises(RuntimeError, match=r"shard fashion-mnist/smallcnn-standard/\S+ batches \[.*\] failed 2 "
                                           r"times; last error: OSError: checkpoint unreadable"):
        run_distributed(_config(), store, load_model=load_model, retries=1, progress=False)


def test_resumed_run_plans_only_missing_batches_and_never_writes_one_twice(tmp_path, tiny_model, reference):
    config = _config()
    store = ResultsStore(tmp_path / "store.sqlite")
    run_id = "resumed"
    store.create_run(run_id, name="r", created="2026-11-28T00:00:00+00:00", config=config.to_dict(), seed=3,
                     versions={}, git_commit=None, hardware={})
    first = run_shard(config, Shard("fashion-mnist", "smallcnn-standard", "i-fgsm", "untargeted", (0, 2)),
                      load_model=lambda *_: tiny_model)
    assert _write(store, run_id, first) == 2
    assert _write(store, run_id, first) == 0  # a shard delivered twice adds nothing
    plan = plan_shards(config, batches_per_shard=2, done=[(tuple(r[:4]), r[4]) for r in store.stored_batches(run_id)])
    untargeted = [s for s in plan if s.key == ("fashion-mnist", "smallcnn-standard", "i-fgsm", "untargeted")]
    assert [s.batches for s in untargeted] == [(1,)]
    assert sum(len(s.batches) for s in plan) == 4 * 3 - 2
    with pytest.raises(ValueError, match="a distributed run needs a fixed batch size"):
        plan_shards(_config(batch_size="auto"))
    with pytest.raises(ValueError, match="give --gpus-per-task 1"):  # before any Ray work
        run_distributed(_config(device="cuda"), store)


def test_run_command_with_ray_matches_the_plain_run_command(tmp_path, cluster):
    """`sparsebench run --ray` end to end, models loaded by name through the real cache path."""
    import json

    import torch

    from bench.architectures import SmallCNN
    from bench.cli import main
    from bench.models import small_cnn_cache_path

    cache = tmp_path / "cache"
    weights = small_cnn_cache_path("smallcnn-standard", "fashion-mnist", cache_dir=cache)
    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(SmallCNN().state_dict(), weights)  # untrained: no training in a test, the loading path is real
    weights.with_suffix(".json").write_text(json.dumps({"note": "untrained weights saved by a test"}))
    config = tmp_path / "fan.toml"
    config.write_text('name = "fan"\nn_samples = 8\nbatch_size = 4\n'
                      '[[datasets]]\nname = "fashion-mnist"\nmodels = ["smallcnn-standard"]\n'
                      '[[attacks]]\nname = "i-fgsm"\noverrides = { steps = 3 }\n')
    common = ["run", "--config", str(config), "--cache-dir", str(cache), "--no-progress"]
    assert main(common + ["--store", str(tmp_path / "ray.sqlite"), "--out", str(tmp_path / "ray"),
                          "--ray", "--retries", "0"]) == 0
    assert main(common + ["--store", str(tmp_path / "plain.sqlite"), "--out", str(tmp_path / "plain")]) == 0
    fanned, plain = ResultsStore(tmp_path / "ray.sqlite"), ResultsStore(tmp_path / "plain.sqlite")
    run_id = fanned.latest_run_id()
    assert run_id == plain.latest_run_id()  # same config, same run id
    assert len(_rows(fanned, run_id)) == 16
    pd.testing.assert_frame_equal(_rows(fanned, run_id), _rows(plain, run_id))
    assert (tmp_path / "ray" / run_id / "summary.md").is_file()


def test_a_lie_gets_no_credit_on_ray_either(tmp_path, tiny_model, cluster, reference):
    """The workers run the runner's guarded call: a lie is void with its reason, the honest attack unchanged."""
    config = _config(attacks=[{"function": "lying_attacks:zero_weights", "label": "zero-weights"},
                              {"name": "i-fgsm", "overrides": {"steps": 5}}])
    with ResultsStore(tmp_path / "store.sqlite") as store:
        run_id = run_distributed(config, store, load_model=lambda *_: tiny_model, batches_per_shard=2,
                                 progress=False)
        rows = _rows(store, run_id)
    lie = rows[rows["attack"] == "zero-weights"]
    assert len(lie) == 24 and not lie["success"].any() and not lie["valid"].any()
    assert lie["violation"].str.contains("the attack changed the values of model.1.weight").all()
    honest = rows[rows["attack"] == "i-fgsm"].drop(columns="run_id", errors="ignore").reset_index(drop=True)
    ref_store, ref_id = reference
    ref = _rows(ref_store, ref_id)
    pd.testing.assert_frame_equal(honest, ref[ref["attack"] == "i-fgsm"].reset_index(drop=True))
