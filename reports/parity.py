"""Parity: each native baseline beside the reference implementation it should match.

A native baseline (``fmn-l0``) is paired with a library's implementation of the same attack
(``adv-lib/fmn-l0``) when both ran in one run, and the two are compared per dataset x model x mode
on the samples both attacked. The goal a native baseline must meet:

* its fooling rate is not lower than the reference's by more than one sample
  (:data:`FOOLED_SLACK` samples), and
* its median L0 over successful samples is at most :data:`L0_RATIO_MAX` (1.1) times the
  reference's (the run's budget unit, pixels or elements).

Pairing (:func:`parity_pairs`): a reference is a registry entry ``library/name`` whose name after the
slash is the native attack's name, or one that :data:`PARITY` maps a native name to explicitly (for
a reference named otherwise). Pairs are found among the labels of the run's config, by each label's
registry name. Attacks with no partner in the run are listed, not compared (:func:`unpaired`):
torchattacks' JSMA and Pixle have no native counterpart (:data:`NO_NATIVE`).

The paired columns (wins, ties and losses of the native attack, sign-test p, the median per-sample
L0 ratio native/reference with its bootstrap interval, a failure counting as L0 = +inf) are
:func:`reports.stats.paired_comparison`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import SparseBenchError
from reports.stats import check_unit, paired_comparison, paired_l0
from reports.tables import order_like_config

__all__ = ["FOOLED_SLACK", "L0_RATIO_MAX", "NO_NATIVE", "PARITY", "parity_of_run", "parity_pairs", "parity_table",
           "unpaired"]

PARITY: Mapping[str, tuple[str, ...]] = {}
"""Native registry name -> reference registry names that the name rule (``library/<native name>``) does not
pair; empty while every reference follows the rule."""

NO_NATIVE: Mapping[str, str] = {
    "torchattacks/jsma": "no native JSMA",
    "torchattacks/pixle": "no native Pixle",
}
"""References without a native counterpart, and why they are not compared."""

FOOLED_SLACK = 1
"""Samples by which the native fooling count may fall short of the reference's."""

L0_RATIO_MAX = 1.1
"""Largest native / reference ratio of median L0 that meets the goal."""

GROUP = ["dataset", "model", "mode"]


def _is_reference_of(native: str, reference: str, mapping: Mapping[str, Sequence[str]]) -> bool:
    library, slash, name = reference.partition("/")
    is_library = bool(slash) and library != "prune"  # prune/<name> is <name> plus a pass, not a library's
    return (is_library and "/" not in native and name == native) or reference in mapping.get(native, ())


def parity_pairs(attacks: Sequence[Mapping[str, Any]], mapping: Mapping[str, Sequence[str]] = PARITY
                 ) -> list[tuple[str, str]]:
    """``(native label, reference label)`` pairs among a config's attacks, in the config's order.

    ``attacks`` are the config's ``[[attacks]]`` as a run stores them (``label`` and ``name``, the
    registry name; an outside attack has no registry name and pairs with nothing). A native attack
    is one whose registry name has no ``library/`` prefix.
    """
    named = [(str(a.get("label", a["name"])), str(a["name"])) for a in attacks if a.get("name")]
    return [(native_label, reference_label)
            for native_label, native in named if "/" not in native
            for reference_label, reference in named if _is_reference_of(native, reference, mapping)]


def unpaired(attacks: Sequence[Mapping[str, Any]], mapping: Mapping[str, Sequence[str]] = PARITY) -> list[str]:
    """Labels of the config's attacks that :func:`parity_pairs` pairs with nothing."""
    paired = {label for pair in parity_pairs(attacks, mapping) for label in pair}
    return [a.get("label", a.get("name", "?")) for a in attacks if a.get("label", a.get("name")) not in paired]


def _median_success(l0: np.ndarray) -> float:
    finite = l0[np.isfinite(l0)]
    return float(np.median(finite)) if len(finite) else float("nan")


def _goal(native_fooled: int, reference_fooled: int, native_median: float, reference_median: float
          ) -> tuple[bool, bool, str]:
    """Whether the fooling count and the median L0 meet the goal, and the verdict in words."""
    fooled_ok = native_fooled >= reference_fooled - FOOLED_SLACK
    if np.isnan(reference_median):  # the reference fooled nothing: no L0 to fall behind
        l0_ok = True
    elif np.isnan(native_median):
        l0_ok = False
    else:
        l0_ok = native_median <= L0_RATIO_MAX * reference_median + 1e-9
    reasons = []
    if not fooled_ok:
        reasons.append(f"fools {reference_fooled - native_fooled} fewer")
    if not l0_ok:
        reasons.append("no success" if np.isnan(native_median) else
                       f"median L0 {native_median / reference_median:.3f}x")
    if not reasons and native_fooled == reference_fooled == 0:
        return fooled_ok, l0_ok, "pass (no information: neither fooled any sample)"
    return fooled_ok, l0_ok, "pass" if not reasons else "FAIL: " + ", ".join(reasons)


