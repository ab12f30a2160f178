"""The runner end to end: selection, targets, verification, the store, resume after a kill, reports."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config import parse_config
from bench.data import get_batch
from bench.runner import run_benchmark
from bench.store import ResultsStore, decode_example
from reports.tables import summarize, write_tables

TESTS = Path(__file__).parent


def small_config(**changes):
    config = {
        "name": "small",
        "seed": 1,
        "n_samples": 10,
        "batch_size": 4,
        "budgets": [1, 10, 1000],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [
            {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 10}},
            {"name": "torchattacks/onepixel", "overrides": {"pixels": 3, "steps": 2, "popsize": 5}},
        ],
    }
    config.update(changes)
    return parse_config(config)


@pytest.fixture
def finished_run(tmp_path, tiny_model):
    store = ResultsStore(tmp_path / "store.sqlite")
    run_id = run_benchmark(small_config(), store, load_model=lambda *_: tiny_model, progress=False)
    yield store, run_id
    store.close()


def test_run_records_every_unit_and_sample(finished_run, tiny_model, fashion_test):
    store, run_id = finished_run
    rows = store.samples(run_id)
    # 1 model x 2 attacks x 2 modes x 10 samples, each once.
    assert len(rows) == 40
    assert rows.groupby(["attack", "mode"]).size().tolist() == [10] * 4
    assert not rows.duplicated(["attack", "mode", "sample_id"]).any()
    # Only correctly classified samples are attacked.
    images, labels = get_batch(fashion_test, rows["sample_index"].unique().tolist())
    assert (tiny_model(images).argmax(1) == labels).all()
    # Targets: never the label, the same for every attack, absent when untargeted.
    targeted = rows[rows["mode"] == "targeted"]
    assert (targeted["target"] != targeted["label"]).all()
    assert targeted.groupby("sample_id")["target"].nunique().max() == 1
    assert rows[rows["mode"] == "untargeted"]["target"].isna().all()
    # The harness counted the passes: i-fgsm does 10 forward and 10 backward per sample.
    ifgsm = rows[rows["attack"] == "i-fgsm"]
    assert (ifgsm["forward_passes"] == 10).all() and (ifgsm["backward_passes"] == 10).all()
    assert (rows["seconds"] > 0).all()
    run = store.get_run(run_id)
    assert run["finished"] and run["versions"]["torch"] == torch.__version__.split("+")[0] or run["versions"]["torch"]
    assert run["hardware"]["device"] == "cpu" and run["config"]["seed"] == 1


def test_stored_examples_recheck_independently(finished_run, tiny_model, fashion_test):
    """Rebuild every stored example from the clean data and recompute the harness's verdict."""
    store, run_id = finished_run
    rows = store.samples(run_id).set_index(["attack", "mode", "sample_id"])
    checked = 0
    for (dataset, model, attack, mode), sample_id, fmt, shape, indices, values in store.examples(run_id):
        row = rows.loc[(attack, mode, sample_id)]
        image, label = fashion_test[int(row["sample_index"])]
        adversarial = decode_example(image, fmt, indices, values)
        assert list(adversarial.shape) == eval(shape)
        assert 0 <= adversarial.min() and adversarial.max() <= 1
        prediction = int(tiny_model(adversarial[None]).argmax(1))
        assert prediction == row["adversarial_prediction"]
        expected = prediction == row["target"] if mode == "targeted" else prediction != label
        assert bool(row["success"]) == expected
        assert int((adversarial != image).sum()) == row["l0_elements"]
        checked += 1
    assert checked == len(rows)


def test_rerunning_a_finished_run_adds_nothing(finished_run, tiny_model):
    store, run_id = finished_run
    before = store.samples(run_id)
    again = run_benchmark(small_config(), store, load_model=lambda *_: tiny_model, progress=False)
    assert again == run_id
    pd.testing.assert_frame_equal(store.samples(run_id), before)


def test_same_seed_same_rows(tmp_path, tiny_model, finished_run):
    store, run_id = finished_run
    with ResultsStore(tmp_path / "other.sqlite") as other:
        run_benchmark(small_config(), other, load_model=lambda *_: tiny_model, progress=False)
        a = store.samples(run_id).drop(columns="seconds")
        b = other.samples(run_id).drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)


def test_least_likely_targets(tmp_path, tiny_model, fashion_test):
    config = small_config(target_selection="least-likely", modes=["targeted"],
                          attacks=[{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}])
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        rows = store.samples(run_id)
    images, _ = get_batch(fashion_test, rows["sample_index"].tolist())
    assert rows["target"].tolist() == tiny_model(images).argmin(1).tolist()


