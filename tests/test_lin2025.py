"""Properties of Lin et al.'s sparse attack (arXiv:2506.17250), attacks/lin2025.py.

Each test states the property and either checks a deliberately broken variant
inline (so the check is seen to fail when the property does) or says in a
comment which bug would make it fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks.ifgsm import i_fgsm
from attacks.lin2025 import (
    active_mask,
    box_scale,
    heaviside,
    lin2025,
    lin2025_code,
    sparse_example,
)
from attacks.norms import l0_elements
from bench.data import get_batch
from bench.verify import verify

EPS = 4 / 255
TAU = 0.30


@pytest.fixture(scope="module")
def batch(tiny_model, fashion_test):
    """Eight correctly classified Fashion-MNIST test images and their labels."""
    images, labels = get_batch(fashion_test, list(range(40)))
    correct = tiny_model(images).argmax(1) == labels
    return images[correct][:8], labels[correct][:8]


def _tiny_conv() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 10),
    )
    return model.eval().requires_grad_(False)


def _saturated(images: torch.Tensor) -> torch.Tensor:
    """The images with a block of pixels at exactly 1 (they already have many at exactly 0)."""
    images = images.clone()
    images[..., 10:18, 10:18] = 1.0
    assert (images == 0).float().mean() > 0.2 and (images == 1).float().mean() > 0.05
    return images


# --- the surrogate derivative (eqs. 12, 18) -------------------------------------------

@pytest.mark.parametrize("a", [0.1, 0.5, -0.2])
def test_surrogate_gradient_is_q_a(a):
    x = torch.linspace(-1, 1, 201, dtype=torch.float64, requires_grad=True)
    value = heaviside(x, a)
    (grad,) = torch.autograd.grad(value.sum(), x)
    expected = torch.exp(-(x.detach() / a) ** 2) / (abs(a) * math.sqrt(math.pi))
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)
    # The forward is the step H(x) = 1 for x > 0, else 0 (eq. 9), H(0) = 0.
    assert torch.equal(value, (x > 0).double())
    # q_a is a density (integrates to 1), which a wrong constant (a instead of |a|,
    # a missing sqrt(pi)) would break even if the formula above were copied wrongly.
    wide = torch.linspace(-10 * abs(a), 10 * abs(a), 20001, dtype=torch.float64, requires_grad=True)
    (density,) = torch.autograd.grad(heaviside(wide, a).sum(), wide)
    assert torch.trapezoid(density, wide.detach()).item() == pytest.approx(1.0, abs=1e-6)


# --- Proposition 1 --------------------------------------------------------------------

def _prop1_counts(w, delta, tau, eps):
    shifted = (torch.relu(w - tau / eps) * delta != 0).flatten(1).sum(1)
    relu = (torch.relu(w) * delta != 0).flatten(1).sum(1)
    plain = (w * delta != 0).flatten(1).sum(1)
    return shifted, relu, plain


def test_proposition1_sparsity_order():
    generator = torch.Generator().manual_seed(0)
    shift = TAU / EPS
    w = shift + 3 * shift * torch.randn(16, 1, 28, 28, generator=generator)
    w[:, :, :5] = 0.0  # exact zeros, the d3 case of the proof
    delta = EPS * torch.randint(-1, 2, w.shape, generator=generator).float()  # some delta = 0
    shifted, relu, plain = _prop1_counts(w, delta, TAU, EPS)
    assert (shifted <= relu).all() and (relu <= plain).all()
    assert (shifted < relu).any() and (relu < plain).any()  # the inequalities are not vacuous here
    # The attack's own mask agrees with the first count.
    assert torch.equal((active_mask(w, eps=EPS, tau=TAU) & (delta != 0)).flatten(1).sum(1), shifted)
    # Can fail: with a negative tau (a shift the wrong way) the first inequality breaks.
    broken, relu, _ = _prop1_counts(w, delta, -TAU, EPS)
    assert not (broken <= relu).all()


# --- Proposition 2 in float32 ----------------------------------------------------------

def test_proposition2_box_of_eq22_in_float32(batch, tiny_model):
    images = _saturated(batch[0])
    generator = torch.Generator().manual_seed(0)
    extremes = torch.rand(8, 1, 28, 28, generator=generator)  # arbitrary float32 values, not k/255
    inputs = torch.cat([images, extremes])
    delta = EPS * torch.randint(-1, 2, inputs.shape, generator=generator).float()
    delta = torch.nextafter(delta, 2 * delta)  # one ulp beyond +-eps, as x_dense - x can be
    mask = torch.ones_like(inputs, dtype=torch.bool)
    omega = box_scale(inputs, EPS)
    example = sparse_example(inputs, delta, mask, omega)
    assert example.dtype == torch.float32
    assert ((example >= 0) & (example <= 1)).all()
    # Pixels at exactly 0 or 1 never move (Omega = 0 there).
    assert torch.equal(example[(inputs == 0) | (inputs == 1)], inputs[(inputs == 0) | (inputs == 1)])
    # Can fail: without the clamp, float32 rounding leaves the box here.
    unclamped = inputs + omega * delta
    assert ((unclamped < 0) | (unclamped > 1)).any()


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("attack", [lin2025, lin2025_code])
def test_proposition2_box_of_the_attacks(attack, targeted, batch, tiny_model):
    images, labels = _saturated(batch[0]), batch[1]
    adversarial = attack(tiny_model, images, (labels + 3) % 10 if targeted else labels, targeted=targeted, steps=30)
    assert adversarial.dtype == images.dtype and adversarial.shape == images.shape
    assert ((adversarial >= 0) & (adversarial <= 1)).all()
    saturated = (images == 0) | (images == 1)
    if attack is lin2025:  # lin2025_code's fallback is the dense start, which may move them
        assert torch.equal(adversarial[saturated], images[saturated])


# --- L0 of the output = the mask's count ----------------------------------------------

def test_output_l0_equals_mask_count(batch, tiny_model):
    images, labels = batch
    delta = i_fgsm(tiny_model, images, labels, eps=EPS, alpha=1 / 255, steps=10) - images
    omega = box_scale(images, EPS)
    generator = torch.Generator().manual_seed(0)
    w = TAU / EPS + torch.randn(images.shape, generator=generator)
    mask = active_mask(w, eps=EPS, tau=TAU)
    example = sparse_example(images, delta, mask, omega)
    expected = (mask & (omega * delta != 0)).flatten(1).sum(1)
    assert torch.equal(l0_elements(images, example), expected)
    assert (expected > 0).all() and (expected < mask.flatten(1).sum(1)).all()  # both terms matter here
    # Can fail: counting the mask alone (ignoring Omega * delta = 0) overcounts.
    assert not torch.equal(l0_elements(images, example), mask.flatten(1).sum(1))


# --- success as the harness sees it --------------------------------------------------

@pytest.mark.parametrize("targeted", [False, True])
def test_changed_outputs_are_verified_successes(targeted, batch, tiny_model):
    images, labels = batch
    targets = tiny_model(images).argmin(1) if targeted else None  # least likely, as the paper
    adversarial = lin2025(tiny_model, images, targets if targeted else labels, targeted=targeted, steps=60)
    verified = verify(tiny_model, images, adversarial, labels, targets=targets)
    assert verified.valid.all()
    changed = verified.l0_elements > 0
    # Every example the attack changed is a success (targeted: the target is predicted);
    # the rest are the clean inputs (on_failure="input"). An attack that kept
    # "misclassified" iterates in targeted mode (the authors' code's check) fails this.
    assert (verified.success == changed).all()
    if targeted:
        assert (verified.adversarial_prediction[changed] == targets.numpy()[changed]).all()
    assert verified.success.sum() >= (4 if not targeted else 1)
    # The attack is sparse where it succeeds: well below the 784 elements.
    assert (verified.l0_elements[verified.success] < 400).all()


def test_on_failure_dense_returns_the_start_for_failures(batch, tiny_model):
    images, labels = batch
    targets = tiny_model(images).argmin(1)
    sparse = lin2025(tiny_model, images, targets, targeted=True, steps=10)
    dense = lin2025(tiny_model, images, targets, targeted=True, steps=10, on_failure="dense")
    failed = (sparse == images).flatten(1).all(1)
    assert failed.any()
    start = i_fgsm(tiny_model, images, targets, targeted=True, eps=EPS, alpha=1 / 255, steps=10)
    torch.testing.assert_close(dense[failed], start[failed], rtol=0, atol=0)
    torch.testing.assert_close(dense[~failed], sparse[~failed], rtol=0, atol=0)


# --- batch independence and determinism -----------------------------------------------

@pytest.mark.parametrize("model_name", ["linear", "conv"])
@pytest.mark.parametrize("forward", ["eq20", "eq22"])
def test_sample_does_not_depend_on_its_batch(model_name, forward, batch, tiny_model):
    # Per-sample losses are summed and SGD with momentum is elementwise, so each sample's
    # w follows its own trajectory. A batch-mean CE (as the authors' code uses) would
    # scale each sample's step by 1/B and fail this; so would batch-wide statistics.
    model = tiny_model if model_name == "linear" else _tiny_conv()
    images, labels = batch[0][:4], batch[1][:4]
    steps = 40 if model_name == "linear" else 15
    together = lin2025(model, images, labels, forward=forward, steps=steps)
    alone = torch.cat([lin2025(model, images[i:i + 1], labels[i:i + 1], forward=forward, steps=steps) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)
    assert torch.equal(l0_elements(images, together), l0_elements(images, alone))


def test_same_seed_same_result(batch, tiny_model):
    images, labels = batch
    first = lin2025(tiny_model, images, labels, steps=40)
    assert torch.equal(first, lin2025(tiny_model, images, labels, steps=40))  # no randomness at all
    torch.manual_seed(3)
    code_first = lin2025_code(tiny_model, images, labels, steps=20)
    torch.manual_seed(3)
    assert torch.equal(code_first, lin2025_code(tiny_model, images, labels, steps=20))
    seeded = lin2025_code(tiny_model, images, labels, steps=20, seed=5)
    torch.manual_seed(123)  # the explicit seed ignores the global generator
    assert torch.equal(seeded, lin2025_code(tiny_model, images, labels, steps=20, seed=5))


# --- no host synchronisation in the loop ----------------------------------------------

def test_no_host_sync_in_the_loop(batch, tiny_model, monkeypatch):
    images, labels = batch

    def refuse(*args, **kwargs):
        raise AssertionError("host synchronisation inside the attack")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    lin2025(tiny_model, images, labels, steps=5)
    lin2025(tiny_model, images, labels, targeted=True, steps=5, forward="eq22")
    lin2025_code(tiny_model, images, labels, steps=5)
    # Can fail: early stopping syncs, once every `patience` steps.
    with pytest.raises(AssertionError, match="host synchronisation"):
        lin2025(tiny_model, images, labels, steps=5, patience=2)


# --- bad values ------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("forward", "eq21"), ("untargeted_label", "other"), ("on_failure", "x")])
def test_bad_choice_names_the_field(field, value, batch, tiny_model):
    images, labels = batch
    with pytest.raises(ValueError, match=f"{field}: {value!r} is not one of"):
        lin2025(tiny_model, images, labels, **{field: value})


def test_patience_stops_early_without_changing_the_best(batch, tiny_model):
    images, labels = batch
    full = lin2025(tiny_model, images, labels, steps=120)
    stopped = lin2025(tiny_model, images, labels, steps=120, patience=30)
    # Stopping drops only steps after a window of 30 without any improvement, and
    # improvements here end by step 60, so the result is the same.
    assert torch.equal(stopped, full)
    # Can fail: a patience shorter than the gaps between improvements stops too early.
    early = lin2025(tiny_model, images, labels, steps=120, patience=1)
    assert (l0_elements(images, early) > l0_elements(images, full)).any()
