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
    _accumulated_fgsm,
    active_mask,
    box_scale,
    heaviside,
    lin2025,
    lin2025_code,
    signed_box_scale,
    sparse_example,
)
from attacks.lin2025_improved import lin2025_improved
from attacks.norms import l0_elements
from bench.data import get_batch
from bench.registry import FAMILIES, get_attack, get_entry
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


# --- helpers for the tests below ---------------------------------------------------------

class _Recorder(nn.Module):
    """Passes inputs to ``model`` and records each forward's input and whether it was built
    with a graph (the I-FGSM steps and the SGD steps on ``w``) or not (the evaluations)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []
        self.with_graph: list[bool] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.inputs.append(z.detach().clone())
        self.with_graph.append(torch.is_grad_enabled() and z.requires_grad)
        return self.model(z)

    def graph_inputs(self) -> list[torch.Tensor]:
        return [z for z, graph in zip(self.inputs, self.with_graph) if graph]

    def plain_inputs(self) -> list[torch.Tensor]:
        return [z for z, graph in zip(self.inputs, self.with_graph) if not graph]


def _linear(weight, bias) -> nn.Module:
    """Logits ``weight @ flatten(z) + bias`` in float64, frozen."""
    weight = torch.tensor(weight, dtype=torch.float64)
    linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return nn.Sequential(nn.Flatten(), linear).eval().requires_grad_(False)


def _q(s: torch.Tensor, a: float) -> torch.Tensor:
    """q_a(s) = exp(-(s/a)^2) / (|a| sqrt(pi)), written out (eq. 18)."""
    return torch.exp(-((s / a) ** 2)) / (abs(a) * math.sqrt(math.pi))


# --- one eq.-20 step against a gradient computed by hand -------------------------------

@pytest.mark.parametrize("targeted", [True, False])
def test_eq20_steps_match_a_hand_computed_gradient(targeted):
    # f(z) = A z + b on 4 elements, 3 classes. With every w_j above tau/eps, relu(w - tau/eps) = s
    # and d s / d w = 1, so the gradient of eq. 20 (times the CE's sign) is, elementwise,
    #   g_j = sign * delta_j * [A^T (softmax(f(z)) - e_y)]_j + lam * q_a(s_j),  z = x + s * delta,
    # and SGD with momentum m takes s1 = s0 - lr g0, s2 = s1 - lr (m g0 + g1).
    # The model sees z at every step, so s1 and s2 are read off its inputs.
    weight = [[1.0, -2.0, 0.5, 3.0], [-1.5, 1.0, 2.0, -0.5], [0.5, 0.5, -1.0, 1.0]]
    bias = [0.3, -0.2, 0.1]
    model = _linear(weight, bias)
    A = torch.tensor(weight, dtype=torch.float64)
    x = torch.tensor([[0.2, 0.6, 0.4, 0.7], [0.5, 0.3, 0.8, 0.45]], dtype=torch.float64).view(2, 1, 2, 2)
    labels = model(x).argmax(1)
    y = (labels + 1) % 3 if targeted else labels  # targeted: the target; untargeted: the true class
    sign = 1.0 if targeted else -1.0  # "true-class": its CE is maximised
    hp = dict(eps=0.1, alpha=0.05, ifgsm_steps=3, lr=0.05, momentum=0.9, lam=0.05, a=0.1, tau=0.3, w_init=0.1)
    recorder = _Recorder(model)
    lin2025(recorder, x, y, targeted=targeted, steps=3, untargeted_label="true-class", **hp)
    steps = recorder.graph_inputs()[hp["ifgsm_steps"]:]
    assert len(steps) == 3
    delta = (i_fgsm(model, x, y, targeted=targeted, eps=0.1, alpha=0.05, steps=3) - x).flatten(1)
    assert (delta.abs() > 1e-3).all()
    flat_x = x.flatten(1)

    def gradient(s):
        p = torch.softmax((flat_x + s * delta) @ A.T + torch.tensor(bias, dtype=torch.float64), 1)
        dce_dz = (p - nn.functional.one_hot(y, 3).double()) @ A
        return sign * delta * dce_dz + hp["lam"] * _q(s, hp["a"])

    s0 = torch.full_like(flat_x, hp["w_init"])
    g0 = gradient(s0)
    s1 = s0 - hp["lr"] * g0
    g1 = gradient(s1)
    s2 = s1 - hp["lr"] * (hp["momentum"] * g0 + g1)
    assert (s1 > 0).all() and (s2 > 0).all()  # every element stays active, so relu's slope is 1
    for seen, s in zip(steps, (s0, s1, s2)):
        torch.testing.assert_close(seen.flatten(1), flat_x + s * delta, rtol=0, atol=1e-12)
    # Not vacuous: both terms move s here, and a sign flip of either would be seen.
    assert (s1 - s0).abs().min() > 1e-4
    assert not torch.allclose(flat_x + (s0 - hp["lr"] * (g0 - 2 * hp["lam"] * _q(s0, hp["a"]))) * delta,
                              steps[1].flatten(1), rtol=0, atol=1e-9)


# --- the kept example is the sparsest successful iterate ------------------------------

@pytest.mark.parametrize("targeted", [False, True])
def test_kept_example_is_the_sparsest_successful_iterate(targeted, batch, tiny_model):
    images, labels = batch
    targets = tiny_model(images).argmin(1)
    recorder = _Recorder(tiny_model)
    steps = 60
    adversarial = lin2025(recorder, images, targets if targeted else labels, targeted=targeted, steps=steps)
    candidates = recorder.plain_inputs()
    if not targeted:
        candidates = candidates[1:]  # the first is the dense example, classified for y_adv
    assert len(candidates) == steps + 1  # before the first step and after every step
    stacked = torch.stack(candidates)  # (steps + 1, B, C, H, W)
    predictions = torch.stack([tiny_model(c).argmax(1) for c in candidates])
    success = predictions == targets if targeted else predictions != labels
    l0 = torch.stack([l0_elements(images, c) for c in candidates])
    kept_l0 = l0_elements(images, adversarial)
    distinct = 0
    for i in range(len(images)):
        if not success[:, i].any():
            assert torch.equal(adversarial[i], images[i])
            continue
        best = l0[success[:, i], i].min()
        assert kept_l0[i] == best
        first = int(torch.nonzero(success[:, i] & (l0[:, i] == best))[0])
        assert torch.equal(adversarial[i], stacked[first, i])
        distinct += int(l0[success[:, i], i].unique().numel() > 1)
    # Not vacuous: some samples have successful iterates of different L0 (so "first success" or
    # "last success" would keep another one than the sparsest).
    assert distinct >= 1


# --- untargeted success is "not the true class" ----------------------------------------

def test_untargeted_success_is_any_class_but_the_true_one():
    # One element at x = 0.5, three classes: logits (0, 4z - 2.1, 10z - 6). Clean (z = 0.5): class 0.
    # The dense I-FGSM example (z = 0.55) is class 1, so y_adv = 1; the eq.-22 example with the element
    # on moves it by min(x, 1-x) = 0.5 to z = 1: class 2, neither the true class nor y_adv. It is the
    # only non-empty mask, so an attack that counted only y_adv as success would return the input.
    model = _linear([[0.0], [4.0], [10.0]], [0.0, -2.1, -6.0])
    x = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    label = torch.tensor([0])
    hp = dict(eps=0.05, alpha=0.0125, ifgsm_steps=4)
    dense = i_fgsm(model, x, label, eps=0.05, alpha=0.0125, steps=4)
    assert model(x).argmax(1).item() == 0 and model(dense).argmax(1).item() == 1
    for untargeted_label in ("dense-prediction", "true-class"):
        adversarial = lin2025(model, x, label, steps=5, untargeted_label=untargeted_label, **hp)
        torch.testing.assert_close(adversarial, torch.ones_like(x), rtol=0, atol=1e-12)
        assert model(adversarial).argmax(1).item() == 2
        assert verify(model, x, adversarial, label).success.all()


# --- lin2025-code: its [-1, 1] clamp and its projection of W -----------------------------

class _Normalise(nn.Module):
    """x -> (x - 0.5) / 0.5: [0, 1] onto [-1, 1], the space the authors' code works in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.5


