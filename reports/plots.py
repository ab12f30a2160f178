"""Figures of a stored run (matplotlib, written as PNG without a display).

Each function reads what :mod:`bench.store` holds (the per-sample rows, the
units' hyperparameters) and writes one figure; none runs an attack.

* :func:`robust_accuracy_curves`: robust accuracy against the L0 budget, one
  panel per (model, mode), one curve per attack: at budget ``k`` a sample
  counts as robust unless the attack succeeded with at most ``k`` changed
  pixels (or elements); a band around each curve is the Wilson 95% interval
  of the robust accuracy at each budget (:func:`robust_accuracy_band`).
* :func:`time_versus_l0`: seconds per sample against median L0, per attack.
* :func:`example_grid`: clean image, adversarial image and perturbation map
  with its L0, per attack, for a few samples (the paper's Figures 1 and 3).
* :func:`sweep_curves`: for entries that are one attack with one
  hyperparameter changed (a study such as ``lin2025-study`` or ``lin2025-fig7``),
  fooling rate and median L0 against that hyperparameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import stored_dataset
from bench.paths import inside
from reports.stats import wilson_interval
from reports.transfer import rebuild_examples

__all__ = ["example_grid", "find_sweeps", "robust_accuracy", "robust_accuracy_band", "robust_accuracy_curves",
           "sweep_curves", "time_versus_l0"]

PANEL_KEY = ["dataset", "model", "mode"]


def _pyplot():
    # matplotlib (heavy) is imported when a figure is drawn, not when a command that draws none imports this module
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _panels(n: int, width: float = 4.2, height: float = 3.2):
    plt = _pyplot()
    columns = min(n, 3)
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[n:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:n])


def _styles(n: int) -> list[dict[str, Any]]:
    """Distinct colour and line style for each of ``n`` curves (20 colours, then dashed, dotted)."""
    colours = _pyplot().get_cmap("tab20").colors
    dashes = ("-", "--", ":", "-.")
    return [{"color": colours[i % 20], "linestyle": dashes[(i // 20) % 4]} for i in range(n)]


def _legend_below(figure, axes, top: float = 1.0) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
    rows = math.ceil(len(labels) / 5)
    height = figure.get_size_inches()[1]
    figure.tight_layout(rect=(0, min(0.45, (0.2 * rows + 0.1) / height), 1, top))


def _axis_scale(axis, values: np.ndarray) -> None:
    """Log scale for positive values over two decades or more; symlog if 0 is among them."""
    positive = values[values > 0]
    if (values >= 0).all() and len(positive) > 1 and positive.max() / positive.min() >= 100:
        if (values == 0).any():
            axis.set_xscale("symlog", linthresh=positive.min())
            axis.set_xlim(left=-0.3 * positive.min())
        else:
            axis.set_xscale("log")


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not figure.legends and getattr(figure, "_suptitle", None) is None:
        figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def robust_accuracy(samples: pd.DataFrame, budgets: Iterable[int], unit: str = "pixels") -> np.ndarray:
    """Robust accuracy (%) of one unit's samples at each budget: not fooled within ``k`` changes."""
    success = samples["success"].astype(bool).to_numpy()
    l0 = samples[f"l0_{unit}"].to_numpy()
    return np.array([100.0 * (1 - (success & (l0 <= k)).mean()) for k in budgets])


