"""The harness's own pieces: verification, counting, norms, the example codec."""

from __future__ import annotations

import torch
from torch import nn

from attacks.norms import l0_elements, l0_pixels, lp_norms
from bench.counting import CountingModel
from bench.store import decode_example, encode_example
from bench.verify import verify


class Threshold(nn.Module):
    """Analytic classifier: class 1 iff the mean of the image exceeds 0.5."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], 1) * 100


def test_norms_count_elements_and_pixels():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0, :, 0, 0] = 0.5      # one pixel, three elements
    y[0, 1, 2, 3] = -0.25    # a fourth element at a second pixel
    assert l0_elements(x, y).tolist() == [4, 0]
    assert l0_pixels(x, y).tolist() == [2, 0]
    norms = lp_norms(x, y)
    assert torch.allclose(norms["l1"], torch.tensor([1.75, 0.0]))
    assert torch.allclose(norms["linf"], torch.tensor([0.5, 0.0]))
    assert torch.allclose(norms["l2"], torch.tensor([(3 * 0.25 + 0.0625) ** 0.5, 0.0]))


def test_verify_rejects_out_of_box_nan_and_wrong_shape():
    model = Threshold()
    x = torch.full((4, 1, 2, 2), 0.4)
    labels = torch.zeros(4, dtype=torch.long)
    adv = x.clone()
    adv[0] = 0.9                 # valid success
    adv[1] = 1.0001              # outside the box: would "succeed" but is rejected
    adv[2, 0, 0, 0] = float("nan")
    # adv[3] unchanged: valid failure
    v = verify(model, x, adv, labels)
    assert v.valid.tolist() == [True, False, False, True]
    assert v.success.tolist() == [True, False, False, False]
    assert "outside [0, 1]" in v.violation[1] and v.violation[2] == "not finite"
    assert v.l0_elements.tolist() == [4, 0, 0, 0]  # rejected examples are measured as the clean input

    bad = verify(model, x, adv[:, :, :1], labels)
    assert not bad.valid.any() and "shape" in bad.violation[0]


def test_verify_targeted_needs_the_target():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
        model[1].bias.zero_()
    x = torch.tensor([[[[0.9, 0.0], [0.0, 0.0]]]]).repeat(2, 1, 1, 1)  # class 0
    adv = x.clone()
    adv[0, 0, 0, 1] = 1.0  # -> class 1
    adv[1, 0, 1, 0] = 1.0  # -> class 2
    v = verify(model, x, adv, torch.tensor([0, 0]), targets=torch.tensor([1, 1]))
    assert v.success.tolist() == [True, False]
    assert v.adversarial_prediction.tolist() == [1, 2]


def test_counting_model_counts_forward_and_backward_samples():
    counting = CountingModel(Threshold())
    x = torch.rand(5, 1, 2, 2, requires_grad=True)
    counting(x).sum().backward()
    with torch.no_grad():
        counting(x[:2])
    assert (counting.forward_samples, counting.backward_samples) == (7, 5)


def test_example_codec_is_exact_sparse_and_dense():
    x = torch.rand(3, 8, 8)
    sparse = x.clone()
    sparse[1, 2, 3] = 0.0
    sparse[0, 0, 0] = 1.0
    fmt, idx, val = encode_example(x, sparse)
    assert fmt == "sparse"
    assert torch.equal(decode_example(x, fmt, idx, val), sparse)
    dense = (x + 0.01).clamp(0, 1)
    fmt, idx, val = encode_example(x, dense)
    assert fmt == "dense" and idx is None
    assert torch.equal(decode_example(x, fmt, idx, val), dense)
