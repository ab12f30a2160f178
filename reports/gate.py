"""The regression gate: a baseline of a stored run, and a check of a later run against it.

``sparsebench baseline`` writes, per (dataset, model, attack, mode) of a
stored run, the numbers an attack must keep (fooling rate, median L0 in
pixels and in elements, seconds per sample, samples attacked), the
tolerances, and where the numbers came from (run id, config name and the
config itself, seed, commit, hardware). The file is TOML, written to be
edited by hand (or JSON, when its name ends in ``.json``)::

    format = 1

    [provenance]
    run_id = "gate-0123456789ab"
    config_name = "gate"
    ...

    [tolerances]
    fooling_rate_drop_points = 0.0   # absolute percentage points it may fall
    median_l0_rise_fraction = 0.1    # relative rise allowed, pixels and elements
    seconds_rise_fraction = 0.5      # relative rise allowed for seconds per sample

    [[units]]
    dataset = "fashion-mnist"
    model = "smallcnn-standard"
    attack = "fmn-l0"
    mode = "untargeted"
    samples = 100
    fooling_rate = 100.0
    median_l0_pixels = 12.0
    median_l0_elements = 12.0
    seconds_per_sample = 0.0123
    tolerances = { fooling_rate_drop_points = 2.0 }   # optional, this unit only

    [config]   # the run's config, so that ``check --rerun`` can run it again
    ...

``sparsebench check`` compares a stored run (or a fresh rerun of the
baseline's config) with the baseline, unit by unit, and exits 1 when
anything regressed. :func:`compare` does the comparison for the command and
for the pytest fixture of :mod:`reports.pytest_plugin` alike.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import parse_config
from bench.errors import SparseBenchError
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.tables import summarize

__all__ = [
    "COMPARE_TIME", "DEFAULT_TOLERANCES", "Finding", "baseline_from_run", "check", "compare", "failures",
    "findings_table", "read_baseline", "write_baseline",
]

FORMAT = 1

DEFAULT_TOLERANCES: dict[str, float] = {
    "fooling_rate_drop_points": 0.0,
    "median_l0_rise_fraction": 0.1,
    "seconds_rise_fraction": 0.5,
}
"""Percentage points the fooling rate may fall; relative rise allowed for median L0 and for seconds per sample."""

METRICS = ("samples", "fooling_rate", "median_l0_pixels", "median_l0_elements", "seconds_per_sample")
KEY = ("dataset", "model", "attack", "mode")

HARDWARE_KEYS = ("machine", "processor", "cpu_model", "cpu_count", "torch_threads", "device", "gpu",
                 "gpu_memory_bytes")
"""What must match for times to be comparable (the platform string, which names the kernel, is not compared).

``cpu_model`` is compared only when the baseline recorded it (baselines written before it was stored
have none)."""

COMPARE_TIME = ("auto", "always", "never")
FAILING = ("regressed", "missing", "differs")
"""Verdicts that fail a check; the others (ok, improved, new, skipped, note) only inform."""

_EPSILON = 1e-9
_NAMES = {
    "samples": "samples", "fooling_rate": "fooling rate", "median_l0_pixels": "median L0 (pixels)",
    "median_l0_elements": "median L0 (elements)", "seconds_per_sample": "seconds per sample",
}


@dataclass(frozen=True)
class Finding:
    """One line of a check: a unit's metric, what the baseline and the run say, and the verdict.

    ``unit`` is ``dataset/model/attack/mode``, or ``(run)`` for what concerns
    the whole run. ``verdict`` is one of ``ok``, ``improved``, ``regressed``,
    ``missing`` (unit absent from the run), ``differs`` (samples attacked),
    ``new`` (unit absent from the baseline), ``skipped`` or ``note``; the
    first three of :data:`FAILING` fail the check.
    """

    unit: str
    metric: str
    baseline: float | None
    now: float | None
    allowed: str
    verdict: str
    message: str

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING


def failures(findings: list[Finding]) -> list[Finding]:
    """The findings that fail the check."""
    return [f for f in findings if f.failed]


# baseline file ---------------------------------------------------------------------------------------------

def _drop_none(value: Any) -> Any:
    """TOML has no null: drop ``None`` members of tables, recursively."""
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def _check_tolerances(where: str, tolerances: Any) -> dict[str, float]:
    if not isinstance(tolerances, Mapping):
        raise SparseBenchError(f"{where}: {tolerances!r} is a {type(tolerances).__name__}; expected a table")
    for name, value in tolerances.items():
        if name not in DEFAULT_TOLERANCES:
            raise SparseBenchError(f"{where}: unknown tolerance {name!r}; allowed: {', '.join(DEFAULT_TOLERANCES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise SparseBenchError(f"{where}.{name}: {value!r} must be a number >= 0")
    return {name: float(value) for name, value in tolerances.items()}


def _get_run(store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        runs = ", ".join(store.runs()["run_id"]) or "none"
        raise SparseBenchError(f"--run: {run_id!r} is not in {store.path}; runs: {runs}")
    return run


def baseline_from_run(store, run_id: str, *, tolerances: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The baseline of a stored run, as the document :func:`write_baseline` writes.

    Parameters
    ----------
    store : bench.store.ResultsStore
        The store holding the run.
    run_id : str
        The run to take the numbers from.
    tolerances : mapping, optional
        Overrides of :data:`DEFAULT_TOLERANCES`.
    """
    run = _get_run(store, run_id)
    summary = summarize(store.run_samples(run_id))
    units = []
    for row in summary.to_dict("records"):
        unit: dict[str, Any] = {k: row[k] for k in KEY}
        unit.update({m: int(row[m]) if m == "samples" else float(row[m]) for m in METRICS})
        units.append(unit)
    return {
        "format": FORMAT,
        "provenance": {
            "run_id": run_id, "config_name": run["name"], "seed": run["seed"], "git_commit": run["git_commit"],
            "created": run["created"], "finished": run["finished"],
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "hardware": run["hardware"], "versions": run["versions"],
        },
        "tolerances": {**DEFAULT_TOLERANCES, **_check_tolerances("tolerances", tolerances or {})},
        "units": units,
        "config": run["config"],
    }


