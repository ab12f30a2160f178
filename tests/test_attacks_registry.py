"""Every registry entry, batch sizes {1, 3, 8}, each supported mode, through the harness's own checks.

Each entry carries its own settings for this test (``bench/registry.py``): ``smoke``, small
budgets so the whole matrix runs in seconds (the defaults are what the benchmark uses), and
``smoke_success``, the fooling rate a working attack reaches here (tiny linear model,
8 samples); 0 for the black-box ones whose small budget may not suffice on every sample.
Adding an attack is adding its entry, with both.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import torch

from bench.counting import CountingModel
from bench.data import get_batch
from bench.guard import Guard, call_attack
from bench.registry import ATTACKS, all_attacks, bind, get_attack
from bench.verify import verify

EXAMPLE = Path(__file__).parent.parent / "examples" / "sparsebench-example"
sys.path.insert(0, str(EXAMPLE))  # the example outside package's entry runs the same matrix as ours
from sparsebench_example import ATTACK as EXAMPLE_ATTACK  # noqa: E402

#: Every attack the registry knows (with any installed package's) and the example package's.
ENTRIES = {**all_attacks(), EXAMPLE_ATTACK.name: EXAMPLE_ATTACK}
CASES = [(name, mode) for name, entry in ENTRIES.items() for mode in entry.modes]


# Entries whose defaults already run in seconds here, so their smoke settings are empty on purpose.
NO_SMOKE_NEEDED = {"torchattacks/jsma"}  # no step count: gamma bounds its iterations


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_entry_has_smoke_settings(name):
    assert NO_SMOKE_NEEDED <= set(ATTACKS), NO_SMOKE_NEEDED - set(ATTACKS)
    entry = ATTACKS[name]
    assert entry.smoke or name in NO_SMOKE_NEEDED, f"{name}: give its entry smoke= settings (bench/registry.py)"
    unknown = set(entry.smoke) - set(entry.parameters())
    assert not unknown, f"{name}: smoke settings {sorted(unknown)} are not hyperparameters of {entry.function}"
    assert 0.0 <= entry.smoke_success <= 1.0, entry.smoke_success


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

    attack = bind(ENTRIES[name], dataset="fashion-mnist", **ENTRIES[name].smoke)
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
        assert verified.success.mean() >= ENTRIES[name].smoke_success


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


@pytest.mark.parametrize("inputs,labels,message", [
    (torch.zeros(2, 784), torch.zeros(2, dtype=torch.long), r"inputs: expected float images \(B, C, H, W\)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), r"got torch.uint8"),
    (torch.full((2, 1, 28, 28), 2.0), torch.zeros(2, dtype=torch.long), r"expected images in \[0, 1\], got \[2, 2\]"),
    (torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.long), r"labels: expected integer classes of shape \(2,\)"),
    (torch.zeros(2, 1, 28, 28), torch.zeros(2), r"labels: expected integer classes .* got torch.float32"),
])
def test_the_contract_is_checked_once_for_every_attack(inputs, labels, message, tiny_model):
    """Attack.__call__ checks the contract's inputs, whatever the attack's module does."""
    for name in ("i-fgsm", "sigma-zero", "sparse-rs"):
        with pytest.raises(ValueError, match=message):
            get_attack(name)(tiny_model, inputs, labels)
