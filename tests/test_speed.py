"""Speed options (precision, channels-last, batch search, warm-up) change time, not how results are judged.

The tolerance this file states and checks, on a SmallCNN trained here
(verified, as always, by the float32 model):

* channels-last: fooling rate within 1 sample and median L0 within 5 % of
  the float32 NCHW run, per attack and mode;
* bf16 and fp16 autocast (CUDA only; CPU bf16 is emulated and ~9x slower):
  the same tolerance, checked where a GPU is at hand
  (``SPARSEBENCH_TEST_DEVICE=cuda``). On an H200 bf16 missed it (fmn-l0's
  targeted median L0 went from 17 to 21: minimum-norm examples end on the
  bf16 model's boundary and miss the float32 one), so that case is a strict
  expected failure: should bf16 come within tolerance, the test says so and
  the docs must change. fp16 was not reached there; it is checked, not
  presumed. See ``docs/measured/gpu-h200/README.md``.
"""

from __future__ import annotations

import os
import sqlite3

import pytest
import torch

from bench.config import parse_config
from bench.runner import run_benchmark
from bench.speed import FastModel, largest_batch, speed_up
from bench.store import ResultsStore
from reports.tables import summarize

DEVICE = torch.device(os.environ.get("SPARSEBENCH_TEST_DEVICE", "cpu"))
FR_TOLERANCE_SAMPLES = 1
L0_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def small_cnn():
    from bench.training import train_small_cnn

    model, _ = train_small_cnn("fashion-mnist", "standard", epochs=1, train_subset=4000,
                               eval_pgd_images=10, eval_pgd_steps=1)
    return model.eval().requires_grad_(False).to(DEVICE)


def _config(**options):
    return parse_config({
        "name": "speed", "seed": 0, "n_samples": 16, "batch_size": 16, "device": str(DEVICE),
        "budgets": [5, 20],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "fmn-l0", "overrides": {"steps": 40}}, {"name": "vfga"}],
        **options,
    })


def _summary(tmp_path, model, **options):
    store = ResultsStore(tmp_path / f"{'-'.join(map(str, options.values())) or 'fp32'}.sqlite")
    run_id = run_benchmark(_config(**options), store, load_model=lambda *_: model, progress=False)
    return summarize(store.samples(run_id)).set_index(["attack", "mode"]), store, run_id


_BF16_MISSES = pytest.mark.xfail(strict=True, reason="H200, 2026-11-28: fmn-l0 targeted median L0 17 -> 21 in bf16")
OPTIONS = [{"channels_last": True}]
if DEVICE.type == "cuda":
    OPTIONS += [pytest.param({"precision": "bf16"}, marks=_BF16_MISSES), {"precision": "fp16"},
                pytest.param({"precision": "bf16", "channels_last": True}, marks=_BF16_MISSES)]


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_speed_options_keep_fooling_rate_and_l0_within_tolerance(tmp_path, small_cnn, options):
    reference, _, _ = _summary(tmp_path, small_cnn)
    fast, store, run_id = _summary(tmp_path, small_cnn, **options)
    assert store.get_run(run_id)["config"] | options == store.get_run(run_id)["config"]
    for unit, row in reference.iterrows():
        other = fast.loc[unit]
        assert abs(other["fooling_rate"] - row["fooling_rate"]) <= 100 * FR_TOLERANCE_SAMPLES / row["samples"], unit
        assert abs(other["median_l0_elements"] - row["median_l0_elements"]) <= L0_TOLERANCE * row["median_l0_elements"], unit


def test_fast_model_keeps_float32_at_its_boundary(small_cnn, fashion_test):
    from bench.data import get_batch

    images, _ = get_batch(fashion_test, list(range(16)))
    images = images.to(DEVICE)
    strides = [p.stride() for p in small_cnn.parameters()]
    fast = speed_up(small_cnn, precision="bf16", channels_last=True)
    assert isinstance(fast, FastModel)
    # The copy is channels-last; the original keeps its layout.
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters() if p.dim() == 4)
    assert [p.stride() for p in small_cnn.parameters()] == strides
    x = images.clone().requires_grad_(True)
    logits = fast(x)
    assert logits.dtype == torch.float32
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.dtype == torch.float32 and grad.shape == x.shape and grad.abs().sum() > 0
    assert (logits.argmax(1) == small_cnn(images).argmax(1)).float().mean() >= 0.9
    assert speed_up(small_cnn) is small_cnn  # both options off: the model itself
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match="precision: 'fp16' needs a CUDA device"):
            speed_up(small_cnn, precision="fp16")


def test_largest_batch_off_cuda_is_the_limit_capped(small_cnn, samples):
    from bench.registry import get_attack

    images, labels, _ = samples
    estimate = largest_batch(get_attack("i-fgsm"), small_cnn, images.to(DEVICE), labels.to(DEVICE), limit=1000)
    if DEVICE.type == "cpu":
        assert estimate.batch_size == 256 and estimate.probe_sizes == ()
    else:  # measured: two probes, memory growing with the batch, a size within the limit
        assert estimate.probe_sizes == (8, 16) and estimate.mib_per_sample > 0
        assert 16 <= estimate.batch_size <= 1000


def test_auto_batch_size_is_recorded_and_warmup_changes_no_row(tmp_path, tiny_model):
    def run(path, **options):
        config = parse_config({
            "name": "auto", "seed": 0, "n_samples": 12, "device": "cpu",
            "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
            "attacks": [{"name": "i-fgsm", "overrides": {"steps": 5}}, {"name": "sparse-rs",
                                                                        "overrides": {"n_queries": 50}}],
            **options})
        store = ResultsStore(tmp_path / path)
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        return store, run_id

    store, run_id = run("auto.sqlite", batch_size="auto", warmup=False)
    assert set(store.units(run_id)["batch_size"]) == {12}  # min(samples, CPU_BATCH)
    rows = store.samples(run_id)
    assert rows["peak_memory_mib"].isna().all()  # no CUDA, no peak memory
    warm_store, warm_id = run("warm.sqlite", batch_size=12, warmup=True)
    warm = warm_store.samples(warm_id)
    columns = [c for c in rows.columns if c not in ("run_id", "seconds")]
    pd_sort = ["attack", "mode", "sample_id"]
    assert rows[columns].sort_values(pd_sort).reset_index(drop=True).equals(
        warm[columns].sort_values(pd_sort).reset_index(drop=True))


def test_store_of_schema_1_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with ResultsStore(path) as store:  # make a current store, then turn it back into v1 by hand
        store.create_run("r", name="r", created="2026-01-01T00:00:00+00:00", config={}, seed=0, versions={},
                         git_commit=None, hardware={})
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE units DROP COLUMN batch_size")
        db.execute("ALTER TABLE samples DROP COLUMN peak_memory_mib")
        db.execute("ALTER TABLE samples DROP COLUMN git_commit")
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.close()
    with ResultsStore(path) as store:
        assert store.get_run("r")["name"] == "r"
        assert store.unit_batch_size("r", ("d", "m", "a", "untargeted")) is None
        assert {"peak_memory_mib", "git_commit"} <= set(store.samples().columns)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="schema version 4; this SparseBench reads 3 and older"):
        ResultsStore(path)