def robust_accuracy_band(samples: pd.DataFrame, budgets: Iterable[int], unit: str = "pixels",
                         confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson interval (%) of :func:`robust_accuracy` at each budget: ``(lo, hi)``, NaN for no sample."""
    success = samples["success"].astype(bool).to_numpy()
    l0 = samples[f"l0_{unit}"].to_numpy()
    bounds = [wilson_interval(int((~(success & (l0 <= k))).sum()), len(l0), confidence) for k in budgets]
    lo, hi = np.array(bounds, dtype=float).reshape(-1, 2).T
    return 100.0 * lo, 100.0 * hi


def robust_accuracy_curves(samples: pd.DataFrame, path: Path, *, unit: str = "pixels",
                           order: pd.DataFrame | None = None) -> Path:
    """Robust accuracy against the L0 budget (log axis), one panel per (dataset, model, mode).

    Each curve has a shaded band: the Wilson 95% interval of the robust accuracy at each budget
    (:func:`robust_accuracy_band`), over that attack's samples.

    ``order`` (e.g. the run's summary table) gives the order of panels and
    attacks; by default, the order in which ``samples`` holds them.
    """
    order = (order if order is not None else samples)[PANEL_KEY + ["attack"]].drop_duplicates()
    attacks = list(dict.fromkeys(order["attack"]))
    styles = dict(zip(attacks, _styles(len(attacks))))
    panels = list(dict.fromkeys(map(tuple, order[PANEL_KEY].to_numpy())))
    figure, axes = _panels(len(panels))
    largest = max(int(samples[f"l0_{unit}"].max()), 1)
    budgets = np.unique(np.round(np.logspace(0, math.log10(largest), 60)).astype(int))
    groups = dict(list(samples.groupby(PANEL_KEY + ["attack"], sort=False)))
    for axis, (dataset, model, mode) in zip(axes, panels):
        for attack in attacks:
            if (dataset, model, mode, attack) in groups:
                accuracy = robust_accuracy(groups[dataset, model, mode, attack], budgets, unit)
                lo, hi = robust_accuracy_band(groups[dataset, model, mode, attack], budgets, unit)
                axis.fill_between(budgets, lo, hi, step="post", color=styles[attack]["color"], alpha=0.15,
                                  linewidth=0)
                axis.step(budgets, accuracy, where="post", label=attack, **styles[attack])
        axis.set(xscale="log", ylim=(-2, 102), xlabel=f"L0 budget ({unit})", ylabel="robust accuracy (%)",
                 title=f"{model} {mode}")
        axis.grid(alpha=0.3)
    _legend_below(figure, axes)
    return _save(figure, path)


def time_versus_l0(summary: pd.DataFrame, path: Path, *, unit: str = "pixels") -> Path:
    """Seconds per sample against median L0 over successful samples, one panel per (dataset, model, mode).

    A filled marker is an attack that fooled every sample; a hollow one
    fooled fewer (its median L0 is over fewer, easier samples).
    """
    attacks = list(dict.fromkeys(summary["attack"]))
    markers = "osD^v<>pPX*h"
    styles = {attack: (style["color"], markers[i % len(markers)])
              for i, (attack, style) in enumerate(zip(attacks, _styles(len(attacks))))}
    panels = list(summary.groupby(PANEL_KEY, sort=False))
    figure, axes = _panels(len(panels))
    for axis, ((dataset, model, mode), group) in zip(axes, panels):
        for attack in attacks:
            row = group[group["attack"] == attack]
            if row.empty:
                axis.scatter([], [], color=styles[attack][0], marker=styles[attack][1], label=attack)
                continue
            row = row.iloc[0]
            colour, marker = styles[attack]
            axis.scatter(row[f"median_l0_{unit}"], row["seconds_per_sample"], s=30, marker=marker, label=attack,
                         color=colour if row["fooling_rate"] >= 100 else "none", edgecolors=colour)
        medians = group[f"median_l0_{unit}"]
        if (medians > 0).any():  # NaN (no success) compares False
            axis.set(xscale="log", yscale="log")
        else:  # nothing to place on a log axis: say so rather than fail
            axis.text(0.5, 0.5, "no attack succeeded", ha="center", va="center", transform=axis.transAxes)
        axis.set(xlabel=f"median L0 ({unit}, successful samples)", ylabel="seconds per sample",
                 title=f"{model} {mode}")
        axis.xaxis.set_minor_formatter(_pyplot().NullFormatter())
        axis.yaxis.set_minor_formatter(_pyplot().NullFormatter())
        axis.grid(alpha=0.3)
    _legend_below(figure, axes)
    return _save(figure, path)


def find_sweeps(units: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, Any]]]:
    """Entries that are one attack with one hyperparameter changed, grouped into sweeps.

    ``units`` is :meth:`bench.store.ResultsStore.units`. The reference of an
    attack is its unlabelled entry (label = registry name). Every other label
    of the same attack whose hyperparameters differ from the reference's in
    exactly one numeric parameter joins that parameter's sweep (labels that
    change several parameters together join the sweep of the set, named
    ``"a+b"``, and are placed by the first). Returns ``{(attack, parameter):
    [(label, value), ...]}`` sorted by value, the reference included, for
    sweeps of at least two labels besides the reference.
    """
    hyper = {}
    for row in units.drop_duplicates("attack").itertuples():
        hyper[row.attack] = (row.attack_name, json.loads(row.hyperparameters))
    sweeps: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for label, (attack, values) in hyper.items():
        if label == attack or attack not in hyper:
            continue
        reference = hyper[attack][1]
        changed = sorted(k for k in values if values[k] != reference.get(k))
        if not changed or not all(isinstance(values[k], (int, float)) for k in changed):
            continue
        sweeps.setdefault((attack, "+".join(changed)), []).append((label, values[changed[0]]))
    result = {}
    for (attack, parameter), members in sweeps.items():
        if len(members) < 2:
            continue
        first = parameter.split("+")[0]
        members.append((attack, hyper[attack][1][first]))
        result[(attack, parameter)] = sorted(members, key=lambda member: member[1])
    return result


def sweep_curves(summary: pd.DataFrame, units: pd.DataFrame, directory: Path, *,
                 unit: str = "pixels") -> list[Path]:
    """One figure per sweep: fooling rate and median L0 against the parameter, a line per (model, mode).

    Written as ``sweep-<attack>-<parameter>.png``; the reference value is marked.
    """
    paths = []
    for (attack, parameter), members in find_sweeps(units).items():
        # attack and parameter names come from the store: inside() keeps the file in ``directory``
        path = inside(directory, f"sweep-{attack}-{parameter.replace('+', '-')}.png")
        labels = [label for label, _ in members]
        values = np.array([value for _, value in members], dtype=float)
        rows = summary[summary["attack"].isin(labels)]
        figure, (rate_axis, l0_axis) = _panels(2, width=5.0)
        panels = list(rows.groupby(PANEL_KEY, sort=False))
        for ((dataset, model, mode), group), style in zip(panels, _styles(len(panels))):
            group = group.set_index("attack").reindex(labels)
            rate_axis.plot(values, group["fooling_rate"], marker="o", ms=3, label=f"{model} {mode}", **style)
            l0_axis.plot(values, group[f"median_l0_{unit}"], marker="o", ms=3, **style)
        reference = values[labels.index(attack)]
        for axis, ylabel in ((rate_axis, "fooling rate (%)"), (l0_axis, f"median L0 ({unit}, successful)")):
            axis.axvline(reference, color="grey", ls=":", lw=1)
            _axis_scale(axis, values)
            axis.set(xlabel=parameter, ylabel=ylabel)
            axis.grid(alpha=0.3)
        rate_axis.set_ylim(-2, 102)
        figure.suptitle(f"{attack}: {parameter} (dotted: the registry default)")
        _legend_below(figure, [rate_axis], top=0.92)
        paths.append(_save(figure, path))
    return paths


def _image(tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def example_grid(store, run_id: str, path: Path, *, model: str | None = None, mode: str | None = None,
                 n_samples: int = 3) -> Path | None:
    """Clean image, then per attack the adversarial image and its perturbation map with L0.

    For one (dataset, model, mode) of the run (default: the first), the first
    ``n_samples`` samples (by test index) that every attack of that unit
    attacked. Rows are the attacks, in the run's order; per sample, two
    columns: the adversarial image (titled with the harness's verdict) and
    the perturbation ``max_c |x_adv - x|`` per pixel, titled with its L0 in
    pixels and elements. Returns None when the run has nothing to draw.
    """
    samples = store.samples(run_id)
    if samples.empty:
        return None
    config = store.get_run(run_id)["config"]
    dataset_name = config["datasets"][0]["name"]
    model = model or config["datasets"][0]["models"][0]
    mode = mode or config["modes"][0]
    unit = samples[(samples["dataset"] == dataset_name) & (samples["model"] == model) & (samples["mode"] == mode)]
    labels = [a.get("label") or a["name"] for a in config["attacks"]]
    attacks = [a for a in dict.fromkeys(labels) if a in set(unit["attack"])]
    if not attacks:
        return None
    common = set.intersection(*(set(unit.loc[unit["attack"] == a, "sample_id"]) for a in attacks))
    chosen = unit[unit["sample_id"].isin(common)].sort_values("sample_index", kind="stable")
    ids = list(dict.fromkeys(chosen["sample_id"]))[:n_samples]
    if not ids:
        return None
    chosen = chosen[chosen["sample_id"].isin(ids)].set_index(["attack", "sample_id"])
    rows = chosen.reset_index().sort_values("sample_index", kind="stable")
    examples = rebuild_examples(store, run_id, dataset_name, stored_dataset(config, dataset_name),
                                rows.assign(model=model, mode=mode))
    plt = _pyplot()
    figure, axes = plt.subplots(len(attacks) + 1, 2 * len(ids), figsize=(2.0 * 2 * len(ids), 2.1 * (len(attacks) + 1)),
                                squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for row, attack in enumerate(attacks, start=1):
        clean, adversarial = examples[(model, attack, mode)]
        order = list(rows.loc[rows["attack"] == attack, "sample_id"])
        for column, sample_id in enumerate(ids):
            i = order.index(sample_id)
            record = chosen.loc[(attack, sample_id)]
            if row == 1:
                axes[0, 2 * column].imshow(_image(clean[i]), cmap="gray", vmin=0, vmax=1)
                axes[0, 2 * column].set_title(f"clean {sample_id}, class {int(record['label'])}", fontsize=7)
                axes[0, 2 * column + 1].set_visible(False)
            verdict = (f"-> {int(record['adversarial_prediction'])}" if record["success"] else "failed")
            axes[row, 2 * column].imshow(_image(adversarial[i]), cmap="gray", vmin=0, vmax=1)
            axes[row, 2 * column].set_title(f"{attack}: {verdict}", fontsize=7)
            change = (adversarial[i] - clean[i]).abs().amax(0).numpy()
            axes[row, 2 * column + 1].imshow(change, cmap="magma", vmin=0, vmax=1)
            axes[row, 2 * column + 1].set_title(
                f"L0 {int(record['l0_pixels'])} px / {int(record['l0_elements'])} el", fontsize=7)
    figure.suptitle(f"{model} {mode}: clean, adversarial and |perturbation| per pixel (run {run_id})", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(figure, path)
