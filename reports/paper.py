"""The paper's reported numbers, as data, and our measurements beside them.

Lin, Lou, Wang, Jalaian & Yuan, "Towards Interpretable Adversarial Examples
via Sparse Adversarial Attack", arXiv:2506.17250, Section 5 (restated in
``shared/paper/SPEC.md``). The numbers here are the paper's, never ours: a
table built from them always puts them in columns labelled as the paper's,
beside what our run measured on the setting named in the same row.

Where our setting is not the paper's (the offline counterparts run on
Fashion-MNIST models trained here, not CIFAR-10 / ImageNet), a difference
between the two numbers would compare two experiments, and means nothing.
What can carry from one experiment to the other is compared instead, each
side computed within its own experiment:

* each method's value as a ratio to a reference method's (``PaperTable.reference``,
  FMN where the table has it) in the same column;
* each method's rank in its column (1 = best), and per column the rank
  correlation of the two orders (Spearman and Kendall, with n and p:
  :func:`rank_agreement`);
* the paper's claims: for each method, the paper's order of the proposed
  attack and that method, and whether our run has the same order (holds,
  fails, not run).

Only on the paper's own setting (``where="online"``) is the plain difference
(ours - paper) added.

Each :class:`PaperTable` names the configs that reproduce it
(``bench/configs/paper-<table>.toml`` where the data and weights are at
hand, ``paper-<table>-offline.toml`` on the offline models) and maps each
paper column to a unit of those runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

__all__ = ["ATTACK_NAMES", "PAPER_TABLES", "PROPOSED_METHOD", "PaperTable", "compare_with_paper", "rank_agreement"]

PROPOSED_METHOD = "proposed"
"""The paper's name for its own method in its tables."""

#: The paper's method names -> registry names (the minimum-norm form where the table needs one;
#: GreedyFool with its learned distortion map, as the paper: see baselines/greedyfool.py).
ATTACK_NAMES = {
    "C&W-L0": "cw-l0", "OnePixel": "onepixel", "SparseFool": "sparsefool", "GreedyFool": "greedyfool",
    "FMN": "fmn-l0", "Homotopy": "homotopy", "Sparse-RS": "sparse-rs-min", "SA-MOO": "sa-moo",
    "EGS-TSSA": "egs-tssa", "BruSLeAttack": "brusleattack-min", "proposed": "lin2025",
}


