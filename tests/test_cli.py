"""The command line as a user meets it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import parse_config
from bench.registry import ATTACKS
from bench.runner import run_benchmark
from bench.store import ResultsStore


def test_help_names_every_command():
    result = subprocess.run([sys.executable, "-m", "bench.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "list", "report", "runs", "transfer", "reproduce", "bench", "models", "leaderboard", "interpret",
                    "baseline", "check", "compare", "parity"):
        assert command in result.stdout


def test_console_script_is_installed():
    script = shutil.which("sparsebench") or shutil.which("sparsebench", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "pip install -e . installs the sparsebench console script"
    result = subprocess.run([script, "run", "--help"], capture_output=True, text=True, check=True)
    assert "--config" in result.stdout and "resume" in result.stdout


def test_list_prints_the_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, entry in ATTACKS.items():
        assert name in out
    assert "minimum-norm" in out and "fixed-budget" in out
    assert main(["list", "--verbose"]) == 0
    assert "arXiv:1607.02533" in capsys.readouterr().out


def test_bad_config_fails_before_work_with_exit_2(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[[datasets]]\nname = "fashion-mnist"\nmodels = ["smallcnn-standard"]\n'
                      '[[attacks]]\nname = "sparse-magic"\n')
    store = tmp_path / "store.sqlite"
    assert main(["run", "--config", str(config), "--store", str(store)]) == 2
    assert "'sparse-magic' is not registered" in capsys.readouterr().err
    assert not store.exists()  # nothing started


def test_report_from_store(tmp_path, tiny_model, capsys):
    config = parse_config({
        "name": "cli", "n_samples": 4, "batch_size": 4, "modes": ["untargeted"], "budgets": [5],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # the terminal gets a compact table per model; every column and budget is in the files
    assert "fashion-mnist / smallcnn-standard" in out and "fooling rate % [95% CI]" in out and "fr@5" not in out
    row = next(line for line in out.splitlines() if "| i-fgsm" in line)
    assert re.search(r"\| *[0-9.]+ \[[0-9.]+, [0-9.]+\] *\|", row), row  # fooling rate with its interval
    for suffix in ("md", "tex", "csv"):
        assert (tmp_path / "out" / run_id / f"summary.{suffix}").exists()
    assert "fr@5" in (tmp_path / "out" / run_id / "summary.md").read_text()
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--run", "nope"]) == 2
    assert main(["report", "--store", str(tmp_path / "missing.sqlite")]) == 2


def test_models_lists_the_model_registry(capsys):
    from bench.models import MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out


def test_transfer_matrix_from_stored_examples(tmp_path, tiny_model, capsys):
    """Examples made on one model, evaluated on it (white-box) and on another, from the store alone."""
    from tiny import train_linear

    other = train_linear(n=1000, steps=60, seed=1)
    models = {"smallcnn-standard": tiny_model, "mlp-standard": other}
    config = parse_config({
        "name": "transfer", "n_samples": 8, "batch_size": 4, "modes": ["untargeted", "targeted"],
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}],
    })
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda name, *_: models[name], progress=False)
        samples = store.samples(run_id)

    from reports.transfer import transfer_matrix, transfer_rates

    with ResultsStore(tmp_path / "s.sqlite") as store:
        rates = transfer_rates(store, run_id, lambda name, _: models[name], targets=list(models))
    white = rates[rates["white_box"]].set_index("mode")
    # The white-box cell is the run's own verdict (every attacked sample was correct on its source).
    for mode, unit in samples.groupby("mode"):
        assert white.loc[mode, "samples"] == len(unit)
        assert white.loc[mode, "fooling_rate"] == pytest.approx(100 * unit["success"].mean())
    # The other model: counted over the samples it classifies correctly, recomputed here by hand.
    from bench.data import get_batch, load_dataset

    unit = samples[samples["mode"] == "untargeted"]
    images, labels = get_batch(load_dataset("fashion-mnist"), unit["sample_index"].tolist())
    correct = (other(images).argmax(1) == labels).numpy()
    cell = rates[(rates["target"] == "mlp-standard") & (rates["mode"] == "untargeted")].iloc[0]
    assert cell["samples"] == correct.sum() and not cell["white_box"]
    matrix = transfer_matrix(rates)
    assert list(matrix.columns) == ["dataset", "mode", "source", "attack", "smallcnn-standard", "mlp-standard"]
    assert all(str(v).endswith("*") for v in matrix["smallcnn-standard"])
    assert not any(str(v).endswith("*") for v in matrix["mlp-standard"])
    assert main(["transfer", "--store", str(tmp_path / "missing.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bench_synthetic_writes_its_table_with_command_and_hardware(tmp_path, capsys):
    """`bench --synthetic` needs no weights or data: an untrained architecture, uniform inputs."""
    import json

    import pandas as pd

    out = tmp_path / "bench"
    assert main(["bench", "i-fgsm", "lin2025", "--synthetic", "--model", "smallcnn-standard", "--batch-size", "4",
                 "--rounds", "1", "--device", "cpu", "--modes", "untargeted", "--overrides-from", "default",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "bench.csv")
    assert list(table["attack"]) == ["i-fgsm", "lin2025"] and set(table["batch_size"]) == {4}
    ifgsm = table.iloc[0]
    assert ifgsm["forward_per_sample"] == 10 and ifgsm["backward_per_sample"] == 10 and ifgsm["ratio"] > 0
    record = json.loads((out / "bench.json").read_text())
    assert record["command"].startswith("sparsebench bench i-fgsm lin2025 --synthetic")
    assert record["hardware"]["device"] == "cpu" and record["versions"]["torch"]
    assert "untrained weights, uniform random inputs" in capsys.readouterr().out
    assert "op_ratio" not in table  # only with --count-ops
    assert main(["bench", "i-fgsm", "--synthetic", "--model", "smallcnn-standard", "--batch-size", "4", "--rounds",
                 "1", "--device", "cpu", "--modes", "untargeted", "--count-ops", "--out", str(out)]) == 0
    counted = pd.read_csv(out / "bench.csv").iloc[0]
    assert counted["op_ratio"] > 1 and counted["attack_ops_per_call"] > 0 and counted["syncs_per_call"] >= 0


def test_bench_native_means_every_native_attack_with_the_configs_overrides():
    import argparse

    from bench.cli import _bench_attacks

    chosen = _bench_attacks(argparse.Namespace(attacks=["native", "i-fgsm"], overrides_from="timing-cifar10"))
    names = [name for _, name, _ in chosen]
    assert names == [n for n, e in ATTACKS.items() if e.source == "native"]  # in registry order, once each
    assert dict((n, o) for _, n, o in chosen)["fmn-l0"] == {"steps": 200}
    with pytest.raises(ValueError, match="'magic' is not registered"):
        _bench_attacks(argparse.Namespace(attacks=["magic"], overrides_from=None))


def test_a_user_error_is_one_line_a_bug_is_a_traceback(tmp_path):
    """Problems a user can fix exit 2 with one line; anything else (here a ValueError in user code) shows its
    traceback, so a bug never reads as a usage error."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}

    def run(config: str) -> subprocess.CompletedProcess:
        (tmp_path / "c.toml").write_text(config)
        return subprocess.run([sys.executable, "-m", "bench.cli", "run", "--config", "c.toml", "--store", "s.sqlite",
                               "--out", "out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    user = run('[[datasets]]\nname = "fashion-mnist"\nmodels = ["smallcnn-standard"]\n[[attacks]]\nname = "nope"\n')
    assert user.returncode == 2 and "Traceback" not in user.stderr
    assert "sparsebench: error: config.attacks[0].name: attack: 'nope' is not registered" in user.stderr
    bug = run('[[models]]\nname = "m"\nfunction = "outside_contracts:linear_model"\ndatasets = ["d"]\n'
              '[[datasets]]\nname = "d"\nfunction = "outside_contracts:buggy_dataset"\nnum_classes = 10\n'
              'family = "mnist"\nmodels = ["m"]\n[[attacks]]\nname = "i-fgsm"\n')
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "internal bug: index out of step" in bug.stderr


def test_list_configs_and_the_config_help_name_every_packaged_config(capsys):
    from bench.cli import build_parser
    from bench.config import packaged_configs

    assert main(["list", "--configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(packaged_configs())
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # each with what it measures
    run_help = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                    if "--config" in a.option_strings).help
    assert all(name in run_help for name in packaged_configs())


def test_reproduce_fig7_online_says_it_runs_offline_only(capsys):
    assert main(["reproduce", "fig7", "--online"]) == 2
    assert "run on the offline models only (config lin2025-fig7); leave out --online" in capsys.readouterr().err


def test_the_proposed_attack_is_a_config_field(tmp_path, tiny_model):
    """A report compares the config's proposed attack with the best other one; a label it lacks is refused."""
    from bench.config import parse_config
    from bench.runner import run_benchmark
    from bench.store import ResultsStore

    attacks = [{"name": "i-fgsm", "label": "mine", "overrides": {"eps": 0.3, "alpha": 0.05}},
               {"name": "i-fgsm", "label": "other", "overrides": {"eps": 0.05, "alpha": 0.01}}]
    config = parse_config({"name": "p", "n_samples": 6, "batch_size": 6, "modes": ["untargeted"], "proposed": "mine",
                           "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
                           "attacks": attacks})
    with ResultsStore(tmp_path / "s.sqlite") as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / run_id / "report.md").read_text()
    assert "The proposed attack (mine) against the best other attack" in report
    assert "sample by sample" in report and re.search(r"\| other\s+\|.*\|\s+6 \|", report)  # 6 paired samples
    with pytest.raises(ValueError, match=r"config.proposed: 'mien' is not a label of this config's attacks"):
        parse_config({"proposed": "mien", "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
                      "attacks": attacks})
