"""Uncertainty of the reported numbers, and paired comparisons of two attacks.

A fooling rate measured on a few dozen samples is an estimate: 19 of 20 is
95%, and so is a true rate anywhere from about 75% to 99%. Every rate and
median the reports print comes with an interval from here, and two attacks
are compared sample by sample rather than by their summary numbers.

* :func:`wilson_interval`: the Wilson score interval of a proportion
  (fooling rate, robust accuracy at a budget), as fractions in [0, 1].
* :func:`bootstrap_median_interval`: a seeded percentile bootstrap of a
  median (median L0 over successful samples).
* :func:`paired_comparison`: wins, ties and losses of attack A against B on
  the same samples, a two-sided sign test, a Wilcoxon signed-rank test when
  both always succeeded, and a bootstrap interval of the median per-sample
  L0 ratio A/B.
* :func:`compare_attacks`: :func:`paired_comparison` of two attack labels
  per dataset x model x mode of a run's per-sample rows (``sparsebench compare``).

Choices, and why:

* **Wilson, not the normal approximation.** Attacks often fool every sample
  or none; there the normal (Wald) interval collapses to zero width, e.g.
  [100, 100] for 20 of 20, which claims a certainty 20 samples cannot give.
  Wilson's interval stays inside [0, 1], is not degenerate at 0 or n, and
  its coverage is close to nominal for small n (Brown, Cai and DasGupta,
  "Interval Estimation for a Binomial Proportion", Statistical Science 2001).
  At 20 of 20 its 95% interval is [83.9%, 100%].
* **Percentile bootstrap for the median.** A median has no simple standard
  error; the bootstrap needs no distributional assumption. It is
  approximate: on few samples, or on integer L0 with many ties, its
  coverage can fall short of nominal and the interval can be degenerate
  (every resample has the same median). It is computed exactly as the
  textbook bootstrap (draw n values with replacement, take the median), but
  through counts: the multiset of a resample is fixed by how often each
  distinct value is drawn, which is multinomial with the values'
  frequencies, so the cost grows with the number of distinct values, not
  with n. Seeded (:class:`numpy.random.Generator`): the same values and
  seed give the same interval on every machine.
* **A failure is L0 = +inf.** Per sample, the attack with the smaller L0
  wins; an attack that succeeded beats one that failed; two failures tie,
  as do two equal L0s. This one ordering folds the fooling rate and the L0
  into a single per-sample verdict.
* **Sign test, Wilcoxon only without failures.** The sign test uses only
  the direction of each non-tied pair, so infinities are no problem: it
  asks whether A beats B on more samples than chance (p = 1/2) would give
  (two-sided exact binomial test, :func:`scipy.stats.binomtest`). Wilcoxon's
  signed-rank test ranks the sizes of the differences, and a difference
  involving +inf has no size (inf - inf is undefined, and inf - 5 ranks
  every failure as equally, infinitely bad); it is therefore computed only
  when neither attack failed on any paired sample, and is NaN otherwise.
  Ties (zero differences) are dropped by both tests, as is usual.
* **Median ratio over samples both fooled.** ``L0_a / L0_b`` is defined
  only when both succeeded. Pairs with an L0 of 0 are left out as well (0/x
  and x/0 say nothing about relative size); the harness attacks only
  correctly classified samples, so a successful L0 of 0 does not occur in
  its store. A ratio below 1 means A needed fewer changes. Its interval is
  the percentile bootstrap of :func:`bootstrap_median_interval`.

No correction for multiple comparisons is made: a report that compares many
pairs will find some p < 0.05 by chance, and should be read so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from bench.errors import SparseBenchError

__all__ = ["ALPHA", "SAMPLE_KEY", "PairedComparison", "bootstrap_median_interval", "check_unit", "compare_attacks",
           "paired_comparison", "paired_l0", "per_sample_l0", "verdict", "wilson_interval"]

ALPHA = 0.05
"""Significance level of the verdicts (two-sided)."""

SAMPLE_KEY = ("sample_id", "input_sha1", "target")
"""Columns that identify one attacked sample across attacks (as :func:`reports.leaderboard.align_samples`):
the same image with another target is another task."""

GROUP = ["dataset", "model", "mode"]

_CHUNK = 2_000_000
"""Most entries of one block of bootstrap counts (resamples x distinct values) held at once."""


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise SparseBenchError(f"confidence: {confidence!r} is not between 0 and 1 (exclusive), e.g. 0.95")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``.

    Parameters
    ----------
    successes : int
        Samples counted (e.g. fooled), ``0 <= successes <= n``.
    n : int
        Samples in all, ``>= 0``.
    confidence : float
        Two-sided confidence level in (0, 1); default 0.95.

    Returns
    -------
    lo, hi : float
        Bounds as **fractions** in [0, 1] (the tables multiply by 100);
        ``(nan, nan)`` when ``n`` is 0. Exactly 0 at ``successes == 0`` and
        exactly 1 at ``successes == n``.

    Notes
    -----
    With ``p = successes / n`` and ``z`` the standard normal quantile at
    ``1 - (1 - confidence) / 2``: centre ``(p + z^2 / 2n) / (1 + z^2 / n)``,
    half-width ``z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)``.
    """
    _check_confidence(confidence)
    if n < 0 or int(n) != n:
        raise SparseBenchError(f"n: {n!r} is not a whole number >= 0")
    if not 0 <= successes <= n or int(successes) != successes:
        raise SparseBenchError(f"successes: {successes!r} is not a whole number between 0 and n = {n}")
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def _values(values: Sequence[float] | np.ndarray | pd.Series, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise SparseBenchError(f"{field}: has shape {array.shape}; expected one value per sample (1-D)")
    if np.isnan(array).any():
        raise SparseBenchError(f"{field}: holds NaN; expected numbers (L0, with +inf for a failure)")
    return array


def bootstrap_median_interval(values: Sequence[float] | np.ndarray | pd.Series, *, seed: int, resamples: int = 2000,
                              confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values``.

    Parameters
    ----------
    values : array-like of float
        The sample (e.g. L0 of the successful examples); finite, no NaN.
    seed : int
        Seed of the :func:`numpy.random.default_rng` generator: the same
        values and seed give the same interval.
    resamples : int
        Bootstrap resamples, ``>= 1``; default 2000.
    confidence : float
        Two-sided confidence level in (0, 1); default 0.95.

    Returns
    -------
    lo, hi : float
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
        (linear interpolation) of the resamples' medians; ``(nan, nan)`` for
        no value, ``(v, v)`` for the single value ``v``.

    Notes
    -----
    A resample's median (the mean of the two middle values for even ``n``,
    as :func:`numpy.median`) is read from multinomial counts of the
    distinct values, which is the same distribution as drawing ``n`` values
    with replacement (see the module docstring).
    """
    _check_confidence(confidence)
    if resamples < 1 or int(resamples) != resamples:
        raise SparseBenchError(f"resamples: {resamples!r} is not a whole number >= 1")
    array = _values(values, "values")
    if not np.isfinite(array).all():
        raise SparseBenchError("values: holds an infinity; the median interval is over finite values only")
    n = len(array)
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(array[0]), float(array[0])
    distinct, counts = np.unique(array, return_counts=True)
    generator = np.random.default_rng(seed)
    lower_rank, upper_rank = (n - 1) // 2, n // 2  # 0-based order statistics averaged into the median
    medians = np.empty(resamples)
    step = max(1, _CHUNK // len(distinct))
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        drawn = generator.multinomial(n, counts / n, size=size).cumsum(axis=1)
        lower = (drawn <= lower_rank).sum(axis=1)  # index of the distinct value holding that order statistic
        upper = (drawn <= upper_rank).sum(axis=1)
        medians[start:start + size] = (distinct[lower] + distinct[upper]) / 2
    alpha = 1 - confidence
    lo, hi = np.quantile(medians, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedComparison:
    """Attack A against attack B on the same samples (see :func:`paired_comparison`)."""

    n: int
    """Paired samples."""
    wins: int
    """Samples where A's L0 is smaller than B's (a success beats a failure)."""
    ties: int
    """Equal L0, or both failed."""
    losses: int
    """Samples where B's L0 is smaller."""
    sign_test_p: float
    """Two-sided exact sign test on the non-tied pairs; 1.0 when every pair tied, NaN when ``n`` is 0."""
    wilcoxon_p: float
    """Two-sided Wilcoxon signed-rank test; NaN when either attack failed on a paired sample (no size for an
    infinite difference) or when every pair tied."""
    ratio_samples: int
    """Pairs in the ratio: both succeeded with L0 > 0."""
    median_ratio: float
    """Median over those pairs of ``L0_a / L0_b`` (< 1: A needed fewer changes); NaN when there is none."""
    median_ratio_lo: float
    median_ratio_hi: float
    """Percentile bootstrap interval of ``median_ratio``."""


def paired_comparison(l0_a: Sequence[float] | np.ndarray | pd.Series, l0_b: Sequence[float] | np.ndarray | pd.Series,
                      *, seed: int = 0, resamples: int = 2000, confidence: float = 0.95) -> PairedComparison:
    """Compare two attacks sample by sample on their L0.

    Parameters
    ----------
    l0_a, l0_b : array-like of float
        Per-sample L0 of attacks A and B, aligned (entry ``i`` of both is the
        same sample), ``+inf`` where the attack failed; ``>= 0``, no NaN.
    seed, resamples, confidence
        Of the bootstrap interval of the median ratio
        (:func:`bootstrap_median_interval`).

    Returns
    -------
    PairedComparison
        Counts from A's side, the tests' p-values and the median ratio
        ``L0_a / L0_b`` with its interval; how failures and zeros are
        handled is in the module docstring.
    """
    a, b = _values(l0_a, "l0_a"), _values(l0_b, "l0_b")
    if a.shape != b.shape:
        raise SparseBenchError(f"l0_b: has {len(b)} samples, l0_a {len(a)}; both must hold the same samples")
    if (a < 0).any() or (b < 0).any():
        raise SparseBenchError("l0_a, l0_b: hold a negative L0; expected L0 >= 0 (or +inf for a failure)")
    wins, losses = int((a < b).sum()), int((a > b).sum())  # inf < inf is False: two failures tie
    ties = len(a) - wins - losses
    if len(a) == 0:
        sign_p = float("nan")
    elif wins + losses == 0:
        sign_p = 1.0
    else:
        from scipy.stats import binomtest  # scipy.stats is slow to import: only when a test is run

        sign_p = float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)
    wilcoxon_p = float("nan")
    if wins + losses and np.isfinite(a).all() and np.isfinite(b).all():
        from scipy.stats import wilcoxon

        wilcoxon_p = float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    both = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    ratios = a[both] / b[both]
    lo, hi = bootstrap_median_interval(ratios, seed=seed, resamples=resamples, confidence=confidence)
    return PairedComparison(n=len(a), wins=wins, ties=ties, losses=losses, sign_test_p=sign_p, wilcoxon_p=wilcoxon_p,
                            ratio_samples=int(both.sum()),
                            median_ratio=float(np.median(ratios)) if len(ratios) else float("nan"),
                            median_ratio_lo=lo, median_ratio_hi=hi)


