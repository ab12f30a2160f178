"""The leaderboard: attacks ranked per (dataset, model, mode), from one or more stored runs.

``sparsebench leaderboard`` writes ``leaderboard.md`` and one self-contained
``leaderboard.html`` (inline CSS, JS and figures; sortable tables; works
offline). Every number is computed from the harness's per-sample verdicts in
the store, on the samples that every compared attack ran on.

Rankings, per (dataset, model, mode):

* ``optimality``: AttackBench's local optimality (Cinà et al., "AttackBench:
  Evaluating Gradient-based Attacks for Adversarial Examples",
  arXiv:2404.19460), for L0; see :func:`optimality_scores`;
* ``fooling_rate`` overall and ``fr@k`` within each L0 budget ``k``;
* ``median_l0_<unit>`` over successful samples (lower is better; an attack
  that fooled few samples has its median over those few, easy ones).

Fooling rates and medians are shown as ``value [lo, hi]``: Wilson and
bootstrap 95% intervals (:mod:`reports.stats`). Below each ranking, every
other attack is compared with the leader sample by sample
(:func:`reports.stats.compare_attacks`: wins, ties, losses, sign test,
median L0 ratio), so that a lead within the noise is not read as one.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
import numpy as np
import pandas as pd

from bench.errors import SparseBenchError
from reports.escaping import (
    markdown_code,
    markdown_code_block,
    markdown_escape,
    markdown_table,
    option,
    shell_command,
)
from reports.plots import robust_accuracy_curves, time_versus_l0
from reports.stats import compare_attacks
from reports.tables import PROPOSED, format_table, summarize

if TYPE_CHECKING:
    from bench.store import ResultsStore

__all__ = ["PROPOSED", "UNITS", "Leaderboard", "align_samples", "build_leaderboard", "load_samples",
           "optimality", "optimality_scores", "pairwise_with_leader", "parse_budgets", "write_html",
           "write_leaderboard", "write_markdown"]

GROUP = ["dataset", "model", "mode"]
UNITS = ("pixels", "elements")


def load_samples(store: ResultsStore, run_ids: Sequence[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The per-sample rows and the run records of ``run_ids``, combined.

    Raises ``ValueError`` for a run that is not in the store, and when one
    attack label of one (dataset, model, mode) comes from two runs (the
    leaderboard could not tell which to rank).
    """
    if not run_ids:
        raise SparseBenchError("--run: no run given")
    runs, frames = [], []
    for run_id in dict.fromkeys(run_ids):
        run = store.get_run(run_id)
        if run is None:
            known = ", ".join(store.runs()["run_id"]) or "none"
            raise SparseBenchError(f"--run: {run_id!r} is not in {store.path}; runs: {known}")
        runs.append(run)
        frames.append(store.run_samples(run_id))
    samples = pd.concat(frames, ignore_index=True)
    sources = samples.groupby(GROUP + ["attack"], sort=False)["run_id"].unique()
    for key, found in sources.items():
        if len(found) > 1:
            raise SparseBenchError(f"--run: attack {key[3]!r} on {'/'.join(key[:3])} is in runs {', '.join(found)}; "
                             "combine runs whose attack labels differ (relabel one in its config)")
    return samples, runs


