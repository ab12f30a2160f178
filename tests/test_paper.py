"""The paper's numbers as data, and the table that puts ours beside them."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.config import load_config, resolve_config
from bench.registry import ATTACKS
from reports.paper import ATTACK_NAMES, PAPER_TABLES, compare_with_paper, rank_agreement
from reports.tables import format_table


def test_paper_values_as_in_spec():
    # Spot checks against shared/paper/SPEC.md (a typo here would put words in the paper's mouth).
    assert PAPER_TABLES["table1"].values["proposed"] == {
        "untargeted CIFAR-10": 44, "untargeted ImageNet": 57, "targeted CIFAR-10": 69, "targeted ImageNet": 136}
    assert PAPER_TABLES["table2"].values["GreedyFool"]["Fast-AT ImageNet"] == 24.9
    assert PAPER_TABLES["table3"].values["proposed"]["ResNet-101 -> ResNet-152"] == 89.9
    assert PAPER_TABLES["table4"].values["Homotopy"]["ResNet-152"] == 1462.2
    assert PAPER_TABLES["table1"].values["OnePixel"]["targeted CIFAR-10"] is None


@pytest.mark.parametrize("table", sorted(PAPER_TABLES))
def test_offline_configs_cover_their_columns(table):
    paper = PAPER_TABLES[table]
    config = load_config(resolve_config(f"paper-{table}-offline"))
    models = {m for d in config.datasets for m in d.models}
    for column in paper.columns["offline"]:
        assert column.mode in config.modes
        assert (column.source or column.model) in models
    assert "lin2025" in [a.name for a in config.attacks]
    for attack in config.attacks:  # only what the mapping can place
        assert attack.name in ATTACK_NAMES.values() or attack.name in ("fmn-l0",), attack.name
    online = load_config(resolve_config(f"paper-{table}"))
    assert {(c.dataset, c.source or c.model) for c in paper.columns["online"]} <= {
        (d.name, m) for d in online.datasets for m in d.models}


def test_registered_names_are_the_mapping_targets():
    assert set(ATTACK_NAMES.values()) <= set(ATTACKS)


def _units(rows, model="smallcnn-standard"):
    return pd.DataFrame([{"dataset": "fashion-mnist", "model": model, "attack": attack, "mode": mode, metric: value,
                          "fooling_rate": rate, "samples": 20} for attack, mode, metric, value, rate in rows])


TABLE1_OURS = _units([
    ("lin2025", "untargeted", "mean_l0_elements", 30.0, 65.0), ("fmn-l0", "untargeted", "mean_l0_elements", 20.0, 100.0),
    ("cw-l0", "untargeted", "mean_l0_elements", 40.0, 100.0),
    ("sparse-rs-min", "untargeted", "mean_l0_elements", 60.0, 100.0),
    ("lin2025", "targeted", "mean_l0_elements", 50.0, 100.0), ("fmn-l0", "targeted", "mean_l0_elements", 100.0, 100.0),
])


def test_offline_comparison_has_ratios_ranks_claims_and_no_difference():
    table = PAPER_TABLES["table1"]  # L0: lower is better
    comparison = compare_with_paper(table, TABLE1_OURS, where="offline")
    assert not [c for c in comparison.columns if "difference" in c]
    result = comparison.set_index(["method (paper)", "paper setting"])
    mine = result.loc[("proposed", "untargeted CIFAR-10")]
    assert mine["paper mean_l0_elements"] == 44 and mine["our mean_l0_elements"] == 30.0
    assert mine["our setting"] == "fashion-mnist smallcnn-standard untargeted"
    assert "our fooling rate 65.0%" in mine["note"] and "20 samples" in mine["note"]
    # Ratios to FMN in the same column, each side within its own experiment.
    assert mine["paper ratio to FMN"] == pytest.approx(44 / 106) and mine["our ratio to FMN"] == pytest.approx(1.5)
    assert result.loc[("C&W-L0", "untargeted CIFAR-10")]["our ratio to FMN"] == pytest.approx(2.0)
    assert result.loc[("FMN", "targeted CIFAR-10")]["paper ratio to FMN"] == 1.0
    assert pd.isna(result.loc[("SA-MOO", "untargeted CIFAR-10")]["our ratio to FMN"])
    # Ranks, 1 = fewest elements: the paper's OnePixel (1) comes before the proposed attack (44).
    untargeted = result.xs("untargeted CIFAR-10", level="paper setting")
    assert untargeted["paper rank"].to_dict() == {
        "OnePixel": 1, "proposed": 2, "C&W-L0": 3, "SparseFool": 4, "BruSLeAttack": 5, "EGS-TSSA": 6, "FMN": 7,
        "Sparse-RS": 8, "SA-MOO": 9}
    assert untargeted["our rank"].dropna().to_dict() == {"FMN": 1, "proposed": 2, "C&W-L0": 3, "Sparse-RS": 4}
    # The paper's claims: its order of the proposed attack and each method, and whether ours has it.
    claims = untargeted[["paper claim (proposed vs this method)", "claim in our run"]].dropna().apply(tuple, axis=1)
    assert claims.to_dict() == {
        "C&W-L0": ("proposed better", "holds"), "OnePixel": ("proposed worse", "not run"),
        "SparseFool": ("proposed better", "not run"), "FMN": ("proposed better", "fails"),
        "Sparse-RS": ("proposed better", "holds"), "SA-MOO": ("proposed better", "not run"),
        "EGS-TSSA": ("proposed better", "not run"), "BruSLeAttack": ("proposed better", "not run")}
    assert result.loc[("FMN", "targeted CIFAR-10")]["claim in our run"] == "holds"  # 50 < 100 as 69 < 183
    # A value the paper does not report makes no claim, and no rank.
    onepixel = result.loc[("OnePixel", "targeted CIFAR-10")]
    assert pd.isna(onepixel["paper mean_l0_elements"]) and pd.isna(onepixel["paper rank"])
    assert pd.isna(onepixel["claim in our run"]) and onepixel["note"] == "not run"


def test_rank_agreement_per_column():
    table = PAPER_TABLES["table1"]
    agreement = rank_agreement(table, compare_with_paper(table, TABLE1_OURS, where="offline")).set_index("paper setting")
    # Paper order: proposed 44 < C&W 52 < FMN 106 < Sparse-RS 167; ours: FMN 20 < proposed 30 < C&W 40 < Sparse-RS 60.
    untargeted = agreement.loc["untargeted CIFAR-10"]
    assert untargeted["n"] == 4
    assert untargeted["Spearman rho"] == pytest.approx(0.4)  # 1 - 6 * (1 + 1 + 4 + 0) / (4 * 15)
    assert untargeted["Spearman p"] == pytest.approx(0.6)
    assert untargeted["Kendall tau"] == pytest.approx(1 / 3)  # 4 concordant pairs, 2 discordant, of 6
    assert untargeted["Kendall p"] == pytest.approx(0.75)  # exact, n = 4
    assert untargeted["paper's claims in our run"] == "2 hold, 1 fail, 5 not run"
    targeted = agreement.loc["targeted CIFAR-10"]
    assert targeted["n"] == 2 and pd.isna(targeted["Spearman rho"]) and "too few" in targeted["note"]
    assert targeted["paper's claims in our run"] == "1 hold, 0 fail, 5 not run"


def test_fooling_rate_tables_rank_higher_first():
    table = PAPER_TABLES["table2"]
    ours = _units([(a, "untargeted", "fooling_rate", v, v) for a, v in
                   (("lin2025", 40.0), ("fmn-l0", 80.0), ("greedyfool", 10.0))], model="smallcnn-pgd-at")
    result = compare_with_paper(table, ours, where="offline").set_index(["method (paper)", "paper setting"])
    column = result.xs("PGD-AT MNIST", level="paper setting")
    assert column["our rank"].dropna().to_dict() == {"FMN": 1, "proposed": 2, "GreedyFool": 3}
    assert column.loc["proposed", "paper rank"] == 1
    assert column.loc["proposed", "our ratio to FMN"] == pytest.approx(0.5)
    assert column.loc["proposed", "paper ratio to FMN"] == pytest.approx(13.8 / 7.9)
    assert column.loc["GreedyFool", "claim in our run"] == "holds"  # 40 > 10, as 13.8 > 3.6
    assert column.loc["FMN", "claim in our run"] == "fails"  # 40 < 80, but 13.8 > 7.9
    agreement = rank_agreement(table, compare_with_paper(table, ours, where="offline")).set_index("paper setting")
    assert agreement.loc["PGD-AT MNIST", "Spearman rho"] == pytest.approx(0.5)  # ranks (1, 2, 3) vs (2, 1, 3)


def test_table4_ratios_are_to_cw_l0_which_it_has():
    table = PAPER_TABLES["table4"]
    assert "FMN" not in table.values and table.reference in table.values
    ours = _units([("lin2025", "untargeted", "seconds_per_sample", 0.5, 60.0),
                   ("cw-l0", "untargeted", "seconds_per_sample", 2.0, 100.0)])
    result = compare_with_paper(table, ours, where="offline").set_index(["method (paper)", "paper setting"])
    mine = result.loc[("proposed", "VGG-16")]
    assert mine["paper ratio to C&W-L0"] == pytest.approx(4.6 / 20.8) and mine["our ratio to C&W-L0"] == 0.25
    assert result.loc[("C&W-L0", "VGG-16")]["claim in our run"] == "holds"


def test_online_keeps_the_plain_difference():
    table = PAPER_TABLES["table1"]
    ours = pd.DataFrame([{"dataset": "cifar10", "model": "robustbench/Standard", "attack": "lin2025",
                          "mode": "untargeted", "mean_l0_elements": 50.0, "fooling_rate": 100.0, "samples": 20}])
    result = compare_with_paper(table, ours, where="online").set_index(["method (paper)", "paper setting"])
    assert result.loc[("proposed", "untargeted CIFAR-10")]["difference (ours - paper)"] == pytest.approx(6.0)
    assert pd.isna(result.loc[("FMN", "untargeted CIFAR-10")]["difference (ours - paper)"])


def test_transfer_columns_pick_the_source():
    table = PAPER_TABLES["table3"]
    rows = [{"dataset": "fashion-mnist", "attack": attack, "mode": "untargeted", "source": s, "model": t,
             "fooling_rate": rate, "samples": 20}
            for attack, s, t, rate in (("lin2025", "smallcnn-standard", "mlp-standard", 40.0),
                                       ("lin2025", "mlp-standard", "mlp-standard", 90.0),
                                       ("fmn-l0", "smallcnn-standard", "mlp-standard", 50.0))]
    comparison = compare_with_paper(table, pd.DataFrame(rows), where="offline")
    assert "difference (ours - paper)" not in comparison.columns
    result = comparison.set_index(["method (paper)", "paper setting"])
    assert result.loc[("proposed", "VGG-19 -> ResNet-101")]["our fooling_rate"] == 40.0
    assert result.loc[("proposed", "ResNet-101 -> ResNet-101")]["our fooling_rate"] == 90.0
    assert result.loc[("proposed", "VGG-19 -> ResNet-101")]["our ratio to FMN"] == pytest.approx(0.8)
    assert result.loc[("FMN", "VGG-19 -> ResNet-101")]["claim in our run"] == "fails"  # 40 < 50; paper 63.3 > 43.0
    assert result.loc[("FMN", "ResNet-101 -> ResNet-101")]["claim in our run"] == "not run"


def test_displayed_comparison_shows_missing_values_as_a_dash():
    table = PAPER_TABLES["table1"]
    shown = format_table(compare_with_paper(table, TABLE1_OURS, where="offline")).to_markdown(index=False)
    assert "nan" not in shown and "<NA>" not in shown and "None" not in shown
    assert "| -" in shown  # the proposed method's own claim cells, and the methods not run


def test_a_claim_against_a_method_that_fooled_none_says_so_rather_than_not_run():
    table = PAPER_TABLES["table1"]
    ours = _units([("lin2025", "untargeted", "mean_l0_elements", 30.0, 65.0),
                   ("fmn-l0", "untargeted", "mean_l0_elements", 20.0, 100.0),
                   ("sa-moo", "untargeted", "mean_l0_elements", float("nan"), 0.0)])
    result = compare_with_paper(table, ours, where="offline").set_index(["method (paper)", "paper setting"])
    assert result.loc[("SA-MOO", "untargeted CIFAR-10")]["claim in our run"] == "no value (fooled none)"
    assert result.loc[("Sparse-RS", "untargeted CIFAR-10")]["claim in our run"] == "not run"
    agreement = rank_agreement(table, result.reset_index()).set_index("paper setting")
    assert agreement.loc["untargeted CIFAR-10"]["paper's claims in our run"] == (
        "0 hold, 1 fail, 6 not run, 1 without a value (fooled none)")
    shown = format_table(result.reset_index()).to_markdown(index=False)
    assert "0.4150943" not in shown and "0.415" in shown  # ratios rounded for reading (44 / 106)


def test_a_unit_whose_every_example_is_invalid_says_so_rather_than_fooled_none():
    """A time table: the unit that raised (every example invalid, so no time either) is not a method that fooled
    none, and the claim against it says which."""
    table = PAPER_TABLES["table4"]
    ours = _units([("lin2025", "untargeted", "seconds_per_sample", 0.02, 65.0),
                   ("cw-l0", "untargeted", "seconds_per_sample", 0.05, 100.0),
                   ("egs-tssa", "untargeted", "seconds_per_sample", float("nan"), 0.0)])
    ours["invalid"] = [0, 0, 20]
    result = compare_with_paper(table, ours, where="offline").set_index(["method (paper)", "paper setting"])
    column = result.xs("VGG-16", level="paper setting")
    assert column.loc["EGS-TSSA", "claim in our run"] == "no value (every example invalid)"
    assert "every example invalid" in column.loc["EGS-TSSA", "note"]
    assert column.loc["C&W-L0", "claim in our run"] == "holds"
    agreement = rank_agreement(table, result.reset_index()).set_index("paper setting")
    assert agreement.loc["VGG-16", "paper's claims in our run"].endswith("1 without a value (every example invalid)")
