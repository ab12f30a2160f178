"""Summary tables from the results store, as Markdown, LaTeX and CSV.

One row per dataset x model x attack x mode. Every figure is computed from
the harness's own per-sample verdicts, never from what an attack reported:

* ``samples``: samples attacked (all classified correctly before the attack);
* ``fooling_rate``: % of them whose adversarial example the harness verified
  as successful (inside [0, 1], right shape, fooled its forward pass);
* ``mean/median_l0_elements`` and ``..._pixels``: over successful samples;
* ``fr@k``: % successful with L0 <= k, in the config's budget unit;
* ``seconds_per_sample``, ``forward_per_sample``, ``backward_per_sample``:
  measured by the harness (synchronised timing, counted passes);
* ``peak_memory_mib``: the largest peak of device memory allocated while
  the attack ran on one of the unit's batches (CUDA runs only: the column
  is left out when no row has it);
* ``invalid``: examples rejected by the harness's checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import SparseBenchError
from reports.escaping import latex_escape, markdown_escape, markdown_table

__all__ = ["format_table", "order_like_config", "proposed_versus_best", "summarize", "write_tables"]

KEY = ["dataset", "model", "attack", "mode"]


def summarize(samples: pd.DataFrame, *, budgets: Sequence[int] = (), budget_unit: str = "pixels") -> pd.DataFrame:
    """One summary row per unit, in the order units first appear in ``samples``."""
    if budget_unit not in ("pixels", "elements"):
        raise SparseBenchError(f"budget_unit: {budget_unit!r} is not one of pixels, elements")
    column = f"l0_{budget_unit}"
    rows = []
    for key, group in samples.groupby(KEY, sort=False):
        success = group["success"].astype(bool)
        won = group[success]
        row = dict(zip(KEY, key))
        row.update(
            samples=len(group),
            fooling_rate=100.0 * success.mean(),
            mean_l0_elements=won["l0_elements"].mean() if len(won) else np.nan,
            median_l0_elements=won["l0_elements"].median() if len(won) else np.nan,
            mean_l0_pixels=won["l0_pixels"].mean() if len(won) else np.nan,
            median_l0_pixels=won["l0_pixels"].median() if len(won) else np.nan,
        )
        for k in budgets:
            row[f"fr@{k}"] = 100.0 * (success & (group[column] <= k)).mean()
        row.update(
            seconds_per_sample=group["seconds"].mean(),
            forward_per_sample=group["forward_passes"].mean(),
            backward_per_sample=group["backward_passes"].mean(),
            invalid=int((group["valid"] == 0).sum()),
        )
        if "peak_memory_mib" in group and group["peak_memory_mib"].notna().any():
            row["peak_memory_mib"] = group["peak_memory_mib"].max()
        rows.append(row)
    return pd.DataFrame(rows)


_FORMATS = {
    "fooling_rate": "{:.1f}", "mean_l0_elements": "{:.1f}", "median_l0_elements": "{:.1f}",
    "mean_l0_pixels": "{:.1f}", "median_l0_pixels": "{:.1f}", "seconds_per_sample": "{:.4f}",
    "forward_per_sample": "{:.1f}", "backward_per_sample": "{:.1f}", "peak_memory_mib": "{:.0f}",
}


def format_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Round for display; a missing median (no success) shows as ``-``."""
    shown = summary.copy()
    for column in shown.columns:
        fmt = _FORMATS.get(column, "{:.1f}" if column.startswith("fr@") else None)
        if fmt:
            shown[column] = [("-" if pd.isna(v) else fmt.format(v)) for v in shown[column]]
    return shown


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


def proposed_versus_best(summary: pd.DataFrame, proposed: str = PROPOSED) -> pd.DataFrame:
    """Per dataset x model x mode, the proposed attack beside the best other attack.

    "Best" ranks by fooling rate, then by median L0 in pixels (lower is
    better); ``verdict`` says plainly whether the proposed attack wins, ties
    or loses on that ranking. Empty when the proposed attack was not run.
    """
    rows = []
    for (dataset, model, mode), group in summary.groupby(["dataset", "model", "mode"], sort=False):
        mine = group[group["attack"] == proposed]
        others = group[group["attack"] != proposed]
        if mine.empty or others.empty:
            continue
        mine = mine.iloc[0]
        ranked = others.assign(_l0=others["median_l0_pixels"].fillna(float("inf")))
        best = ranked.sort_values(["fooling_rate", "_l0"], ascending=[False, True], kind="stable").iloc[0]
        key_mine = (mine["fooling_rate"], -(mine["median_l0_pixels"] if pd.notna(mine["median_l0_pixels"]) else float("inf")))
        key_best = (best["fooling_rate"], -best["_l0"])
        verdict = "wins" if key_mine > key_best else "ties" if key_mine == key_best else f"loses to {best['attack']}"
        rows.append({
            "dataset": dataset, "model": model, "mode": mode,
            f"{proposed} fooling_rate": mine["fooling_rate"], f"{proposed} median_l0_pixels": mine["median_l0_pixels"],
            "best other attack": best["attack"], "its fooling_rate": best["fooling_rate"],
            "its median_l0_pixels": best["median_l0_pixels"], "verdict": verdict,
        })
    return pd.DataFrame(rows)
