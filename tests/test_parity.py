"""`sparsebench parity`: native baselines paired with their references, and the goal each must meet."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bench.cli import main
from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.parity import FOOLED_SLACK, L0_RATIO_MAX, NO_NATIVE, parity_of_run, parity_pairs, parity_table, unpaired


def _attacks(*names_and_labels):
    return [{"name": name, "label": label} for name, label in names_and_labels]


def test_pairs_follow_the_name_rule_and_the_explicit_table():
    attacks = _attacks(("fmn-l0", "fmn-l0"), ("adv-lib/fmn-l0", "adv-lib/fmn-l0"), ("vfga", "vfga-short"),
                       ("adv-lib/vfga", "ref"), ("torchattacks/jsma", "torchattacks/jsma"), ("cw-l0", "cw-l0"))
    attacks.append({"label": "mine", "function": "somewhere:mine"})  # an outside attack: no registry name
    assert parity_pairs(attacks) == [("fmn-l0", "adv-lib/fmn-l0"), ("vfga-short", "ref")]
    assert unpaired(attacks) == ["torchattacks/jsma", "cw-l0", "mine"]
    assert "torchattacks/jsma" in NO_NATIVE
    # A reference named otherwise pairs only through the explicit table.
    assert parity_pairs(attacks, {"cw-l0": ("torchattacks/jsma",)})[-1] == ("cw-l0", "torchattacks/jsma")
    # Two wrappers of one attack are not each other's reference.
    assert parity_pairs(_attacks(("art/cw-l0", "a"), ("other/cw-l0", "b"))) == []
    # prune/<name> is the attack plus a pruning pass, not a library's implementation of it.
    assert parity_pairs(_attacks(("fmn-l0", "fmn-l0"), ("prune/fmn-l0", "prune/fmn-l0"))) == []


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory, tiny_model):
    """A real run on the tiny model: VFGA beside adv-lib's at equal budgets (both succeed everywhere here), and
    FMN-L0 starved to 2 steps beside adv-lib's with 100 (so the native one must fall short)."""
    config = parse_config({
        "name": "parity-tiny", "n_samples": 8, "batch_size": 8, "modes": ["untargeted", "targeted"], "budgets": [5],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [
            {"name": "vfga", "overrides": {"max_iter": 200}},
            {"name": "adv-lib/vfga", "overrides": {"max_iter": 200}},
            {"name": "fmn-l0", "overrides": {"steps": 2}, "modes": ["untargeted"]},
            {"name": "adv-lib/fmn-l0", "overrides": {"steps": 100}, "modes": ["untargeted"]},
            {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}, "modes": ["untargeted"]},
        ],
    })
    path = tmp_path_factory.mktemp("parity") / "store.sqlite"
    with ResultsStore(path) as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    return path, run_id


def test_parity_table_of_a_real_run(parity_run):
    path, run_id = parity_run
    with ResultsStore(path, readonly=True) as store:
        table, left = parity_of_run(store, run_id)
        samples = store.run_samples(run_id)
    assert left == ["i-fgsm"]
    assert list(zip(table["native"], table["mode"])) == [("vfga", "untargeted"), ("vfga", "targeted"),
                                                        ("fmn-l0", "untargeted")]
    assert (table["samples"] == 8).all()
    for row in table.itertuples():
        # The columns are the store's numbers, and the verdict follows from them by the goal's rule.
        for side, label in (("native", row.native), ("reference", row.reference)):
            unit = samples[(samples["attack"] == label) & (samples["mode"] == row.mode)]
            assert getattr(row, f"{side}_fooling_rate") == pytest.approx(100 * unit["success"].mean())
            won = unit[unit["success"].astype(bool)]["l0_pixels"]
            assert getattr(row, f"{side}_median_l0") == (won.median() if len(won) else pytest.approx(np.nan, nan_ok=True))
        assert row.wins + row.ties + row.losses == row.samples
        fooled_ok = row.native_fooling_rate * 8 / 100 >= row.reference_fooling_rate * 8 / 100 - FOOLED_SLACK
        assert row.fooling_ok == fooled_ok
        if not np.isnan(row.l0_ratio):
            assert row.l0_ok == (row.l0_ratio <= L0_RATIO_MAX + 1e-9)
        assert row.verdict.startswith("pass") == (row.fooling_ok and row.l0_ok)
    starved = table[table["native"] == "fmn-l0"].iloc[0]
    assert starved["reference_fooling_rate"] == 100 and starved["native_fooling_rate"] < 75
    assert starved["verdict"].startswith("FAIL: fools") and not starved["fooling_ok"]
    assert starved["losses"] > starved["wins"]


