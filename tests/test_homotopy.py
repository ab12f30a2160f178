"""Properties of the Homotopy Attack (Zhu, Chen & Wang, arXiv:2106.06027), baselines/homotopy.py.

Each test states the property; where a broken variant is easy to run, the test
runs it too, so the check is seen to be able to fail.
"""

from __future__ import annotations

import copy

import pytest
import torch

import baselines.homotopy as homotopy_module
from attacks.losses import logit_margin
from attacks.norms import l0_elements
from baselines.homotopy import _Objective, _post_attack, homotopy, initial_lambda, prox_l0_box
from bench.verify import verify

# Small budgets for the tiny linear model: no L-inf bound beyond the box, few elements per
# outer iteration, lambda_0 at the threshold itself (lambda_scale 1), short post-attacks.
# Twice the registry entry's smoke max_outer and post_steps: the thresholds below were measured with these.
FAST = {"eps": 1.0, "max_update": 5, "lambda_scale": 1.0, "max_outer": 40, "post_steps": 20, "inner_steps": 20,
        "linf_step": 0.05}


@pytest.fixture(scope="module")
def batch(samples):
    """Eight correctly classified Fashion-MNIST test images, their labels and targets (conftest's samples)."""
    return tuple(tensor[:8] for tensor in samples)


class _Spy:
    """Records the arguments and results of every nmAPG call (the outer iterations) and runs the real one."""

    def __init__(self, monkeypatch):
        self.calls = []
        self._nmapg = homotopy_module._nmapg
        monkeypatch.setattr(homotopy_module, "_nmapg", self)

    def __call__(self, objective, rows, start, lam, budget, *args, **kwargs):
        found, success = self._nmapg(objective, rows, start, lam, budget, *args, **kwargs)
        self.calls.append({"rows": rows.clone(), "start": start.clone(), "lam": lam.clone(), "budget": budget.clone(),
                           "found": found.clone()})
        return found, success


# --- the proximal operator and lambda_0 ------------------------------------------------

def test_prox_is_hard_thresholding_of_the_clipped_value():
    # step 0.5 and lam 0.1: an element keeps clip(v) when v^2 - (v - clip(v))^2 > 2 * 0.5 * 0.1 = 0.1.
    values = torch.tensor([[0.5, 0.2, -0.4, 0.35, -0.32, 0.4]])
    lower = torch.tensor([[-0.2, -0.2, -0.2, -0.05, 0.0, -0.4]])
    upper = torch.tensor([[0.3, 0.3, 0.3, 0.05, 0.5, 0.4]])
    result = prox_l0_box(values, torch.tensor([0.5]), torch.tensor([0.1]), lower, upper)
    # 0.5 -> 0.3 (gain 0.21); 0.2 -> 0 (gain 0.04); -0.4 -> -0.2 (gain 0.12);
    # 0.35 -> 0 (clipped to 0.05 it saves only 0.0325, although 0.35^2 > 0.1: plain hard
    # thresholding would keep it); -0.32 -> 0 (a pixel at 0 cannot go down); 0.4 -> 0.4 (gain 0.16).
    assert torch.equal(result, torch.tensor([[0.3, 0.0, -0.2, 0.0, 0.0, 0.4]]))
    # A tie (v^2 = 2 * step * lam exactly, in floats) goes to 0, the sparser minimiser.
    tie = prox_l0_box(torch.tensor([[0.5]]), torch.tensor([0.5]), torch.tensor([0.25]),
                      torch.tensor([[-1.0]]), torch.tensor([[1.0]]))
    assert torch.equal(tie, torch.zeros(1, 1))


