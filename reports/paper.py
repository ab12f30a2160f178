"""The paper's reported numbers, as data, and our measurements beside them.

Lin, Lou, Wang, Jalaian & Yuan, "Towards Interpretable Adversarial Examples
via Sparse Adversarial Attack", arXiv:2506.17250, Section 5 (restated in
``shared/paper/SPEC.md``). The numbers here are the paper's, never ours: a
table built from them always puts them in a column labelled as the paper's,
beside what our run measured on the setting named in the same row, with the
difference. Where our setting is not the paper's (the offline counterparts
run on Fashion-MNIST SmallCNNs, not CIFAR-10 / ImageNet), the row says both
settings, and the difference is then a comparison of two different
experiments, which the caption says.

Each :class:`PaperTable` names the configs that reproduce it
(``bench/configs/paper-<table>.toml`` where the data and weights are at
hand, ``paper-<table>-offline.toml`` on the offline models) and maps each
paper column to a unit of those runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["ATTACK_NAMES", "PAPER_TABLES", "PaperTable", "compare_with_paper"]

#: The paper's method names -> registry names (the minimum-norm form where the table needs one;
#: GreedyFool with a uniform distortion map, as registered: see baselines/greedyfool.py).
ATTACK_NAMES = {
    "C&W-L0": "cw-l0", "OnePixel": "onepixel", "SparseFool": "sparsefool", "GreedyFool": "greedyfool-uniform",
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
    ),
    "table4": PaperTable(
        "table4", "Time cost (s per image) of white-box attacks on ImageNet", "seconds_per_sample", "s",
        _values(_T4_COLUMNS, _T4),
        {
            "online": tuple(Column(c, "imagenet", m, "untargeted") for c, m in zip(_T4_COLUMNS, (_VGG16, _VGG19, _R101, _R152))),
            "offline": tuple(Column(c, _FM, m, "untargeted") for c, m in zip(_T4_COLUMNS, (_SC, _PGD, _MLP, _FAST))),
        },
    ),
}


def compare_with_paper(table: PaperTable, ours: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Our measured values beside the paper's, one row per (paper method, paper column).

    ``ours`` has one row per unit with ``dataset, model, attack, mode`` (and
    ``source`` for Table 3) and the table's metric column, plus
    ``fooling_rate`` and ``samples`` when known. ``where`` is ``"online"`` or
    ``"offline"``: which of the table's column mappings the run used.
    Methods or columns our run did not measure show "not run".
    """
    rows = []
    for method, values in table.values.items():
        attack = ATTACK_NAMES[method]
        for column in table.columns[where]:
            paper_value = values.get(column.paper)
            match = ours[(ours["attack"] == attack) & (ours["dataset"] == column.dataset)
                         & (ours["model"] == column.model) & (ours["mode"] == column.mode)]
            if column.source is not None and not match.empty:
                match = match[match["source"] == column.source]
            setting = f"{column.dataset} {column.source + ' -> ' if column.source else ''}{column.model} {column.mode}"
            row = {"method (paper)": method, "attack (ours)": attack, "paper setting": column.paper,
                   f"paper {table.metric}": paper_value, "our setting": setting}
            if match.empty:
                row.update({f"our {table.metric}": None, "difference (ours - paper)": None, "note": "not run"})
            else:
                value = float(match.iloc[0][table.metric])
                row[f"our {table.metric}"] = value
                row["difference (ours - paper)"] = (value - paper_value if paper_value is not None
                                                    and not math.isnan(value) else None)
                notes = []
                if "fooling_rate" in match and table.metric != "fooling_rate":
                    notes.append(f"our fooling rate {float(match.iloc[0]['fooling_rate']):.1f}%")
                if "samples" in match:
                    notes.append(f"{int(match.iloc[0]['samples'])} samples")
                row["note"] = ", ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows)
