"""The leaderboard: optimality on hand-built samples, alignment, the Markdown, and the HTML page in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from bench.cli import build_parser
from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore, SampleRow
from reports.leaderboard import align_samples, optimality, optimality_scores, write_leaderboard
from reports.plots import robust_accuracy

INF = np.inf


def _leaderboard(*argv: str) -> int:
    args = build_parser().parse_args(["leaderboard", *argv])
    return args.func(args)


def _row(index: int, l0: int | None, *, target: int | None = None, sha: str | None = None) -> SampleRow:
    """One stored sample: fooled with ``l0`` changed pixels, or not fooled (``l0=None``)."""
    return SampleRow(sample_id=f"test/{index}", sample_index=index, input_sha1=sha or f"sha-{index}", batch=0,
                     label=1, target=target, adversarial_prediction=2 if l0 is not None else 1, valid=True,
                     violation="", success=l0 is not None, l0_elements=l0 or 0, l0_pixels=l0 or 0, l1=0.0,
                     l2=0.0, linf=0.0, forward_passes=10.0, backward_passes=5.0,
                     seconds=0.001 * (1 + (l0 or 0)))


def _hand_store(path, runs: dict[str, dict[str, list[int | None]]], *, mode: str = "untargeted") -> None:
    """A store with ``{run_id: {attack: [l0 or None per sample]}}`` on dataset fmnist, model m."""
    with ResultsStore(path) as store:
        for run_id, attacks in runs.items():
            store.create_run(run_id, name=f"name-{run_id}", created=f"2025-01-0{len(run_id)}T00:00:00",
                             config={"budgets": [1, 5, 10], "budget_unit": "pixels"}, seed=7,
                             versions={"torch": "2.x", "sparsebench": "0.1.0"}, git_commit=f"commit-{run_id}",
                             hardware={"device": "cpu", "cpu_count": 2, "machine": "x86_64"})
            for attack, values in attacks.items():
                rows = [_row(i, l0) for i, l0 in enumerate(values)]
                store.put_batch(run_id, ("fmnist", "m", attack, mode), rows, [])


# optimality -------------------------------------------------------------------------------------------------------

def test_an_attack_equal_to_the_per_sample_best_scores_one_and_a_failure_scores_less():
    l0 = pd.DataFrame({"best": [2.0, 1.0, 4.0], "worse": [3.0, 7.0, 4.0], "fails-one": [2.0, INF, 4.0]})
    scores, budget = optimality_scores(l0)
    assert budget == 4.0
    assert scores["best"] == 1.0
    assert 0 < scores["worse"] < 1 and 0 < scores["fails-one"] < 1


def test_optimality_matches_a_hand_computation_and_the_curve_areas():
    # a: [2, 5, fail], b: [3, 1, 4]; per-sample best [2, 1, 4], so K = 4.
    # Success rate summed over budgets k = 1..4 (per sample: max(K - d + 1, 0)):
    # best 3 + 4 + 1 = 8; a 3 + 0 + 0 = 3; b 2 + 4 + 1 = 7.
    l0 = pd.DataFrame({"a": [2.0, 5.0, INF], "b": [3.0, 1.0, 4.0]})
    scores, budget = optimality_scores(l0)
    assert budget == 4.0
    assert scores["a"] == pytest.approx(3 / 8) and scores["b"] == pytest.approx(7 / 8)
    # The same from the robust-accuracy curves the figures draw: area above each curve over budgets 1..K.
    def area(values):
        frame = pd.DataFrame({"success": np.isfinite(values), "l0_pixels": np.nan_to_num(values, posinf=0)})
        return (100 - robust_accuracy(frame, range(1, 5))).sum()
    best = np.minimum(l0["a"], l0["b"]).to_numpy()
    for attack in ("a", "b"):
        assert scores[attack] == pytest.approx(area(l0[attack].to_numpy()) / area(best))


def test_optimality_is_undefined_when_nothing_was_fooled_and_needs_aligned_samples():
    scores, budget = optimality_scores(pd.DataFrame({"a": [INF, INF], "b": [INF, INF]}))
    assert scores.isna().all() and np.isnan(budget)
    with pytest.raises(ValueError, match="every attack must have run on every sample"):
        optimality_scores(pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2.0]}))


# alignment --------------------------------------------------------------------------------------------------------

def _frame(rows: list[tuple[str, str, str, int | None, int | None]], mode: str = "untargeted") -> pd.DataFrame:
    """(attack, sample_id, sha1, target, l0 or None) -> the columns the store's samples() gives."""
    return pd.DataFrame([{"run_id": "r", "dataset": "d", "model": "m", "attack": attack, "mode": mode,
                          "sample_id": sample, "input_sha1": sha, "target": target, "success": int(l0 is not None),
                          "l0_pixels": l0 or 0, "l0_elements": l0 or 0} for attack, sample, sha, target, l0 in rows])