def test_report_files(finished_run, tmp_path):
    store, run_id = finished_run
    summary = summarize(store.samples(run_id), budgets=[1, 10, 1000], budget_unit="pixels")
    assert list(summary["samples"]) == [10, 10, 10, 10]
    rows = store.samples(run_id)
    for _, line in summary.iterrows():
        unit = rows[(rows["attack"] == line["attack"]) & (rows["mode"] == line["mode"])]
        won = unit[unit["success"] == 1]
        assert line["fooling_rate"] == pytest.approx(100 * len(won) / len(unit))
        if len(won):
            assert line["median_l0_pixels"] == pytest.approx(won["l0_pixels"].median())
        else:
            assert pd.isna(line["median_l0_pixels"])
        assert line["fr@1000"] == pytest.approx(line["fooling_rate"])  # 784 pixels < 1000
        assert line["fr@1"] <= line["fr@10"] <= line["fr@1000"]
    paths = write_tables(summary, tmp_path / "tables", caption="test")
    assert "| i-fgsm" in paths["md"].read_text()
    assert "\\begin{table}" in paths["tex"].read_text() and "fooling\\_rate" in paths["tex"].read_text()
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), summary, check_dtype=False)


def test_failing_attack_is_recorded_not_counted(tmp_path, tiny_model):
    """An attack that returns out-of-box values gets no credit for them, and its other examples keep theirs."""
    config = small_config(attacks=[{"function": "lying_attacks:half_outside_box", "label": "half"}],
                          modes=["untargeted"])
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        rows = store.samples(run_id).sort_values("sample_index")
    pushed = rows[rows["violation"] != ""]
    kept = rows[rows["violation"] == ""]
    assert len(pushed) == 5 and len(kept) == 5  # every other sample of batches 4, 4, 2
    assert not pushed["valid"].any() and not pushed["success"].any()
    assert pushed["violation"].str.startswith("outside [0, 1]: min 0, max 1.5").all()
    assert (pushed["l0_elements"] == 0).all()  # measured on the clean input
    assert kept["valid"].all() and kept["success"].sum() >= 4