_HEADER = """\
# SparseBench regression baseline, written by `sparsebench baseline`; read by `sparsebench check`.
# Edit the tolerances by hand: fooling_rate_drop_points is how many percentage points the fooling rate may
# fall; median_l0_rise_fraction and seconds_rise_fraction are the relative rises allowed (0.1 = 10 %).
# A unit may carry its own, e.g. `tolerances = { fooling_rate_drop_points = 2.0 }` in its [[units]] entry.
# Seconds are compared only on the hardware in [provenance.hardware] (or with --compare-time always).
"""


def write_baseline(document: Mapping[str, Any], path: str | Path) -> Path:
    """Write a baseline: TOML, or JSON when ``path`` ends in ``.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(document, indent=2) + "\n")
    else:
        path.write_text(_HEADER + _toml(_drop_none(document)))
    return path


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Read and check a baseline file (TOML, or JSON when its name ends in ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SparseBenchError(f"--baseline: {str(path)!r} does not exist; write one with `sparsebench baseline`") from None
    try:
        document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        syntax = "JSON" if path.suffix == ".json" else "TOML"
        raise SparseBenchError(f"--baseline: {path} is not valid {syntax}: {error}") from None
    if document.get("format") != FORMAT:
        raise SparseBenchError(f"{path}: format = {document.get('format')!r}; this SparseBench reads format {FORMAT}")
    for field, kind in (("provenance", dict), ("tolerances", dict), ("units", list), ("config", dict)):
        if not isinstance(document.get(field), kind):
            expected = "table" if kind is dict else "list"
            raise SparseBenchError(f"{path}: {field}: {document.get(field)!r} is missing or not a {expected}")
    document["tolerances"] = {**DEFAULT_TOLERANCES, **_check_tolerances(f"{path}: tolerances", document["tolerances"])}
    seen = set()
    for i, unit in enumerate(document["units"]):
        where = f"{path}: units[{i}]"
        for field in (*KEY, *METRICS):
            if field not in unit:
                raise SparseBenchError(f"{where}: missing field {field!r}")
        unit["tolerances"] = _check_tolerances(f"{where}.tolerances", unit.get("tolerances", {}))
        name = _unit_name(unit)
        if name in seen:
            raise SparseBenchError(f"{where}: unit {name} appears twice")
        seen.add(name)
    if "config_name" not in document["provenance"]:
        raise SparseBenchError(f"{path}: provenance: missing field 'config_name'")
    return document


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")  # JSON string escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise SparseBenchError(f"baseline: {value!r} ({type(value).__name__}) cannot be written as TOML")


def _toml(table: Mapping[str, Any], path: tuple[str, ...] = (), in_array: bool = False) -> str:
    """Flat TOML: scalars first, then sub-tables as sections and lists of tables as ``[[arrays]]``.

    Inside an array's entry a table is written inline (``overrides = { steps = 5 }``).
    """
    def is_array_of_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)

    lines, nested = [], []
    for key, value in table.items():
        if (isinstance(value, Mapping) and not in_array) or is_array_of_tables(value):
            nested.append(key)
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for key in nested:
        name = ".".join(_toml_key(k) for k in (*path, key))
        if isinstance(table[key], Mapping):
            text += f"\n[{name}]\n" + _toml(table[key], (*path, key))
        else:
            text += "".join(f"\n[[{name}]]\n" + _toml(item, (*path, key), in_array=True) for item in table[key])
    return text


# comparison ------------------------------------------------------------------------------------------------

def _unit_name(unit: Mapping[str, Any]) -> str:
    return "/".join(str(unit[k]) for k in KEY)


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "samples":
        return str(int(value))
    return f"{value:.4g}" if metric == "seconds_per_sample" else f"{value:.1f}"


def hardware_difference(baseline: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"key baseline -> now"`` for each of :data:`HARDWARE_KEYS` that differs."""
    return [f"{key} {baseline.get(key)} -> {now.get(key)}" for key in HARDWARE_KEYS
            if baseline.get(key) != now.get(key) and (key != "cpu_model" or key in baseline)]


