"""The regression gate: baselines of real runs, checks that pass, and checks that catch a weakened attack."""

from __future__ import annotations

import json
import tomllib

import pytest

from bench.cli import main
from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.gate import DEFAULT_TOLERANCES, check, failures, read_baseline, write_baseline
from reports.tables import summarize

pytest_plugins = ["pytester"]

STRONG = [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05}}, {"name": "lin2025", "overrides": {"steps": 5}}]
# The same labels, but i-fgsm with a far smaller eps: its fooling rate falls (100 -> 25 % on the tiny model).
WEAK = [{"name": "i-fgsm", "overrides": {"eps": 0.02, "alpha": 0.01}}, {"name": "lin2025", "overrides": {"steps": 5}}]
# No i-fgsm (a unit missing) and a lin2025 the baseline does not know (a unit new).
OTHER = [{"name": "lin2025", "overrides": {"steps": 5}},
         {"name": "lin2025", "label": "lin2025-s1", "overrides": {"steps": 1}}]
IFGSM = "fashion-mnist/smallcnn-standard/i-fgsm/untargeted"
LIN2025 = "fashion-mnist/smallcnn-standard/lin2025/untargeted"


def _config(name: str, attacks: list[dict]) -> dict:
    return {"name": name, "n_samples": 8, "batch_size": 8, "modes": ["untargeted"], "budgets": [5],
            "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}], "attacks": attacks}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Real runs of the tiny model: ``main`` holds the baseline run and a later run of another config;
    ``weak`` holds the weakened run, under the baseline's config name."""
    directory = tmp_path_factory.mktemp("gate")
    ids = {}
    with ResultsStore(directory / "main.sqlite") as store:
        for key, name, attacks in (("strong", "gate", STRONG), ("other", "other", OTHER)):
            ids[key] = run_benchmark(parse_config(_config(name, attacks)), store,
                                     load_model=lambda *_: tiny_model, progress=False)
    with ResultsStore(directory / "weak.sqlite") as store:
        ids["weak"] = run_benchmark(parse_config(_config("gate", WEAK)), store,
                                    load_model=lambda *_: tiny_model, progress=False)
    return directory, ids


@pytest.fixture
def baseline(runs, tmp_path):
    """A baseline of the strong run, written by the command."""
    directory, ids = runs
    path = tmp_path / "baseline.toml"
    store = str(directory / "main.sqlite")
    assert _main(["baseline", "--store", store, "--run", ids["strong"], "--out", str(path)]) == 0
    return path


def _main(argv: list[str]) -> int:
    """The real command line (a ValueError is exit 2)."""
    return main(argv)


def _check(runs, baseline, run: str, *extra: str) -> int:
    directory, ids = runs
    store = "weak.sqlite" if run == "weak" else "main.sqlite"
    return _main(["check", "--baseline", str(baseline), "--store", str(directory / store), "--run", ids[run], *extra])


def _edit(path, change) -> None:
    document = tomllib.loads(path.read_text())
    change(document)
    write_baseline(document, path)


def test_baseline_holds_each_unit_its_tolerances_and_provenance(runs, baseline, tmp_path):
    directory, ids = runs
    document = read_baseline(baseline)
    with ResultsStore(directory / "main.sqlite") as store:
        run = store.get_run(ids["strong"])
        summary = summarize(store.samples(ids["strong"]))
    assert document["tolerances"] == DEFAULT_TOLERANCES
    assert [u["attack"] for u in document["units"]] == ["i-fgsm", "lin2025"]
    for unit, row in zip(document["units"], summary.to_dict("records")):
        for metric in ("samples", "fooling_rate", "median_l0_pixels", "median_l0_elements", "seconds_per_sample"):
            assert unit[metric] == row[metric], metric  # floats survive the TOML round trip exactly
    assert document["units"][0]["fooling_rate"] == 100.0
    provenance = document["provenance"]
    assert (provenance["run_id"], provenance["config_name"], provenance["seed"]) == (ids["strong"], "gate", 0)
    assert provenance["hardware"] == {k: v for k, v in run["hardware"].items() if v is not None}
    assert provenance.get("git_commit") == run["git_commit"]
    # The config it stores is the run's, whole: parsed again it is the same benchmark.
    assert parse_config(document["config"]).fingerprint() == ids["strong"].removeprefix("gate-")
    # Hand-editable: the tolerances sit in their own section with a comment on each.
    text = baseline.read_text()
    assert "[tolerances]\nfooling_rate_drop_points = 0.0\n" in text and "# Edit the tolerances" in text

    # JSON, and tolerances from the command line.
    path = tmp_path / "baseline.json"
    assert _main(["baseline", "--store", str(directory / "main.sqlite"), "--run", ids["strong"], "--out", str(path),
                  "--tolerance-fooling-rate", "2.5", "--tolerance-l0", "0.2", "--tolerance-time", "1"]) == 0
    as_json = read_baseline(path)
    assert json.loads(path.read_text())["units"][1]["attack"] == "lin2025"
    assert as_json["tolerances"] == {"fooling_rate_drop_points": 2.5, "median_l0_rise_fraction": 0.2,
                                     "seconds_rise_fraction": 1.0}
    assert as_json["units"] == document["units"]
    assert _main(["baseline", "--store", str(directory / "main.sqlite"), "--out", str(path),
                  "--tolerance-l0", "-0.1"]) == 2


def test_check_of_the_same_run_passes(runs, baseline, capsys):
    assert _check(runs, baseline, "strong") == 0
    out, err = capsys.readouterr()
    assert "| unit" in out and "verdict" in out and "allowed" in out
    assert IFGSM in out and LIN2025 in out
    assert "regressed" not in out and "skipped" not in out  # same hardware: seconds are compared
    assert "seconds_per_sample" in out and "no regression" in err


def test_default_run_is_the_latest_of_the_baselines_config_name(runs, baseline, capsys):
    directory, ids = runs
    # main.sqlite's latest run is "other"; the check takes the latest run named "gate" instead.
    assert _main(["check", "--baseline", str(baseline), "--store", str(directory / "main.sqlite")]) == 0
    assert f"run {ids['strong']} against" in capsys.readouterr().out
    assert _main(["check", "--baseline", str(baseline), "--store", str(directory / "weak.sqlite"),
                  "--compare-time", "never"]) == 1
    assert f"run {ids['weak']} against" in capsys.readouterr().out


def test_weakened_attack_fails_naming_unit_and_metric(runs, baseline, capsys):
    assert _check(runs, baseline, "weak", "--compare-time", "never") == 1
    out, err = capsys.readouterr()
    assert f"{IFGSM}: fooling rate 100.0 -> 25.0 (allowed drop 0.0)" in err
    assert LIN2025 not in err  # the unchanged attack passes
    assert "config differs from the baseline's in attacks (i-fgsm)" in out and "1 regression(s)" in err


def test_tolerance_edits_change_the_verdict(runs, baseline, capsys):
    text = baseline.read_text()
    baseline.write_text(text.replace("fooling_rate_drop_points = 0.0", "fooling_rate_drop_points = 80.0"))
    assert _check(runs, baseline, "weak", "--compare-time", "never") == 0
    baseline.write_text(text.replace("fooling_rate_drop_points = 0.0", "fooling_rate_drop_points = 70.0"))
    assert _check(runs, baseline, "weak", "--compare-time", "never") == 1
    assert "(allowed drop 70.0)" in capsys.readouterr().err

    # A tolerance of one unit only, written in its [[units]] entry.
    baseline.write_text(text.replace('attack = "i-fgsm"\n',
                                     'attack = "i-fgsm"\ntolerances = { fooling_rate_drop_points = 75.0 }\n'))
    assert _check(runs, baseline, "weak", "--compare-time", "never") == 0

    # Median L0: a baseline of a sparser lin2025 makes today's a regression, until its tolerance allows it.
    baseline.write_text(text)
    _edit(baseline, lambda d: d["units"][1].update(median_l0_pixels=d["units"][1]["median_l0_pixels"] / 2))
    capsys.readouterr()
    assert _check(runs, baseline, "strong") == 1
    err = capsys.readouterr().err
    assert f"{LIN2025}: median L0 (pixels)" in err and "allowed rise 10%" in err and "fooling rate" not in err
    _edit(baseline, lambda d: d["units"][1].update(tolerances={"median_l0_rise_fraction": 1.5}))
    assert _check(runs, baseline, "strong") == 0

    baseline.write_text(text.replace("fooling_rate_drop_points = 0.0", "fooling_rate_drop_points = -1.0"))
    assert _check(runs, baseline, "strong") == 2
    assert "fooling_rate_drop_points: -1.0 must be a number >= 0" in capsys.readouterr().err


def test_missing_unit_fails_and_new_unit_is_reported(runs, baseline, capsys):
    assert _check(runs, baseline, "other", "--compare-time", "never") == 1
    out, err = capsys.readouterr()
    assert f"{IFGSM}: missing from run" in err
    assert "fashion-mnist/smallcnn-standard/lin2025-s1/untargeted" in out and "| new" in out
    assert "lin2025-s1" not in err  # new is not a failure


def test_improvement_is_reported(runs, baseline, capsys):
    # A baseline where i-fgsm fooled half the samples, and lin2025 none (no median L0: TOML's nan).
    _edit(baseline, lambda d: d["units"][0].update(fooling_rate=50.0))
    _edit(baseline, lambda d: d["units"][1].update(fooling_rate=0.0, median_l0_pixels=float("nan")))
    assert "median_l0_pixels = nan" in baseline.read_text()
    assert _check(runs, baseline, "strong") == 0
    assert "3 improvement(s): `sparsebench baseline --store" in capsys.readouterr().err
    _, findings = check(baseline, store=runs[0] / "main.sqlite", run_id=runs[1]["strong"])
    improved = {(f.unit, f.metric): (f.baseline, f.now) for f in findings if f.verdict == "improved"}
    assert improved == {(IFGSM, "fooling_rate"): (50.0, 100.0), (LIN2025, "fooling_rate"): (0.0, 87.5),
                        (LIN2025, "median_l0_pixels"): (None, 451.0)}


def test_other_number_of_samples_fails(runs, baseline, capsys):
    _edit(baseline, lambda d: d["units"][0].update(samples=100))
    assert _check(runs, baseline, "strong") == 1
    assert f"{IFGSM}: samples 100 -> 8 (the run attacked another number of samples" in capsys.readouterr().err


def test_time_is_compared_only_on_the_baselines_hardware(runs, baseline, capsys):
    # A baseline a million times faster: a regression, where times are comparable.
    _edit(baseline, lambda d: d["units"][1].update(seconds_per_sample=d["units"][1]["seconds_per_sample"] / 1e6))
    assert _check(runs, baseline, "strong") == 1
    assert f"{LIN2025}: seconds per sample" in capsys.readouterr().err

    def other_machine(document):
        document["provenance"]["hardware"]["cpu_count"] += 1

    _edit(baseline, other_machine)
    assert _check(runs, baseline, "strong") == 0
    out, err = capsys.readouterr()
    assert "skipped" in out and "hardware differs from the baseline's: cpu_count" in out
    assert _check(runs, baseline, "strong", "--compare-time", "always") == 1
    assert f"{LIN2025}: seconds per sample" in capsys.readouterr().err


def test_rerun_runs_the_baselines_config_again(runs, baseline, tiny_model, tmp_path):
    run_id, findings = check(baseline, store=tmp_path / "fresh.sqlite", rerun=True,
                             load_model=lambda *_: tiny_model, compare_time="never")
    assert run_id.startswith(read_baseline(baseline)["provenance"]["run_id"] + "-check-")
    assert not failures(findings)
    assert {f.verdict for f in findings if f.metric == "fooling_rate"} == {"ok"}
    assert {f.unit for f in findings} == {IFGSM, LIN2025, "(run)"}
    with pytest.raises(ValueError, match="exclude each other"):
        check(baseline, store=tmp_path / "fresh.sqlite", rerun=True, run_id=run_id)


def test_errors_name_what_is_wrong(runs, baseline, tmp_path, capsys):
    directory, ids = runs
    assert _main(["check", "--baseline", str(tmp_path / "nope.toml"), "--store", str(directory / "main.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _main(["check", "--baseline", str(baseline), "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "--rerun" in capsys.readouterr().err
    assert _main(["check", "--baseline", str(baseline), "--store", str(directory / "main.sqlite"), "--run", "x"]) == 2
    assert "'x' is not in" in capsys.readouterr().err
    assert _main(["check", "--baseline", str(baseline), "--store", str(directory / "main.sqlite"),
                  "--cache-dir", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        _main(["check", "--baseline", str(baseline), "--run", "x", "--rerun"])


def test_help_of_both_commands(capsys):
    for command, words in (("baseline", ["--out", "--tolerance-fooling-rate", "--tolerance-l0", "--tolerance-time",
                                         "TOML", "provenance"]),
                           ("check", ["--baseline", "--rerun", "--compare-time", "exit 0", "1 when", "hardware"])):
        with pytest.raises(SystemExit) as exit_:
            _main([command, "--help"])
        assert exit_.value.code == 0
        out = " ".join(capsys.readouterr().out.split()).lower()
        for word in words:
            assert word.lower() in out, (command, word)


def test_pytest_fixture_fails_on_a_regression_and_passes_otherwise(runs, baseline, pytester):
    directory, ids = runs
    (pytester.path / "baseline.toml").write_text(baseline.read_text())
    pytester.makepyfile(test_user=f"""
        def test_strong(sparsebench_gate):
            # relative paths are from the rootdir
            findings = sparsebench_gate(baseline="baseline.toml", store={str(directory / "main.sqlite")!r})
            assert findings

        def test_weak(sparsebench_gate):
            sparsebench_gate(baseline="baseline.toml", store={str(directory / "weak.sqlite")!r},
                             compare_time="never")
    """)
    result = pytester.runpytest("-p", "reports.pytest_plugin")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*sparsebench: 1 regression(s) of run gate-* against *baseline.toml:",
        f"{IFGSM}: fooling rate 100.0 -> 25.0 (allowed drop 0.0)",
    ])
    assert "| unit" in result.stdout.str()  # the table, in the failed test's captured output


def test_cpu_model_counts_when_the_baseline_recorded_it():
    from bench.provenance import cpu_model
    from reports.gate import hardware_difference

    now = {"machine": "x86_64", "cpu_model": "CPU A", "cpu_count": 2}
    assert hardware_difference({**now, "cpu_model": "CPU B"}, now) == ["cpu_model CPU B -> CPU A"]
    older = {k: v for k, v in now.items() if k != "cpu_model"}  # a baseline written before cpu_model existed
    assert hardware_difference(older, now) == []
    model = cpu_model()
    assert model is None or (isinstance(model, str) and model)
