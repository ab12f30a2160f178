"""Every minimum-norm L0 attack against a model whose smallest L0 perturbation is known exactly.

The model is a linear classifier ``nn.Sequential(Flatten, Linear(16, 10))`` on
1x4x4 images in [0, 1] (one channel: elements are pixels), with seeded
weights. For the true class ``y`` and another class ``j`` the pairwise margin
``m_j(x) = (w_j - w_y) . x + (b_j - b_y)`` is negative on a correctly
classified image. Changing element ``i`` (anywhere in [0, 1]) raises it by at
most ``c_i = max(d_i (1 - x_i), -d_i x_i)`` with ``d = w_j - w_y``, so with
``k`` changed elements the best margin reachable is ``m_j`` plus the sum of
the ``k`` largest ``c_i``; the fewest elements that make ``m_j > 0`` is the
smallest ``k`` at which that sum exceeds ``-m_j``.

* Untargeted: the exact minimum is the smallest of these over ``j != y``
  (the image is misclassified exactly when some ``m_j`` turns positive).
* Targeted (target ``t``): the target must beat every class, not only ``y``;
  the pairwise count for ``t`` against ``y`` is a lower bound, and it is the
  exact minimum wherever the pairwise-optimal perturbation (the chosen
  elements pushed to their best corner) already puts ``t`` above all the
  other classes. Only such (image, target) pairs are used.

Samples are kept only when the optimum is robust to float32 rounding: with
one element fewer every margin stays below ``-GAP``, and at the optimum the
certificate clears ``GAP``. Every case goes through the harness path of
``tests/test_attacks_registry.py`` (``bind`` with the entry's smoke settings
or the stronger ones below, ``call_attack`` on a guarded counting copy, and
:func:`bench.verify.verify`), so the L0 is the harness's, not the attack's
claim. On every verified success the L0 must be at least the exact optimum
(below it would prove the optimum or the verification wrong) and at most
``multiplier * optimum + slack`` of :data:`FACTORS`; and it must fool at least
:data:`MIN_FOOLED` of the samples.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from bench.counting import CountingModel
from bench.guard import Guard, call_attack
from bench.registry import all_attacks, bind
from bench.verify import verify

SHAPE = (1, 4, 4)
CLASSES = 10
#: The exact optima of the samples, per mode (the problem's samples are picked to have these).
OPTIMA = {"untargeted": (1, 2, 2, 3, 3, 3), "targeted": (1, 2, 3, 4, 5, 5)}
GAP = 1e-2
"""Logit units: far above float32 rounding of logits of order 1."""

MINIMUM_NORM = {name: entry for name, entry in all_attacks().items()
                if entry.kind == "minimum-norm" and entry.norm == "l0"}
CASES = [(name, str(mode)) for name, entry in MINIMUM_NORM.items() for mode in entry.modes]

#: Settings over the entry's smoke ones where those do not fit a 16-element image or are too weak
#: to be bounded on it; every other attack runs with its smoke settings.
ALL_BUDGETS = tuple(range(1, int(np.prod(SHAPE)) + 1))
STRONGER: dict[str, dict[str, object]] = {
    "torchattacks/jsma": {"gamma": 1.0},  # smoke's 10% of the values is 1 element here
    "torchattacks/pixle": {"x_dimensions": (1, 2), "y_dimensions": (1, 2), "restarts": 20, "max_iterations": 10},
    # The search grid every k (the smoke grid 1, 2, 5, ... rounds an optimum of 3 up to 5).
    "sparse-rs-min": {"budgets": ALL_BUDGETS},
    "pgd-l0-min": {"budgets": ALL_BUDGETS},
    "sparse-pgd-min": {"budgets": ALL_BUDGETS},
    "brusleattack-min": {"budgets": ALL_BUDGETS},  # the smoke grid's 20 exceeds 16 elements
    "homotopy": {"max_update": 1, "post_max_update": 1},  # smoke adds 5 of the 16 elements at a time
    "sa-moo": {"k": 8},  # smoke's 24 exceeds 16 elements
}

#: ``(multiplier, slack)``: each verified L0 at most ``multiplier * optimum + slack``.
DEFAULT_FACTOR = (2.0, 1)
FACTORS: dict[str, tuple[float, int]] = {
    # SparseFool (lambda 3) linearises once per outer step and overshoots: 12 and 11 elements for
    # optima 3, 7 for 2 (both implementations agree sample by sample).
    "sparsefool": (4.0, 1),
    "torchattacks/sparsefool": (4.0, 1),
    # Untargeted, torchattacks' JSMA aims at the one class (label + 1) mod 10 and only raises values
    # (theta +1), a narrower problem than the untargeted optimum's: 6 for an optimum of 2.
    "torchattacks/jsma": (3.0, 1),
    # Black-box random searches on few queries: Pixle only copies the image's own values (9 for 3),
    # BruSLeAttack's search is stochastic (9 for 3, targeted).
    "torchattacks/pixle": (3.0, 1),
    "brusleattack-min": (3.0, 1),
}

#: ``(untargeted, targeted)``: the fewest of the six samples an attack must fool (default all six; a
#: bound on the successes alone would pass an attack that gives up on the harder samples, as
#: sigma-zero did before it let the gradient reach elements on the box's faces: 3 and 2 of 6).
#: Measured, with one sample of margin for the random searches:
MIN_FOOLED: dict[str, tuple[int, int]] = {
    "torchattacks/jsma": (3, 2),  # measured 3 and 2: it only raises values, one class untargeted
    "torchattacks/pixle": (5, 4),  # measured 6 and 5
    "brusleattack-min": (5, 4),  # measured 6 and 5
    "homotopy": (4, 4),  # measured 4 and 4 (deterministic)
}

#: Attacks whose results are far from the optimum on this model: the factor test is an expected
#: failure (strict, so that a fix shows), reported to the lead; the lower bound still holds for them.
FAR_FROM_OPTIMUM: dict[str, str] = {
    "lin2025": "Linf-capped (eps 4/255): 11 for an optimum of 1; with eps 1 it fools none",
    "lin2025-signed-omega": "Linf-capped (eps 4/255): 13-16 of 16 elements for optima 1-3",
    "lin2025-code": "never succeeds here at its smoke settings (nor on the tiny Fashion-MNIST model)",
    "lin2025-improved": "8-16 elements for optima 1-3 (10 for 3 even at 100 steps)",
    "art/cw-l0": "ART's CW-L0 changes all 16 elements (also with 10 iterations x 10 binary-search steps)",
}


def _reach(weight: np.ndarray, bias: np.ndarray, image: np.ndarray, own: int, other: int) -> np.ndarray:
    """``reach[k]``: the largest ``m_other - m_own`` margin with ``k`` changed elements (k = 0..d)."""
    direction = weight[other] - weight[own]
    margin = direction @ image + bias[other] - bias[own]
    gains = np.sort(np.maximum(direction * (1 - image), -direction * image))[::-1]
    return margin + np.concatenate([[0.0], np.cumsum(gains)])


def _first_positive(reach: np.ndarray) -> int | None:
    above = np.nonzero(reach > GAP)[0]
    return int(above[0]) if above.size else None


def untargeted_optimum(weight: np.ndarray, bias: np.ndarray, image: np.ndarray, label: int) -> int | None:
    """The exact minimal L0 that misclassifies ``image``, or None where it is not robust to rounding."""
    reaches = [_reach(weight, bias, image, label, other) for other in range(len(bias)) if other != label]
    counts = [count for count in map(_first_positive, reaches) if count is not None]
    if not counts:
        return None
    best = min(counts)
    # With one element fewer no class may come near the true one.
    return best if all(reach[best - 1] < -GAP for reach in reaches) else None


def targeted_optimum(weight: np.ndarray, bias: np.ndarray, image: np.ndarray, label: int, target: int) -> int | None:
    """The exact minimal L0 that makes ``target`` the prediction, or None where the pairwise count is not it."""
    reach = _reach(weight, bias, image, label, target)
    count = _first_positive(reach)
    if count is None or reach[count - 1] >= -GAP:
        return None
    direction = weight[target] - weight[label]
    gains = np.maximum(direction * (1 - image), -direction * image)
    chosen = np.argsort(-gains, kind="stable")[:count]
    moved = image.copy()
    moved[chosen] = (direction[chosen] > 0).astype(image.dtype)
    logits = weight @ moved + bias
    others = np.delete(logits, target)
    return count if logits[target] - others.max() > GAP else None


def _parameters(model: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
    """The linear layer's weight and bias, in float64."""
    linear = model[1]
    assert isinstance(linear, nn.Linear)
    return linear.weight.double().numpy(), linear.bias.double().numpy()


