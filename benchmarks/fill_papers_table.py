"""Write docs/measured/baselines-ii-cpu/papers.md: its template with our rows from a regenerated summary.csv.

The template (``papers.template.md`` beside it) holds placeholders ``OURS:<model>:<attack>:<mode>:fr`` (fooling rate,
percent) and ``OURS:<model>:<attack>:<mode>:l0`` (median L0 in pixels over the
successful samples). Each becomes ``value [lo, hi]``: the fooling rate with its
95% Wilson interval, the median with its bootstrap interval, the columns
``fooling_rate``, ``fooling_rate_lo``, ``fooling_rate_hi``, ``median_l0_pixels``,
``median_l0_pixels_lo`` and ``median_l0_pixels_hi`` of the summary that
``sparsebench run`` writes (:func:`reports.tables.summarize`). A median with no
successful sample is written ``n/a``.

After ``bash benchmarks/regenerate_cpu.sh baselines-ii`` (at a clean commit)::

    python benchmarks/fill_papers_table.py

It reads the one ``docs/measured/baselines-ii-cpu/generated/<run>/summary.csv``
(or ``--summary``), writes ``papers.md`` (or ``--out``) and exits with
status 1 if a placeholder has no row in the summary or a row of the summary
has no placeholder; ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "docs" / "measured" / "baselines-ii-cpu"
PLACEHOLDER = re.compile(r"OURS:(?P<model>[\w.-]+):(?P<attack>[\w./-]+):(?P<mode>untargeted|targeted):(?P<field>fr|l0)")
COLUMNS = {"fr": "fooling_rate", "l0": "median_l0_pixels"}


def find_summary(folder: Path) -> Path:
    """The one ``generated/<run>/summary.csv`` under ``folder``."""
    found = sorted((folder / "generated").glob("*/summary.csv"))
    if len(found) != 1:
        raise SystemExit(f"fill_papers_table: expected one generated/<run>/summary.csv under {folder}, "
                         f"found {len(found)}; pass --summary")
    return found[0]


def read_summary(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """Rows of the summary by (model, attack, mode)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"model", "attack", "mode"} | {f"{c}{s}" for c in COLUMNS.values() for s in ("", "_lo", "_hi")}
    missing = needed - set(rows[0] if rows else ())
    if missing:
        raise SystemExit(f"fill_papers_table: {path} lacks the columns {sorted(missing)}")
    return {(row["model"], row["attack"], row["mode"]): row for row in rows}


def cell(row: dict[str, str], column: str) -> str:
    """``value [lo, hi]`` with one decimal, or ``n/a`` where the value is missing."""
    def number(key: str) -> float:
        text = row.get(key, "")
        return float(text) if text not in ("", "nan", "NaN") else math.nan

    value, lo, hi = number(column), number(f"{column}_lo"), number(f"{column}_hi")
    if math.isnan(value):
        return "n/a"
    if math.isnan(lo) or math.isnan(hi):
        return f"{value:.1f}"
    return f"{value:.1f} [{lo:.1f}, {hi:.1f}]"


def fill(text: str, rows: dict[tuple[str, str, str], dict[str, str]]) -> tuple[str, list[str], set]:
    """The page with its placeholders replaced, the placeholders left without a row, and the keys used."""
    unmatched: list[str] = []
    used: set[tuple[str, str, str]] = set()

    def replace(match: re.Match[str]) -> str:
        key = (match["model"], match["attack"], match["mode"])
        if key not in rows:
            unmatched.append(match[0])
            return match[0]
        used.add(key)
        return cell(rows[key], COLUMNS[match["field"]])

    return PLACEHOLDER.sub(replace, text), unmatched, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Placeholders: OURS:<model>:<attack>:<mode>:fr|l0.")
    parser.add_argument("--page", type=Path, default=FOLDER / "papers.template.md",
                        help="template to fill (default: %(default)s)")
    parser.add_argument("--summary", type=Path, default=None,
                        help="summary.csv to read (default: the one under docs/measured/baselines-ii-cpu/generated/)")
    parser.add_argument("--out", type=Path, default=FOLDER / "papers.md",
                        help="where to write the filled page (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="report what would be filled and write nothing")
    args = parser.parse_args(argv)

    summary = args.summary or find_summary(args.page.parent)
    rows = read_summary(summary)
    text, unmatched, used = fill(args.page.read_text(), rows)
    unused = sorted(set(rows) - used)
    print(f"{summary}: {len(rows)} rows, {len(used)} filled on {args.page}")
    for placeholder in unmatched:
        print(f"  no row for {placeholder}")
    for model, attack, mode in unused:
        print(f"  no placeholder for {model} {attack} {mode}")
    if not args.check:
        (args.out or args.page).write_text(text)
    return 1 if unmatched or unused else 0


if __name__ == "__main__":
    sys.exit(main())
