"""The pruning pass (``attacks/prune.py``) and its registry wrapper ``prune/<name>`` (``bench/registry.py``).

Every size below is the harness's own (``bench.verify`` through :func:`tiny.run_verified`, or the runner's
store), never what ``prune`` says about itself.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny import OutputsOnly, run_verified
from torch import nn

from attacks.ifgsm import i_fgsm
from attacks.prune import prune, with_pruning
from bench.cli import main
from bench.config import parse_config
from bench.counting import CountingModel
from bench.guard import Guard, call_attack
from bench.registry import ATTACKS, AttackEntry, bind, get_attack, get_entry, pruned_entry
from bench.runner import run_benchmark
from bench.store import ResultsStore
from bench.verify import verify

MODES = ("untargeted", "targeted")
DENSE = {"eps": 0.3, "alpha": 0.05, "steps": 10}  # I-FGSM that fools the tiny model on (nearly) every sample
BOUND = 1 + 100 + 4 * 8 + 1  # prune's stated bound on forward passes per sample, at its defaults


def _dense(model, samples, mode):
    """I-FGSM's examples, as the harness verified them (a dense change on nearly every element)."""
    verified, _ = run_verified(i_fgsm, model, samples, mode, **DENSE)
    return verified


def _pruning(given):
    """An attack that returns ``prune`` of the examples ``given`` (so that the harness counts its passes)."""
    def attack(model, inputs, labels, *, targeted=False, **options):
        return prune(model, inputs, given, labels, targeted=targeted, **options)
    return attack


@pytest.mark.parametrize("mode", MODES)
def test_prune_shrinks_a_dense_example_and_keeps_success(mode, tiny_model, samples):
    given = _dense(tiny_model, samples, mode)
    assert given.success.mean() >= 0.75 and np.median(given.l0_elements) > 300  # dense, and it fools

    pruned, passes = run_verified(_pruning(given.adversarial), tiny_model, samples, mode)

    assert pruned.valid.all(), pruned.violation
    assert (pruned.success == given.success).all()  # what fooled still fools, checked by the harness
    won = given.success
    assert (pruned.l0_elements[won] < given.l0_elements[won]).all()
    assert np.median(pruned.l0_elements[won]) < 0.5 * np.median(given.l0_elements[won])
    assert (pruned.l0_pixels <= given.l0_pixels).all()
    assert passes.backward_samples == 0  # forward passes only
    assert len(samples[0]) < passes.forward_samples <= BOUND * len(samples[0])


def test_prune_never_grows_keeps_the_box_and_leaves_failures_as_given(tiny_model, samples):
    images, labels, targets = samples
    images, labels = images[:8], labels[:8]
    given = _dense(tiny_model, (images, labels, targets[:8]), "untargeted").adversarial.clone()
    given[0] = images[0]  # no change at all: not adversarial
    given[1] = (images[1] + 0.01).clamp(0, 1)  # a small dense change that does not fool
    given[2, 0, 0, 0] = 1.5  # outside the box
    given[3, 0, 0, 0] = float("nan")  # not finite
    assert not (tiny_model(given[:2]).argmax(1) != labels[:2]).any()
    assert (tiny_model(given[4:]).argmax(1) != labels[4:]).all()

    # Outputs only: prune asks for no gradient (black-box attacks may be pruned too).
    pruned = prune(OutputsOnly(tiny_model), images, given, labels, rounds=30, single_rounds=2, batch_elements=4)

    for i in range(4):  # failures and unusable examples: exactly as given
        assert torch.equal(pruned[i], given[i]) or (i == 3 and torch.equal(pruned[i].nan_to_num(7), given[i].nan_to_num(7)))
    rest = slice(4, None)
    assert pruned[rest].min() >= 0 and pruned[rest].max() <= 1
    from_clean, from_given = pruned[rest] == images[rest], pruned[rest] == given[rest]
    assert (from_clean | from_given).all()  # a mix of clean and given values, nothing else
    checked = verify(tiny_model, images, pruned, labels)
    before = verify(tiny_model, images, given, labels)
    assert (checked.l0_elements <= before.l0_elements).all() and (checked.l0_pixels <= before.l0_pixels).all()
    assert (checked.l0_elements[rest] < before.l0_elements[rest]).all()
    assert checked.success[rest].all()