#: Per mode: images, labels, targets (None untargeted) and the exact optima.
Samples = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, np.ndarray]]


def build_problem() -> tuple[nn.Sequential, Samples]:
    """The model and, per mode, images with their labels, targets (None untargeted) and exact optima.

    Ten classes (JSMA's untargeted mode aims at ``(label + 1) mod 10``). The weights are random signs
    times magnitudes in [0.5, 1.5), the images are drawn around a class's weights (clipped to [0, 1], so
    about 40% of the elements lie on the box's faces) to give optima above 1; the samples are the first
    candidates whose robust optimum is still wanted in :data:`OPTIMA`.
    """
    generator = torch.Generator().manual_seed(0)
    elements = int(np.prod(SHAPE))
    linear = nn.Linear(elements, CLASSES)
    with torch.no_grad():
        signs = torch.randn(CLASSES, elements, generator=generator).sign()
        linear.weight.copy_(signs * (0.5 + torch.rand(CLASSES, elements, generator=generator)))
        linear.bias.copy_(0.5 * torch.randn(CLASSES, generator=generator))
    model = nn.Sequential(nn.Flatten(), linear).eval().requires_grad_(False)
    weight, bias = _parameters(model)

    count = 500
    near = torch.randint(0, CLASSES, (count,), generator=generator)
    strength = torch.rand(count, 1, generator=generator)
    noise = 0.1 * torch.randn(count, elements, generator=generator)
    candidates = (0.5 + strength * linear.weight[near] + noise).clamp(0, 1).view(count, *SHAPE)
    predicted = model(candidates).argmax(1)
    wanted = {mode: list(optima) for mode, optima in OPTIMA.items()}
    chosen: dict[str, list[tuple[int, int, int]]] = {"untargeted": [], "targeted": []}
    for index, (image, label) in enumerate(zip(candidates, predicted.tolist())):
        flat = image.flatten().double().numpy()
        best = untargeted_optimum(weight, bias, flat, label)
        if best in wanted["untargeted"]:
            wanted["untargeted"].remove(best)
            chosen["untargeted"].append((index, label, best))
            continue
        for target in range(CLASSES):
            best = targeted_optimum(weight, bias, flat, label, target) if target != label else None
            if best in wanted["targeted"]:
                wanted["targeted"].remove(best)
                chosen["targeted"].append((index, target, best))
                break
    samples = {}
    for mode, rows in chosen.items():
        assert not wanted[mode], f"{mode}: no robust sample found for optima {wanted[mode]}"
        indices = [row[0] for row in rows]
        samples[mode] = (candidates[indices], predicted[indices],
                         torch.tensor([row[1] for row in rows]) if mode == "targeted" else None,
                         np.array([row[2] for row in rows]))
    return model, samples