def test_lin2025_code_start_is_their_minus_one_one_clamp_mapped_to_inputs():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).double().eval().requires_grad_(False)
    model = nn.Sequential(_Normalise(), inner)
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    x[:, :, 0] = 0.0
    x[:, :, 3] = 1.0
    labels = model(x).argmax(1)
    eps, steps = 0.2, 5
    ours = _accumulated_fgsm(model, x, labels, targeted=False, eps=eps, steps=steps)

    # Their start written out in the normalised space: images in [-1, 1], a step of 2 eps
    # (eps in [0, 1] units), each iterate restarted from the clean image and clamped to [-1, 1].
    x_n = (x - 0.5) / 0.5
    accumulated = torch.zeros_like(x_n)
    current = x_n
    for _ in range(steps):
        current = current.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(inner(current), labels, reduction="sum"), current)
        accumulated = accumulated + grad
        current = (x_n + 2 * eps * accumulated.sign()).clamp(-1, 1)
    theirs = current.detach() * 0.5 + 0.5
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    # The clamp binds here: without it some values would leave [0, 1] (and [-1, 1] in their space).
    assert ((ours == 0) & (x > 0)).any() and ((ours == 1) & (x < 1)).any()


def test_lin2025_code_projection_keeps_w_within_omega(batch, tiny_model):
    # Every iterate after the randn start is x + W * delta with W = Omega * tanh(relu(.)), so
    # 0 <= W <= Omega = min(x, 1-x)/eps (Proposition 2): pixels at 0 or 1 never move in the
    # iterates. tau = 0 so that W is not all zero (tau/eps would exceed every randn value).
    images, labels = batch
    eps, ifgsm_steps = 6 / 255, 10
    recorder = _Recorder(tiny_model)
    lin2025_code(recorder, images, labels, eps=eps, ifgsm_steps=ifgsm_steps, steps=6, tau=0.0, seed=0)
    iterates = recorder.graph_inputs()[ifgsm_steps + 1:]  # after the start and the unprojected randn step
    delta = _accumulated_fgsm(tiny_model, images, labels, targeted=False, eps=eps, steps=ifgsm_steps) - images
    moved = delta.abs() > 1e-4
    omega = box_scale(images, eps)
    positive = 0
    for z in iterates:
        w = ((z - images) / torch.where(moved, delta, torch.ones_like(delta)))[moved]
        assert (w >= -1e-4).all() and (w <= omega[moved] + 1e-4).all()
        positive += int((w > 1e-3).sum())
    assert positive > 0  # not vacuous
    saturated = moved & ((images == 0) | (images == 1))
    assert saturated.any()
    for z in iterates:
        assert torch.equal(z[saturated], images[saturated])