def test_a_sample_only_one_attack_ran_is_dropped_and_reported():
    samples = _frame([("a", "s1", "h1", None, 3), ("b", "s1", "h1", None, 5),
                      ("a", "s2", "h2", None, 1),                              # only a ran s2
                      ("a", "s3", "h3", None, 2), ("b", "s3", "other", None, 2)])  # same id, another input
    kept, coverage = align_samples(samples)
    assert sorted(kept["sample_id"]) == ["s1", "s1"]
    assert coverage.to_dict("records") == [{"dataset": "d", "model": "m", "mode": "untargeted", "attacks": 2,
                                            "samples": 1, "dropped": 3, "missing": "a lacks 1, b lacks 2"}]
    # Without the dropped samples a would look best on s2 alone; on the shared sample it is the best.
    assert optimality(kept).set_index("attack")["optimality"].to_dict() == {"a": 1.0, "b": 0.0}


def test_targeted_samples_line_up_only_with_the_same_target():
    samples = _frame([("a", "s1", "h1", 3, 4), ("b", "s1", "h1", 3, 6), ("a", "s2", "h2", 1, 4),
                      ("b", "s2", "h2", 5, 4)], mode="targeted")
    kept, coverage = align_samples(samples)
    assert set(kept["sample_id"]) == {"s1"} and coverage["dropped"].tolist() == [2]


# the pages from a store -------------------------------------------------------------------------------------------

