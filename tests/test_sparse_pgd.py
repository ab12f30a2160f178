"""Sparse-PGD's loss options: what each ascends, the release's switching rule, and the default in use."""

from __future__ import annotations

import inspect

import pytest
import torch
from tiny import run_verified

from attacks.losses import adversarial_cross_entropy, logit_margin
from attacks.success import success_and_gradient
from baselines.sparse_pgd import LOSSES, SWITCH_MARGIN, sparse_pgd, sparse_pgd_min
from bench.registry import ATTACKS

#: The default chosen from docs/measured/sparse-pgd-loss-cpu/ (the docstring says why).
CHOSEN = "switch"
FAST = {"steps": 30}


def _gradient(model, images, labels, objective):
    current = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(model(current)).sum(), current)
    return grad


def _near_success_batch(model, samples, targeted):
    """Four clean images, far from success, and four moved to a margin of -SWITCH_MARGIN / 2 (bisection on the
    segment to a dense adversarial example): the two sides of the switch."""
    images, labels, targets = (tensor[:8] for tensor in samples)
    goal = targets if targeted else labels

    def margin(x):
        with torch.no_grad():
            return logit_margin(model(x), goal, targeted=targeted)

    far = images.clone()
    for _ in range(100):  # dense signed steps until every sample succeeds
        step = _gradient(model, far, goal, lambda logits: logit_margin(logits, goal, targeted=targeted)).sign()
        far = torch.where((margin(far) <= 0).view(-1, 1, 1, 1), (far + 0.02 * step).clamp(0, 1), far)
    low, high = torch.zeros(8, 1, 1, 1), torch.ones(8, 1, 1, 1)
    for _ in range(40):  # the margin is continuous along the segment: below -SWITCH_MARGIN / 2 at 0, above 0 at 1
        middle = (low + high) / 2
        below = (margin(images + middle * (far - images)) < -SWITCH_MARGIN / 2).view(-1, 1, 1, 1)
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    moved = images + high * (far - images)
    return torch.cat([images[:4], moved[4:]]), goal


@pytest.mark.parametrize("targeted", [False, True])
def test_each_loss_ascends_its_objective_and_switch_follows_the_release(tiny_model, samples, targeted):
    images, goal = _near_success_batch(tiny_model, samples, targeted)
    margin = logit_margin(tiny_model(images), goal, targeted=targeted)
    near = margin > -SWITCH_MARGIN
    assert near[4:].all() and not near[:4].any() and (margin < 0).all()  # both sides of the switch, none solved
    ce = _gradient(tiny_model, images, goal, lambda z: adversarial_cross_entropy(z, goal, targeted=targeted))
    hinge = _gradient(tiny_model, images, goal, lambda z: logit_margin(z, goal, targeted=targeted))
    gradients = {}
    for loss in LOSSES:
        success, gradients[loss] = success_and_gradient(tiny_model, images.clone(), goal, targeted=targeted,
                                                        loss=loss, switch_margin=SWITCH_MARGIN, gradient=True)
        assert not success.any()
    assert torch.allclose(gradients["ce"], ce) and torch.allclose(gradients["margin"], hinge)
    expected = torch.where(near.view(-1, 1, 1, 1), hinge, ce)
    assert torch.allclose(gradients["switch"], expected)
    # The options differ: the signs that move the magnitude are not the same.
    assert (gradients["ce"].sign() != gradients["margin"].sign()).any()


@pytest.mark.parametrize("mode", ["untargeted", "targeted"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_stays_within_k_and_fools(tiny_model, samples, loss, mode):
    torch.manual_seed(0)
    verified, _ = run_verified(sparse_pgd, tiny_model, samples, mode, n=16, k=20, loss=loss, **FAST)
    assert verified.valid.all(), verified.violation
    assert (verified.l0_pixels <= 20).all()
    assert verified.success.mean() >= (0.8 if mode == "untargeted" else 0.3)


def test_the_chosen_default_is_used(tiny_model, samples):
    for function in (sparse_pgd, sparse_pgd_min):
        assert inspect.signature(function).parameters["loss"].default == CHOSEN
    for name in ("sparse-pgd", "sparse-pgd-min"):
        for family in ("mnist", "cifar10", "imagenet"):
            assert ATTACKS[name].hyperparameters(family)["loss"] == CHOSEN  # no entry overrides it
    images, labels, _ = (tensor[:8] for tensor in samples)
    results = {}
    for loss in (None, *LOSSES):
        torch.manual_seed(0)
        results[loss] = sparse_pgd(tiny_model, images, labels, k=2, steps=5,
                                   **({} if loss is None else {"loss": loss}))
    assert torch.equal(results[None], results[CHOSEN])
    assert any(not torch.equal(results[None], results[other]) for other in LOSSES if other != CHOSEN)


def test_an_unknown_loss_is_refused(tiny_model, samples):
    images, labels, _ = samples
    with pytest.raises(ValueError, match="loss: 'hinge' is not one of ce, margin, switch"):
        sparse_pgd(tiny_model, images, labels, loss="hinge")
