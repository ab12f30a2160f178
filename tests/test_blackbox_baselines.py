"""SA-MOO and BruSLeAttack: score-based black-box L0 baselines, on the tiny linear Fashion-MNIST model.

Budgets and success are checked by the harness's own ``verify`` and query
counts by its ``CountingModel``; small query budgets keep the file fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

# Shared with the Sparse-RS tests: a counted and verified run, a model that only answers queries
# (the `samples` fixture is in conftest.py).
from tiny import OutputsOnly, run_verified
from torch import nn

from baselines.blackbox import draw_pixels
from baselines.brusleattack import brusleattack, brusleattack_min, pixel_influence, replace_fraction, update_counts
from baselines.sa_moo import (
    _crossover,
    _mutate,
    crowding_distance,
    dominates,
    nondominated_ranks,
    sa_moo,
    select_survivors,
)
from bench.counting import CountingModel
from bench.registry import ATTACKS

# Small query budgets for speed; the functions' defaults are the papers'. SA-MOO's are its registry
# entry's smoke settings; BruSLeAttack runs at k = 20 here (its smoke k is 40), the k the rates below were measured at.
FAST = {
    "sa-moo": (sa_moo, ATTACKS["sa-moo"].smoke),
    "brusleattack": (brusleattack, {"k": 20, "n_queries": 300}),
}
# Fooling rates on the 32 samples below with FAST, seeds 0-2: SA-MOO 0.97-1.0 untargeted, 0.34-0.41
# targeted; BruSLeAttack 1.0 untargeted, 0.62-0.66 targeted. The bounds leave a margin.
MIN_SUCCESS = {"sa-moo": {"untargeted": 0.9, "targeted": 0.25},
               "brusleattack": {"untargeted": 0.9, "targeted": 0.5}}


@pytest.mark.parametrize("mode", ["untargeted", "targeted"])
@pytest.mark.parametrize("name", list(FAST))
def test_budget_success_and_queries(name, mode, tiny_model, samples):
    attack, fast = FAST[name]
    verified, counting = run_verified(attack, tiny_model, samples, mode, **fast)
    adversarial = verified.adversarial  # as returned: every example is valid (checked below)
    images, labels, targets = samples
    k = fast.get("k", 24)

    assert verified.valid.all(), verified.violation
    assert (verified.l0_pixels <= k).all(), verified.l0_pixels  # the budget, in pixels, for every sample
    assert verified.success.mean() >= MIN_SUCCESS[name][mode], verified.success.mean()
    assert (verified.l0_pixels[verified.success] > 0).all()
    predicted = verified.adversarial_prediction[verified.success]
    if mode == "targeted":
        assert (predicted == targets.numpy()[verified.success]).all()
    else:
        assert (predicted != labels.numpy()[verified.success]).all()
    # Both attacks set a changed channel to 0 or 1 (a corner of the colour cube).
    changed = adversarial != images
    assert ((adversarial[changed] == 0) | (adversarial[changed] == 1)).all()
    # Every query is a counted call of the model, within the budget, and none goes backward.
    assert len(labels) <= counting.forward_samples <= len(labels) * fast["n_queries"]
    assert counting.backward_samples == 0


def test_queries_never_exceed_the_budget(tiny_model, samples):
    images, labels, _ = samples
    for attack, budget, extra in ((sa_moo, 9, {"population": 4}), (sa_moo, 7, {}), (brusleattack, 12, {"k": 2}),
                                  (brusleattack, 11, {"k": 1, "init_candidates": 10})):
        counting = CountingModel(tiny_model)
        attack(counting, images[:8], labels[:8], n_queries=budget, **extra)
        assert 0 < counting.forward_samples <= 8 * budget, (attack.__name__, budget, counting.forward_samples)


@pytest.mark.parametrize("targeted", [False, True])
def test_score_based_only(targeted, tiny_model, samples):
    images, labels, targets = samples
    y = (targets if targeted else labels)[:6]
    # A model with trainable parameters: any gradient taken through it would be counted.
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    model.load_state_dict(tiny_model.state_dict())
    counting = CountingModel(OutputsOnly(model))
    with torch.enable_grad():
        for output in (sa_moo(counting, images[:6], y, targeted=targeted, n_queries=30),
                       brusleattack(counting, images[:6], y, targeted=targeted, k=5, n_queries=30),
                       brusleattack_min(counting, images[:3], y[:3], targeted=targeted, budgets=(2, 8), n_queries=15)):
            assert not output.requires_grad
    assert counting.forward_samples > 0 and counting.backward_samples == 0
    assert all(p.grad is None for p in model.parameters())


def test_nondominated_sorting_hand_built():
    # (loss, size): A, B, C trade off; B dominates D; D (and B, C) dominate E.
    loss = torch.tensor([1.0, 2.0, 3.0, 2.0, 4.0])
    size = torch.tensor([5.0, 3.0, 1.0, 4.0, 4.0])
    adversarial = torch.tensor([False, False, True, True, True])
    pareto = dominates(loss, size, adversarial, relation="pareto")
    assert pareto.tolist()[1] == [False, False, False, True, True]
    ranks = nondominated_ranks(pareto)
    assert ranks.tolist() == [0, 0, 0, 1, 2]
    crowding = crowding_distance(torch.stack([loss, size], -1), ranks)
    # Front 0 sorted by loss is A, B, C and by size C, B, A: B gets (3-1)/2 + (5-1)/4 = 2, its ends infinity.
    assert crowding.tolist() == [float("inf"), 2.0, float("inf"), float("inf"), float("inf")]
    assert select_survivors(ranks, crowding, 3).sort().values.tolist() == [0, 1, 2]
    assert select_survivors(ranks, crowding, 4).tolist()[-1] == 3

    # The paper's relation: adversarial first (C, D, E by size, D and E tied), then loss (A, B).
    ranks = nondominated_ranks(dominates(loss, size, adversarial, relation="sa-moo"))
    assert ranks.tolist() == [2, 3, 0, 1, 1]
    # Batched: one row per sample, fronts found independently.
    batched = nondominated_ranks(dominates(torch.stack([loss, -loss]), torch.stack([size, size]),
                                           torch.zeros(2, 5, dtype=torch.bool), relation="pareto"))
    assert batched.tolist() == [[0, 0, 0, 1, 2], [3, 1, 0, 2, 0]]


def test_crossover_and_mutation_keep_k_distinct_pixels():
    torch.manual_seed(0)
    k, n_pixels = 6, 20
    r_loc = torch.stack([torch.randperm(n_pixels)[:k] for _ in range(12)]).view(3, 4, k)
    e_loc = torch.stack([torch.randperm(n_pixels)[:k] for _ in range(12)]).view(3, 4, k)
    e_loc[0, 0] = r_loc[0, 0].flip(0)  # same set: nothing to take
    r_val, e_val = torch.zeros(3, 4, 2, k), torch.ones(3, 4, 2, k)
    loc, val = _crossover(r_loc, r_val, e_loc, e_val, count=2)
    for r, e, child, values in zip(r_loc.flatten(0, 1), e_loc.flatten(0, 1), loc.flatten(0, 1), val.flatten(0, 1)):
        r, e, child = set(r.tolist()), set(e.tolist()), child.tolist()
        assert len(set(child)) == k and set(child) <= r | e
        taken = set(child) - r
        assert len(taken) == min(2, len(e - r))
        assert len(r - set(child)) == len(taken)
        assert int(values.sum()) == 2 * len(taken)  # the taken pixels carry e's values (1) in both channels
    assert set(loc[0, 0].tolist()) == set(r_loc[0, 0].tolist())

    moved, values = _mutate(loc, val, 3, n_pixels, p_zero=0.3)
    for before, after in zip(loc.flatten(0, 1), moved.flatten(0, 1)):
        assert len(set(after.tolist())) == k
        assert len(set(after.tolist()) - set(before.tolist())) == 3
    assert set(values.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_posterior_update_hand_built():
    # Four pixels; the solution is {0, 1}; the candidate drops 1 and adds 2.
    failures = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    visits = torch.tensor([[3.0, 3.0, 0.0, 0.0], [3.0, 3.0, 0.0, 0.0]])
    removed = torch.tensor([[False, True, False, False]] * 2)
    candidate = torch.tensor([[True, False, True, False]] * 2)
    improved = torch.tensor([False, True])  # sample 0: no better, so pixel 1 mattered; sample 1: better
    failures, visits = update_counts(failures, visits, removed, candidate, improved)
    assert failures.tolist() == [[0, 2, 0, 0], [0, 1, 0, 0]]
    assert visits.tolist() == [[4, 4, 1, 0], [4, 4, 1, 0]]
    influence = pixel_influence(failures, visits, prior=1.0)
    assert torch.allclose(influence, torch.tensor([[1 / 5, 3 / 5, 1 / 2, 1.0], [1 / 5, 2 / 5, 1 / 2, 1.0]]))
    # The decay of the fraction replaced: lambda_0 at the start, decreasing with the queries.
    assert replace_fraction(0, 0.3, 0.24, 0.997) == pytest.approx(0.3 * (1 + 0.997) / 2)
    fractions = [replace_fraction(q, 0.3, 0.24, 0.997) for q in (10, 100, 1000, 10_000)]
    assert fractions == sorted(fractions, reverse=True)


def test_weighted_draws_follow_the_weights():
    torch.manual_seed(0)
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0, 6.0]).expand(20_000, -1)
    allowed = torch.tensor([True, True, True, True, False]).expand(20_000, -1)
    first = draw_pixels(allowed, 1, weights)[:, 0]
    assert set(first.unique().tolist()) == {1, 2}  # weight 0 and not-allowed never come first
    share = (first == 2).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.02)
    three = draw_pixels(allowed, 3, weights)  # the third pick must be a weight-0 pixel, never a forbidden one
    assert (three[:, :2].sort(1).values == torch.tensor([1, 2])).all()
    assert set(three[:, 2].unique().tolist()) == {0, 3}


@pytest.mark.parametrize("name", list(FAST))
def test_seeds_reproduce(name, tiny_model, samples):
    attack, fast = FAST[name]
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.append(run_verified(attack, tiny_model, samples, "targeted", n=6, **{**fast, "n_queries": 60})[0].adversarial)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize("mode", ["untargeted", "targeted"])
def test_brusleattack_min_is_sparser(mode, tiny_model, samples):
    budgets = (1, 5, 20, 50)
    torch.manual_seed(0)
    single, single_cost = run_verified(brusleattack, tiny_model, samples, mode, n=8, k=50, n_queries=100)
    torch.manual_seed(0)
    searched, search_cost = run_verified(brusleattack_min, tiny_model, samples, mode, n=8, budgets=budgets,
                                    n_queries=100)
    assert searched.valid.all()
    assert (searched.l0_pixels[~searched.success] == 0).all()  # a failure comes back as the clean input
    assert searched.success.mean() >= single.success.mean() - 0.1
    both = single.success & searched.success
    assert np.median(searched.l0_pixels[both]) < np.median(single.l0_pixels[both])
    assert search_cost.forward_samples > single_cost.forward_samples and search_cost.backward_samples == 0


def test_sa_moo_returns_the_sparsest_success(tiny_model, samples):
    """The output is the sparsest success among all evaluated: with more queries (the same
    draws first) a success stays a success and its changed pixels can only shrink."""
    runs = []
    for n_queries in (40, 200):
        torch.manual_seed(0)
        runs.append(run_verified(sa_moo, tiny_model, samples, "untargeted", n=8, n_queries=n_queries,
                         size_objective="l0")[0])
    short, long = runs
    assert short.success.any() and (long.success >= short.success).all()
    assert (long.l0_pixels[short.success] <= short.l0_pixels[short.success]).all()
    assert long.l0_pixels[short.success].sum() < short.l0_pixels[short.success].sum()


@pytest.mark.parametrize("attack,bad,match", [
    (sa_moo, {"k": 64}, r"k: 64 is not an integer in \[1, 63\]"),
    (sa_moo, {"population": 3}, "population: 3 is not an even integer"),
    (sa_moo, {"n_queries": 2}, "n_queries: 2"),
    (sa_moo, {"p_mutation": 0.0}, "p_mutation"),
    (sa_moo, {"dominance": "lexicographic"}, "dominance: 'lexicographic' is not one of sa-moo, pareto"),
    (sa_moo, {"size_objective": "l1"}, "size_objective"),
    (brusleattack, {"k": 65}, r"k: 65 is not an integer in \[1, 64\]"),
    (brusleattack, {"n_queries": 5}, "n_queries: 5"),
    (brusleattack, {"lambda_init": 1.5}, "lambda_init"),
    (brusleattack, {"prior": 0.0}, "prior"),
    (brusleattack_min, {"budgets": ()}, "budgets"),
])
def test_bad_values_are_refused(attack, bad, match):
    with pytest.raises(ValueError, match=match):
        attack(nn.Flatten(), torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), **bad)