def test_goal_on_constructed_samples(parity_run):
    """The goal's edges: one sample fewer passes, two fail; a ratio of exactly 1.1 passes, above fails."""
    path, run_id = parity_run
    with ResultsStore(path, readonly=True) as store:
        samples = store.run_samples(run_id)
    rows = samples[(samples["attack"].isin(["vfga", "adv-lib/vfga"])) & (samples["mode"] == "untargeted")].copy()
    attacks = _attacks(("vfga", "vfga"), ("adv-lib/vfga", "adv-lib/vfga"))
    native, reference = rows["attack"] == "vfga", rows["attack"] == "adv-lib/vfga"

    def verdict(native_l0, reference_l0):
        changed = rows.copy()
        for mask, l0 in ((native, native_l0), (reference, reference_l0)):
            changed.loc[mask, "l0_pixels"] = [v if v is not None else 0 for v in l0]
            changed.loc[mask, "success"] = [int(v is not None) for v in l0]
        return parity_table(changed, attacks).iloc[0]

    assert verdict([10] * 8, [10] * 8)["verdict"] == "pass"
    assert verdict([10] * 7 + [None], [10] * 8)["verdict"] == "pass"  # one sample fewer: allowed
    assert verdict([10] * 6 + [None] * 2, [10] * 8)["verdict"] == "FAIL: fools 2 fewer"
    assert verdict([11] * 8, [10] * 8)["verdict"] == "pass"  # exactly 1.1x
    row = verdict([12] * 8, [10] * 8)
    assert row["verdict"] == "FAIL: median L0 1.200x" and row["l0_ratio"] == pytest.approx(1.2)
    assert (row["wins"], row["ties"], row["losses"]) == (0, 0, 8)
    # neither fools anything: nothing to fall behind, and the verdict says that it tells nothing
    assert verdict([None] * 8, [None] * 8)["verdict"] == "pass (no information: neither fooled any sample)"


def test_parity_command(parity_run, tmp_path, capsys):
    path, run_id = parity_run
    out = tmp_path / "out"
    assert main(["parity", "--store", str(path), "--run", run_id, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "adv-lib/vfga" in printed and "FAIL: fools" in printed and "Not compared (no partner in the run): i-fgsm" in printed
    for suffix in ("md", "tex", "csv"):
        assert (out / run_id / f"parity.{suffix}").exists()
    assert main(["parity", "--store", str(path), "--out", str(out), "--check"]) == 1  # latest run; a pair fails
    assert main(["parity", "--store", str(tmp_path / "missing.sqlite")]) == 2


def test_parity_command_in_a_subprocess(parity_run, tmp_path):
    path, run_id = parity_run
    result = subprocess.run([sys.executable, "-m", "bench.cli", "parity", "--store", str(path), "--out",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"Parity of run {run_id}" in result.stdout and "pass;" in result.stdout


def test_a_run_without_pairs_is_refused(tmp_path, tiny_model, capsys):
    config = parse_config({
        "name": "no-pairs", "n_samples": 2, "batch_size": 2, "modes": ["untargeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    assert main(["parity", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path)]) == 2
    assert "holds no native attack beside its reference" in capsys.readouterr().err