def _count_rows(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


WORKER = [sys.executable, str(TESTS / "_resume_worker.py")]


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    """The worker's benchmark, run once without interruption."""
    path = tmp_path_factory.mktemp("reference") / "reference.sqlite"
    subprocess.run(WORKER + [str(path)], check=True, timeout=300)
    return path


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_resume_after_interruption_loses_and_duplicates_nothing(tmp_path, how, reference_store):
    worker, reference = WORKER, reference_store
    total = _count_rows(reference)
    assert total == 2 * 2 * 12  # 2 models x 2 modes x 12 samples

    interrupted = tmp_path / "interrupted.sqlite"
    process = subprocess.Popen(worker + [str(interrupted)])
    deadline = time.monotonic() + 240
    while _count_rows(interrupted) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the worker finished before it could be interrupted"
    process.send_signal(how)
    process.wait(timeout=60)
    cut = _count_rows(interrupted)
    assert 0 < cut < total
    assert cut % 3 == 0  # whole batches only

    subprocess.run(worker + [str(interrupted)], check=True, timeout=300)
    with ResultsStore(reference) as a, ResultsStore(interrupted) as b:
        rows_a = a.samples().drop(columns="seconds").sort_values(["model", "attack", "mode", "sample_id"])
        rows_b = b.samples().drop(columns="seconds").sort_values(["model", "attack", "mode", "sample_id"])
        assert len(rows_b) == total
        pd.testing.assert_frame_equal(rows_a.reset_index(drop=True), rows_b.reset_index(drop=True))
        examples_a = sorted((k, s, f, i, v) for k, s, f, _, i, v in a.examples(a.latest_run_id()))
        examples_b = sorted((k, s, f, i, v) for k, s, f, _, i, v in b.examples(b.latest_run_id()))
        assert examples_a == examples_b


def test_proposed_versus_best_says_when_it_loses():
    from reports.tables import order_like_config, proposed_versus_best

    summary = pd.DataFrame([
        {"dataset": "d", "model": "m", "attack": "lin2025", "mode": "untargeted", "fooling_rate": 90.0, "median_l0_pixels": 5.0},
        {"dataset": "d", "model": "m", "attack": "fmn-l0", "mode": "untargeted", "fooling_rate": 100.0, "median_l0_pixels": 9.0},
        {"dataset": "d", "model": "m", "attack": "lin2025", "mode": "targeted", "fooling_rate": 100.0, "median_l0_pixels": 7.0},
        {"dataset": "d", "model": "m", "attack": "fmn-l0", "mode": "targeted", "fooling_rate": 100.0, "median_l0_pixels": 8.0},
    ])
    verdicts = proposed_versus_best(summary).set_index("mode")["verdict"]
    assert verdicts["untargeted"] == "loses to fmn-l0"  # fooling rate first
    assert verdicts["targeted"] == "wins"                # then median L0
    config = {"datasets": [{"name": "d", "models": ["m"]}], "attacks": [{"label": "fmn-l0"}, {"label": "lin2025"}]}
    ordered = order_like_config(summary, config)
    assert list(zip(ordered["attack"], ordered["mode"])) == [
        ("fmn-l0", "untargeted"), ("fmn-l0", "targeted"), ("lin2025", "untargeted"), ("lin2025", "targeted")]


def test_learned_attack_is_prepared_outside_its_cost(tmp_path, tiny_model):
    """egs-tssa trains its generator in the entry's prepare step: the stored passes are the attack's alone."""
    config = parse_config({
        "name": "prepared", "n_samples": 6, "batch_size": 3, "modes": ["untargeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "egs-tssa", "overrides": {"train_steps": 10, "batch_size": 8}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, cache_dir=tmp_path / "cache",
                               progress=False)
        samples = store.samples(run_id)
    # One gradient to pick the groups and one forward of the perturbed batch per sample: no training passes.
    assert (samples["forward_passes"] == 1).all() and (samples["backward_passes"] == 1).all()
    assert list((tmp_path / "cache" / "generators" / "fashion-mnist").iterdir())  # prepare cached it there


def test_more_samples_than_the_model_gets_right_is_said_before_any_attack(tmp_path, tiny_model):
    config = small_config(n_samples=20000, batch_size=5000, modes=["untargeted"],
                          attacks=[{"function": "lying_attacks:returns_none", "label": "nothing"}])
    with ResultsStore(tmp_path / "s.sqlite") as store:
        with pytest.warns(UserWarning, match=r"n_samples: 20000 asked, but only \d+ of the dataset's 10000 images "
                                             r"are classified correctly; attacking those"):
            run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        assert 7000 < len(store.samples(run_id)) < 10000


def _edit_run(path, **fields):
    with sqlite3.connect(path) as db:
        for column, value in fields.items():
            db.execute(f"UPDATE runs SET {column}=?", (value,))


def test_a_run_made_by_other_code_is_not_resumed_unless_forced(tmp_path, tiny_model):
    """A resume after the code changed would mix rows of two implementations in one run."""
    import json

    from bench.cli import main
    from bench.errors import SparseBenchError

    path = tmp_path / "s.sqlite"
    config = small_config(attacks=[{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 10}}],
                          modes=["untargeted"])
    with ResultsStore(path) as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        now = store.get_run(run_id)
    rows = ResultsStore(path, readonly=True).samples(run_id)
    assert (rows["git_commit"].fillna("none") == (now["git_commit"] or "none")).all()  # every row says who made it

    for change, expected in (({"git_commit": "0" * 40}, f"commit {'0' * 40} -> "),
                             ({"versions": json.dumps({**now["versions"], "torch": "1.0"})}, "torch 1.0 -> ")):
        _edit_run(path, **{k: v for k, v in change.items()})
        with ResultsStore(path) as store, pytest.raises(SparseBenchError, match=rf"run {run_id} was made by other "
                                                                                  rf"code \({re.escape(expected)}"):
            run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        _edit_run(path, git_commit=now["git_commit"], versions=json.dumps(now["versions"]))

    # Forced: the missing batch is redone by this code, and the report says two commits made the rows.
    _edit_run(path, git_commit="f" * 40)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET git_commit=? WHERE batch < 2", ("f" * 40,))
        db.execute("DELETE FROM samples WHERE batch = 2")
        db.execute("DELETE FROM examples WHERE sample_id NOT IN (SELECT sample_id FROM samples)")
    with ResultsStore(path) as store:
        run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False, force_resume=True)
        commits = store.samples(run_id)["git_commit"].fillna("none").value_counts().to_dict()
    assert commits == {"f" * 40: 8, (now["git_commit"] or "none"): 2}
    assert main(["report", "--store", str(path), "--run", run_id, "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / run_id / "report.md").read_text()
    assert "rows made by more than one commit" in report and "f" * 40 + " (8 rows)" in report


def test_an_input_that_fails_to_load_leaves_no_run_and_an_empty_run_says_so(tmp_path, capsys):
    """No empty, unfinished run becomes the store's latest; a run with no sample yet is named as such."""
    from bench.cli import main

    path = tmp_path / "s.sqlite"
    (tmp_path / "c.toml").write_text(
        '[[models]]\nname = "m"\nfunction = "outside_contracts:wrong_logits"\ndatasets = ["fashion-mnist"]\n'
        '[[datasets]]\nname = "fashion-mnist"\nmodels = ["m"]\n[[attacks]]\nname = "i-fgsm"\n')
    assert main(["run", "--config", str(tmp_path / "c.toml"), "--store", str(path), "--no-progress"]) == 2
    assert "model 'm': on images of shape" in capsys.readouterr().err
    with ResultsStore(path, readonly=True) as store:
        assert store.runs().empty
    assert main(["report", "--store", str(path)]) == 2
    assert "holds no run" in capsys.readouterr().err
    # A run stopped before its first batch (made by hand here): every reading command says so plainly.
    with ResultsStore(path) as store:
        store.create_run("empty", name="empty", created="2026-01-01T00:00:00+00:00", config={"name": "empty"},
                         seed=0, versions={}, git_commit=None, hardware={})
    baseline = tmp_path / "b.toml"
    for command in (["report"], ["leaderboard"], ["transfer"], ["baseline", "--out", str(baseline)],
                    ["interpret", "--attack", "i-fgsm", "--model", "m"]):
        code = main([*command, "--store", str(path), "--run", "empty", *(["--out", str(tmp_path / "o")]
                                                                          if command[0] != "baseline" else [])])
        err = capsys.readouterr().err
        assert code == 2 and "run empty in" in err and "has no samples yet" in err, (command, err)