def parity_table(samples: pd.DataFrame, attacks: Sequence[Mapping[str, Any]], *, unit: str = "pixels",
                 mapping: Mapping[str, Sequence[str]] = PARITY, seed: int = 0) -> pd.DataFrame:
    """One row per native/reference pair x dataset x model x mode where both ran.

    Parameters
    ----------
    samples : DataFrame
        A run's per-sample rows (:meth:`bench.store.ResultsStore.run_samples`).
    attacks : sequence of mappings
        The run's config ``attacks`` (label and registry name of each).
    unit : {"pixels", "elements"}
        The L0 unit (the run's budget unit).
    mapping
        Explicit pairs beyond the name rule (default :data:`PARITY`).
    seed : int
        Of the bootstrap interval of the paired median ratio.

    Returns
    -------
    DataFrame
        ``native``, ``reference``, ``dataset``, ``model``, ``mode``, ``samples`` (attacked by both),
        ``native_fooling_rate`` and ``reference_fooling_rate`` (%), ``native_median_l0`` and
        ``reference_median_l0`` (over each one's successful samples), ``l0_ratio`` (their ratio,
        native / reference), ``wins``/``ties``/``losses`` (native's, per sample, a failure = +inf),
        ``sign_test_p``, ``paired_median_ratio`` with ``_lo``/``_hi`` (over samples both fooled),
        ``fooling_ok``, ``l0_ok`` and ``verdict`` (``pass`` or ``FAIL: <why>``).
    """
    check_unit(unit)
    rows = []
    for native, reference in parity_pairs(attacks, mapping):
        for key, group in samples.groupby(GROUP, sort=False):
            ran = set(group["attack"])
            if native not in ran or reference not in ran:
                continue
            paired = paired_l0(group, native, reference, unit)
            a, b = paired[native].to_numpy(), paired[reference].to_numpy()
            result = paired_comparison(a, b, seed=seed)
            native_fooled, reference_fooled = int(np.isfinite(a).sum()), int(np.isfinite(b).sum())
            native_median, reference_median = _median_success(a), _median_success(b)
            fooled_ok, l0_ok, verdict = _goal(native_fooled, reference_fooled, native_median, reference_median)
            n = result.n
            rows.append({
                "native": native, "reference": reference, **dict(zip(GROUP, key)), "samples": n,
                "native_fooling_rate": 100.0 * native_fooled / n if n else np.nan,
                "reference_fooling_rate": 100.0 * reference_fooled / n if n else np.nan,
                "native_median_l0": native_median, "reference_median_l0": reference_median,
                "l0_ratio": native_median / reference_median if reference_median else np.nan,
                "wins": result.wins, "ties": result.ties, "losses": result.losses,
                "sign_test_p": result.sign_test_p, "paired_median_ratio": result.median_ratio,
                "paired_median_ratio_lo": result.median_ratio_lo, "paired_median_ratio_hi": result.median_ratio_hi,
                "fooling_ok": fooled_ok, "l0_ok": l0_ok, "verdict": verdict,
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {"untargeted": 0, "targeted": 1}  # within a pair and model: untargeted first, as the other tables
    pair_model = table[["native", "reference", "dataset", "model"]].apply(tuple, axis=1)
    rank = pd.DataFrame({"first": pair_model.map({k: i for i, k in enumerate(dict.fromkeys(pair_model))}),
                         "mode": table["mode"].map(order).fillna(2)})
    return table.loc[rank.sort_values(["first", "mode"], kind="stable").index].reset_index(drop=True)


def parity_of_run(store: Any, run_id: str, *, mapping: Mapping[str, Sequence[str]] = PARITY
                  ) -> tuple[pd.DataFrame, list[str]]:
    """:func:`parity_table` of a stored run (in its budget unit), and the labels it left unpaired.

    Raises :class:`SparseBenchError` when the run holds no native/reference pair.
    """
    run = store.get_run(run_id)
    if run is None:
        raise SparseBenchError(f"--run: {run_id!r} is not in {store.path}")
    config = run["config"]
    attacks = config["attacks"]
    if not parity_pairs(attacks, mapping):
        names = ", ".join(a.get("label", a.get("name", "?")) for a in attacks)
        raise SparseBenchError(f"--run: {run_id} holds no native attack beside its reference (attacks: {names}); "
                               "run a config that has both, e.g. --config parity-offline")
    samples = order_like_config(store.run_samples(run_id), config)  # models in the config's order
    table = parity_table(samples, attacks, unit=config.get("budget_unit", "pixels"),
                         mapping=mapping, seed=int(run.get("seed") or 0))
    return table, unpaired(attacks, mapping)