def test_prox_minimises_its_objective_against_a_grid():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(4, 200, generator=generator) * 0.3
    inputs = torch.rand(4, 200, generator=generator)
    eps = 0.1
    lower, upper = (-inputs).clamp(min=-eps), (1 - inputs).clamp(max=eps)
    step, lam = torch.tensor([0.5, 0.1, 1.0, 2.0]), torch.tensor([0.01, 0.1, 0.003, 0.0])
    result = prox_l0_box(values, step, lam, lower, upper)
    assert ((result >= lower) & (result <= upper)).all()

    def cost(z):
        return (z - values).square() / (2 * step[:, None]) + lam[:, None] * (z != 0)

    fractions = torch.linspace(0, 1, 1001)
    grid = lower[..., None] + (upper - lower)[..., None] * fractions  # every feasible z on a fine grid ...
    grid = torch.cat([grid, torch.zeros_like(grid[..., :1])], -1)  # ... and 0 exactly
    best = ((grid - values[..., None]).square() / (2 * step[:, None, None]) + lam[:, None, None] * (grid != 0)).amin(-1)
    assert (cost(result) <= best + 1e-6).all()
    # Can fail: thresholding the unclipped value (ignoring the box) is not the minimiser.
    plain = torch.where(values.square() > 2 * step[:, None] * lam[:, None],
                        torch.minimum(torch.maximum(values, lower), upper), torch.zeros_like(values))
    assert (cost(plain) > best + 1e-6).any()


def test_initial_lambda_is_where_the_first_step_stops_being_zero():
    generator = torch.Generator().manual_seed(1)
    grad = torch.randn(3, 50, generator=generator)
    inputs = torch.rand(3, 50, generator=generator)
    lower, upper = (-inputs).clamp(min=-0.05), (1 - inputs).clamp(max=0.05)
    step = torch.full((3,), 1e-3)
    threshold = initial_lambda(grad, lower, upper)
    assert (prox_l0_box(-1e-3 * grad, step, threshold * (1 + 1e-4), lower, upper) == 0).all()
    assert ((prox_l0_box(-1e-3 * grad, step, threshold * (1 - 1e-4), lower, upper) != 0).sum(1) >= 1).all()


# --- the homotopy path -----------------------------------------------------------------

def test_lambda_starts_at_its_scaled_threshold_and_decays_along_each_path(batch, tiny_model, monkeypatch):
    images, labels, _ = batch
    images, labels = images[:4], labels[:4]
    spy = _Spy(monkeypatch)
    homotopy(tiny_model, images, labels, max_outer=8)  # defaults: lambda_0 = 3 lambda*, decay 0.98

    clean = images.clone().requires_grad_(True)
    loss = (-logit_margin(tiny_model(clean), labels, targeted=False)).clamp_min(0).sum()  # C&W, kappa 0
    (grad,) = torch.autograd.grad(loss, clean)
    flat = images.flatten(1)
    expected = 3.0 * initial_lambda(grad.flatten(1), (-flat).clamp(min=-0.05), (1 - flat).clamp(max=0.05))
    torch.testing.assert_close(spy.calls[0]["lam"], expected[spy.calls[0]["rows"]])

    for sample in range(4):
        path = torch.stack([call["lam"][call["rows"] == sample][0]
                            for call in spy.calls if (call["rows"] == sample).any()])
        assert len(path) >= 2
        assert (path[1:] < path[:-1]).all()  # the homotopy: lambda only decreases
        torch.testing.assert_close(path[1:] / path[:-1], torch.full_like(path[1:], 0.98))


def test_an_outer_iteration_adds_at_most_max_update_elements(batch, tiny_model, monkeypatch):
    images, labels, _ = batch
    settings = {"lambda_scale": 0.5, "max_outer": 3, "post_steps": 0, "reduce_linf": False}

    def growth(max_update):
        spy = _Spy(monkeypatch)
        homotopy(tiny_model, images, labels, max_update=max_update, **settings)
        return torch.cat([(c["found"] != 0).sum(1) - (c["start"] != 0).sum(1) for c in spy.calls])

    assert growth(5).max() <= 5
    assert growth(784).max() > 5  # can fail: without the L0 change control more elements come in at once