@dataclass(frozen=True)
class Column:
    """One column of a paper table and the unit of our run that measures it."""

    paper: str  # the paper's column heading (its setting)
    dataset: str  # ours: dataset, model, mode
    model: str
    mode: str
    source: str | None = None  # Table 3: the source model (``model`` is then the evaluated one)


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: its values, what they measure, and the columns of our runs that match."""

    name: str
    title: str
    metric: str  # the summary column (or transfer cell) compared with the paper's value
    unit: str
    values: dict[str, dict[str, float | None]]  # paper method -> paper column -> value
    columns: dict[str, tuple[Column, ...]] = field(default_factory=dict)  # "online" / "offline" -> columns
    higher_is_better: bool = False  # fooling rates: True; L0 and seconds: False
    reference: str = "FMN"  # the paper method every ratio is to (in the paper's table and in our configs)

    @property
    def better(self) -> str:
        """How the metric orders the methods, in words."""
        return "higher is better" if self.higher_is_better else "lower is better"


_T1_COLUMNS = ("untargeted CIFAR-10", "untargeted ImageNet", "targeted CIFAR-10", "targeted ImageNet")
_T1 = {
    "C&W-L0": (52, 424, 102, 5132), "OnePixel": (1, 3, None, None), "SparseFool": (76, 234, None, None),
    "FMN": (106, 632, 183, 1087), "Sparse-RS": (167, 758, 244, 1293), "SA-MOO": (173, 1392, 305, 2896),
    "EGS-TSSA": (105, 549, 218, 1054), "BruSLeAttack": (93, 164, 148, 678), "proposed": (44, 57, 69, 136),
}
_T2_COLUMNS = ("PGD-AT MNIST", "PGD-AT CIFAR-10", "Fast-AT MNIST", "Fast-AT CIFAR-10", "Fast-AT ImageNet")
_T2 = {
    "C&W-L0": (11.8, 52.8, 12.1, 62.3, 67.8), "GreedyFool": (3.6, 26.8, 4.9, 23.5, 24.9),
    "FMN": (7.9, 55.0, 9.8, 52.9, 54.1), "Homotopy": (8.5, 51.9, 7.2, 53.2, 58.7),
    "Sparse-RS": (10.3, 54.6, 10.9, 57.1, 56.3), "SA-MOO": (11.5, 56.9, 7.8, 58.9, 62.8),
    "EGS-TSSA": (10.7, 57.8, 8.4, 61.6, 63.8), "BruSLeAttack": (11.2, 61.2, 9.6, 58.9, 65.1),
    "proposed": (13.8, 62.5, 14.6, 66.4, 72.1),
}
_T3_COLUMNS = ("VGG-19 -> VGG-16", "VGG-19 -> VGG-19", "VGG-19 -> ResNet-101", "VGG-19 -> ResNet-152",
               "ResNet-101 -> VGG-16", "ResNet-101 -> VGG-19", "ResNet-101 -> ResNet-101",
               "ResNet-101 -> ResNet-152")
_T3 = {
    "C&W-L0": (84.6, 96.2, 55.6, 47.5, 82.6, 81.9, 91.2, 50.5),
    "GreedyFool": (10.6, 19.2, 8.2, 9.0, 11.4, 13.4, 9.4, 8.4),
    "FMN": (83.4, 91.8, 43.0, 46.8, 82.6, 81.8, 60.1, 41.6),
    "Homotopy": (65.8, 87.6, 24.0, 9.8, 63.6, 63.6, 72.0, 46.2),
    "Sparse-RS": (85.2, 96.0, 46.8, 48.2, 85.2, 76.8, 89.4, 65.6),
    "SA-MOO": (86.2, 92.8, 44.5, 49.2, 86.6, 84.3, 91.1, 61.3),
    "EGS-TSSA": (87.7, 93.2, 51.3, 51.2, 86.1, 83.8, 91.5, 62.6),
    "BruSLeAttack": (89.4, 94.4, 56.7, 51.8, 86.8, 84.2, 92.6, 67.8),
    "proposed": (99.1, 99.9, 63.3, 55.1, 87.6, 86.3, 99.9, 89.9),
}
_T4_COLUMNS = ("VGG-16", "VGG-19", "ResNet-101", "ResNet-152")
_T4 = {
    "C&W-L0": (20.8, 23.4, 28.7, 43.6), "Homotopy": (519.4, 531.5, 1011.9, 1462.2),
    "Sparse-RS": (69.0, 76.4, 71.6, 99.7), "SA-MOO": (537.4, 628.1, 1123.8, 1379.1),
    "EGS-TSSA": (71.8, 79.5, 120.9, 175.9), "BruSLeAttack": (87.2, 93.7, 142.2, 212.3),
    "proposed": (4.6, 5.3, 18.7, 27.5),
}


def _values(columns: tuple[str, ...], rows: dict[str, tuple]) -> dict[str, dict[str, float | None]]:
    return {method: dict(zip(columns, values)) for method, values in rows.items()}


_FM = "fashion-mnist"
_SC, _PGD, _FAST, _MLP = "smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at", "mlp-standard"
_VGG16, _VGG19 = "torchvision/vgg16", "torchvision/vgg19"
_R101, _R152 = "torchvision/resnet101", "torchvision/resnet152"

PAPER_TABLES: dict[str, PaperTable] = {
    "table1": PaperTable(
        "table1", "Perturbed elements (C*H*W) needed for a 100% fooling rate (ResNet-18 CIFAR-10, VGG-16 ImageNet)",
        "mean_l0_elements", "elements", _values(_T1_COLUMNS, _T1),
        {
            # RobustBench has no standard ResNet-18; its Standard WRN-28-10 stands in.
            "online": (Column(_T1_COLUMNS[0], "cifar10", "robustbench/Standard", "untargeted"),
                       Column(_T1_COLUMNS[1], "imagenet", _VGG16, "untargeted"),
                       Column(_T1_COLUMNS[2], "cifar10", "robustbench/Standard", "targeted"),
                       Column(_T1_COLUMNS[3], "imagenet", _VGG16, "targeted")),
            "offline": (Column(_T1_COLUMNS[0], _FM, _SC, "untargeted"),
                        Column(_T1_COLUMNS[2], _FM, _SC, "targeted")),
        },
    ),
    "table2": PaperTable(
        "table2", "Fooling rate (%) on adversarially trained models", "fooling_rate", "%", _values(_T2_COLUMNS, _T2),
        {
            "online": (Column(_T2_COLUMNS[0], "mnist", _PGD, "untargeted"),
                       Column(_T2_COLUMNS[1], "cifar10", "robustbench/Engstrom2019Robustness", "untargeted"),
                       Column(_T2_COLUMNS[2], "mnist", _FAST, "untargeted"),
                       Column(_T2_COLUMNS[3], "cifar10", "robustbench/Wong2020Fast", "untargeted"),
                       Column(_T2_COLUMNS[4], "imagenet", "robustbench/Wong2020Fast", "untargeted")),
            "offline": (Column(_T2_COLUMNS[0], _FM, _PGD, "untargeted"),
                        Column(_T2_COLUMNS[2], _FM, _FAST, "untargeted")),
        },
        higher_is_better=True,
    ),
    "table3": PaperTable(
        "table3", "Transferability: fooling rate (%) on the evaluated model of examples made on the source model",
        "fooling_rate", "%", _values(_T3_COLUMNS, _T3),
        {
            "online": tuple(Column(c, "imagenet", target, "untargeted", source=source) for c, (source, target) in zip(
                _T3_COLUMNS, [(s, t) for s in (_VGG19, _R101) for t in (_VGG16, _VGG19, _R101, _R152)])),
            # Offline: the paper's two sources become the standard SmallCNN and the MLP (two architectures).
            "offline": tuple(Column(c, _FM, target, "untargeted", source=source) for c, (source, target) in zip(
                _T3_COLUMNS, [(s, t) for s in (_SC, _MLP) for t in (_PGD, _SC, _MLP, _FAST)])),
        },
        higher_is_better=True,
    ),
    "table4": PaperTable(
        "table4", "Time cost (s per image) of white-box attacks on ImageNet", "seconds_per_sample", "s",
        _values(_T4_COLUMNS, _T4),
        {
            "online": tuple(Column(c, "imagenet", m, "untargeted") for c, m in zip(_T4_COLUMNS, (_VGG16, _VGG19, _R101, _R152))),
            "offline": tuple(Column(c, _FM, m, "untargeted") for c, m in zip(_T4_COLUMNS, (_SC, _PGD, _MLP, _FAST))),
        },
        reference="C&W-L0",  # Table 4 has no FMN
    ),
}


def _number(value: object) -> float | None:
    """A measured or reported value, or ``None`` when there is none (missing or NaN)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def _order(table: PaperTable, proposed: float | None, other: float | None) -> str | None:
    """The order of the proposed attack and another method in one column: better, worse or equal."""
    if proposed is None or other is None:
        return None
    if proposed == other:
        return "equal"
    return "proposed better" if (proposed > other) == table.higher_is_better else "proposed worse"


