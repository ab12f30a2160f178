"""The example outside package (examples/sparsebench-example), as a user runs it: real processes, real files.

Its config names its attack and model by function; installed, its entry points add them to the
registries. Installation is stood in for by what it leaves on ``sys.path``: the package folder and a
``.dist-info`` holding the package's metadata and entry points, which is what ``importlib.metadata``
reads either way.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "sparsebench-example"


def _env(tmp_path: Path, *paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*paths, ROOT))),
            "SPARSEBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _sparsebench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A copy of the example folder with its model's weights trained, as its config's comment says."""
    folder = tmp_path_factory.mktemp("example") / "sparsebench-example"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    subprocess.run([sys.executable, "-m", "sparsebench_example.model", "example-mlp.pt"], cwd=folder,
                   env=_env(folder, folder), check=True, timeout=300, capture_output=True)
    return folder


def test_the_example_config_runs(example):
    result = _sparsebench(["run", "--config", "config.toml", "--store", "s.sqlite", "--out", "out"],
                          _env(example, example), example)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(example / "s.sqlite") as db:
        rows = db.execute("SELECT attack, mode, COUNT(*), SUM(success), SUM(valid) FROM samples "
                          "GROUP BY attack, mode ORDER BY attack, mode").fetchall()
    assert [r[:3] for r in rows] == [("saliency-flip", "targeted", 50), ("saliency-flip", "untargeted", 50),
                                     ("sigma-zero", "targeted", 50), ("sigma-zero", "untargeted", 50)]
    assert all(valid == 50 for *_, valid in rows)  # verified by the harness, every one
    assert rows[1][3] >= 45  # the greedy fools the MLP untargeted
    assert "saliency-flip" in (next((example / "out").iterdir()) / "report.md").read_text()


def _installed(tmp_path: Path, entry_points: dict[str, dict[str, str]]) -> Path:
    """A site folder with the example's package metadata (``entry_points``), as pip would leave it."""
    site = tmp_path / "site"
    info = site / "sparsebench_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sparsebench-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) + "\n"
        for group, points in entry_points.items()))
    return site


def test_installed_entry_points_register_the_attack_and_model(example, tmp_path):
    points = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]
    env = _env(tmp_path, _installed(tmp_path, points), example)
    listed = _sparsebench(["list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "| saliency-flip" in line)
    assert "sparsebench-example" in line and "minimum-norm" in line
    models = _sparsebench(["models"], env, tmp_path)
    assert "| example-mlp " in models.stdout and "sparsebench-example" in models.stdout
    # Registered, both run by name, like any built-in entry.
    (tmp_path / "c.toml").write_text(
        'name = "by-name"\nn_samples = 8\nbatch_size = 8\nmodes = ["untargeted"]\n'
        '[[datasets]]\nname = "fashion-mnist"\nmodels = ["example-mlp"]\n'
        '[[attacks]]\nname = "saliency-flip"\n')
    run = _sparsebench(["run", "--config", "c.toml", "--store", "s.sqlite", "--out", "out"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("SELECT COUNT(*), SUM(valid) FROM samples WHERE attack='saliency-flip'").fetchone() == (8, 8)


def test_an_entry_point_that_clashes_with_a_built_in_is_refused(example, tmp_path):
    (tmp_path / "clash").mkdir()
    (tmp_path / "clash" / "clash_entries.py").write_text(
        "import dataclasses\nfrom sparsebench_example import ATTACK\n"
        "CLASH = dataclasses.replace(ATTACK, name='i-fgsm')\n")
    env = _env(tmp_path, _installed(tmp_path, {"sparsebench.attacks": {"i-fgsm": "clash_entries:CLASH"}}),
               example, tmp_path / "clash")
    listed = _sparsebench(["list"], env, tmp_path)
    assert listed.returncode == 2
    assert ("sparsebench-example: attack 'i-fgsm' (entry point clash_entries:CLASH) clashes with a built-in "
            "attack; rename it") in listed.stderr
