"""The paper's numbers as data, and the table that puts ours beside them."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.config import load_config, resolve_config
from bench.registry import ATTACKS
from reports.paper import ATTACK_NAMES, PAPER_TABLES, compare_with_paper


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


def test_compare_with_paper_labels_and_differences():
    table = PAPER_TABLES["table1"]
    ours = pd.DataFrame([
        {"dataset": "fashion-mnist", "model": "smallcnn-standard", "attack": "lin2025", "mode": "untargeted",
         "mean_l0_elements": 50.0, "fooling_rate": 65.0, "samples": 20},
        {"dataset": "fashion-mnist", "model": "smallcnn-standard", "attack": "cw-l0", "mode": "targeted",
         "mean_l0_elements": 30.5, "fooling_rate": 100.0, "samples": 20},
    ])
    result = compare_with_paper(table, ours, where="offline").set_index(["method (paper)", "paper setting"])
    mine = result.loc[("proposed", "untargeted CIFAR-10")]
    assert mine["paper mean_l0_elements"] == 44 and mine["our mean_l0_elements"] == 50.0
    assert mine["difference (ours - paper)"] == pytest.approx(6.0)
    assert mine["our setting"] == "fashion-mnist smallcnn-standard untargeted"
    assert "our fooling rate 65.0%" in mine["note"] and "20 samples" in mine["note"]
    assert result.loc[("C&W-L0", "targeted CIFAR-10")]["difference (ours - paper)"] == pytest.approx(30.5 - 102)
    assert result.loc[("FMN", "untargeted CIFAR-10")]["note"] == "not run"
    # A value the paper does not report has no difference.
    assert pd.isna(result.loc[("OnePixel", "targeted CIFAR-10")]["paper mean_l0_elements"])


def test_transfer_columns_pick_the_source():
    table = PAPER_TABLES["table3"]
    rows = [{"dataset": "fashion-mnist", "attack": "lin2025", "mode": "untargeted", "source": s, "model": t,
             "fooling_rate": rate, "samples": 20}
            for s, t, rate in (("smallcnn-standard", "mlp-standard", 40.0), ("mlp-standard", "mlp-standard", 90.0))]
    result = compare_with_paper(table, pd.DataFrame(rows), where="offline").set_index(["method (paper)", "paper setting"])
    assert result.loc[("proposed", "VGG-19 -> ResNet-101")]["our fooling_rate"] == 40.0
    assert result.loc[("proposed", "ResNet-101 -> ResNet-101")]["our fooling_rate"] == 90.0
    assert result.loc[("proposed", "VGG-19 -> ResNet-101")]["difference (ours - paper)"] == pytest.approx(40.0 - 63.3)