def test_markdown_ranks_the_attacks_and_says_where_lin2025_loses(tmp_path):
    _hand_store(tmp_path / "s.sqlite", {"r1": {
        "lin2025": [9, 3, None, 100, 4],
        "fmn-l0": [10, 2, 50, 100, 4],
        "none": [None] * 4,  # ran 4 of the 5 samples: the fifth is dropped for everyone
    }})
    assert _leaderboard("--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")) == 0
    page = (tmp_path / "out" / "leaderboard.md").read_text()
    table = page[re.search(r"\|\s+rank \|", page).start():page.index("Ranks (1 = best")]
    attacks = [line.split("|")[2].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    assert attacks == ["fmn-l0", "**lin2025** (proposed)", "none"]
    # best [9, 2, 50, 100], K = 100: fmn-l0 (91+99+51+1)/243, lin2025 (92+98+0+1)/243, none 0.
    assert re.search(r"\|\s+1 \| fmn-l0\s+\|\s+0\.996 \|", table)
    assert re.search(r"\|\s+2 \| \*\*lin2025\*\* \(proposed\) \|\s+0\.786 \|", table)
    assert "4 samples attacked by all 3 attacks; 1 dropped because not every attack ran on them (none lacks 1)" in page
    assert ("lin2025 (proposed) ranks by optimality 2 of 3 (0.786; best fmn-l0, 0.996), by fooling rate 2 of 3 "
            "(75.0%), by median L0 1 of 3 (9.0 pixels). It loses on optimality to fmn-l0.") in page
    assert "ranks first (or ties) by optimality on 0 of 1 comparisons; it loses on m untargeted (to fmn-l0)" in page
    # intervals: Wilson for 4 of 4 and 3 of 4 fooled; the bootstrap interval of the median L0
    assert re.search(r"\| fmn-l0\s+\|\s+0\.996 \| 100\.0 \\\[51\.0, 100\.0\\\] \|", table)
    assert re.search(r"\(proposed\) \|\s+0\.786 \| 75\.0 \\\[30\.1, 95\.4\\\]\s+\|", table)
    assert re.search(r"\| 9\.0 \\\[3\.0, 100\.0\\\]\s+\|", table)
    # each attack against the leader, sample by sample: lin2025 [9, 3, -, 100] against fmn-l0 [10, 2, 50, 100]
    pairwise = page[page.index("Each attack against the leader"):page.index("## Global optimality")]
    assert re.search(r"\| lin2025\s+\| fmn-l0\s+\|\s+4 \|\s+1 \|\s+1 \|\s+2 \|\s+1\s+\|", pairwise)
    assert re.search(r"\| none\s+\| fmn-l0\s+\|\s+4 \|\s+0 \|\s+0 \|\s+4 \|\s+0\.12 \|.*no significant "
                     r"difference \(p=0\.12\)", pairwise)
    html = (tmp_path / "out" / "leaderboard.html").read_text()
    assert 'id="p-fmnist-m-untargeted"' in html and "100.0 [51.0, 100.0]" in html
    for provenance in ("commit-r1", '"torch": "2.x"', '"cpu_count": 2', '"budgets": [1, 5, 10]'):
        assert provenance in page
    assert f"sparsebench leaderboard --store {tmp_path / 's.sqlite'} --run r1 --out {tmp_path / 'out'}" in page
    assert "](plots/robust-accuracy.png)" in page and (tmp_path / "out" / "plots" / "time-versus-l0.png").exists()


def test_lin2025_first_and_runs_combined(tmp_path):
    _hand_store(tmp_path / "s.sqlite", {"r1": {"lin2025": [1, 2, 3]}, "r22": {"sparse-rs": [2, 2, None]}})
    out = tmp_path / "out"
    assert _leaderboard("--store", str(tmp_path / "s.sqlite"), "--run", "r1", "--run", "r22", "--out", str(out),
                        "--budgets", "2,1") == 0
    page = (out / "leaderboard.md").read_text()
    assert "It is first on optimality." in page and re.search(r"fr@1 +\| +fr@2 \|", page)
    assert re.search(r"\*\*lin2025\*\* \(proposed\) \|.*\| r1\s+\|", page)
    assert re.search(r"\| sparse-rs .*\| r22\s+\|", page)
    assert "commit-r1" in page and "commit-r22" in page


def test_errors_name_the_option(tmp_path):
    _hand_store(tmp_path / "s.sqlite", {"r1": {"lin2025": [1]}, "r22": {"lin2025": [2]}})
    store = str(tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match="attack 'lin2025' on fmnist/m/untargeted is in runs r1, r22"):
        _leaderboard("--store", store, "--run", "r1", "--run", "r22", "--out", str(tmp_path / "o"))
    with pytest.raises(ValueError, match="--run: 'nope' is not in"):
        _leaderboard("--store", store, "--run", "nope")
    with pytest.raises(ValueError, match="--budgets: 'x'"):
        _leaderboard("--store", store, "--budgets", "1,x")
    with pytest.raises(ValueError, match="--store: .* does not exist"):
        _leaderboard("--store", str(tmp_path / "missing.sqlite"))
    assert not (tmp_path / "missing.sqlite").exists()


def test_help_says_what_it_ranks(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["leaderboard", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for words in ("--store", "--run", "--out", "--budgets", "--unit", "optimality", "#sort=", "repeat"):
        assert words in out


def test_a_real_run_combined_with_another_on_fewer_samples(tmp_path, tiny_model):
    """Two real runs of the harness (same seed, one on fewer samples): the extra samples are dropped."""
    base = {"seed": 3, "batch_size": 6, "modes": ["untargeted"], "budgets": [5, 50],
            "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}]}
    with ResultsStore(tmp_path / "s.sqlite") as store:
        first = run_benchmark(parse_config({**base, "name": "one", "n_samples": 6,
                                            "attacks": [{"name": "lin2025", "overrides": {"steps": 5}}]}),
                              store, load_model=lambda *_: tiny_model, progress=False)
        second = run_benchmark(parse_config({**base, "name": "two", "n_samples": 4,
                                             "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}]}),
                               store, load_model=lambda *_: tiny_model, progress=False)
        paths = write_leaderboard(store, [first, second], tmp_path / "out", unit="elements")
    page = paths["markdown"].read_text()
    assert "4 samples attacked by all 2 attacks; 2 dropped because not every attack ran on them (i-fgsm lacks 2)" in page
    assert re.search(r"fr@5 +\| +fr@50 \|", page) and "median_l0_elements" in page
    assert first in page and second in page and "On smallcnn-standard (fashion-mnist, untargeted), lin2025" in page
    assert paths["html"].read_text().count("data:image/png;base64,") == 2


# the page in a browser --------------------------------------------------------------------------------------------

class _Rows(HTMLParser):
    """Rows of each table in a dumped DOM: ``{table id: [[cell data-value, ...], ...]}``, and the <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.body: dict[str, str | None] = {}
        self.images: list[str] = []
        self._table: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._table:
            self.tables[self._table][-1].append(attrs.get("data-value"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_browser() is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_page_sorts_from_the_url_fragment_in_a_headless_browser(tmp_path):
    # Median L0 9, 10, 100 and none: a text sort would put "9" first; "-" must stay last.
    _hand_store(tmp_path / "s.sqlite", {"r1": {
        "lin2025": [9, 9, 9], "fmn-l0": [10, 10, 10], "sparse-rs": [100, 100, 100], "none": [None] * 3}})
    paths = write_leaderboard(ResultsStore(tmp_path / "s.sqlite"), ["r1"], tmp_path / "out")
    table = "t-fmnist-m-untargeted"
    fragment = f"#sort={table}:median_l0_pixels:desc;r-fmnist-m-untargeted:no-such-column:asc"
    result = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                             paths["html"].resolve().as_uri() + fragment],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Rows()
    dom.feed(result.stdout)
    assert dom.body.get("data-ready") == "1", "the page's script did not finish"
    assert "data-error" not in dom.body, dom.body.get("data-error")
    assert dom.body.get("data-images-loaded") == "2/2"
    assert len(dom.images) == 2 and all(src.startswith("data:image/png;base64,iVBOR") for src in dom.images)
    rows = [cells for cells in dom.tables[table] if cells]
    attack_column = 1  # rank, attack, optimality, ...
    median_column = 4 + 3  # ... fooling_rate, fr@1, fr@5, fr@10, median_l0_pixels
    assert [cells[attack_column] for cells in rows] == ["sparse-rs", "fmn-l0", "lin2025", "none"]
    assert [cells[median_column] for cells in rows] == ["100.0", "10.0", "9.0", ""]
    # The unknown column is reported on the page, not raised; the ranks table keeps its order.
    assert "no-such-column" in dom.body.get("data-sort-error", "")
    assert [cells[0] for cells in dom.tables["r-fmnist-m-untargeted"] if cells] == ["lin2025", "fmn-l0", "sparse-rs", "none"]
