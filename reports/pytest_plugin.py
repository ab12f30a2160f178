"""A pytest plugin: fail a test when an attack got weaker than its SparseBench baseline.

Load it with ``-p reports.pytest_plugin`` (or ``pytest_plugins = ["reports.pytest_plugin"]`` in a
``conftest.py``); an installed SparseBench also registers it as a ``pytest11`` entry point. It adds
one fixture, ``sparsebench_gate``. A user's test::

    # tests/test_attack_strength.py
    def test_attacks_keep_their_strength(sparsebench_gate):
        # the latest run in the store of the baseline's config, e.g. from `sparsebench run --config gate.toml`
        sparsebench_gate(baseline="baseline.toml", store="results/sparsebench.sqlite")

    def test_attacks_keep_their_strength_fresh(sparsebench_gate, tmp_path):
        # or run the baseline's config again, here, into a fresh store
        sparsebench_gate(baseline="baseline.toml", store=tmp_path / "gate.sqlite", rerun=True)

The baseline comes from ``sparsebench baseline --store results/sparsebench.sqlite --out baseline.toml``.
The test fails with one line a regression (``fashion-mnist/smallcnn-standard/fmn-l0/untargeted:
fooling rate 100.0 -> 85.0 (allowed drop 0.0)``); the whole table is in its captured output. Relative
paths are taken from pytest's rootdir. The comparison is :func:`reports.gate.compare`, the same as
``sparsebench check``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["sparsebench_gate"]


@pytest.fixture
def sparsebench_gate(request: pytest.FixtureRequest) -> Callable[..., list]:
    """``gate(baseline, store="results/sparsebench.sqlite", *, run=None, rerun=False, cache_dir=None,
    compare_time="auto", load_model=None) -> list[Finding]``: fails the test on a regression.

    Parameters of ``gate``
    ----------------------
    baseline : path
        Baseline file written by ``sparsebench baseline``.
    store : path
        Results store to read the run from (with ``rerun``, to write it to).
    run : str, optional
        Run id; default the latest run in ``store`` of the baseline's config name.
    rerun : bool
        Run the baseline's config again and check that run.
    cache_dir : path, optional
        Model and data cache for ``rerun``.
    compare_time : str
        ``"auto"`` (seconds compared only on the baseline's hardware), ``"always"`` or ``"never"``.
    load_model : callable, optional
        Model loader for ``rerun`` (``(name, dataset, device) -> nn.Module``).
    """
    root = Path(request.config.rootpath)

    def gate(baseline: str | Path, store: str | Path = Path("results") / "sparsebench.sqlite", *,
             run: str | None = None, rerun: bool = False, cache_dir: str | Path | None = None,
             compare_time: str = "auto", load_model: Callable | None = None) -> list:
        # when the fixture is used: pytest loads this plugin in every session, and the gate imports the harness
        from reports.gate import check, failures, findings_table

        baseline, store = root / baseline, root / store
        run_id, findings = check(baseline, store=store, run_id=run, rerun=rerun,
                                 cache_dir=Path(cache_dir) if cache_dir is not None else None,
                                 compare_time=compare_time, load_model=load_model)
        print(f"run {run_id} against {baseline}\n{findings_table(findings)}")
        failed = failures(findings)
        if failed:
            pytest.fail(f"sparsebench: {len(failed)} regression(s) of run {run_id} against {baseline}:\n"
                        + "\n".join(f.message for f in failed), pytrace=False)
        return findings

    return gate