# --- lin2025-improved: the adaptive lambda and an L0 bound --------------------------------

def test_lin2025_improved_lambda_grows_after_success_and_shrinks_after_failure():
    # A model that always predicts class 0 by a margin of 30 and whose logits barely depend on
    # the input (slope 1e-6): targeting class 0 always succeeds, class 1 never does, and the CE's
    # gradient on w is ~1e-6 of the L0 term's. With momentum 0 each step is then
    # s_{t+1} = s_t - lr * lam_t * q_a(s_t), which gives lam_t from the model's inputs.
    torch.manual_seed(0)
    weight = 1e-6 * torch.randn(3, 4, dtype=torch.float64)
    model = _linear(weight.tolist(), [30.0, 0.0, 0.0])
    x = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    targets = torch.tensor([0, 1])  # sample 0 always succeeds, sample 1 never
    hp = dict(ifgsm_steps=4, lr=1e-2, momentum=0.0, lam=2e-2, lam_factor=0.5, a=0.3)
    recorder = _Recorder(model)
    lin2025_improved(recorder, x, targets, targeted=True, steps=5, **hp)
    delta = (i_fgsm(model, x, targets, targeted=True, eps=1.0, alpha=0.25, steps=4).clamp(0, 1) - x).flatten(1)
    assert (delta.abs() > 0.1).all()
    s = torch.stack([((z.flatten(1) - x.flatten(1)) / delta).mean(1) for z in recorder.graph_inputs()[4:]])
    assert (s > 0).all()
    lam = (s[:-1] - s[1:]) / (hp["lr"] * _q(s[:-1], hp["a"]))  # (steps - 1, 2): the lam each step used
    torch.testing.assert_close(lam[0], torch.full((2,), hp["lam"], dtype=torch.float64), rtol=1e-3, atol=0)
    ratio = lam[1:] / lam[:-1]
    torch.testing.assert_close(ratio[:, 0], torch.full_like(ratio[:, 0], 1.5), rtol=1e-3, atol=0)  # success: up
    torch.testing.assert_close(ratio[:, 1], torch.full_like(ratio[:, 1], 1 / 1.5), rtol=1e-3, atol=0)  # failure: down


