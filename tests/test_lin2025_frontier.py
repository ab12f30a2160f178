"""The distinctive pieces of ``lin2025-frontier`` (attacks/lin2025_frontier.py).

Each test says which deliberate break it was seen failing on.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.ifgsm import i_fgsm
from attacks.lin2025_frontier import lin2025_frontier, normalised_gradient
from bench.counting import CountingModel
from bench.data import get_batch
from bench.verify import verify


@pytest.fixture(scope="module")
def batch(tiny_model, fashion_test):
    """Six correctly classified Fashion-MNIST test images, their labels and least-likely targets."""
    images, labels = get_batch(fashion_test, list(range(40)))
    with torch.no_grad():
        logits = tiny_model(images)
    correct = logits.argmax(1) == labels
    return images[correct][:6], labels[correct][:6], logits[correct][:6].argmin(1)


def test_normalised_gradient_is_per_sample():
    """Each sample's largest entry becomes +-1 whatever its scale; a zero gradient stays zero.
    Seen failing with the norm taken over the whole batch (``grad / grad.abs().max()``)."""
    grad = torch.zeros(3, 1, 2, 2)
    grad[0, 0, 0, 0], grad[0, 0, 1, 1] = 1e-6, -2e-6
    grad[1, 0, 0, 1] = 50.0
    out = normalised_gradient(grad)
    assert out[0].abs().max() == pytest.approx(1.0) and out[0, 0, 1, 1] == pytest.approx(-1.0)
    assert out[0, 0, 0, 0] == pytest.approx(0.5)
    assert out[1].abs().max() == pytest.approx(1.0)
    assert torch.equal(out[2], torch.zeros_like(out[2]))


@pytest.mark.parametrize("targeted", [False, True])
def test_one_forward_and_one_backward_per_step(targeted, tiny_model, batch):
    """The step's forward pass is the candidate's check: counted passes per sample are the start's
    (``ifgsm_steps`` each, plus the untargeted ``y_adv``) plus one forward and one backward per step,
    and the defaults stay within sigma-zero's 1000 + 1000. Seen failing with a separate no-grad
    forward to check each candidate (as lin2025's ``keep_best`` does)."""
    images, labels, targets = batch
    counting = CountingModel(tiny_model)
    try:
        lin2025_frontier(counting, images, targets if targeted else labels, targeted=targeted, steps=30)
        small = counting.since_reset()
        counting.reset()
        lin2025_frontier(counting, images, targets if targeted else labels, targeted=targeted)
        full = counting.since_reset()
    finally:
        counting.close()
    n = len(images)
    assert small.forward_samples == n * (10 + (0 if targeted else 1) + 30)
    assert small.backward_samples == n * (10 + 30)
    assert full.forward_samples <= 1000 * n and full.backward_samples <= 1000 * n


def test_a_switched_off_element_can_come_back(tiny_model, batch):
    """The surrogate acts on ``w - tau/eps``, not ``relu(w - tau/eps)``: starting with every element
    off, the cross-entropy's gradient still reaches ``w`` and turns elements on, so the attack
    succeeds; through the paper's ReLU nothing would ever move and no sample would be fooled. Seen
    failing with ``heaviside(torch.relu(level), width)``."""
    images, labels, _ = batch
    adversarial = lin2025_frontier(tiny_model, images, labels, w_init=-0.05, steps=200, threshold_factor=0.0)
    checked = verify(tiny_model, images, adversarial, labels)
    assert checked.valid.all()
    assert checked.success.mean() >= 0.5


@pytest.mark.parametrize("targeted", [False, True])
def test_samples_are_attacked_independently(targeted, tiny_model, batch):
    """The per-sample lambda and threshold, and the refined dense start, make a sample's result that of
    the sample attacked alone. Seen failing with a batch-wide lambda (``lam_now`` replaced by its
    mean after each step)."""
    images, labels, targets = batch
    chosen = targets if targeted else labels
    together = lin2025_frontier(tiny_model, images, chosen, targeted=targeted, steps=60)
    for i in (0, 3):
        alone = lin2025_frontier(tiny_model, images[i:i + 1], chosen[i:i + 1], targeted=targeted, steps=60)
        assert torch.allclose(together[i:i + 1], alone, atol=1e-6)


def _tiny_conv() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    return model.eval().requires_grad_(False)


def test_refining_the_dense_start_changes_what_the_mask_chooses_from(batch):
    """With ``delta_step`` the dense perturbation keeps taking I-FGSM steps, so the result may change
    elements the other way than the fixed start would (on a small conv net, where the gradient's sign
    depends on the point); with ``delta_step=0`` every changed element moves in the direction of the
    paper's dense start. Seen failing with the
    ``delta_step`` update removed (the two runs then move elements the same ways)."""
    model = _tiny_conv()
    images, _, _ = batch
    labels = model(images).argmax(1)
    fixed = lin2025_frontier(model, images, labels, delta_step=0.0, steps=100)
    refined = lin2025_frontier(model, images, labels, steps=100)
    dense = i_fgsm(model, images, labels, eps=4 / 255, alpha=1 / 255, steps=10)
    direction = (dense - images).sign()
    moved_fixed = fixed != images
    assert ((fixed - images).sign()[moved_fixed] == direction[moved_fixed]).all()
    moved_refined = refined != images
    assert ((refined - images).sign()[moved_refined] != direction[moved_refined]).any()


def test_bad_values_name_the_field(tiny_model, batch):
    images, labels, _ = batch
    with pytest.raises(ValueError, match="update"):
        lin2025_frontier(tiny_model, images, labels, update="adamw")
    with pytest.raises(ValueError, match="delta_step"):
        lin2025_frontier(tiny_model, images, labels, delta_step=-1.0)
    with pytest.raises(ValueError, match="restarts"):
        lin2025_frontier(tiny_model, images, labels, restarts=0)