def align_samples(samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep, per (dataset, model, mode), only the samples that every attack of that group ran on.

    A sample is identified by ``sample_id``, ``input_sha1`` and ``target``
    (the same image with another target is another task).

    Returns
    -------
    kept : DataFrame
        The rows of ``samples`` on the shared samples.
    coverage : DataFrame
        One row per (dataset, model, mode): ``attacks``, ``samples`` (kept),
        ``dropped`` (samples that only some attacks ran on) and ``missing``
        (which attacks lacked how many of them, e.g. ``"fmn-l0 lacks 2"``).
    """
    target = samples["target"].fillna(-1).astype(int).astype(str)  # untargeted: no target (-1)
    keys = samples["sample_id"].astype(str) + "|" + samples["input_sha1"].astype(str) + "|" + target
    samples = samples.assign(_sample=keys)
    kept, coverage = [], []
    for group_key, group in samples.groupby(GROUP, sort=False):
        per_attack = group.groupby("attack", sort=False)["_sample"].agg(set)
        union = set().union(*per_attack)
        shared = set.intersection(*per_attack)
        kept.append(group[group["_sample"].isin(shared)])
        missing = [f"{attack} lacks {len(union - ran)}" for attack, ran in per_attack.items() if union - ran]
        coverage.append({**dict(zip(GROUP, group_key)), "attacks": len(per_attack), "samples": len(shared),
                         "dropped": len(union - shared), "missing": ", ".join(missing)})
    return pd.concat(kept).drop(columns="_sample"), pd.DataFrame(coverage)


def optimality_scores(l0: pd.DataFrame) -> tuple[pd.Series, float]:
    """AttackBench's local optimality of each attack, for integer L0 budgets.

    Parameters
    ----------
    l0 : DataFrame
        One row per sample, one column per attack: the L0 of the attack's
        successful example, ``inf`` where it failed. Every attack must have
        run on every sample (see :func:`align_samples`).

    Returns
    -------
    scores : Series
        Per attack, in [0, 1]: 1.0 for an attack that matches the per-sample
        best everywhere, lower otherwise; NaN when no attack fooled any sample.
    budget : float
        ``K``, the largest budget integrated over (NaN when nothing was fooled).

    Notes
    -----
    Following arXiv:2404.19460 (Sec. "local optimality"): the per-sample best
    is ``d*_i = min_a d^a_i``, the smallest L0 any compared attack found for
    sample ``i`` (the empirical best attack). The robust-accuracy curve of an
    attack at budget ``k`` is ``rho_a(k) = (1/N) sum_i [not (a fooled i with
    d^a_i <= k)]`` over the ``N`` shared samples. The paper scores an attack by
    ``(rho * eps0 - AUC_a) / (rho * eps0 - AUC*)``: the area an attack gains
    below the never-successful curve, relative to the area the per-sample best
    gains, up to ``eps0``, the smallest budget at which the best curve reaches
    its floor. Here:

    * L0 is an integer, so the area is the sum over the budgets
      ``k = 1, ..., K`` (not an integral over real eps; with a real integral
      from 0 to ``K`` the best curve would gain nothing when every ``d*_i``
      equals ``K``, e.g. all one pixel);
    * ``K = max d*_i`` over the samples some attack fooled (the smallest
      budget where the best curve reaches its floor);
    * ``rho`` (clean accuracy) is 1: the harness attacks only correctly
      classified samples, so every curve starts at 1.

    So ``score_a = sum_{k=1..K} (1 - rho_a(k)) / sum_{k=1..K} (1 - rho*(k))``,
    which per sample is ``sum_i max(K - d^a_i + 1, 0) / sum_i (K - d*_i + 1)``
    (a failure counts as ``d = inf``, gaining 0). Samples no attack fooled
    gain nothing in either sum.
    """
    if l0.isna().any().any():
        raise SparseBenchError("l0: has missing entries; every attack must have run on every sample (align_samples)")
    best = l0.min(axis=1)
    fooled = np.isfinite(best)
    if not fooled.any():
        return pd.Series(np.nan, index=l0.columns), float("nan")
    budget = float(best[fooled].max())
    gains = (budget - l0 + 1).clip(lower=0)  # inf (failed) -> -inf -> 0
    return gains.sum() / (budget - best[fooled] + 1).sum(), budget


def optimality(samples: pd.DataFrame, unit: str = "pixels") -> pd.DataFrame:
    """Local optimality per (dataset, model, mode, attack) of aligned samples (see :func:`optimality_scores`).

    Columns: dataset, model, mode, attack, ``optimality`` and ``optimality_budget``
    (``K``, the largest L0 budget integrated over, in ``unit``).
    """
    if unit not in UNITS:
        raise SparseBenchError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    rows = []
    for group_key, group in samples.groupby(GROUP, sort=False):
        l0 = group[f"l0_{unit}"].astype(float).where(group["success"].astype(bool), np.inf)
        table = group.assign(_l0=l0, _target=group["target"].fillna(-1)).pivot_table(
            index=["sample_id", "input_sha1", "_target"], columns="attack", values="_l0", aggfunc="min", sort=False)
        scores, budget = optimality_scores(table)
        rows += [{**dict(zip(GROUP, group_key)), "attack": attack, "optimality": score, "optimality_budget": budget}
                 for attack, score in scores.items()]
    return pd.DataFrame(rows)


@dataclass
class Leaderboard:
    """What the pages show: ranked rows, ranks, coverage, the runs, and the budgets and unit used."""

    rows: pd.DataFrame
    ranks: pd.DataFrame
    coverage: pd.DataFrame
    samples: pd.DataFrame
    runs: list[dict[str, Any]]
    budgets: list[int]
    unit: str
    sentences: dict[tuple[str, str, str], str] = field(default_factory=dict)
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Each attack against its group's leader, sample by sample (:func:`pairwise_with_leader`)."""

    def groups(self) -> list[tuple[str, str, str]]:
        return list(dict.fromkeys(map(tuple, self.coverage[GROUP].to_numpy())))


def _rank_columns(budgets: Sequence[int], unit: str) -> dict[str, bool]:
    """Ranked columns and whether higher is better."""
    return {"optimality": True, "fooling_rate": True, **{f"fr@{k}": True for k in budgets},
            f"median_l0_{unit}": False}


def build_leaderboard(samples: pd.DataFrame, runs: list[dict[str, Any]], *, budgets: Sequence[int],
                      unit: str = "pixels", proposed: str = PROPOSED) -> Leaderboard:
    """Align the samples, summarise and rank each (dataset, model, mode).

    Rows are ordered by optimality (best first), then fooling rate, then
    median L0; ``rank`` is the optimality rank (ties share the best rank).
    """
    aligned, coverage = align_samples(samples)
    if aligned.empty:
        runs_named = ", ".join(sorted(set(samples["run_id"])))
        raise SparseBenchError(f"--run: runs {runs_named} share no sample on any dataset/model/mode; "
                         "combine runs that attacked the same samples of the same models")
    summary = summarize(aligned, budgets=budgets, budget_unit=unit)
    scores = optimality(aligned, unit)
    sources = aligned.groupby(GROUP + ["attack"], sort=False)["run_id"].first().rename("run").reset_index()
    rows = summary.merge(scores, on=GROUP + ["attack"], how="left").merge(sources, on=GROUP + ["attack"], how="left")
    ranked = _rank_columns(budgets, unit)
    ranks = rows[GROUP + ["attack"]].copy()
    for column, higher in ranked.items():
        ranks[column] = rows.groupby(GROUP, sort=False)[column].rank(
            ascending=not higher, method="min", na_option="bottom").astype(int)
    group_order = {key: i for i, key in enumerate(map(tuple, coverage[GROUP].to_numpy()))}
    position = pd.Series([group_order[key] for key in map(tuple, rows[GROUP].to_numpy())], index=rows.index)
    order = ranks.assign(_group=position).sort_values(
        ["_group", "optimality", "fooling_rate", f"median_l0_{unit}"], kind="stable").index
    rows = rows.loc[order].reset_index(drop=True)
    ranks = ranks.loc[order].reset_index(drop=True)
    rows.insert(0, "rank", ranks["optimality"])
    board = Leaderboard(rows=rows, ranks=ranks, coverage=coverage, samples=aligned, runs=runs,
                        budgets=list(budgets), unit=unit)
    board.sentences = {key: _proposed_sentence(board, key, proposed) for key in board.groups()}
    board.pairwise = pairwise_with_leader(aligned, rows, unit)
    return board


PAIRWISE_COLUMNS = ["attack", "leader", "samples", "wins", "ties", "losses", "sign_test_p", "median_ratio",
                    "median_ratio_lo", "median_ratio_hi", "verdict"]


def pairwise_with_leader(samples: pd.DataFrame, rows: pd.DataFrame, unit: str = "pixels") -> pd.DataFrame:
    """Every attack of a (dataset, model, mode) against its leader (the first of ``rows``), sample by sample.

    Parameters
    ----------
    samples : DataFrame
        Aligned per-sample rows (:func:`align_samples`).
    rows : DataFrame
        The ranked rows, best first per group (:func:`build_leaderboard`).
    unit : {"pixels", "elements"}
        L0 unit.

    Returns
    -------
    DataFrame
        Per group and attack other than the leader: the group's columns, then :data:`PAIRWISE_COLUMNS` of
        :func:`reports.stats.compare_attacks` with the attack as A and the leader as B (``wins``: samples where
        the attack beat the leader; ``median_ratio`` < 1: it needed fewer changes).
    """
    found = []
    for key, group in rows.groupby(GROUP, sort=False):
        leader = group["attack"].iloc[0]
        unit_samples = _group(samples, key)
        for attack in group["attack"].iloc[1:]:
            table = compare_attacks(unit_samples, attack, leader, unit=unit)
            found.append(table.rename(columns={"a": "attack", "b": "leader"})[GROUP + PAIRWISE_COLUMNS])
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=GROUP + PAIRWISE_COLUMNS)