def _compare_metric(name: str, metric: str, old: float | None, new: float | None,
                    tolerances: Mapping[str, float]) -> Finding:
    """One metric of one unit present in both the baseline and the run."""
    label = _NAMES[metric]
    change = f"{_shown(metric, old)} -> {_shown(metric, new)}"

    def finding(allowed: str, verdict: str, why: str = "") -> Finding:
        return Finding(name, metric, old, new, allowed, verdict, f"{name}: {label} {change} ({why or allowed})")

    if metric == "samples":
        if old != new:
            return finding("equal", "differs", "the run attacked another number of samples: an unfinished run "
                                               "or a changed config; finish it or refresh the baseline")
        return finding("equal", "ok")
    if metric == "fooling_rate":
        points = tolerances["fooling_rate_drop_points"]
        allowed = f"drop {points:.1f}"
        assert old is not None and new is not None  # a unit's fooling rate is never NaN: it has samples
        if new < old - points - _EPSILON:
            return finding(allowed, "regressed", f"allowed drop {points:.1f}")
        return finding(allowed, "improved" if new > old + _EPSILON else "ok")
    fraction = tolerances["seconds_rise_fraction" if metric == "seconds_per_sample" else "median_l0_rise_fraction"]
    if old is None:  # no successful sample in the baseline: nothing to hold the run to
        return finding("-", "ok" if new is None else "improved", "no successful sample in the baseline")
    limit = old * (1 + fraction)
    allowed = f"rise {100 * fraction:.0f}%: up to {_shown(metric, limit)}"
    if new is None:
        return finding(allowed, "regressed", f"no successful sample now; allowed {allowed}")
    if new > limit * (1 + _EPSILON) + _EPSILON:
        return finding(allowed, "regressed", f"allowed {allowed}")
    if metric == "seconds_per_sample":  # times are noisy: faster counts only beyond the tolerance
        return finding(allowed, "improved" if new * (1 + fraction) < old else "ok")
    return finding(allowed, "improved" if new < old - _EPSILON else "ok")


