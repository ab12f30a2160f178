"""Config errors fail before any work, naming the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from bench.config import default_config_path, load_config, parse_config

BASE = {
    "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
    "attacks": [{"name": "i-fgsm"}],
}


def with_(**changes):
    config = {k: v for k, v in BASE.items()}
    config.update(changes)
    return config


def test_default_config_is_valid_and_offline():
    config = load_config(default_config_path())
    assert [d.name for d in config.datasets] == ["fashion-mnist"]
    assert config.datasets[0].models == ("smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at")
    assert set(config.modes) == {"untargeted", "targeted"}


@pytest.mark.parametrize("config,message", [
    (with_(attacks=[{"name": "carlini"}]), r"config.attacks\[0\].name: attack: 'carlini' is not registered; allowed: i-fgsm"),
    (with_(batchsize=3), r"config: unknown field 'batchsize'; allowed: name, seed, n_samples, batch_size"),
    (with_(batch_size="64"), r"config.batch_size: '64' is a str; expected a positive int or 'auto'"),
    (with_(batch_size=True), r"config.batch_size: True is a bool; expected int or str"),
    (with_(batch_size=0), r"config.batch_size: 0 must be a positive integer"),
    (with_(warmup="yes"), r"config.warmup: 'yes' is a str; expected true, false or 'auto'"),
    (with_(precision="fp8"), r"config.precision: 'fp8' is not one of fp32, bf16, fp16"),
    (with_(channels_last="yes"), r"config.channels_last: 'yes' is a str; expected bool"),
    (with_(n_samples=-5), r"config.n_samples: -5 must be a positive integer"),
    (with_(modes=["untargetted"]), r"config.modes: 'untargetted' is not one of untargeted, targeted"),
    (with_(modes=[]), r"config.modes: must not be empty"),
    (with_(budgets=[5, 0]), r"config.budgets\[1\]: 0 must be a positive integer"),
    (with_(budgets=[2.5]), r"config.budgets\[0\]: 2.5 is a float; expected int"),
    (with_(target_selection="hardest"), r"config.target_selection: 'hardest' is not one of random, least-likely"),
    (with_(device="tpu"), r"config.device: 'tpu' is not one of auto, cpu, cuda"),
    (with_(datasets=[{"name": "svhn", "models": []}]), r"config.datasets\[0\].name: 'svhn' is not one of fashion-mnist"),
    (with_(datasets=[{"name": "fashion-mnist", "models": ["resnet9000"]}]),
     r"config.datasets\[0\].models: 'resnet9000' is not one of smallcnn-standard"),
    (with_(datasets=[{"name": "fashion-mnist", "model": ["smallcnn-standard"]}]),
     r"config.datasets\[0\]: unknown field 'model'; allowed: name, models, root, split"),
    (with_(attacks=[{"name": "i-fgsm", "overrides": {"epsilon": 0.1}}]),
     r"config.attacks\[0\]: attacks.i-fgsm.overrides: 'epsilon' \(= 0.1\) is not a hyperparameter of i-fgsm; allowed: eps, alpha, steps"),
    (with_(attacks=[{"name": "i-fgsm", "overrides": {"steps": 2.5}}]),
     r"config.attacks\[0\]: attacks.i-fgsm.overrides.steps: 2.5 is a float; expected int"),
    (with_(attacks=[{"name": "torchattacks/sparsefool", "modes": ["targeted"]}]),
     r"config.attacks\[0\].modes: 'targeted' is not one of untargeted"),
    (with_(attacks=[{"name": "i-fgsm"}, {"name": "i-fgsm"}]), r"label 'i-fgsm' is used twice"),
    ({"attacks": [{"name": "i-fgsm"}]}, r"config: missing field 'datasets'"),
])
def test_bad_config_names_field_value_and_allowed(config, message):
    with pytest.raises(ValueError, match=message):
        parse_config(config)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_fingerprint_ignores_device_only():
    a = parse_config(with_(device="cpu"))
    assert a.fingerprint() == parse_config(with_(device="auto")).fingerprint()
    assert a.fingerprint() != parse_config(with_(seed=1)).fingerprint()


def test_fingerprint_counts_what_changes_results_and_not_what_changes_time():
    base = parse_config(BASE).fingerprint()
    # This config's fingerprint before the speed options existed: its stored runs must still resume.
    assert base == "bed16156428e"
    assert parse_config(with_(warmup=True)).fingerprint() == base
    assert parse_config(with_(precision="fp32", channels_last=False)).fingerprint() == base
    changed = {parse_config(with_(**c)).fingerprint()
               for c in ({"precision": "bf16"}, {"channels_last": True}, {"batch_size": "auto"})}
    assert len(changed) == 3 and base not in changed


def test_packaged_configs_parse(tmp_path):
    from bench.config import packaged_configs, resolve_config

    packaged = packaged_configs()
    assert {"default", "cifar10-robustbench", "imagenet-torchvision"} <= set(packaged)
    for name, path in packaged.items():
        assert resolve_config(name) == path
        load_config(path)  # every shipped config is valid
    with pytest.raises(ValueError, match="neither a file nor a packaged config"):
        resolve_config("cifar100")


OUTSIDE = {"function": "outside_contracts:good", "kind": "fixed-budget", "threat": "black-box",
           "citation": "Doe, 'An attack', 2026"}


def test_outside_attack_by_function():
    config = parse_config(with_(attacks=[{**OUTSIDE, "overrides": {"steps": 5}}, {"name": "i-fgsm"}]))
    outside, registered = config.attacks
    assert (outside.label, outside.kind, outside.threat, outside.function) == (
        "good", "fixed-budget", "black-box", "outside_contracts:good")
    attack = outside.build(dataset="fashion-mnist")
    assert attack.hyperparameters == {"steps": 5, "eps": 0.5}
    assert attack.entry.citation == "Doe, 'An attack', 2026" and attack.entry.source == "outside (outside_contracts)"
    # A registered attack's table reads as before, so existing runs keep their fingerprints.
    assert set(config.to_dict()["attacks"][1]) == {"name", "label", "overrides", "modes"}


@pytest.mark.parametrize("table,message", [
    ({**OUTSIDE, "stepz": 3}, r"config.attacks\[0\]: unknown field 'stepz'; allowed: name, label, overrides, modes, "
                               r"function, kind, threat, citation"),
    ({**OUTSIDE, "name": "i-fgsm"}, r"config.attacks\[0\]: give either 'name' .* or 'function'"),
    ({"label": "x"}, r"config.attacks\[0\]: give either 'name'"),
    ({"name": "i-fgsm", "kind": "fixed-budget"}, r"'kind' describe an outside attack; 'i-fgsm' is registered"),
    ({"function": "outside_contracts"}, r"config.attacks\[0\].function: 'outside_contracts' is not 'module:attribute'"),
    ({"function": "no_such_module:f"}, r"cannot import 'no_such_module:f': No module named 'no_such_module'"),
    ({"function": "outside_contracts:missing"}, r"cannot import 'outside_contracts:missing'"),
    ({"function": "outside_contracts:NOT_CALLABLE"}, r"3 is not callable"),
    ({"function": "outside_contracts:two_arguments"}, r"takes 2 positional argument\(s\); the contract is "
                                                      r"function\(model, inputs, labels, \*, targeted=False"),
    ({"function": "outside_contracts:no_targeted"}, r"has no 'targeted' keyword"),
    ({"function": "outside_contracts:required_hyperparameter"}, r"argument\(s\) steps have no default"),
    ({**OUTSIDE, "kind": "greedy"}, r"config.attacks\[0\]: good.kind: 'greedy' is not one of minimum-norm, fixed"),
    ({**OUTSIDE, "overrides": {"stepz": 1}}, r"'stepz' \(= 1\) is not a hyperparameter of good; allowed: steps, eps"),
    ({**OUTSIDE, "overrides": {"steps": "3"}}, r"good.overrides.steps: '3' is a str; expected int"),
])
def test_outside_attack_errors(table, message):
    with pytest.raises(ValueError, match=message):
        parse_config(with_(attacks=[table]))


@pytest.mark.parametrize("config,message", [
    (with_(attacks=[{"name": "i-fgsm", "overrides": {"steps": -3}}]),
     r"config.attacks\[0\]: i-fgsm.steps: -3 is outside its valid range \[1, inf\)"),
    (with_(attacks=[{"name": "i-fgsm", "overrides": {"eps": -1.0}}]), r"i-fgsm.eps: -1.0 is outside its valid range \(0, 1\]"),
    (with_(attacks=[{"name": "i-fgsm", "overrides": {"eps": float("nan")}}]), r"i-fgsm.eps: nan is outside"),
    (with_(attacks=[{"name": "sigma-zero", "overrides": {"threshold": 1.5}}]), r"sigma-zero.threshold: 1.5 is outside its valid range \(0, 1\)"),
    (with_(attacks=[{"name": "sparse-rs-min", "overrides": {"budgets": [5, 1]}}]), r"sparse-rs-min.budgets: \[5, 1\] must be strictly increasing"),
    (with_(attacks=[{"name": "sparse-rs-min", "overrides": {"budgets": [0, 1]}}]), r"sparse-rs-min.budgets: 0 is outside its valid range \[1, inf\)"),
    (with_(device="cuda:abc"), r"config.device: 'cuda:abc' is not one of auto, cpu, cuda, cuda:N, mps"),
    (with_(seed=2**64), r"config.seed: 18446744073709551616 must be >= 0 and below 2\*\*63"),
    (with_(attacks=[{"name": "i-fgsm", "label": ""}]), r"config.attacks\[0\].label: '' must start with a letter or digit"),
    (with_(attacks=[{"name": "i-fgsm", "label": "a|b"}]), r"config.attacks\[0\].label: 'a\|b' must start"),
    (with_(name="../../../escaped"), r"config.name: '../../../escaped' must start with a letter or digit"),
    (with_(name="/abs/path"), r"config.name: '/abs/path' must start"),
    (with_(name="a..b"), r"no '\.\.'"),
    (with_(budgets=[5, 1]), r"config.budgets: \[5, 1\] must be strictly increasing, e.g. \[1, 5\]"),
    (with_(budgets=[1, 5, 5]), r"config.budgets: \[1, 5, 5\] must be strictly increasing"),
])
def test_values_outside_their_range_fail_before_any_work(config, message):
    with pytest.raises(ValueError, match=message):
        parse_config(config)


def test_a_device_this_machine_lacks_fails_before_any_work():
    from bench.runner import resolve_device

    with pytest.raises(ValueError, match="MPS is not available here"):
        resolve_device("mps")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda:1")


def test_every_default_lies_in_its_range():
    from bench.registry import ATTACKS, FAMILIES

    for entry in ATTACKS.values():
        ranges = entry.valid_ranges()
        for family in (None, *FAMILIES):
            for key, value in entry.hyperparameters(family).items():
                if key in ranges and isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert value in ranges[key], (entry.name, family, key, value)


@pytest.mark.parametrize("config,message", [
    (with_(exclude_runs="tuning-1"), r"config.exclude_runs: 'tuning-1' is a str; expected list"),
    (with_(exclude_runs=[3]), r"config.exclude_runs\[0\]: 3 is not a run id; expected the id of a run in the same store"),
    (with_(exclude_runs=["a", " "]), r"config.exclude_runs\[1\]: ' ' is not a run id"),
    (with_(exclude_runs=["a", "a"]), r"config.exclude_runs: \['a', 'a'\] repeats a run id"),
    (with_(exclude_indices=[0, 10]), r"config.exclude_indices\[0\]: 0 is not a range of dataset indices; expected "
                                     r"\[start, stop\] with integers 0 <= start < stop \(stop is left out\)"),
    (with_(exclude_indices=[[5, 5]]), r"config.exclude_indices\[0\]: \[5, 5\] is not a range"),
    (with_(exclude_indices=[[-1, 5]]), r"config.exclude_indices\[0\]: \[-1, 5\] is not a range"),
    (with_(exclude_indices=[[0, 2.5]]), r"config.exclude_indices\[0\]: \[0, 2.5\] is not a range"),
    (with_(exclude_indices=[[0, True]]), r"config.exclude_indices\[0\]: \[0, True\] is not a range"),
    (with_(exclude_indices=[[0, 5, 9]]), r"config.exclude_indices\[0\]: \[0, 5, 9\] is not a range"),
    (with_(exclude_indices=[[10, 20], [15, 30]]), r"config.exclude_indices\[1\]: \[15, 30\] starts before the "
                                                   r"previous range \[10, 20\] ends"),
])
def test_bad_exclusions_name_field_value_and_allowed(config, message):
    with pytest.raises(ValueError, match=message):
        parse_config(config)


def test_exclusions_are_recorded_and_fingerprinted_only_when_given():
    config = parse_config(with_(exclude_runs=["tuning-1"], exclude_indices=[[0, 10], [20, 21]]))
    assert config.exclude_runs == ("tuning-1",) and config.exclude_indices == ((0, 10), (20, 21))
    assert config.to_dict()["exclude_indices"] == [[0, 10], [20, 21]]
    stored = config.to_dict()  # as the run records it, and as the gate's re-run parses it back
    assert parse_config(with_(exclude_runs=stored["exclude_runs"], exclude_indices=stored["exclude_indices"])) == config
    assert config.fingerprint() != parse_config(BASE).fingerprint()
    plain = parse_config(with_(exclude_runs=[], exclude_indices=[]))
    assert "exclude_runs" not in plain.to_dict() and plain.fingerprint() == "bed16156428e"


def test_heldout_excludes_every_candidate_lin2025_study_looked_at():
    """lin2025-study attacked the correctly classified ones among the first 23 of its seed-0 permutation
    (candidates_seen <= 23 with the cached models): lin2025-heldout excludes all 23, by index."""
    import torch

    from bench.config import resolve_config

    study, heldout = (load_config(resolve_config(name)) for name in ("lin2025-study", "lin2025-heldout"))
    assert study.seed == 0 and study.n_samples == 20 and study.datasets[0].name == heldout.datasets[0].name
    excluded = {i for start, stop in heldout.exclude_indices for i in range(start, stop)}
    looked_at = torch.randperm(10000, generator=torch.Generator().manual_seed(study.seed)).tolist()[:23]
    assert excluded == set(looked_at)


def test_the_gpu_timing_config_names_every_native_attack():
    """`bench native --overrides-from timing-cifar10` cuts every attack's budget; an entry it forgot runs at its
    full default budget and dominates the GPU session's time limit."""
    from bench.config import load_config, resolve_config
    from bench.registry import ATTACKS

    named = {attack.name for attack in load_config(resolve_config("timing-cifar10")).attacks}
    assert [n for n, e in ATTACKS.items() if e.source == "native" and n not in named] == []