_EVERY_EXAMPLE_INVALID = "every example invalid"
"""A unit whose every example the harness rejected (the attack or its preparation raised, or it tampered)."""


def compare_with_paper(table: PaperTable, ours: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Our run beside the paper's numbers, one row per (paper method, paper column).

    ``ours`` has one row per unit with ``dataset, model, attack, mode`` (and
    ``source`` for Table 3) and the table's metric column, plus
    ``fooling_rate`` and ``samples`` when known. ``where`` is ``"online"`` or
    ``"offline"``: which of the table's column mappings the run used.

    Each side is read within its own experiment: the value, its ratio to the
    reference method's value in the same column, its rank in the column
    (1 = best, ties share the best rank), and for every method but the
    proposed one the paper's order of the proposed attack and that method
    (``paper claim``) with whether our run has the same order (``claim in our
    run``: holds, fails, not run when our run lacks either unit, or no value
    when a unit ran but has none: it fooled no sample, or every example was
    invalid, which the note says). Only
    ``where="online"`` adds ``difference (ours - paper)``: offline, the two
    values come from different experiments. Methods or columns our run did
    not measure show "not run".
    """
    metric, reference = table.metric, table.reference
    rows = []
    for method, values in table.values.items():
        attack = ATTACK_NAMES[method]
        for column in table.columns[where]:
            match = ours[(ours["attack"] == attack) & (ours["dataset"] == column.dataset)
                         & (ours["model"] == column.model) & (ours["mode"] == column.mode)]
            if column.source is not None and not match.empty:
                match = match[match["source"] == column.source]
            setting = f"{column.dataset} {column.source + ' -> ' if column.source else ''}{column.model} {column.mode}"
            row: dict[str, object] = {
                "method (paper)": method, "attack (ours)": attack, "paper setting": column.paper,
                "our setting": setting, f"paper {metric}": values.get(column.paper),
                f"our {metric}": None if match.empty else _number(match.iloc[0][metric]),
            }
            notes = ["not run"] if match.empty else []
            if not match.empty and "fooling_rate" in match and metric != "fooling_rate":
                notes.append(f"our fooling rate {float(match.iloc[0]['fooling_rate']):.1f}%")
            if not match.empty and "samples" in match:
                notes.append(f"{int(match.iloc[0]['samples'])} samples")
                if "invalid" in match and int(match.iloc[0]["invalid"]) == int(match.iloc[0]["samples"]):
                    notes.append(_EVERY_EXAMPLE_INVALID)
            row["note"] = ", ".join(notes)
            rows.append(row)
    result = pd.DataFrame(rows)
    for side in ("paper", "our"):
        value = result[f"{side} {metric}"].astype(float)
        by_column = value.groupby(result["paper setting"])
        reference_value = result["paper setting"].map(
            value[result["method (paper)"] == reference].groupby(result["paper setting"]).first())
        result[f"{side} ratio to {reference}"] = (value / reference_value.where(reference_value != 0)).astype(float)
        result[f"{side} rank"] = by_column.rank(method="min", ascending=not table.higher_is_better).astype("Int64")
    claims: list[str | None] = []
    verdicts: list[str | None] = []
    for _, row in result.iterrows():
        if row["method (paper)"] == PROPOSED_METHOD:
            claims.append(None)
            verdicts.append(None)
            continue
        mine = result[(result["method (paper)"] == PROPOSED_METHOD) & (result["paper setting"] == row["paper setting"])]
        claim = _order(table, _number(mine[f"paper {metric}"].iloc[0]), _number(row[f"paper {metric}"]))
        ours_order = _order(table, _number(mine[f"our {metric}"].iloc[0]), _number(row[f"our {metric}"]))
        claims.append(claim)
        if claim is None:
            verdicts.append(None)
        elif ours_order is not None:
            verdicts.append("holds" if ours_order == claim else "fails")
        elif any(str(note).startswith("not run") for note in (mine["note"].iloc[0], row["note"])):
            verdicts.append("not run")
        elif any(_EVERY_EXAMPLE_INVALID in str(note) for note in (mine["note"].iloc[0], row["note"])):
            verdicts.append(f"no value ({_EVERY_EXAMPLE_INVALID})")  # it raised or cheated: no figure at all
        else:  # both ran, and one side has no value: it fooled no sample, so it has no L0 to compare
            verdicts.append("no value (fooled none)")
    result["paper claim (proposed vs this method)"] = claims
    result["claim in our run"] = verdicts
    if where == "online":
        result["difference (ours - paper)"] = result[f"our {metric}"].astype(float) - result[f"paper {metric}"].astype(float)
    order = ["method (paper)", "attack (ours)", "paper setting", "our setting", f"paper {metric}", f"our {metric}",
             f"paper ratio to {reference}", f"our ratio to {reference}", "paper rank", "our rank",
             "paper claim (proposed vs this method)", "claim in our run"]
    return result[order + (["difference (ours - paper)"] if where == "online" else []) + ["note"]]


def rank_agreement(table: PaperTable, comparison: pd.DataFrame) -> pd.DataFrame:
    """Per paper column, how far our order of the methods agrees with the paper's.

    Over the methods with a value on both sides (``n``): Spearman's rho and
    Kendall's tau (``scipy.stats``, tau-b, two-sided p), and how many of the
    paper's claims about the proposed attack hold in our run. A correlation
    needs n >= 3 and some spread on both sides; otherwise it is left empty and
    the note says why.
    """
    metric = table.metric
    rows = []
    for setting, column in comparison.groupby("paper setting", sort=False):
        both = column.dropna(subset=[f"paper {metric}", f"our {metric}"])
        paper, ours = both[f"paper {metric}"].astype(float), both[f"our {metric}"].astype(float)
        row: dict[str, object] = {"paper setting": setting, "our setting": column["our setting"].iloc[0], "n": len(both),
                                  "Spearman rho": None, "Spearman p": None, "Kendall tau": None, "Kendall p": None}
        if len(both) < 3:
            row["note"] = f"{len(both)} method(s) with both values: too few to correlate"
        elif paper.nunique() == 1 or ours.nunique() == 1:
            row["note"] = "all values equal on one side: no order to correlate"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy's warnings on small n; p says it
                spearman = stats.spearmanr(paper, ours)
                kendall = stats.kendalltau(paper, ours)
            row.update({"Spearman rho": float(spearman.statistic), "Spearman p": float(spearman.pvalue),
                        "Kendall tau": float(kendall.statistic), "Kendall p": float(kendall.pvalue), "note": ""})
        verdicts = column["claim in our run"].value_counts()
        claims = (f"{int(verdicts.get('holds', 0))} hold, {int(verdicts.get('fails', 0))} "
                  f"fail, {int(verdicts.get('not run', 0))} not run")
        for verdict, count in verdicts.items():
            if str(verdict).startswith("no value ("):
                claims += f", {int(count)} without a value {str(verdict).removeprefix('no value ')}"
        row["paper's claims in our run"] = claims
        rows.append(row)
    order = ["paper setting", "our setting", "n", "Spearman rho", "Spearman p", "Kendall tau", "Kendall p",
             "paper's claims in our run", "note"]
    return pd.DataFrame(rows)[order]
