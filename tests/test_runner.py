"""The runner end to end: selection, targets, verification, the store, resume after a kill, reports."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def _hand_samples(model: str, mode: str, attack: str, l0s: list[int | None]) -> list[dict]:
    """Per-sample rows as the store gives them: ``l0s[i]`` for sample i, None where the attack failed."""
    return [{"dataset": "d", "model": model, "attack": attack, "mode": mode, "sample_id": f"test/{i}",
             "input_sha1": f"h{i}", "target": 3 if mode == "targeted" else None, "success": int(l0 is not None),
             "l0_pixels": l0 or 0, "l0_elements": l0 or 0, "seconds": 0.1, "forward_passes": 1.0,
             "backward_passes": 1.0, "valid": 1} for i, l0 in enumerate(l0s)]


def test_proposed_versus_best_says_when_it_loses():
    from reports.tables import order_like_config, proposed_versus_best, summarize

    samples = pd.DataFrame(
        _hand_samples("m", "untargeted", "lin2025", [None] * 10) + _hand_samples("m", "untargeted", "fmn-l0", [9] * 10)
        + _hand_samples("m", "targeted", "lin2025", [7] * 10) + _hand_samples("m", "targeted", "fmn-l0", [8] * 10)
        # ahead on the summary (fooling rate 100 against 90) on one sample in ten: not a significant win
        + _hand_samples("m2", "untargeted", "lin2025", [5] * 10)
        + _hand_samples("m2", "untargeted", "fmn-l0", [5] * 9 + [None])
        + _hand_samples("m2", "untargeted", "sparse-rs", [None] * 10))
    table = proposed_versus_best(samples).set_index(["model", "mode"])
    p = 2 * 0.5 ** 10
    assert table.loc[("m", "untargeted"), "verdict"] == f"loses to fmn-l0 (p={p:.2g})"
    assert table.loc[("m", "targeted"), "verdict"] == f"wins (p={p:.2g})"
    assert table.loc[("m2", "untargeted"), "verdict"] == "no significant difference (p=1)"
    assert table.loc[("m2", "untargeted"), "best other attack"] == "fmn-l0"  # ranked by fooling rate first
    assert table.loc[("m2", "untargeted"), ["paired samples", "wins", "ties", "losses"]].tolist() == [10, 1, 9, 0]
    assert table.loc[("m", "targeted"), "median_ratio"] == pytest.approx(7 / 8)
    assert table.loc[("m", "untargeted"), "lin2025 fooling_rate_hi"] == pytest.approx(27.753, abs=1e-3)  # Wilson 0/10
    assert proposed_versus_best(samples, proposed="not-run").empty
    summary = summarize(samples[samples["model"] == "m"])
    config = {"datasets": [{"name": "d", "models": ["m"]}], "attacks": [{"label": "fmn-l0"}, {"label": "lin2025"}]}
    ordered = order_like_config(summary, config)
    assert list(zip(ordered["attack"], ordered["mode"])) == [
        ("fmn-l0", "untargeted"), ("fmn-l0", "targeted"), ("lin2025", "untargeted"), ("lin2025", "targeted")]


def test_learned_attack_is_prepared_outside_its_cost(tmp_path, tiny_model):
    """egs-tssa trains its generator in the entry's prepare step: the stored passes are the attack's alone."""
    config = parse_config({
        "name": "prepared", "n_samples": 6, "batch_size": 3, "modes": ["untargeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        # The tiny model is linear: no convolution for egs-tssa's Grad-CAM, so its groups come from the gradient.
        "attacks": [{"name": "egs-tssa", "overrides": {"train_steps": 10, "batch_size": 8, "saliency": "gradient"}}],
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


def _ifgsm_config(**changes):
    return small_config(attacks=[{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 2}}],
                        modes=["untargeted"], **changes)


def test_a_held_out_run_never_attacks_the_excluded_samples(tmp_path, tiny_model):
    """The same seed would pick the same samples: exclude_runs and exclude_indices make the second run disjoint."""
    with ResultsStore(tmp_path / "s.sqlite") as store:
        tuning = run_benchmark(_ifgsm_config(name="tuning"), store, load_model=lambda *_: tiny_model, progress=False)
        tuned = store.samples(tuning)
        again = run_benchmark(_ifgsm_config(name="again"), store, load_model=lambda *_: tiny_model, progress=False)
        assert set(store.samples(again)["sample_id"]) == set(tuned["sample_id"])  # without exclusion: the same
        last = max(tuned["sample_index"])
        config = _ifgsm_config(name="heldout", exclude_runs=[tuning], exclude_indices=[[0, 50], [last + 1, last + 40]])
        heldout = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        rows = store.samples(heldout)
        run = store.get_run(heldout)
        assert "exclude_runs" not in store.get_run(again)["config"]
    assert len(rows) == 10
    assert not set(rows["input_sha1"]) & set(tuned["input_sha1"])
    assert not set(rows["sample_id"]) & set(tuned["sample_id"])
    assert not rows["sample_index"].between(0, 49).any() and not rows["sample_index"].between(last + 1, last + 39).any()
    # The exclusion is part of the run's config: provenance, and of its fingerprint.
    assert run["config"]["exclude_runs"] == [tuning]
    assert run["config"]["exclude_indices"] == [[0, 50], [last + 1, last + 40]]
    assert heldout.split("-")[-1] != again.split("-")[-1]


def test_an_excluded_sample_that_slips_in_is_refused_before_any_attack(tmp_path, tiny_model, monkeypatch):
    import bench.runner
    from bench.errors import SparseBenchError

    original = bench.runner.select_samples

    def ignoring_exclusions(*args, exclusion=None, **kwargs):  # a selection that forgets the exclusion
        return original(*args, **kwargs)

    with ResultsStore(tmp_path / "s.sqlite") as store:
        tuning = run_benchmark(_ifgsm_config(name="tuning"), store, load_model=lambda *_: tiny_model, progress=False)
        tuned = sorted(store.samples(tuning)["sample_id"], key=lambda s: int(s.split("/")[1]))
        monkeypatch.setattr(bench.runner, "select_samples", ignoring_exclusions)
        with pytest.raises(SparseBenchError, match=rf"the samples selected for smallcnn-standard on fashion-mnist "
                                                   rf"overlap the excluded samples .* in 10 case\(s\): .*"
                                                   rf"{tuned[0]} \(input sha1 [0-9a-f]{{12}} attacked in run {tuning}\)"):
            run_benchmark(_ifgsm_config(name="heldout", exclude_runs=[tuning]), store,
                          load_model=lambda *_: tiny_model, progress=False)
        first = int(tuned[0].split("/")[1])
        with pytest.raises(SparseBenchError, match=rf"{tuned[0]} \(index in exclude_indices \[{first}, {first + 1}\]\)"):
            run_benchmark(_ifgsm_config(name="heldout", exclude_indices=[[first, first + 1]]), store,
                          load_model=lambda *_: tiny_model, progress=False)
        assert list(store.runs()["run_id"]) == [tuning]  # refused before the run was made
        monkeypatch.undo()
        # A stored run whose rows overlap what its config now excludes is not resumed.
        run_benchmark(_ifgsm_config(name="other"), store, run_id="other", load_model=lambda *_: tiny_model,
                      progress=False)
        with pytest.raises(SparseBenchError, match=r"the samples run other already attacked on fashion-mnist overlap"):
            run_benchmark(_ifgsm_config(name="other", exclude_runs=[tuning]), store, run_id="other",
                          load_model=lambda *_: tiny_model, progress=False)


@pytest.mark.parametrize("changes,message", [
    ({"exclude_runs": ["nope"]}, r"config.exclude_runs\[0\]: 'nope' is not a run in .*; runs: tuning-"),
    ({"exclude_runs": ["SELF"]}, r"config.exclude_runs\[0\]: 'SELF' is this run itself"),
    ({"exclude_indices": [[10000, 10001]]}, r"config.exclude_indices\[0\]: \[10000, 10001\] starts past the end of "
                                            r"'fashion-mnist', which has 10000 images"),
])
def test_exclusions_the_store_or_the_data_refuse(tmp_path, tiny_model, changes, message):
    from bench.errors import SparseBenchError

    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_benchmark(_ifgsm_config(name="tuning"), store, load_model=lambda *_: tiny_model, progress=False)
        config = _ifgsm_config(name="heldout", **changes)
        run_id = config.exclude_runs[0] if changes.get("exclude_runs") == ["SELF"] else None
        with pytest.raises(SparseBenchError, match=message):
            run_benchmark(config, store, run_id=run_id, load_model=lambda *_: tiny_model, progress=False)


def test_a_preparation_that_raises_voids_its_unit_and_the_run_goes_on(tmp_path, tiny_model):
    """egs-tssa's Grad-CAM needs a convolution; on the linear tiny model its preparation raises. Its rows say why,
    the attack is not called, and the other attacks of the run are measured as usual."""
    config = parse_config({
        "name": "unprepared", "n_samples": 6, "batch_size": 3, "modes": ["untargeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "egs-tssa", "overrides": {"train_steps": 2, "batch_size": 4}},
                    {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        with pytest.warns(RuntimeWarning, match="prepare raised ValueError"):
            run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, cache_dir=tmp_path / "cache",
                                   progress=False)
        samples = store.samples(run_id)
    failed = samples[samples["attack"] == "egs-tssa"]
    assert len(failed) == 6 and not failed["valid"].any() and not failed["success"].any()
    assert failed["violation"].str.startswith("prepare raised ValueError: saliency: 'grad-cam' needs a "
                                              "convolutional layer").all()
    assert (failed["forward_passes"] == 0).all()  # not called
    measured = samples[samples["attack"] == "i-fgsm"]
    assert len(measured) == 6 and measured["valid"].all() and measured["success"].any()
    # A unit with no valid example has no cost figure: it would otherwise rank first on time.
    table = summarize(samples).set_index("attack")
    assert np.isnan(table.loc["egs-tssa", ["seconds_per_sample", "forward_per_sample"]].astype(float)).all()
    assert table.loc["i-fgsm", "seconds_per_sample"] > 0 and table.loc["i-fgsm", "forward_per_sample"] == 10