@pytest.fixture(scope="module")
def problem():
    return build_problem()


def test_the_optimum_is_exact_by_brute_force(problem):
    """On the untargeted samples, no subset of fewer elements pushed to any box corner fools the model
    and the optimum's own subset does: the closed form against enumeration (corners suffice, the model
    being linear)."""
    model, samples = problem
    images, labels, _, optima = samples["untargeted"]
    weight, bias = _parameters(model)
    for image, label, optimum in zip(images, labels.tolist(), optima):
        flat = image.flatten().double().numpy()
        fewest = None
        for count in range(1, int(optimum) + 1):
            corners = np.array(list(itertools.product((0.0, 1.0), repeat=count)))
            for subset in itertools.combinations(range(flat.size), count):
                moved = np.repeat(flat[None], len(corners), axis=0)
                moved[:, list(subset)] = corners
                logits = moved @ weight.T + bias
                if (np.delete(logits, label, axis=1).max(1) > logits[:, label]).any():
                    fewest = count
                    break
            if fewest is not None:
                break
        assert fewest == optimum


@pytest.fixture(scope="module")
def verified_runs(problem):
    """``(name, mode) -> (Verified, exact optima)`` of each case, run once through the harness's path."""
    model, samples = problem
    cache = {}

    def get(name, mode):
        if (name, mode) not in cache:
            images, labels, targets, optima = samples[mode]
            entry = MINIMUM_NORM[name]
            attacked = copy.deepcopy(model)
            counting, guard = CountingModel(attacked), Guard(attacked)
            attack = bind(entry, **{**entry.smoke, **STRONGER.get(name, {})})
            torch.manual_seed(0)
            call = call_attack(attack, counting, guard, images, labels, targets)
            assert call.void == ""
            verified = verify(model, images, call.returned, labels, targets=targets)
            assert verified.valid.all(), verified.violation
            cache[name, mode] = verified, optima
        return cache[name, mode]

    return get


def _factor_cases():
    for name, mode in CASES:
        reason = FAR_FROM_OPTIMUM.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(name, mode, marks=marks, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_never_below_exact_optimum(name, mode, verified_runs):
    """Below the optimum would prove the optimum, or the harness's verification, wrong."""
    verified, optima = verified_runs(name, mode)
    found, best = verified.l0_elements[verified.success], optima[verified.success]
    assert (found >= best).all(), f"below the exact optimum: found {found.tolist()}, optimum {best.tolist()}"


@pytest.mark.parametrize("name,mode", list(_factor_cases()))
def test_within_factor_of_exact_optimum(name, mode, verified_runs):
    verified, optima = verified_runs(name, mode)
    fooled = int(verified.success.sum())
    least = MIN_FOOLED.get(name, (len(optima), len(optima)))[mode == "targeted"]
    assert fooled >= least, f"fooled {fooled} of {len(optima)}, expected at least {least}"
    found, best = verified.l0_elements[verified.success], optima[verified.success]
    multiplier, slack = FACTORS.get(name, DEFAULT_FACTOR)
    assert (found <= multiplier * best + slack).all(), (
        f"found {found.tolist()}, optimum {best.tolist()}, allowed {multiplier} x optimum + {slack}")
