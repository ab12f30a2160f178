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
* ``invalid``: examples rejected by the harness's checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["summarize", "write_tables", "format_table"]

KEY = ["dataset", "model", "attack", "mode"]


def summarize(samples: pd.DataFrame, *, budgets: Sequence[int] = (), budget_unit: str = "pixels") -> pd.DataFrame:
    """One summary row per unit, in the order units first appear in ``samples``."""
    if budget_unit not in ("pixels", "elements"):
        raise ValueError(f"budget_unit: {budget_unit!r} is not one of pixels, elements")
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
        rows.append(row)
    return pd.DataFrame(rows)


_FORMATS = {
    "fooling_rate": "{:.1f}", "mean_l0_elements": "{:.1f}", "median_l0_elements": "{:.1f}",
    "mean_l0_pixels": "{:.1f}", "median_l0_pixels": "{:.1f}", "seconds_per_sample": "{:.4f}",
    "forward_per_sample": "{:.1f}", "backward_per_sample": "{:.1f}",
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
    header = f"{caption}\n\n" if caption else ""
    paths["md"].write_text(header + shown.to_markdown(index=False) + "\n")
    latex = shown.to_latex(index=False, escape=True, caption=caption, label=f"tab:{stem}")
    paths["tex"].write_text(latex)
    summary.to_csv(paths["csv"], index=False)
    return paths
