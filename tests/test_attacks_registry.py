"""Every registry entry, batch sizes {1, 3, 8}, each supported mode, through the harness's own checks."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from bench.counting import CountingModel
from bench.guard import Guard, call_attack
from bench.data import get_batch
from bench.registry import ATTACKS, get_attack
from bench.verify import verify

# Small budgets so the whole matrix runs in seconds; the defaults are what the benchmark uses.
FAST = {
    "i-fgsm": {"eps": 0.3, "alpha": 0.05, "steps": 10},
    "torchattacks/sparsefool": {"steps": 5},
    "torchattacks/onepixel": {"pixels": 5, "steps": 5, "popsize": 10},
    "torchattacks/jsma": {},
    "torchattacks/pixle": {"restarts": 5, "max_iterations": 5},
    "lin2025": {"steps": 20},
    "lin2025-code": {"steps": 20},
    "lin2025-improved": {"steps": 20},
    "fmn-l0": {"steps": 200},
    "sigma-zero": {"steps": 100},
    "vfga": {"max_iter": 100},
    "sparse-rs": {"k": 40, "n_queries": 300},
    "sparse-rs-min": {"budgets": (1, 2, 5, 10, 20, 50, 100), "n_queries": 300},
    "pgd-l0": {"k": 40, "steps": 20, "restarts": 2},
    "pgd-l0-min": {"budgets": (1, 2, 5, 10, 20, 50, 100), "steps": 20, "restarts": 2},
    "sparse-pgd": {"k": 40, "steps": 100},
    "sparse-pgd-min": {"budgets": (1, 2, 5, 10, 20, 50, 100), "steps": 100},
    "sparsefool": {"max_iter": 10},
    "cw-l0": {"steps": 30, "max_rounds": 10},
    "art/cw-l0": {"max_iter": 5, "binary_search_steps": 3, "initial_const": 1.0},
    "onepixel": {"pixels": 5, "population": 50, "generations": 20},
    "greedyfool-uniform": {"max_iter": 100},
    "egs-tssa": {"train_steps": 20, "batch_size": 16},
    "homotopy": {"eps": 1.0, "max_update": 5, "lambda_scale": 1.0, "max_outer": 20, "post_steps": 10,
                 "inner_steps": 20, "linf_step": 0.05},
    "sa-moo": {"n_queries": 200},
    "brusleattack": {"k": 40, "n_queries": 300},
    "brusleattack-min": {"budgets": (1, 5, 20, 100), "n_queries": 150},
}
# Fooling rate a working attack reaches here (tiny linear model, 8 samples); 0 for
# the black-box ones whose small budget may not suffice on every sample.
# lin2025 measured 7/8 untargeted, 3/8 targeted (the bound covers both modes; its eq.-22
# output cannot move Fashion-MNIST's many pixels at exactly 0). lin2025-code: 0, its
# sparse iterates never succeed on this model (only its dense fallback does, untargeted).
MIN_SUCCESS = {"i-fgsm": 0.75, "torchattacks/sparsefool": 0.75, "torchattacks/jsma": 0.5, "lin2025": 0.25,
    "lin2025-improved": 0.75,
    "fmn-l0": 0.75, "sigma-zero": 0.75, "vfga": 0.75,
    "sparse-rs": 0.375, "sparse-rs-min": 0.75, "pgd-l0": 0.75, "pgd-l0-min": 0.75, "sparse-pgd": 0.75,
    "sparse-pgd-min": 0.75,
    # onepixel: measured 3/8 targeted with these small settings (seeds 0-2); 1/8 keeps a margin.
    "sparsefool": 0.75, "cw-l0": 0.75, "art/cw-l0": 0.75, "onepixel": 0.125,
    # Measured at batch 8, seeds 0-2: sa-moo 3/8, 2/8, 3/8 targeted (8/8 untargeted); brusleattack 4-6/8;
    # brusleattack-min 5/8 targeted.
    "sa-moo": 0.125, "brusleattack": 0.375, "brusleattack-min": 0.375,
    # greedyfool-uniform 8/8 and 7/8; egs-tssa (20 training steps) 7/8 and 4/8.
    "greedyfool-uniform": 0.75, "egs-tssa": 0.375,
    # homotopy: 8/8 untargeted, 7/8 targeted.
    "homotopy": 0.625,
}

CASES = [(name, mode) for name, entry in ATTACKS.items() for mode in entry.modes]


def test_every_entry_has_fast_settings():
    assert set(FAST) == set(ATTACKS), "add the new attack to FAST (and MIN_SUCCESS) in this file"


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("name,mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_attack_verified_by_harness(name, mode, batch_size, tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(40)))
    correct = tiny_model(images).argmax(1) == labels
    images, labels = images[correct][:batch_size], labels[correct][:batch_size]
    targeted = mode == "targeted"
    targets = (labels + 3) % 10 if targeted else None
    attacked = copy.deepcopy(tiny_model)
    counting, guard = CountingModel(attacked), Guard(attacked)

    attack = get_attack(name, dataset="fashion-mnist", **FAST[name])
    call = call_attack(attack, counting, guard, images, labels, targets)
    assert call.void == ""  # no registered attack touches what it may not
    verified = verify(tiny_model, images, call.returned, labels, targets=targets)

    assert verified.valid.all(), verified.violation
    assert call.passes.forward_samples >= batch_size  # the harness saw the attack use the model
    # What the harness measured agrees with the example: success only with a change.
    assert (verified.l0_elements[verified.success] > 0).all()
    assert (verified.l0_pixels <= verified.l0_elements).all()
    if targeted:
        assert (verified.adversarial_prediction[verified.success] == targets.numpy()[verified.success]).all()
    else:
        assert (verified.adversarial_prediction[verified.success] != labels.numpy()[verified.success]).all()
    if batch_size == 8:
        assert verified.success.mean() >= MIN_SUCCESS.get(name, 0.0)


def test_unsupported_mode_is_refused():
    attack = get_attack("torchattacks/sparsefool")
    with pytest.raises(ValueError, match="does not support 'targeted'"):
        attack(torch.nn.Identity(), torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), targeted=True)


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="'stepz'.*allowed: eps, alpha, steps"):
        get_attack("i-fgsm", stepz=3)
    with pytest.raises(ValueError, match="steps: '3' is a str; expected int"):
        get_attack("i-fgsm", steps="3")
    with pytest.raises(ValueError, match="'nope' is not registered; allowed: i-fgsm"):
        get_attack("nope")


def test_defaults_per_dataset_family():
    attack = get_attack("i-fgsm", dataset="cifar10", steps=3)
    assert attack.hyperparameters == {"eps": 4 / 255, "alpha": 1 / 255, "steps": 3}
    with pytest.raises(ValueError, match="dataset: 'svhn'"):
        get_attack("i-fgsm", dataset="svhn")


def test_registry_entries_are_complete():
    for entry in ATTACKS.values():
        assert entry.name == entry.name.lower() and " " not in entry.name
        assert ("/" in entry.name) == (entry.source != "native")
        # An arXiv id, or a statement that the paper has none (then the venue and pages).
        assert re.search(r"arXiv:\d{4}\.\d{4,5}|no arXiv version", entry.citation), entry.name
        entry.load()  # importable
