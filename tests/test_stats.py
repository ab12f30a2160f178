"""Intervals and paired comparisons (reports/stats.py): known values, determinism, coverage, and `compare`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config import parse_config
from bench.errors import SparseBenchError
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.stats import (
    bootstrap_median_interval,
    compare_attacks,
    paired_comparison,
    verdict,
    wilson_interval,
)
from reports.tables import format_table, summarize, write_tables

INF = np.inf


# Wilson -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("successes", "n", "lo", "hi"), [
    (0, 20, 0.0, 0.16112),      # none of 20: the true rate may still be up to ~16%
    (20, 20, 0.83888, 1.0),
    (10, 20, 0.29930, 0.70070),
    (1, 1, 0.20654, 1.0),
    (19, 20, 0.76389, 0.99113),
])
def test_wilson_matches_known_values(successes, n, lo, hi):
    assert wilson_interval(successes, n) == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_agrees_with_scipy_on_a_grid():
    from scipy.stats import binomtest

    for n in (1, 7, 20, 60, 500):
        for successes in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for confidence in (0.9, 0.95, 0.99):
                ours = wilson_interval(successes, n, confidence)
                theirs = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
                assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_wilson_is_nan_without_samples_and_widens_with_confidence():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    lo90, hi90 = wilson_interval(10, 20, confidence=0.90)
    lo99, hi99 = wilson_interval(10, 20, confidence=0.99)
    assert lo99 < lo90 < 0.5 < hi90 < hi99


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"successes": 3, "n": 2}, "successes"), ({"successes": -1, "n": 2}, "successes"),
    ({"successes": 0, "n": -1}, "n"), ({"successes": 1, "n": 2, "confidence": 1.0}, "confidence"),
])
def test_wilson_names_a_bad_value(kwargs, field):
    with pytest.raises(SparseBenchError, match=f"^{field}: "):
        wilson_interval(**kwargs)


# bootstrap --------------------------------------------------------------------------------------------------------

def test_bootstrap_is_deterministic_and_trivial_at_zero_or_one_value():
    values = np.random.default_rng(1).integers(1, 40, size=31)
    first = bootstrap_median_interval(values, seed=7)
    assert first == bootstrap_median_interval(values.tolist(), seed=7)
    assert first[0] <= np.median(values) <= first[1] and first[0] < first[1]
    assert bootstrap_median_interval([5.0], seed=0) == (5.0, 5.0)
    assert all(math.isnan(v) for v in bootstrap_median_interval([], seed=0))
    assert bootstrap_median_interval([3, 3, 3, 3], seed=0) == (3.0, 3.0)
    with pytest.raises(SparseBenchError, match="^values: holds an infinity"):
        bootstrap_median_interval([1.0, INF], seed=0)


def test_bootstrap_matches_resampling_by_index():
    """The counts shortcut gives the textbook bootstrap distribution: compare quantiles with a direct resample."""
    values = np.random.default_rng(2).integers(1, 15, size=40).astype(float)
    indices = np.random.default_rng(3).integers(0, len(values), size=(40_000, len(values)))
    direct = np.quantile(np.median(values[indices], axis=1), [0.025, 0.975])
    assert bootstrap_median_interval(values, seed=4, resamples=40_000) == pytest.approx(tuple(direct), abs=0.5)


def test_bootstrap_covers_the_true_median_about_as_often_as_it_says():
    rng = np.random.default_rng(0)
    trials = 300
    covered = 0
    for trial in range(trials):
        values = rng.exponential(size=41)  # true median ln 2
        lo, hi = bootstrap_median_interval(values, seed=trial, resamples=500)
        covered += lo <= math.log(2) <= hi
    assert 0.88 <= covered / trials <= 0.99


# paired comparison ------------------------------------------------------------------------------------------------

def test_paired_counts_treat_a_failure_as_infinite_l0():
    a = [1, 5, INF, INF, 3, 4, 2]
    b = [2, 5, INF, 7, INF, 3, 2]
    result = paired_comparison(a, b)
    # wins: 1 < 2, 3 < inf; ties: 5 = 5, inf = inf, 2 = 2; losses: inf > 7, 4 > 3
    assert (result.n, result.wins, result.ties, result.losses) == (7, 2, 3, 2)
    assert result.sign_test_p == pytest.approx(1.0)
    assert math.isnan(result.wilcoxon_p)  # failures: no size for the differences
    # ratio over samples both fooled: 1/2, 5/5, 4/3, 2/2 -> median of [0.5, 1, 1, 1.333] = 1.0
    assert result.ratio_samples == 4 and result.median_ratio == pytest.approx(1.0)
    assert result.median_ratio_lo <= 1.0 <= result.median_ratio_hi


def test_sign_test_p_by_hand_and_wilcoxon_without_failures():
    result = paired_comparison(np.arange(1, 9), np.arange(1, 9) + 1.0)  # A wins all 8
    assert (result.wins, result.ties, result.losses) == (8, 0, 0)
    assert result.sign_test_p == pytest.approx(2 * 0.5 ** 8)  # 0.0078
    assert result.wilcoxon_p == pytest.approx(2 / 2 ** 8)  # exact: all 8 ranks on one side
    assert verdict(result) == "wins (p=0.0078)"
    # 6 wins, 2 losses: p = 2 * P(X <= 2 | n=8) = 2 * (1 + 8 + 28) / 256
    mixed = paired_comparison([1, 1, 1, 1, 1, 1, 9, 9, 4], [2, 2, 2, 2, 2, 2, 3, 3, 4])
    assert (mixed.wins, mixed.ties, mixed.losses) == (6, 1, 2)
    assert mixed.sign_test_p == pytest.approx(2 * 37 / 256)
    assert verdict(mixed) == "no significant difference (p=0.29)"
    lost = paired_comparison([INF] * 8, [3] * 8)
    assert verdict(lost, against="fmn-l0") == "loses to fmn-l0 (p=0.0078)"
    assert lost.ratio_samples == 0 and math.isnan(lost.median_ratio)


def test_all_ties_zero_l0_and_no_sample():
    tied = paired_comparison([INF, 4], [INF, 4])
    assert (tied.wins, tied.ties, tied.losses, tied.sign_test_p) == (0, 2, 0, 1.0) and math.isnan(tied.wilcoxon_p)
    zeros = paired_comparison([0, 2, 6], [3, 0, 3])  # pairs with an L0 of 0 leave the ratio
    assert zeros.ratio_samples == 1 and zeros.median_ratio == 2.0
    empty = paired_comparison([], [])
    assert empty.n == 0 and math.isnan(empty.sign_test_p) and verdict(empty) == "no paired sample"
    with pytest.raises(SparseBenchError, match="^l0_b: has 1 samples, l0_a 2"):
        paired_comparison([1, 2], [1])
    with pytest.raises(SparseBenchError, match="^l0_a: holds NaN"):
        paired_comparison([np.nan], [1])


def _rows(attack: str, l0s: list[int | None], *, mode: str = "untargeted", start: int = 0) -> list[dict]:
    return [{"dataset": "d", "model": "m", "attack": attack, "mode": mode, "sample_id": f"test/{start + i}",
             "input_sha1": f"h{start + i}", "target": None if mode == "untargeted" else 1,
             "success": int(l0 is not None), "l0_pixels": l0 or 0, "l0_elements": 2 * (l0 or 0), "seconds": 0.1,
             "forward_passes": 1.0, "backward_passes": 1.0, "valid": 1} for i, l0 in enumerate(l0s)]


def test_compare_attacks_pairs_by_sample_not_by_row_order():
    a = _rows("a", [1, 2, 3, None, 5])
    b = _rows("b", [2, 2, None, None, 4, 9], start=0)  # one more sample: left out
    samples = pd.DataFrame(a + b[::-1])                # b's rows in reverse order
    table = compare_attacks(samples, "a", "b")
    row = table.iloc[0]
    assert (row["samples"], row["wins"], row["ties"], row["losses"]) == (5, 2, 2, 1)
    assert row["a_fooling_rate"] == pytest.approx(80.0) and row["b_fooling_rate"] == pytest.approx(60.0)
    assert (row["a_fooling_rate_lo"], row["a_fooling_rate_hi"]) == pytest.approx(
        tuple(100 * v for v in wilson_interval(4, 5)))
    assert row["median_ratio"] == pytest.approx(1.0)  # 1/2, 2/2, 5/4
    elements = compare_attacks(samples, "a", "b", unit="elements").iloc[0]
    assert elements["median_ratio"] == pytest.approx(1.0) and elements["wins"] == 2
    with pytest.raises(SparseBenchError, match="^b: attack 'c' is not in these samples; attacks: a, b"):
        compare_attacks(samples, "a", "c")
    with pytest.raises(SparseBenchError, match="^unit: 'bytes'"):
        compare_attacks(samples, "a", "b", unit="bytes")


# the tables -------------------------------------------------------------------------------------------------------

def test_summary_has_interval_columns_and_the_display_folds_them(tmp_path):
    samples = pd.DataFrame(_rows("a", [3] * 19 + [None]) + _rows("b", [None] * 20))
    summary = summarize(samples, budgets=[5])
    a = summary.set_index("attack").loc["a"]
    assert a["fooling_rate"] == 95.0
    assert (a["fooling_rate_lo"], a["fooling_rate_hi"]) == pytest.approx((76.387, 99.112), abs=1e-3)
    assert (a["median_l0_pixels_lo"], a["median_l0_pixels_hi"]) == (3.0, 3.0)
    assert (a["median_l0_elements"], a["median_l0_elements_lo"]) == (6.0, 6.0)
    assert summary.set_index("attack").loc["b", "fooling_rate_hi"] == pytest.approx(16.112, abs=1e-3)
    assert summary.equals(summarize(samples, budgets=[5]))  # seeded: the same table every time
    existing = ["dataset", "model", "attack", "mode", "samples", "fooling_rate", "mean_l0_elements",
                "median_l0_elements", "mean_l0_pixels", "median_l0_pixels", "fr@5", "seconds_per_sample",
                "forward_per_sample", "backward_per_sample", "invalid"]
    assert [c for c in summary.columns if c in existing] == existing  # the old columns keep their order
    shown = format_table(summary)
    assert list(shown.columns) == existing
    assert shown["fooling_rate"].tolist() == ["95.0 [76.4, 99.1]", "0.0 [0.0, 16.1]"]
    assert shown["median_l0_pixels"].tolist() == ["3.0 [3.0, 3.0]", "-"]
    paths = write_tables(summary, tmp_path)
    csv = pd.read_csv(paths["csv"])
    assert csv.loc[0, "fooling_rate_lo"] == pytest.approx(a["fooling_rate_lo"], rel=1e-12)
    assert "95.0 \\[76.4, 99.1\\]" in paths["md"].read_text()  # escaped: not a link
    assert "95.0 {[}76.4, 99.1{]}" in paths["tex"].read_text()  # escaped: not an optional argument


# the command line on a real run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_attack_store(tmp_path_factory, tiny_model):
    directory = tmp_path_factory.mktemp("compare")
    config = parse_config({
        "name": "compare", "n_samples": 8, "batch_size": 8, "modes": ["untargeted"], "budgets": [5],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}},
                    {"name": "lin2025", "overrides": {"steps": 5}}],
    })
    with ResultsStore(directory / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
        samples = store.samples(run_id)
    return directory / "s.sqlite", run_id, samples


def test_compare_command_prints_the_paired_numbers(two_attack_store, capsys):
    store, run_id, samples = two_attack_store
    assert main(["compare", "--store", str(store), "--run", run_id, "lin2025", "i-fgsm", "--unit", "pixels"]) == 0
    out = capsys.readouterr().out
    lin = samples[samples["attack"] == "lin2025"].set_index("sample_id")
    fgsm = samples[samples["attack"] == "i-fgsm"].set_index("sample_id").loc[lin.index]
    l0_a = lin["l0_pixels"].where(lin["success"] == 1, np.inf).to_numpy()
    l0_b = fgsm["l0_pixels"].where(fgsm["success"] == 1, np.inf).to_numpy()
    expected = paired_comparison(l0_a, l0_b)
    line = next(line for line in out.splitlines() if line.startswith("| fashion-mnist"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    header = [cell.strip() for cell in out.splitlines()[out.splitlines().index(line) - 2].strip("|").split("|")]
    row = dict(zip(header, cells))
    assert row["paired samples"] == str(len(lin)) == "8"
    assert (row["wins"], row["ties"], row["losses"]) == tuple(map(str, (expected.wins, expected.ties,
                                                                         expected.losses)))
    lo, hi = wilson_interval(int(lin["success"].sum()), len(lin))
    assert row["lin2025 (A) fooling_rate"] == f"{100 * lin['success'].mean():.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    assert "sign_test_p" in header and "median_ratio" in header and "verdict" in header


def test_compare_command_names_an_unknown_attack(two_attack_store, capsys):
    store, run_id, _ = two_attack_store
    assert main(["compare", "--store", str(store), "--run", run_id, "lin2025", "sparse-magic"]) == 2
    err = capsys.readouterr().err
    assert f"attack 'sparse-magic' is not in run {run_id}; its attacks: i-fgsm, lin2025" in err
    assert main(["compare", "--store", str(store), "lin2025", "lin2025"]) == 2
    assert "compare two different attacks" in capsys.readouterr().err