def verdict(result: PairedComparison, *, against: str | None = None, alpha: float = ALPHA) -> str:
    """In words, A against B: ``"wins (p=0.0078)"``, ``"loses to B (p=0.031)"`` or ``"no significant difference
    (p=0.45)"``, by the sign test at level ``alpha``; ``"no paired sample"`` when there is none."""
    if result.n == 0:
        return "no paired sample"
    p = f"p={result.sign_test_p:.2g}"
    if result.sign_test_p < alpha and result.wins != result.losses:
        if result.wins > result.losses:
            return f"wins ({p})"
        return f"loses to {against} ({p})" if against else f"loses ({p})"
    return f"no significant difference ({p})"


def check_unit(unit: str, field: str = "unit") -> None:
    """The L0 unit a table counts in: ``pixels`` (any channel changed) or ``elements`` (C*H*W)."""
    if unit not in ("pixels", "elements"):
        raise SparseBenchError(f"{field}: {unit!r} is not one of pixels, elements")


def per_sample_l0(samples: pd.DataFrame, unit: str = "pixels") -> pd.Series:
    """L0 in ``unit`` of each row, ``+inf`` where the harness did not verify a success."""
    check_unit(unit)
    return samples[f"l0_{unit}"].astype(float).where(samples["success"].astype(bool), np.inf)