def _config_difference(baseline: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    """The config fields that differ (not the device), naming the attack labels whose entries differ."""
    old, new = _drop_none(baseline), _drop_none(run)
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if key == "device" or old.get(key) == new.get(key):
            continue
        if key == "attacks":
            entries = [{a.get("label", a.get("name")): a for a in c.get("attacks", [])} for c in (old, new)]
            labels = sorted(label for label in entries[0].keys() | entries[1].keys()
                            if entries[0].get(label) != entries[1].get(label))
            key += f" ({', '.join(labels)})" if labels else " (order)"
        changed.append(key)
    return ", ".join(changed)


def compare(baseline: Mapping[str, Any], run: Mapping[str, Any], summary: pd.DataFrame, *,
            compare_time: str = "auto") -> list[Finding]:
    """Compare a run with a baseline, unit by unit: the one comparison behind ``check`` and the pytest fixture.

    Parameters
    ----------
    baseline : mapping
        A baseline as :func:`read_baseline` returns it.
    run : mapping
        The run's row as ``ResultsStore.get_run`` returns it (for its hardware and config).
    summary : pandas.DataFrame
        ``reports.tables.summarize`` of the run's samples.
    compare_time : str
        ``"auto"``: compare seconds per sample only when the run's hardware
        matches the baseline's (:data:`HARDWARE_KEYS`); ``"always"``; ``"never"``.

    Returns
    -------
    list[Finding]
        Per unit of the baseline, one finding a metric (or one ``missing``);
        per unit only in the run, one ``new``; findings about the whole run
        (config changed, time skipped) first.
    """
    if compare_time not in COMPARE_TIME:
        raise SparseBenchError(f"--compare-time: {compare_time!r} is not one of {', '.join(COMPARE_TIME)}")
    findings = []
    changed = _config_difference(baseline["config"], run["config"])
    if changed:
        findings.append(Finding("(run)", "config", None, None, f"differs in {changed}", "note",
                                f"run {run['run_id']}: its config differs from the baseline's in {changed}"))
    differences = hardware_difference(baseline["provenance"].get("hardware", {}), run["hardware"])
    time_compared = compare_time == "always" or (compare_time == "auto" and not differences)
    if not time_compared:
        why = ("--compare-time never" if compare_time == "never" else
               f"hardware differs from the baseline's: {'; '.join(differences)} "
               "(--compare-time always compares anyway)")
        findings.append(Finding("(run)", "seconds_per_sample", None, None, "not compared", "skipped",
                                f"seconds per sample not compared: {why}"))

    rows = {_unit_name(row): row for row in summary.to_dict("records")}
    for unit in baseline["units"]:
        name = _unit_name(unit)
        row = rows.pop(name, None)
        if row is None:
            findings.append(Finding(name, "unit", None, None, "present", "missing",
                                    f"{name}: missing from run {run['run_id']}"))
            continue
        tolerances = {**baseline["tolerances"], **unit.get("tolerances", {})}
        for metric in METRICS:
            if metric == "seconds_per_sample" and not time_compared:
                continue
            findings.append(_compare_metric(name, metric, _number(unit[metric]), _number(row[metric]), tolerances))
    for name in rows:
        findings.append(Finding(name, "unit", None, None, "-", "new",
                                f"{name}: new in run {run['run_id']}, not in the baseline (refresh it to hold it)"))
    return findings


def findings_table(findings: list[Finding]) -> str:
    """The findings as a Markdown table (unit, metric, baseline, now, allowed, verdict), then what the notes say."""
    rows = [{"unit": f.unit, "metric": f.metric,
             "baseline": _shown(f.metric, f.baseline) if f.metric in _NAMES else "-",
             "now": _shown(f.metric, f.now) if f.metric in _NAMES else "-", "allowed": f.allowed, "verdict": f.verdict}
            for f in findings]
    table = pd.DataFrame(rows, columns=["unit", "metric", "baseline", "now", "allowed", "verdict"])
    table = table.to_markdown(index=False, disable_numparse=True)  # the numbers are formatted already
    notes = [f"{f.verdict}: {f.message}" for f in findings if f.unit == "(run)"]
    return "\n".join([table, *notes])


def _latest_run_named(store, name: str) -> str:
    runs = store.runs()
    named = runs[runs["name"] == name]
    if named.empty:
        raise SparseBenchError(f"--store: {store.path} holds no run of config {name!r} (the baseline's); runs: "
                         f"{', '.join(runs['run_id'] + ' (' + runs['name'] + ')') or 'none'}; name one with --run")
    return str(named["run_id"].iloc[-1])


def check(baseline: str | Path | Mapping[str, Any], *, store: str | Path, run_id: str | None = None,
          rerun: bool = False, cache_dir: Path | None = None, compare_time: str = "auto",
          load_model: Callable | None = None, progress: bool = False) -> tuple[str, list[Finding]]:
    """Check a run against a baseline; return the run's id and the findings (:func:`compare`).

    Parameters
    ----------
    baseline : path or mapping
        A baseline file, or a baseline read by :func:`read_baseline`.
    store : path
        The results store to read the run from (or, with ``rerun``, to write it to).
    run_id : str, optional
        The run to check; default the latest run in ``store`` of the baseline's config name.
    rerun : bool
        Run the baseline's config again (a new run in ``store``) and check that run.
    cache_dir : Path, optional
        Model and data cache for ``rerun``.
    compare_time : str
        See :func:`compare`.
    load_model : callable, optional
        Model loader for ``rerun`` (see :func:`bench.runner.run_benchmark`).
    progress : bool
        Progress bars during ``rerun``.
    """
    if rerun and run_id is not None:
        raise SparseBenchError("--run: a run id and --rerun exclude each other")
    document = read_baseline(baseline) if isinstance(baseline, (str, Path)) else baseline
    if not rerun and not Path(store).exists():
        raise SparseBenchError(f"--store: {store} does not exist; run the benchmark first, or use --rerun")
    with ResultsStore(store, readonly=not rerun) as results:
        if rerun:
            run_id = _rerun(document, results, cache_dir=cache_dir, load_model=load_model, progress=progress)
        run_id = run_id or _latest_run_named(results, document["provenance"]["config_name"])
        run = _get_run(results, run_id)
        summary = summarize(results.run_samples(run_id))
    return run_id, compare(document, run, summary, compare_time=compare_time)


def _rerun(baseline: Mapping[str, Any], store, *, cache_dir: Path | None, load_model: Callable | None,
           progress: bool) -> str:
    """Run the baseline's config again as a new run (its own id: nothing stored is resumed)."""
    try:
        config = parse_config(_drop_none(baseline["config"]))
    except ValueError as error:
        raise SparseBenchError(f"--baseline: its [config] is not a valid config: {error}") from None
    run_id = f"{config.name}-{config.fingerprint()}-check-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return run_benchmark(config, store, run_id=run_id, cache_dir=cache_dir, load_model=load_model, progress=progress)