def test_lin2025_improved_finds_the_one_element_optimum():
    # Two classes on 16 elements at 0.5; class 1's logit is 10 (z_0 - 0.5) + 0.1 sum_{j>0} (z_j - 0.5) - 1.
    # Moving element 0 to 1 alone gives +4 (success); all 15 others together at most +0.75: the
    # smallest adversarial L0 is exactly 1. The output's L0 is bounded by it (and by the dense start's).
    row = [10.0] + [0.1] * 15
    model = _linear([[0.0] * 16, row], [0.0, -1.0 - 0.5 * sum(row)])
    x = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    label = torch.tensor([0])
    assert model(x).argmax(1).item() == 0
    adversarial = lin2025_improved(model, x, label, steps=100)
    verified = verify(model, x, adversarial, label)
    assert verified.success.all()
    assert (verified.l0_elements == 1).all()
    assert adversarial[0, 0, 0, 0] > 0.5  # the element that matters


# --- lin2025-signed-omega ---------------------------------------------------------------

def test_signed_omega_on_a_hand_case():
    eps = 0.1
    x = torch.tensor([0.0, 0.2, 0.2, 0.9, 1.0]).view(1, 1, 1, 5)
    delta = eps * torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0]).view(1, 1, 1, 5)
    on = torch.ones_like(x, dtype=torch.bool)
    paper = sparse_example(x, delta, on, box_scale(x, eps))
    signed = sparse_example(x, delta, on, signed_box_scale(x, delta, eps))
    # Paper: every move capped by min(x, 1-x). Signed: an increase by 1-x, a decrease by x.
    torch.testing.assert_close(paper.flatten(), torch.tensor([0.0, 0.4, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(signed.flatten(), torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]))
    assert not torch.equal(paper, signed)


def test_signed_omega_keeps_the_box_in_float32():
    generator = torch.Generator().manual_seed(0)
    eps = 4 / 255
    x = torch.rand(8, 1, 28, 28, generator=generator)
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    delta = eps * torch.randint(-1, 2, x.shape, generator=generator).float()
    delta = torch.nextafter(delta, 2 * delta)  # one ulp beyond +-eps, as x_dense - x can be
    unclamped = x + signed_box_scale(x, delta, eps) * delta
    # Exact arithmetic puts it in [0, 1]; float32 within a few ulps.
    assert (unclamped >= -1e-6).all() and (unclamped <= 1 + 1e-6).all()
    example = sparse_example(x, delta, torch.ones_like(x, dtype=torch.bool), signed_box_scale(x, delta, eps))
    assert ((example >= 0) & (example <= 1)).all()
    # Can fail: the bounds the wrong way round (x/eps for an increase) leave the box.
    swapped = x + torch.where(delta > 0, x, 1 - x) / eps * delta
    assert ((swapped < -1e-3) | (swapped > 1 + 1e-3)).any()


@pytest.mark.parametrize("targeted", [False, True])
def test_lin2025_signed_omega_registered_and_in_the_box(targeted, batch, tiny_model):
    entry = get_entry("lin2025-signed-omega")
    assert entry.load() is lin2025
    for family in FAMILIES:  # bound for every dataset family, the rest as lin2025's
        values = entry.hyperparameters(family)
        assert values["omega"] == "signed"
        assert {k: v for k, v in values.items() if k != "omega"} == {
            k: v for k, v in get_entry("lin2025").hyperparameters(family).items() if k != "omega"}
    images, labels = _saturated(batch[0]), batch[1]
    targets = tiny_model(images).argmin(1)
    attack = get_attack("lin2025-signed-omega", dataset="fashion-mnist", steps=30)
    adversarial = attack(tiny_model, images, targets if targeted else labels, targeted=targeted)
    assert ((adversarial >= 0) & (adversarial <= 1)).all()
    paper = lin2025(tiny_model, images, targets if targeted else labels, targeted=targeted, steps=30)
    # The paper's Omega never moves a pixel at 0 or 1; the signed one can (it moves them in the
    # direction that stays inside [0, 1]).
    saturated = (images == 0) | (images == 1)
    assert torch.equal(paper[saturated], images[saturated])
    moved = saturated & (adversarial != images)
    assert moved.any()
    assert ((adversarial[moved & (images == 0)] > 0).all() and (adversarial[moved & (images == 1)] < 1).all())