def paired_l0(group: pd.DataFrame, a: str, b: str, unit: str = "pixels") -> pd.DataFrame:
    """One row per sample both ``a`` and ``b`` ran on (by :data:`SAMPLE_KEY`) of one dataset x model x mode:
    columns ``a`` and ``b``, their L0 in ``unit`` (inf: failed)."""
    key = [c for c in SAMPLE_KEY if c in group.columns]
    if "sample_id" not in key:
        raise SparseBenchError("samples: has no sample_id column; expected the store's per-sample rows")
    rows = group[group["attack"].isin([a, b])]
    rows = rows.assign(_l0=per_sample_l0(rows, unit))
    if "target" in key:  # untargeted: no target; NaN would not match itself in the pivot
        rows = rows.assign(target=rows["target"].fillna(-1))
    duplicated = rows.duplicated(key + ["attack"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise SparseBenchError(f"samples: attack {first['attack']!r} has sample {first['sample_id']!r} twice on "
                               f"{'/'.join(str(first[c]) for c in GROUP)}; combine runs whose attack labels differ")
    table = rows.pivot(index=key, columns="attack", values="_l0").reindex(columns=[a, b])
    return table.dropna()


def compare_attacks(samples: pd.DataFrame, a: str, b: str, *, unit: str = "pixels", seed: int = 0,
                    confidence: float = 0.95, alpha: float = ALPHA) -> pd.DataFrame:
    """Attack label ``a`` against ``b`` per dataset x model x mode, on the samples both ran on.

    Parameters
    ----------
    samples : DataFrame
        Per-sample rows as the store holds them (:meth:`bench.store.ResultsStore.run_samples`):
        dataset, model, attack, mode, sample_id (with input_sha1 and target when present: the pairing key,
        :data:`SAMPLE_KEY`), success and ``l0_<unit>``.
    a, b : str
        Attack labels; each must be in ``samples``, and they must differ.
    unit : {"pixels", "elements"}
        L0 counted in pixels (any channel changed) or elements.
    seed, confidence
        Of the bootstrap and Wilson intervals.
    alpha : float
        Level of the ``verdict`` column (sign test).

    Returns
    -------
    DataFrame
        One row per (dataset, model, mode) where both ran, in the order of
        ``samples``: ``a``, ``b``, ``samples`` (paired), ``a_fooling_rate``
        and ``b_fooling_rate`` in % over the paired samples, each with
        ``_lo``/``_hi`` (Wilson), ``wins``, ``ties``, ``losses`` (from A's
        side), ``sign_test_p``, ``wilcoxon_p``, ``ratio_samples``,
        ``median_ratio`` (``L0_a / L0_b``) with ``_lo``/``_hi``, ``verdict``.
    """
    check_unit(unit)
    attacks = list(dict.fromkeys(samples["attack"]))
    for field, label in (("a", a), ("b", b)):
        if label not in attacks:
            raise SparseBenchError(f"{field}: attack {label!r} is not in these samples; attacks: {', '.join(attacks)}")
    if a == b:
        raise SparseBenchError(f"b: {b!r} is attack a as well; compare two different attacks")
    rows = []
    for key, group in samples.groupby(GROUP, sort=False):
        ran = set(group["attack"])
        if a not in ran or b not in ran:
            continue
        paired = paired_l0(group, a, b, unit)
        result = paired_comparison(paired[a].to_numpy(), paired[b].to_numpy(), seed=seed, confidence=confidence)
        row: dict[str, object] = {**dict(zip(GROUP, key)), "a": a, "b": b, "samples": result.n}
        for side, label in (("a", a), ("b", b)):
            fooled = int(np.isfinite(paired[label]).sum())
            lo, hi = wilson_interval(fooled, result.n, confidence)
            row.update({f"{side}_fooling_rate": 100.0 * fooled / result.n if result.n else np.nan,
                        f"{side}_fooling_rate_lo": 100.0 * lo, f"{side}_fooling_rate_hi": 100.0 * hi})
        row.update(wins=result.wins, ties=result.ties, losses=result.losses, sign_test_p=result.sign_test_p,
                   wilcoxon_p=result.wilcoxon_p, ratio_samples=result.ratio_samples,
                   median_ratio=result.median_ratio, median_ratio_lo=result.median_ratio_lo,
                   median_ratio_hi=result.median_ratio_hi, verdict=verdict(result, against=b, alpha=alpha))
        rows.append(row)
    return pd.DataFrame(rows)
