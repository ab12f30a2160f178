"""Figures of a stored run: what they plot is computed from the store, checked on hand-built rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.plots import find_sweeps, robust_accuracy, robust_accuracy_band, robust_accuracy_curves, sweep_curves
from reports.stats import wilson_interval

PNG = b"\x89PNG\r\n\x1a\n"


def test_robust_accuracy_counts_success_within_budget():
    samples = pd.DataFrame({"success": [1, 1, 0, 1], "l0_pixels": [3, 10, 0, 50], "l0_elements": [3, 10, 0, 50]})
    # k=1: nobody fooled; k=3: one of four; k=10: two; k=50: three (the failure stays robust).
    assert robust_accuracy(samples, [1, 3, 10, 50]).tolist() == [100.0, 75.0, 50.0, 25.0]


def test_robust_accuracy_band_is_the_wilson_interval_and_is_drawn(tmp_path, monkeypatch):
    samples = pd.DataFrame({"success": [1, 1, 0, 1], "l0_pixels": [3, 10, 0, 50], "l0_elements": [3, 10, 0, 50]})
    lo, hi = robust_accuracy_band(samples, [1, 3, 10, 50])
    expected = [wilson_interval(robust, 4) for robust in (4, 3, 2, 1)]
    assert lo.tolist() == pytest.approx([100 * a for a, _ in expected])
    assert hi.tolist() == pytest.approx([100 * b for _, b in expected])
    assert lo[0] == pytest.approx(51.0, abs=0.05) and hi[0] == 100.0  # 4 of 4 robust: [51.0, 100]
    import reports.plots as plots

    drawn = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: (drawn.append(figure), save(figure, path))[1])
    rows = pd.concat([samples.assign(attack=name) for name in ("a", "b")]).assign(dataset="d", model="m",
                                                                                   mode="untargeted")
    path = robust_accuracy_curves(rows, tmp_path / "ra.png")
    assert path.read_bytes().startswith(PNG)
    axis = drawn[0].axes[0]
    assert len(axis.collections) == 2 and len(axis.lines) == 2  # one band and one curve per attack


def _units(rows):
    return pd.DataFrame([{"attack": label, "attack_name": name, "hyperparameters": json.dumps(h)}
                         for label, name, h in rows])


def test_find_sweeps_groups_one_changed_parameter():
    base = {"a": 0.1, "lam": 0.01, "forward": "eq20"}
    units = _units([
        ("lin2025", "lin2025", base),
        ("a1", "lin2025", {**base, "a": 1.0}), ("a0.01", "lin2025", {**base, "a": 0.01}),
        ("lam1", "lin2025", {**base, "lam": 1.0}),  # a sweep of one label besides the reference: left out
        ("eq22", "lin2025", {**base, "forward": "eq22"}),  # not numeric: no sweep
        ("fmn-l0", "fmn-l0", {"steps": 300}),
    ])
    sweeps = find_sweeps(units)
    assert sweeps == {("lin2025", "a"): [("a0.01", 0.01), ("lin2025", 0.1), ("a1", 1.0)]}


def test_sweep_curves_write_one_figure_per_sweep(tmp_path):
    base = {"a": 0.1}
    units = _units([("lin2025", "lin2025", base), ("x1", "lin2025", {"a": 1.0}), ("x2", "lin2025", {"a": 0.0})])
    summary = pd.DataFrame([
        {"dataset": "d", "model": "m", "mode": mode, "attack": label, "fooling_rate": rate, "median_l0_pixels": l0}
        for mode in ("untargeted", "targeted") for label, rate, l0 in (("lin2025", 50, 9), ("x1", 60, 8), ("x2", 0, np.nan))
    ])
    (path,) = sweep_curves(summary, units, tmp_path)
    assert path.name == "sweep-lin2025-a.png" and path.read_bytes().startswith(PNG)


@pytest.fixture(scope="module")
def study_store(tmp_path_factory, tiny_model):
    """A real run: lin2025 with one hyperparameter swept, beside i-fgsm."""
    directory = tmp_path_factory.mktemp("study")
    config = parse_config({
        "name": "study", "n_samples": 6, "batch_size": 6, "modes": ["untargeted", "targeted"], "budgets": [5, 50],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "lin2025", "overrides": {"steps": 5}},
                    {"name": "lin2025", "label": "lin2025-a0.3", "overrides": {"steps": 5, "a": 0.3}},
                    {"name": "lin2025", "label": "lin2025-a0.03", "overrides": {"steps": 5, "a": 0.03}},
                    {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}],
    })
    with ResultsStore(directory / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    return directory, run_id


def test_report_writes_figures_and_a_page(study_store, capsys):
    directory, run_id = study_store
    assert main(["report", "--store", str(directory / "s.sqlite"), "--out", str(directory / "out")]) == 0
    assert "report.md" in capsys.readouterr().out
    plots = directory / "out" / run_id / "plots"
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["examples.png", "robust-accuracy.png", "sweep-lin2025-a.png", "time-versus-l0.png"]
    assert all((plots / name).read_bytes().startswith(PNG) for name in names)
    page = (directory / "out" / run_id / "report.md").read_text()
    for name in names:
        assert f"](plots/{name})" in page
    assert f"sparsebench report --run {run_id}" in page and "lin2025-a0.03" in page


def test_time_versus_l0_draws_a_panel_where_no_attack_succeeded(tmp_path):
    from reports.plots import time_versus_l0

    summary = pd.DataFrame([
        {"dataset": "d", "model": "m", "attack": a, "mode": mode, "fooling_rate": fr,
         "median_l0_pixels": l0, "seconds_per_sample": 0.01}
        for a, mode, fr, l0 in [("x", "untargeted", 50.0, 12.0), ("y", "untargeted", 100.0, 30.0),
                                ("x", "targeted", 0.0, np.nan), ("y", "targeted", 0.0, np.nan)]])
    path = time_versus_l0(summary, tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG)
