"""The native fixed-budget L0 baselines (Sparse-RS, PGD-L0, sPGD) and the minimum-norm search over k.

All on the tiny linear Fashion-MNIST model, checked by the harness's own
``verify``; small iteration budgets keep the file to a few seconds.
"""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch
from tiny import OutputsOnly, run_verified
from torch import nn

from attacks.norms import l0_pixels
from attacks.projections import project_l0_box
from attacks.search import minimum_norm_attack, minimum_norm_search
from baselines.pgd_l0 import pgd_l0, pgd_l0_min
from baselines.sparse_pgd import sparse_pgd, sparse_pgd_min
from baselines.sparse_rs import _Corners, resample_schedule, sparse_rs, sparse_rs_min
from bench.counting import CountingModel
from bench.registry import ATTACKS


def _smoke_but_k(name):
    """The registry entry's smoke settings without ``k``, which these tests set themselves."""
    return {key: value for key, value in ATTACKS[name].smoke.items() if key != "k"}


# Small budgets for speed (the registry entries'); the functions' defaults are the papers'.
FAST = {
    "sparse-rs": (sparse_rs, sparse_rs_min, _smoke_but_k("sparse-rs")),
    "pgd-l0": (pgd_l0, pgd_l0_min, _smoke_but_k("pgd-l0")),
    "sparse-pgd": (sparse_pgd, sparse_pgd_min, _smoke_but_k("sparse-pgd")),
}
# Fooling rates at k = 20 on the 32 samples below, with FAST, were 1.0 untargeted for all three
# and 0.66 (Sparse-RS), 0.69 (PGD-L0), 0.78 (sPGD) targeted; the thresholds leave a margin.
MIN_SUCCESS = {"untargeted": 0.9, "targeted": 0.5}
BUDGETS = (1, 2, 5, 10, 20, 50)


@pytest.mark.parametrize("k", [2, 20])
@pytest.mark.parametrize("mode", ["untargeted", "targeted"])
@pytest.mark.parametrize("name", list(FAST))
def test_fixed_budget_attack(name, mode, k, tiny_model, samples):
    attack, _, fast = FAST[name]
    verified, counting = run_verified(attack, tiny_model, samples, mode, k=k, **fast)
    _, labels, targets = samples

    assert verified.valid.all(), verified.violation
    assert (verified.l0_pixels <= k).all(), verified.l0_pixels  # the budget, in pixels, for every sample
    assert (verified.l0_pixels[verified.success] > 0).all()
    if mode == "targeted":
        assert (verified.adversarial_prediction[verified.success] == targets.numpy()[verified.success]).all()
    else:
        assert (verified.adversarial_prediction[verified.success] != labels.numpy()[verified.success]).all()
    if k == 20:
        assert verified.success.mean() >= MIN_SUCCESS[mode], verified.success.mean()
    assert counting.forward_samples >= len(labels)
    if name == "sparse-rs":
        assert counting.backward_samples == 0
    else:
        assert counting.backward_samples > 0


@pytest.mark.parametrize("mode", ["untargeted", "targeted"])
@pytest.mark.parametrize("name", list(FAST))
def test_search_is_sparser_and_counted(name, mode, tiny_model, samples):
    attack, attack_min, fast = FAST[name]
    largest = max(BUDGETS)
    torch.manual_seed(0)
    single, single_cost = run_verified(attack, tiny_model, samples, mode, n=16, k=largest, **fast)
    torch.manual_seed(0)
    searched, search_cost = run_verified(attack_min, tiny_model, samples, mode, n=16, budgets=BUDGETS, **fast)

    assert searched.valid.all(), searched.violation
    assert (searched.l0_pixels <= largest).all()
    assert (searched.l0_pixels[~searched.success] == 0).all()  # a failure comes back as the clean input
    assert searched.success.mean() >= single.success.mean() - 0.1
    both = single.success & searched.success
    assert np.median(searched.l0_pixels[both]) <= np.median(single.l0_pixels[both])
    assert searched.l0_pixels[both].mean() <= single.l0_pixels[both].mean()
    # The search's extra passes go through the model it was given, so the harness counts them.
    assert search_cost.forward_samples > single_cost.forward_samples
    if name == "sparse-rs":
        assert search_cost.backward_samples == 0
    else:
        assert search_cost.backward_samples > single_cost.backward_samples