def _one_element_model(index: int, shape=(3, 4, 4)) -> nn.Module:
    """Two classes; class 1 exactly when element ``index`` (of C*H*W) exceeds 0.5, whatever the others."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, -5.0]))
        model[1].weight[1, index] = 10.0
    return model.eval().requires_grad_(False)


@pytest.mark.parametrize("options", [{}, {"rounds": 0, "single_rounds": 30, "batch_elements": 2}],
                         ids=["defaults", "singles-only"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", [0, 17, 47])
def test_one_element_matters_and_only_it_stays(mode, index, options):
    generator = torch.Generator().manual_seed(index)
    model = _one_element_model(index)
    images = torch.full((3, 3, 4, 4), 0.3)
    images.view(3, -1)[:, index] = 0.45
    # Every element changes; the one that matters changes least (to 0.55), so a greedy walk from the
    # smallest change meets it first and must keep it while giving back every other.
    given = (images + 0.2 + 0.5 * torch.rand(images.shape, generator=generator)).clamp(0, 1)
    given.view(3, -1)[:, index] = 0.55
    labels = torch.zeros(3, dtype=torch.long)
    targets = torch.ones(3, dtype=torch.long)
    assert (model(images).argmax(1) == 0).all() and (model(given).argmax(1) == 1).all()

    verified, passes = run_verified(_pruning(given), model, (images, labels, targets), mode, **options)

    assert verified.success.all()
    assert verified.l0_elements.tolist() == [1, 1, 1] and verified.l0_pixels.tolist() == [1, 1, 1]
    assert (verified.adversarial != images).view(3, -1)[:, index].all()
    bound = 1 + options.get("rounds", 100) + options.get("single_rounds", 4) * options.get("batch_elements", 8) + 1
    assert passes.forward_samples <= bound * 3


class _FlipsOnCall(nn.Module):
    """``model``, except that its ``flip``-th call predicts ``labels`` for every sample (a batch that breaks
    near ties the other way)."""

    def __init__(self, model, labels, flip):
        super().__init__()
        self.model, self.labels, self.flip, self.calls = model, labels, flip, 0

    def forward(self, inputs):
        self.calls += 1
        logits = self.model(inputs)
        return nn.functional.one_hot(self.labels, logits.shape[1]).float() if self.calls == self.flip else logits


def test_a_pruned_example_that_fails_the_last_check_is_given_back(tiny_model, samples):
    images, labels, targets = (tensor[:6] for tensor in samples)
    given = _dense(tiny_model, (images, labels, targets), "untargeted").adversarial
    # Calls: the check of the given examples, one chunk round, the last check (flipped).
    model = _FlipsOnCall(tiny_model, labels, flip=3)
    pruned = prune(model, images, given, labels, rounds=1, single_rounds=0)
    assert model.calls == 3 and torch.equal(pruned, given)
    model = _FlipsOnCall(tiny_model, labels, flip=4)  # the same, the last check unflipped: the round pruned
    assert not torch.equal(prune(model, images, given, labels, rounds=1, single_rounds=0), given)


def test_prune_checks_its_options_and_shape(tiny_model, samples):
    images, labels, _ = samples
    for option, value, allowed in [("rounds", -1, ">= 0"), ("single_rounds", 1.5, ">= 0"),
                                   ("batch_elements", 0, ">= 1")]:
        with pytest.raises(ValueError, match=rf"{option}: {value!r} is not an integer {allowed}"):
            prune(tiny_model, images, images, labels, **{option: value})
    with pytest.raises(ValueError, match=r"adversarial: shape"):
        prune(tiny_model, images, images[:, :, :5], labels)


# The registry wrapper.

def test_prune_names_resolve_for_every_attack_without_being_listed():
    for name, entry in ATTACKS.items():
        pruned = get_entry(f"prune/{name}")
        assert pruned.name == f"prune/{name}" and pruned.kind == "minimum-norm" and pruned.norm == "l0"
        assert (pruned.modes, pruned.threat, pruned.source) == (entry.modes, entry.threat, entry.source)
        assert pruned.defaults == entry.defaults and pruned.smoke == entry.smoke and pruned.prepare == entry.prepare
        assert pruned.citation == f"{entry.citation} + pruning pass (SparseBench)"
        inner = entry.parameters()
        assert list(pruned.parameters()) == [*inner, "prune_rounds", "prune_single_rounds", "prune_batch_elements"]
        assert pruned.hyperparameters("cifar10").items() >= entry.hyperparameters("cifar10").items()
        assert f"prune/{name}" not in ATTACKS
    with pytest.raises(ValueError, match=r"'prune/sparse-magic' is not registered; allowed: .*or prune/"):
        get_entry("prune/sparse-magic")
    with pytest.raises(ValueError, match="is not registered"):
        get_entry("prune/prune/fmn-l0")


def test_pruned_attack_binds_checks_and_passes_hyperparameters_through(tiny_model, samples):
    attack = get_attack("prune/i-fgsm", dataset="fashion-mnist", steps=3, prune_rounds=5)
    assert attack.hyperparameters["steps"] == 3 and attack.hyperparameters["prune_rounds"] == 5
    with pytest.raises(ValueError, match=r"prune/i-fgsm.prune_rounds: -1 is outside its valid range \[0, inf\)"):
        get_attack("prune/i-fgsm", prune_rounds=-1)
    with pytest.raises(ValueError, match="'prune_steps' .* is not a hyperparameter of prune/i-fgsm"):
        get_attack("prune/i-fgsm", prune_steps=3)
    images, labels, _ = samples
    counting = CountingModel(tiny_model)
    attack(counting, images[:4], labels[:4])
    counting.close()
    passes = counting.since_reset()
    assert passes.backward_samples == 3 * 4  # the inner attack's steps, as overridden
    assert passes.forward_samples > 3 * 4  # and the pruning's passes on top


def test_options_are_checked_before_the_attack_runs_and_names_do_not_clash(tiny_model, samples):
    ran = []

    def attack(model, inputs, labels, *, targeted=False, steps=1):
        ran.append(steps)
        return inputs

    with pytest.raises(ValueError, match="prune_batch_elements: 0 is not an integer >= 1"):
        with_pruning(attack)(tiny_model, samples[0], samples[1], prune_batch_elements=0)
    assert ran == []

    def clashing(model, inputs, labels, *, targeted=False, prune_rounds=1):
        return inputs

    with pytest.raises(ValueError, match="already has prune_rounds"):
        with_pruning(clashing)


def test_preparation_gets_the_inner_hyperparameters_only(tiny_model):
    prepared = []

    def attack(model, inputs, labels, *, targeted=False, width=2):
        return inputs

    def preparation(model, *, targeted=False, cache_dir=None, progress=False, **hyperparameters):
        prepared.append(hyperparameters)

    entry = AttackEntry(name="learned", function="tests:learned", kind="fixed-budget", norm="l0", source="native",
                        modes=("untargeted",), threat="white-box", citation="none", prepare="tests:prepare",
                        implementation=attack, preparation=preparation)
    bind(pruned_entry(entry), width=3, prune_rounds=2).prepare(tiny_model)
    assert prepared == [{"width": 3}]


@pytest.mark.parametrize("name", ["prune/i-fgsm", "prune/sparse-rs"])
def test_pruned_attack_passes_the_guard(name, tiny_model, samples):
    images, labels, targets = (tensor[:3] for tensor in samples)
    attacked = copy.deepcopy(tiny_model)
    counting, guard = CountingModel(attacked), Guard(attacked)
    entry = get_entry(name)
    attack = bind(entry, dataset="fashion-mnist", **entry.smoke)
    call = call_attack(attack, counting, guard, images, labels, targets)
    assert call.void == ""
    verified = verify(tiny_model, images, call.returned, labels, targets=targets)
    assert verified.valid.all(), verified.violation


def test_pruned_attacks_through_the_runner(tmp_path, tiny_model):
    """``prune/<name>`` in a config: never a larger L0 than ``<name>`` on the same samples, and its passes counted."""
    fmn = {"steps": 50}
    config = parse_config({
        "name": "prune", "seed": 1, "n_samples": 8, "batch_size": 4,
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": [{"name": "i-fgsm", "overrides": DENSE}, {"name": "prune/i-fgsm", "overrides": DENSE},
                    {"name": "fmn-l0", "overrides": fmn}, {"name": "prune/fmn-l0", "overrides": fmn}],
    })
    with ResultsStore(tmp_path / "store.sqlite") as store:
        rows = store.samples(run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False))
    rows = rows.set_index(["mode", "sample_id"])
    for inner in ("i-fgsm", "fmn-l0"):
        plain, pruned = (rows[rows["attack"] == name].sort_index() for name in (inner, f"prune/{inner}"))
        assert len(plain) == len(pruned) == 16 and (plain.index == pruned.index).all()
        assert (pruned["success"] >= plain["success"]).all()
        won = plain["success"].astype(bool) & pruned["success"].astype(bool)
        assert won.sum() >= 8
        assert pruned["l0_elements"][won].median() <= plain["l0_elements"][won].median()
        assert (pruned["forward_passes"] > plain["forward_passes"]).all()  # the pruning's passes are not hidden
        assert (pruned["backward_passes"] == plain["backward_passes"]).all()
    # I-FGSM is deterministic: per sample, pruning only gives changes back, and it gives most of them.
    plain, pruned = (rows[rows["attack"] == name].sort_index() for name in ("i-fgsm", "prune/i-fgsm"))
    assert (pruned["l0_elements"] <= plain["l0_elements"]).all()
    assert pruned["l0_elements"].median() < 0.5 * plain["l0_elements"].median()


def test_configs_take_pruned_names_and_list_mentions_them(capsys):
    base = {"datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}]}
    config = parse_config({**base, "attacks": [{"name": "prune/fmn-l0", "overrides": {"steps": 5, "prune_rounds": 7}}]})
    (attack,) = config.attacks
    assert (attack.name, attack.label) == ("prune/fmn-l0", "prune/fmn-l0")
    assert attack.build("fashion-mnist").hyperparameters["prune_rounds"] == 7
    with pytest.raises(ValueError, match=r"attacks\[0\].*prune_rounds: -2 is outside its valid range"):
        parse_config({**base, "attacks": [{"name": "prune/fmn-l0", "overrides": {"prune_rounds": -2}}]})
    with pytest.raises(ValueError, match=r"attacks\[0\]\.name: .*'prune/sparse-magic' is not registered"):
        parse_config({**base, "attacks": [{"name": "prune/sparse-magic"}]})

    assert main(["list"]) == 0
    assert "prune/<name>" in capsys.readouterr().out