def test_post_attack_changes_only_the_support_within_the_bounds(batch, tiny_model):
    images, labels, _ = batch
    flat = images.flatten(1)
    eps = 0.1
    lower, upper = (-flat).clamp(min=-eps), (1 - flat).clamp(max=eps)
    generator = torch.Generator().manual_seed(2)
    start = torch.where(torch.rand(flat.shape, generator=generator) < 0.05,
                        torch.minimum(torch.maximum(0.02 * torch.randn(flat.shape, generator=generator), lower), upper),
                        torch.zeros_like(flat))
    objective = _Objective(tiny_model, flat, labels, images.shape[1:], targeted=False, targeted_loss="ce")
    rows = torch.arange(len(flat))
    found, _ = _post_attack(objective, rows, start, lower, upper, torch.full((len(flat),), 50),
                            loss_weight=1e-2, linf_weight=1e-4)
    assert not ((found != 0) & (start == 0)).any()  # no element enters
    assert ((found >= lower) & (found <= upper)).all()
    assert (found != start).any()  # and it does move the support's values


# --- the returned examples ---------------------------------------------------------------

@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_successes_are_verified_by_the_harness(targeted, batch, tiny_model):
    images, labels, targets = batch
    adversarial = homotopy(tiny_model, images, targets if targeted else labels, targeted=targeted, **FAST)
    verified = verify(tiny_model, images, adversarial, labels, targets=targets if targeted else None)
    assert verified.valid.all(), verified.violation
    # Measured 8/8 untargeted and 7/8 targeted here.
    assert verified.success.mean() >= 0.75
    changed = verified.l0_elements > 0
    assert (verified.success == changed).all()  # a failure comes back as the clean input


def test_the_result_respects_the_linf_bound(batch, tiny_model):
    images, labels, _ = batch
    bounded = homotopy(tiny_model, images, labels, **{**FAST, "eps": 0.2, "max_update": 20})
    verified = verify(tiny_model, images, bounded, labels)
    assert verified.success.sum() >= 4
    assert (verified.linf <= 0.2 + 1e-6).all()  # x + delta is rounded once in float32
    # Can fail: with the box only (eps 1) some perturbation goes past 0.2.
    unbounded = verify(tiny_model, images, homotopy(tiny_model, images, labels, **FAST), labels)
    assert (unbounded.linf > 0.2 + 1e-6).any()


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_a_sample_does_not_depend_on_its_batch(targeted, batch, tiny_model):
    # Each sample has its own lambda, step sizes, nmAPG state and stopping; finished samples leave
    # the batch. A batch-wide step size or a shared stopping rule would fail this. In float64: in
    # float32 the model's own logits differ by ~4e-6 between a batch of 4 and of 1 (another
    # matrix-product kernel), and the attack's discrete choices (line-search acceptance,
    # thresholds) can turn that into a different trajectory.
    model = copy.deepcopy(tiny_model).double()
    images, labels, targets = batch
    images, labels = images[:4].double(), (targets if targeted else labels)[:4]
    together = homotopy(model, images, labels, targeted=targeted, **FAST)
    alone = torch.cat([homotopy(model, images[i:i + 1], labels[i:i + 1], targeted=targeted, **FAST)
                       for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)
    assert torch.equal(l0_elements(images, together), l0_elements(images, alone))


def test_seeds_reproduce(batch, tiny_model):
    images, labels, targets = batch
    torch.manual_seed(0)
    first = homotopy(tiny_model, images, targets, targeted=True, **FAST)
    torch.manual_seed(123)  # no randomness: another global seed gives the same result
    assert torch.equal(first, homotopy(tiny_model, images, targets, targeted=True, **FAST))


@pytest.mark.parametrize("field,value,allowed", [
    ("eps", 0.0, "a number in (0"), ("lambda_decay", 1.0, "a number in (0"), ("max_update", 0, "an integer >= 1"),
    ("rho", 1.5, "a number in (0"), ("targeted_loss", "hinge", "one of ce, cw"), ("inner_steps", 2.5, "an integer"),
])
def test_bad_values_name_the_field(field, value, allowed, batch, tiny_model):
    images, labels, _ = batch
    with pytest.raises(ValueError, match=rf"{field}: {value!r} is not {allowed}".replace("(", r"\(")):
        homotopy(tiny_model, images, labels, **{field: value})