@pytest.mark.parametrize("targeted", [False, True])
def test_sparse_rs_is_score_based(targeted, tiny_model, samples):
    images, labels, targets = samples
    model = OutputsOnly(tiny_model)
    adversarial = sparse_rs(model, images[:8], (targets if targeted else labels)[:8], targeted=targeted,
                            k=10, n_queries=50)
    assert (l0_pixels(images[:8], adversarial) <= 10).all()
    sparse_rs_min(model, images[:4], (targets if targeted else labels)[:4], targeted=targeted,
                  budgets=(2, 10), n_queries=20)


def test_sparse_rs_queries_only_unsolved_samples(tiny_model, samples):
    """Early stop: at most one clean query plus n_queries per sample, and far fewer once samples succeed."""
    images, labels, _ = samples
    counting = CountingModel(tiny_model)
    sparse_rs(counting, images, labels, k=20, n_queries=300)
    assert counting.forward_samples <= len(labels) * (1 + 300)
    assert counting.forward_samples < len(labels) * 100  # all succeed within ~25 queries on average here


# The search on a model whose answer is known: sample i is fooled once `need[i]` pixels change.
class _Threshold(nn.Module):
    def forward(self, inputs):
        need = (inputs[:, 0, 0, 0] * 100).round()
        changed = (inputs.flatten(1)[:, 1:] > 0).sum(1)
        return torch.stack([need - changed - 0.5, torch.zeros_like(need)], 1)


def _first_pixels(model, inputs, labels, *, targeted=False, k=1, exact=True):
    """Sets the first k pixels after pixel 0 to 1 (or only as many as the sample needs, if not ``exact``)."""
    need = (inputs[:, 0, 0, 0] * 100).round().long()
    count = torch.full_like(need, k) if exact else need.clamp(max=k)
    positions = torch.arange(1, inputs[0].numel(), device=inputs.device)
    flat = inputs.flatten(1).clone()
    flat[:, 1:] = torch.where(positions[None] <= count[:, None], 1.0, flat[:, 1:])
    return flat.view_as(inputs)


@pytest.mark.parametrize("exact", [True, False])
def test_minimum_norm_search_finds_the_smallest_budget(exact):
    need = torch.tensor([1, 3, 4, 7, 12, 50, 63, 64, 65, 200])
    inputs = torch.zeros(len(need), 1, 9, 9)
    inputs[:, 0, 0, 0] = need / 100
    labels = torch.zeros(len(need), dtype=torch.long)
    grid = (1, 2, 4, 8, 16, 32, 64)
    calls = []

    def attack(model, x, y, *, targeted=False, k=1):
        calls.append(len(x))
        return _first_pixels(model, x, y, k=k, exact=exact)

    counting = CountingModel(_Threshold())
    result = minimum_norm_search(attack, counting, inputs, labels, budgets=grid)
    found = l0_pixels(inputs, result)
    if exact:  # the smallest grid budget at or above the need
        expected = [next((b for b in grid if b >= n), 0) for n in need.tolist()]
    else:  # a run that changes fewer pixels than k moves the search to what it changed
        expected = [n if n <= max(grid) else 0 for n in need.tolist()]
    assert found.tolist() == expected
    # Binary search: at most ceil(log2(len(grid) + 1)) = 3 attack runs per sample.
    assert sum(calls) <= 3 * len(need)
    assert counting.forward_samples == sum(calls)  # one counted check per attacked sample