def _group(frame: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    return frame[(frame[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)]


def _pairwise(board: Leaderboard, key: tuple[str, str, str]) -> pd.DataFrame:
    """One group's comparisons with its leader, without the group's columns (empty when there is none)."""
    if board.pairwise.empty:
        return pd.DataFrame(columns=PAIRWISE_COLUMNS)
    return _group(board.pairwise, key).drop(columns=GROUP).reset_index(drop=True)


def _proposed_sentence(board: Leaderboard, key: tuple[str, str, str], proposed: str) -> str:
    """Where the proposed attack ranks in one group, in words, including when it loses."""
    rows, ranks = _group(board.rows, key), _group(board.ranks, key)
    where = f"{key[1]} ({key[0]}, {key[2]})"
    if rows.empty:
        return f"No sample on {where} was attacked by every attack: nothing to rank."
    if proposed not in set(rows["attack"]):
        return f"The proposed attack {proposed} was not run on {where}."
    n = len(rows)
    if n == 1:
        return f"{proposed} is the only attack on {where}: nothing to rank it against."
    mine = rows[rows["attack"] == proposed].iloc[0]
    mine_ranks = ranks[ranks["attack"] == proposed].iloc[0]
    median = f"median_l0_{board.unit}"
    best = rows.iloc[0]
    parts = [f"by optimality {mine_ranks['optimality']} of {n} ({_number(mine['optimality'], 3)}"
             + ("" if mine_ranks["optimality"] == 1 else f"; best {best['attack']}, {_number(best['optimality'], 3)}")
             + ")",
             f"by fooling rate {mine_ranks['fooling_rate']} of {n} ({_number(mine['fooling_rate'], 1)}%)",
             f"by median L0 {mine_ranks[median]} of {n} ({_number(mine[median], 1)} {board.unit})"]
    sentence = f"On {where}, {proposed} (proposed) ranks {', '.join(parts)}."
    better = rows[(ranks["optimality"] < mine_ranks["optimality"]).to_numpy()]["attack"].tolist()
    tied = rows[((ranks["optimality"] == mine_ranks["optimality"]) & (rows["attack"] != proposed)).to_numpy()]
    if better:
        sentence += f" It loses on optimality to {', '.join(better)}."
    elif len(tied):
        sentence += f" It ties for first on optimality with {', '.join(tied['attack'])}."
    else:
        sentence += " It is first on optimality."
    return sentence


def _overall_sentence(board: Leaderboard, proposed: str = PROPOSED) -> str:
    ran = [key for key in board.groups() if proposed in set(_group(board.rows, key)["attack"])]
    if not ran:
        return f"The proposed attack {proposed} is not in these runs."
    first = [key for key in ran if _group(board.ranks, key).set_index("attack").loc[proposed, "optimality"] == 1]
    lost = [f"{key[1]} {key[2]} (to {_group(board.rows, key).iloc[0]['attack']})" for key in ran if key not in first]
    sentence = f"{proposed} (proposed) ranks first (or ties) by optimality on {len(first)} of {len(ran)} comparisons"
    return sentence + (f"; it loses on {', '.join(lost)}." if lost else ".")


def _number(value: Any, digits: int) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _shown(rows: pd.DataFrame, unit: str, *, columns: Sequence[str]) -> pd.DataFrame:
    """Rounded for display (``-`` for missing), in ``columns`` order; a column with ``_lo``/``_hi`` bounds in
    ``rows`` shows as ``value [lo, hi]``."""
    bounds = [f"{c}_{end}" for c in columns for end in ("lo", "hi") if f"{c}_{end}" in rows.columns]
    shown = format_table(rows[list(columns) + bounds])[list(columns)]
    if "optimality" in shown:
        shown["optimality"] = [_number(v, 3) for v in rows["optimality"]]
    return shown


def _table_columns(board: Leaderboard) -> list[str]:
    return ["rank", "attack", "optimality", "fooling_rate", *(f"fr@{k}" for k in board.budgets),
            f"median_l0_{board.unit}", "seconds_per_sample", "samples", "run"]


def _coverage_note(coverage: pd.Series, rows: pd.DataFrame, unit: str) -> str:
    """How many samples count, how many were dropped and why, and the budgets the optimality integrates over."""
    note = f"{coverage['samples']} samples attacked by all {coverage['attacks']} attacks"
    if coverage["dropped"]:
        note += (f"; {coverage['dropped']} dropped because not every attack ran on them "
                 f"({coverage['missing']})")
    budget = rows["optimality_budget"].max() if len(rows) else float("nan")
    if pd.notna(budget):
        note += f"; optimality sums budgets 1 to {budget:.0f} {unit}"
    return note + "."


def _global_optimality(board: Leaderboard) -> pd.DataFrame:
    """AttackBench's global optimality: the mean local optimality per mode over the (dataset, model) groups."""
    table = (board.rows.groupby(["mode", "attack"], sort=False)["optimality"]
             .agg(global_optimality="mean", groups="count").reset_index())
    return table.sort_values(["mode", "global_optimality"], ascending=[True, False], kind="stable")


def _describe_run(run: dict[str, Any]) -> dict[str, str]:
    hardware = run["hardware"]
    device = hardware.get("gpu") or hardware.get("processor") or hardware.get("machine")
    return {"run": run["run_id"], "name": run["name"], "created": run["created"], "finished": run["finished"] or "not yet",
            "seed": str(run["seed"]), "commit": run["git_commit"] or "unknown",
            "device": f"{hardware.get('device')} ({device}, {hardware.get('cpu_count')} CPUs)"}


def _method_text(board: Leaderboard) -> str:
    return (f"L0 in {board.unit}; fr@k: % of samples fooled with L0 <= k {board.unit}; median L0 over successful "
            "samples. Optimality (AttackBench, Cina et al., arXiv:2404.19460): per sample, the smallest L0 any "
            "attack of the comparison found is the empirical best; an attack's score is the sum over budgets "
            "k = 1..K of its attack success rate within k, divided by the same sum for the per-sample best, with K "
            "the largest per-sample best L0 (1.0 = matches the best on every sample). Only samples that every "
            "compared attack ran on count (identified by sample id, input SHA-1 and target). [lo, hi]: 95% "
            "intervals, Wilson for fooling rates, percentile bootstrap (2000 resamples, seed 0) for medians. Against "
            "the leader: per sample the smaller L0 wins, a success beats a failure, two failures tie; "
            "sign_test_p is the two-sided sign test on the non-tied samples (verdict at 0.05, no correction for "
            "the number of comparisons); median_ratio is the attack's L0 over the leader's on samples both "
            "fooled.")


def _command(board: Leaderboard, store_path: Path, out: Path) -> str:
    """The command that writes this leaderboard again, from the store alone, shell-quoted."""
    argv = ["sparsebench", "leaderboard", *option("--store", store_path)]
    for run in board.runs:
        argv += option("--run", run["run_id"])
    argv += [*option("--out", out), "--unit", board.unit]
    if board.budgets:  # no budget: the default (the runs' config budgets, none) gives the same
        argv += ["--budgets", ",".join(map(str, board.budgets))]
    return shell_command(argv)


def write_markdown(board: Leaderboard, path: Path, figures: dict[str, Path], command: str,
                   proposed: str = PROPOSED) -> Path:
    """``leaderboard.md``: per group, the sentence on the proposed attack, the ranked table and the ranks.

    Every name from the store (run ids and names, labels, models, datasets, provenance) is escaped
    (:func:`reports.escaping.markdown_escape`); ``command``, shell-quoted, is shown verbatim in a code block.
    """
    lines = ["# SparseBench leaderboard", "",
             f"Runs: {', '.join(markdown_escape(run['run_id']) for run in board.runs)} (provenance at the end).", "",
             "Regenerate (from the store; no attack reruns):", "", markdown_code_block(command), "",
             markdown_escape(_method_text(board)), "", markdown_escape(_overall_sentence(board, proposed)), ""]
    columns = _table_columns(board)
    for key in board.groups():
        coverage = _group(board.coverage, key).iloc[0]
        rows = _group(board.rows, key)
        note = _coverage_note(coverage, rows, board.unit)
        lines += [f"## {' / '.join(map(markdown_escape, key))}", "", markdown_escape(note), "",
                  markdown_escape(board.sentences[key]), ""]
        if rows.empty:
            lines += ["No sample is shared by every attack: nothing to rank.", ""]
            continue
        shown = _shown(rows, board.unit, columns=columns)
        marked = [f"**{markdown_escape(a)}** (proposed)" if a == proposed else markdown_escape(a)
                  for a in rows["attack"]]
        shown["attack"] = marked
        ranks = _group(board.ranks, key).drop(columns=GROUP).assign(attack=marked)
        lines += [markdown_table(shown, verbatim=["attack"]), "", "Ranks (1 = best; ties share a rank):", "",
                  markdown_table(ranks, verbatim=["attack"]), ""]
        pairwise = _pairwise(board, key)
        if not pairwise.empty:
            lines += ["Each attack against the leader, sample by sample (wins: samples where it beat the leader):",
                      "", markdown_table(format_table(pairwise)), ""]
    lines += ["## Global optimality (mean over models, per mode)", "",
              markdown_table(format_table(_global_optimality(board)), floatfmt=".3f"), "", "## Figures", ""]
    lines += [f"![{markdown_escape(title)}]({quote(figure.relative_to(path.parent).as_posix())})"
              for title, figure in figures.items()]
    lines += ["", "## Provenance", "", markdown_table(pd.DataFrame([_describe_run(run) for run in board.runs])), ""]
    for run in board.runs:
        lines += [f"### {markdown_escape(run['run_id'])}", "",
                  f"- versions: {markdown_code(json.dumps(run['versions'], sort_keys=True))}",
                  f"- hardware: {markdown_code(json.dumps(run['hardware'], sort_keys=True))}",
                  f"- config: {markdown_code(json.dumps(run['config'], sort_keys=True))}", ""]
    path.write_text("\n".join(lines))
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _html_table(table_id: str, raw: pd.DataFrame, shown: pd.DataFrame, proposed: str | None = PROPOSED) -> dict[str, Any]:
    """A table for the template: each cell's text and its raw sort value (empty: missing, sorted last)."""
    numeric = {c: pd.api.types.is_numeric_dtype(raw[c]) for c in raw.columns}
    rows = []
    for (_, raw_row), (_, shown_row) in zip(raw.iterrows(), shown.iterrows()):
        cells = [{"text": str(shown_row[c]), "value": "" if pd.isna(raw_row[c]) else str(raw_row[c])}
                 for c in raw.columns]
        rows.append({"cells": cells, "proposed": proposed is not None and raw_row.get("attack") == proposed})
    return {"id": table_id, "columns": [{"key": c, "numeric": numeric[c]} for c in raw.columns], "rows": rows}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(board: Leaderboard, path: Path, figures: dict[str, Path], command: str,
               proposed: str = PROPOSED) -> Path:
    """One self-contained page (``leaderboard.html.j2``): inline CSS and JS, figures as data URIs.

    Every table is sortable by a click on its header; ``#sort=<table id>:<column>:<asc|desc>``
    (several joined by ``;``) in the URL applies the same sort on load. The
    script writes ``data-ready="1"`` on ``<body>`` when done and ``data-error``
    if anything raised.
    """
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    columns = _table_columns(board)
    groups, used = [], set()
    for key in board.groups():
        slug = _slug("-".join(key))
        while slug in used:
            slug += "-x"
        used.add(slug)
        rows = _group(board.rows, key)
        ranks = _group(board.ranks, key).drop(columns=GROUP)
        pairwise = _pairwise(board, key)
        shown_pairwise = format_table(pairwise)
        groups.append({
            "title": " / ".join(key), "note": _coverage_note(_group(board.coverage, key).iloc[0], rows, board.unit),
            "sentence": board.sentences[key],
            "table": _html_table(f"t-{slug}", rows[columns], _shown(rows, board.unit, columns=columns), proposed),
            "ranks": _html_table(f"r-{slug}", ranks, ranks, proposed),
            "pairwise": _html_table(f"p-{slug}", pairwise[list(shown_pairwise.columns)], shown_pairwise, proposed)
            if not pairwise.empty else None,
        })
    global_table = _global_optimality(board)
    runs = pd.DataFrame([_describe_run(run) for run in board.runs])
    hardware = {json.dumps(run["hardware"], sort_keys=True) for run in board.runs}
    page = environment.get_template("leaderboard.html.j2").render(
        command=command, method=_method_text(board), overall=_overall_sentence(board, proposed), groups=groups,
        proposed=proposed,
        global_table=_html_table("t-global", global_table, format_table(global_table).assign(
            global_optimality=[_number(v, 3) for v in global_table["global_optimality"]]), proposed),
        runs_table=_html_table("t-runs", runs, runs, None),
        runs=[{"id": run["run_id"], "versions": json.dumps(run["versions"], indent=1, sort_keys=True),
               "hardware": json.dumps(run["hardware"], indent=1, sort_keys=True),
               "config": json.dumps(run["config"], indent=1, sort_keys=True)} for run in board.runs],
        mixed_hardware=len(hardware) > 1,
        figures=[{"title": title, "uri": _data_uri(figure)} for title, figure in figures.items()],
    )
    path.write_text(page)
    return path


def write_leaderboard(store: ResultsStore, run_ids: Sequence[str], out: str | Path, *, budgets: Sequence[int] | None = None,
                      unit: str | None = None, proposed: str | None = None) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``leaderboard.html`` and ``plots/*.png`` into ``out`` from the store alone.

    ``budgets`` default to the union of the runs' config budgets, ``unit`` to
    the first run's budget unit, ``proposed`` to the first run's config's
    proposed attack (``proposed`` in a config; :data:`PROPOSED` by default).
    """
    samples, runs = load_samples(store, run_ids)
    unit = unit or runs[0]["config"].get("budget_unit", "pixels")
    if unit not in UNITS:
        raise SparseBenchError(f"--unit: {unit!r} is not one of {', '.join(UNITS)}")
    if budgets is None:
        budgets = sorted({int(k) for run in runs for k in run["config"].get("budgets", ())})
    proposed = proposed or runs[0]["config"].get("proposed", PROPOSED)
    board = build_leaderboard(samples, runs, budgets=budgets, unit=unit, proposed=proposed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "robust accuracy against the L0 budget": robust_accuracy_curves(
            board.samples, out / "plots" / "robust-accuracy.png", unit=unit, order=board.rows),
        "seconds per sample against median L0": time_versus_l0(
            board.rows, out / "plots" / "time-versus-l0.png", unit=unit),
    }
    command = _command(board, store.path, out)
    return {"markdown": write_markdown(board, out / "leaderboard.md", figures, command, proposed),
            "html": write_html(board, out / "leaderboard.html", figures, command, proposed),
            **{f"plot {title}": figure for title, figure in figures.items()}}


def parse_budgets(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``; a ``ValueError`` names anything that is not a positive integer."""
    budgets = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise SparseBenchError(f"--budgets: {part!r} in {text!r} is not a positive integer; "
                             "expected comma-separated L0 budgets such as 1,2,5,10")
        budgets.append(int(part))
    return sorted(set(budgets))

