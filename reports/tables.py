"""Summary tables from the results store, as Markdown, LaTeX and CSV.

One row per dataset x model x attack x mode. Every figure is computed from
the harness's own per-sample verdicts, never from what an attack reported:

* ``samples``: samples attacked (all classified correctly before the attack);
* ``fooling_rate``: % of them whose adversarial example the harness verified
  as successful (inside [0, 1], right shape, fooled its forward pass);
  ``fooling_rate_lo`` and ``fooling_rate_hi``: its Wilson 95% interval, in %
  (:func:`reports.stats.wilson_interval`);
* ``mean/median_l0_elements`` and ``..._pixels``: over successful samples;
  ``median_l0_elements_lo``/``_hi`` and ``median_l0_pixels_lo``/``_hi``: the
  medians' 95% percentile-bootstrap intervals (2000 resamples, seed
  ``seed``, 0 by default, the same for every row: a row's interval depends
  on its own samples only, and tables are the same on every rerun;
  :func:`reports.stats.bootstrap_median_interval`);
* ``fr@k``: % successful with L0 <= k, in the config's budget unit;
* ``seconds_per_sample``, ``forward_per_sample``, ``backward_per_sample``:
  measured by the harness (synchronised timing, counted passes); none (NaN)
  for a row whose every example is invalid, whose cost buys nothing (an
  attack that raised at once, or whose preparation did, would otherwise
  rank as the fastest);
* ``peak_memory_mib``: the largest peak of device memory allocated while
  the attack ran on one of the unit's batches (CUDA runs only: the column
  is left out when no row has it);
* ``invalid``: examples rejected by the harness's checks.

Each interval column follows the column it bounds. The CSV keeps them as
separate full-precision columns; :func:`format_table` (Markdown, LaTeX,
terminal) shows ``value [lo, hi]`` in the bounded column and drops them.
:func:`proposed_versus_best` compares the proposed attack with the best
other one sample by sample (:func:`reports.stats.paired_comparison`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reports.escaping import latex_escape, markdown_escape, markdown_table
from reports.stats import (
    ALPHA,
    bootstrap_median_interval,
    check_unit,
    paired_comparison,
    paired_l0,
    verdict,
    wilson_interval,
)

__all__ = ["compact_summary", "format_table", "order_like_config", "proposed_versus_best", "summarize", "write_tables"]

KEY = ["dataset", "model", "attack", "mode"]


def summarize(samples: pd.DataFrame, *, budgets: Sequence[int] = (), budget_unit: str = "pixels",
              seed: int = 0) -> pd.DataFrame:
    """One summary row per unit, in the order units first appear in ``samples``.

    Parameters
    ----------
    samples : DataFrame
        Per-sample rows (:meth:`bench.store.ResultsStore.run_samples`, or :func:`bench.evaluate`'s).
    budgets : sequence of int
        L0 budgets of the ``fr@k`` columns, in ``budget_unit``.
    budget_unit : {"pixels", "elements"}
        Unit of the budgets.
    seed : int
        Seed of the bootstrap intervals of the medians (the same for every row).

    Returns
    -------
    DataFrame
        The columns of the module docstring.
    """
    check_unit(budget_unit, "budget_unit")
    column = f"l0_{budget_unit}"
    rows = []
    for key, group in samples.groupby(KEY, sort=False):
        success = group["success"].astype(bool)
        won = group[success]
        lo, hi = wilson_interval(int(success.sum()), len(group))
        row = dict(zip(KEY, key))
        row.update(samples=len(group), fooling_rate=100.0 * success.mean(), fooling_rate_lo=100.0 * lo,
                   fooling_rate_hi=100.0 * hi)
        for unit in ("elements", "pixels"):
            values = won[f"l0_{unit}"].to_numpy(dtype=float)
            lo, hi = bootstrap_median_interval(values, seed=seed)
            row.update({f"mean_l0_{unit}": values.mean() if len(values) else np.nan,
                        f"median_l0_{unit}": np.median(values) if len(values) else np.nan,
                        f"median_l0_{unit}_lo": lo, f"median_l0_{unit}_hi": hi})
        for k in budgets:
            row[f"fr@{k}"] = 100.0 * (success & (group[column] <= k)).mean()
        invalid = int((group["valid"] == 0).sum())
        costs = group if invalid < len(group) else group.iloc[:0]
        row.update(
            seconds_per_sample=costs["seconds"].mean(),
            forward_per_sample=costs["forward_passes"].mean(),
            backward_per_sample=costs["backward_passes"].mean(),
            invalid=invalid,
        )
        if "peak_memory_mib" in group and group["peak_memory_mib"].notna().any():
            row["peak_memory_mib"] = group["peak_memory_mib"].max()
        rows.append(row)
    return pd.DataFrame(rows)


_FORMATS = {
    "fooling_rate": "{:.1f}", "mean_l0_elements": "{:.1f}", "median_l0_elements": "{:.1f}",
    "mean_l0_pixels": "{:.1f}", "median_l0_pixels": "{:.1f}", "seconds_per_sample": "{:.4f}",
    "forward_per_sample": "{:.1f}", "backward_per_sample": "{:.1f}", "peak_memory_mib": "{:.0f}",
    "sign_test_p": "{:.2g}", "wilcoxon_p": "{:.2g}", "median_ratio": "{:.2f}",
}


def _format_of(column: str) -> str | None:
    """The display format of a column, by its name or the name's last word or ``_``-part
    (``"lin2025 fooling_rate"``, ``"a_fooling_rate"``); None: shown as it is."""
    if column.startswith("fr@"):
        return "{:.1f}"
    if " ratio to " in column or column.split(" ")[0] in ("Spearman", "Kendall"):
        return "{:.3g}"  # reproduce: ratios to a reference method, rank correlations and their p-values
    for name in (column, column.rsplit(" ", 1)[-1]):
        if name in _FORMATS:
            return _FORMATS[name]
        for known, fmt in _FORMATS.items():
            if name.endswith("_" + known):
                return fmt
    return None


def format_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Round for display; a missing value (e.g. the median of no success) shows as ``-``.

    A column ``c`` whose ``c_lo`` and ``c_hi`` are in the table shows as
    ``value [lo, hi]``, and ``c_lo``, ``c_hi`` are dropped (the CSV of
    :func:`write_tables` keeps them as numbers).
    """
    shown = summary.copy()
    bounded = [c for c in shown.columns if f"{c}_lo" in shown.columns and f"{c}_hi" in shown.columns]
    bounds = [f"{c}_{end}" for c in bounded for end in ("lo", "hi")]
    for column in shown.columns:
        fmt = _format_of(column) or ("{:.4g}" if column in bounded else None)
        if column in bounds:
            continue
        if fmt is None:  # text and integer columns: only a missing value changes, to "-"
            if shown[column].isna().any():
                shown[column] = [("-" if pd.isna(v) else v) for v in shown[column]]
            continue

        def text(value: object, fmt: str = fmt) -> str:
            return "-" if pd.isna(value) else fmt.format(value)

        if column in bounded:
            triples = zip(shown[column], shown[f"{column}_lo"], shown[f"{column}_hi"])
            shown[column] = [text(v) if pd.isna(v) or pd.isna(lo) or pd.isna(hi) else f"{text(v)} [{text(lo)}, {text(hi)}]"
                             for v, lo, hi in triples]
        else:
            shown[column] = [text(v) for v in shown[column]]
    return shown.drop(columns=bounds)


def compact_summary(summary: pd.DataFrame, *, unit: str = "pixels") -> dict[tuple[str, str], pd.DataFrame]:
    """Per dataset and model, the few columns a terminal shows: attack, mode, fooling rate, median L0, time.

    The full table (every column, every budget) goes to the files; this is
    what ``sparsebench run`` and ``report`` print, one small table per
    model, each figure with its 95% interval.
    """
    check_unit(unit)
    median = f"median_l0_{unit}"
    columns = ["attack", "mode", "samples", "fooling_rate", "fooling_rate_lo", "fooling_rate_hi",
               median, f"{median}_lo", f"{median}_hi", "seconds_per_sample"]
    tables = {}
    for (dataset, model), group in summary.groupby(["dataset", "model"], sort=False):
        shown = format_table(group[[c for c in columns if c in group.columns]]).reset_index(drop=True)
        tables[(dataset, model)] = shown.rename(columns={
            "fooling_rate": "fooling rate % [95% CI]", median: f"median L0 ({unit}) [95% CI]",
            "seconds_per_sample": "s/sample"})
    return tables


def write_tables(summary: pd.DataFrame, directory: str | Path, stem: str = "summary",
                 caption: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.tex`` and ``<stem>.csv`` into ``directory``.

    The CSV keeps full precision; Markdown and LaTeX are rounded for reading.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shown = format_table(summary)
    paths = {"md": directory / f"{stem}.md", "tex": directory / f"{stem}.tex", "csv": directory / f"{stem}.csv"}
    header = f"{markdown_escape(caption)}\n\n" if caption else ""
    paths["md"].write_text(header + markdown_table(shown) + "\n")
    latex = shown.copy()  # names from the store (labels, run ids) in caption, headers and cells: escaped here
    latex.columns = [latex_escape(c) for c in shown.columns]
    for i in range(latex.shape[1]):
        latex.isetitem(i, latex.iloc[:, i].map(lambda v: latex_escape(v) if isinstance(v, str) else v))
    paths["tex"].write_text(latex.to_latex(index=False, escape=False, label=f"tab:{stem}",
                                           caption=latex_escape(caption) if caption else None))
    summary.to_csv(paths["csv"], index=False)
    return paths


def order_like_config(summary: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Rows in the config's order: dataset, model, attack, then untargeted before targeted."""
    order = {
        "dataset": [d["name"] for d in config["datasets"]],
        "model": [m for d in config["datasets"] for m in d["models"]],
        "attack": [a["label"] for a in config["attacks"]],
        "mode": ["untargeted", "targeted"],
    }
    ranks = pd.DataFrame({k: summary[k].map({v: i for i, v in enumerate(dict.fromkeys(vs))}) for k, vs in order.items()})
    return summary.iloc[ranks.sort_values(KEY, kind="stable").index].reset_index(drop=True)


PROPOSED = "lin2025"
"""The proposed attack a report compares with the best other one, unless a config names another (``proposed``)."""


def proposed_versus_best(samples: pd.DataFrame, proposed: str = PROPOSED, *, unit: str = "pixels",
                         seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """Per dataset x model x mode, the proposed attack against the best other attack, sample by sample.

    Parameters
    ----------
    samples : DataFrame
        A run's per-sample rows (:meth:`bench.store.ResultsStore.run_samples`).
    proposed : str
        The proposed attack's label.
    unit : {"pixels", "elements"}
        L0 unit of the ranking and of the paired comparison.
    seed : int
        Seed of the bootstrap intervals.
    alpha : float
        Level of the sign test behind the verdict.

    Returns
    -------
    DataFrame
        One row per group where the proposed attack and another ran; empty
        when the proposed attack was not run. "Best other attack" ranks by
        fooling rate, then by median L0 (lower is better), as the summary
        table has them. The two are then compared on the samples both ran on
        (:func:`reports.stats.paired_comparison`; a failure is L0 = inf, so a
        success beats a failure): ``paired samples``, ``wins``/``ties``/
        ``losses`` of the proposed attack, ``sign_test_p`` and
        ``median_ratio`` (its L0 over the other's, on samples both fooled)
        with ``_lo``/``_hi``. ``verdict`` says ``wins``, ``loses to <attack>``
        or ``no significant difference``, by the two-sided sign test at
        ``alpha``, with its p-value: a proposed attack ahead on the summary
        numbers but not significantly so is not said to win.
    """
    summary = summarize(samples, budget_unit=unit, seed=seed)
    median = f"median_l0_{unit}"
    rows = []
    for (dataset, model, mode), group in summary.groupby(["dataset", "model", "mode"], sort=False):
        mine = group[group["attack"] == proposed]
        others = group[group["attack"] != proposed]
        if mine.empty or others.empty:
            continue
        me = mine.iloc[0]
        ranked = others.assign(_l0=others[median].fillna(float("inf")))
        best = ranked.sort_values(["fooling_rate", "_l0"], ascending=[False, True], kind="stable").iloc[0]
        unit_rows = samples[(samples["dataset"] == dataset) & (samples["model"] == model) & (samples["mode"] == mode)]
        paired = paired_l0(unit_rows, proposed, best["attack"], unit)
        result = paired_comparison(paired[proposed].to_numpy(), paired[best["attack"]].to_numpy(), seed=seed)
        columns = [f"{column}{end}" for column in ("fooling_rate", median) for end in ("", "_lo", "_hi")]
        row: dict[str, object] = {"dataset": dataset, "model": model, "mode": mode,
                                  **{f"{proposed} {column}": me[column] for column in columns},
                                  "best other attack": best["attack"],
                                  **{f"its {column}": best[column] for column in columns}}
        row.update({"paired samples": result.n, "wins": result.wins, "ties": result.ties, "losses": result.losses,
                    "sign_test_p": result.sign_test_p, "median_ratio": result.median_ratio,
                    "median_ratio_lo": result.median_ratio_lo, "median_ratio_hi": result.median_ratio_hi,
                    "verdict": verdict(result, against=best["attack"], alpha=alpha)})
        rows.append(row)
    return pd.DataFrame(rows)