def test_minimum_norm_attack_signature():
    for fixed, searched in ((sparse_rs, sparse_rs_min), (pgd_l0, pgd_l0_min), (sparse_pgd, sparse_pgd_min)):
        keyword = {n: p.default for n, p in inspect.signature(fixed).parameters.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY}
        searched_keyword = {n: p.default for n, p in inspect.signature(searched).parameters.items()
                            if p.kind is inspect.Parameter.KEYWORD_ONLY}
        del keyword["k"]
        assert {n: v for n, v in searched_keyword.items() if n != "budgets"} == keyword
        assert isinstance(searched_keyword["budgets"], tuple)
        assert searched.__module__ == fixed.__module__ and searched.__doc__
    with pytest.raises(TypeError):
        pgd_l0_min(nn.Identity(), torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), k=3)
    with pytest.raises(ValueError, match="budget_param"):
        minimum_norm_attack(pgd_l0, name="x", budget_param="eps")


def test_project_l0_box_is_the_projection():
    torch.manual_seed(0)
    inputs = torch.rand(3, 2, 2, 3)  # 6 pixels of 2 channels
    delta = torch.randn(3, 2, 2, 3)
    k = 2
    projected = project_l0_box(delta, inputs, k)
    assert ((inputs + projected >= 0) & (inputs + projected <= 1)).all()
    assert (projected.abs().sum(1).flatten(1) > 0).sum(1).le(k).all()
    clipped = torch.minimum(torch.maximum(delta, -inputs), 1 - inputs)
    for b in range(3):  # brute force over every set of k pixels
        best = min(
            ((delta[b] - clipped[b] * _mask(keep)).square().sum().item() for keep in
             itertools.combinations(range(6), k))
        )
        assert (delta[b] - projected[b]).square().sum().item() == pytest.approx(best)


def _mask(keep):
    mask = torch.zeros(6)
    mask[list(keep)] = 1
    return mask.view(1, 2, 3)


def test_resample_schedule_and_corners():
    assert resample_schedule(1, 10_000, 0.3) == pytest.approx(0.15)
    assert resample_schedule(300, 10_000, 0.3) == pytest.approx(0.06)
    assert resample_schedule(9_000, 10_000, 0.3) == pytest.approx(0.015)
    assert resample_schedule(30, 1_000, 0.3) == pytest.approx(0.3 / 5)  # rescaled to the budget
    torch.manual_seed(0)
    clean = torch.tensor([[[0.0, 1.0, 0.5, 0.0], [0.0, 1.0, 0.5, 1.0], [0.0, 0.0, 0.2, 1.0]]]).repeat(64, 1, 1)
    corners = _Corners(clean).draw(torch.arange(4).repeat(64, 1))
    assert corners.shape == clean.shape and ((corners == 0) | (corners == 1)).all()
    assert (corners != clean).any(1).all()  # every drawn corner changes its pixel
    # Drawn for chosen pixels of the rows kept: pixel 1 is the corner (1, 1, 0), so never drawn again.
    kept = _Corners(clean)
    kept.keep(torch.tensor([5, 9]))
    again = kept.draw(torch.ones(2, 100, dtype=torch.long))
    assert again.shape == (2, 3, 100) and (again != torch.tensor([1.0, 1.0, 0.0])[:, None]).any(1).all()


@pytest.mark.parametrize("attack,bad,match", [
    (sparse_rs, {"k": 0}, "k: 0"),
    (sparse_rs, {"k": 65}, r"k: 65 is not an integer in \[1, 64\]"),
    (sparse_rs, {"alpha_init": 1.5}, "alpha_init"),
    (pgd_l0, {"restarts": 0}, "restarts"),
    (sparse_pgd, {"gradient": "sideways"}, "gradient: 'sideways' is not one of unprojected, projected"),
    (sparse_pgd_min, {"budgets": ()}, "budgets"),
])
def test_bad_values_are_refused(attack, bad, match):
    with pytest.raises(ValueError, match=match):
        attack(nn.Flatten(), torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), **bad)
