"""Lying attacks through the real runner: each gets no credit and a stored reason; honest ones keep theirs.

The model has dropout, so that training mode changes its answers; the
lying attacks are in ``lying_attacks.py``, named in the config by
``function`` as any outside attack would be.
"""

from __future__ import annotations

import contextlib
import copy

import lying_attacks
import pandas as pd
import pytest
import torch
from torch import nn

from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore

#: Each lie, and what the stored reason must say.
LIES = {
    "overwrite_labels": "wrote into the labels or targets it was given",
    "write_into_inputs": "wrote into the inputs it was given",
    "train_mode": "put model in training mode",
    "forward_hook": "added a forward hook on model.2",
    "global_hook": "changed torch's global forward hooks",
    "patch_argmax": "patched torch.Tensor.argmax",
    "patch_linear": "patched torch.nn.modules.linear.Linear.forward",
    "patch_instance_forward": "changed attribute model.forward",
    "zero_weights": "changed the values of model.2.weight",
    "raises": "attack raised RuntimeError: out of ideas",
    "returns_numpy": "returned a ndarray, not a Tensor",
    "returns_none": "returned a NoneType, not a Tensor",
    "returns_uint8": "dtype torch.uint8 is not floating",
    "returns_bool": "dtype torch.bool is not floating",
    "returns_nan": "not finite",
    "returns_inf": "not finite",
    "returns_outside_box": "outside [0, 1]",
    "returns_wrong_shape": "shape (3, 1, 27, 28) != (3, 1, 28, 28)",
    "returns_meta": "device meta != cpu",
    "returns_subclass": "returned a Tensor subclass (Liar)",
}
#: Attacks that hide passes, and the passes per sample the harness must count anyway (forward, backward).
HIDDEN = {"hidden_passes": (8, 0), "hidden_gradient": (5, 5)}

ORIGINAL_ARGMAX, ORIGINAL_LINEAR_FORWARD = torch.Tensor.argmax, nn.Linear.forward

CONTROL = {"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 10}}


@pytest.fixture(scope="module")
def dropout_model(tiny_model):
    """The tiny linear model behind a dropout layer: in eval mode the same classifier, in training mode not."""
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(28 * 28, 10))
    model[2].load_state_dict(tiny_model[1].state_dict())
    return model.eval().requires_grad_(False)


def _run(tmp_path, model, attacks, *, name, modes=("untargeted",)):
    config = parse_config({
        "name": name, "seed": 1, "n_samples": 6, "batch_size": 3, "modes": list(modes),
        "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
        "attacks": attacks,
    })
    with ResultsStore(tmp_path / f"{name}.sqlite") as store:
        with pytest.warns(RuntimeWarning) if len(attacks) > 1 else contextlib.nullcontext():
            run_id = run_benchmark(config, store, load_model=lambda *_: model, progress=False)
        return store.samples(run_id)


def _outside(function: str) -> dict:
    return {"function": f"lying_attacks:{function}", "label": function.replace("_", "-")}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, dropout_model):
    """One run: the honest control, every lie, the honest control again."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    model = copy.deepcopy(dropout_model)
    attacks = ([{**CONTROL, "label": "control-before"}] + [_outside(f) for f in (*LIES, *HIDDEN)]
               + [{**CONTROL, "label": "control-after"}])
    rows = _run(tmp_path, model, attacks, name="hostile")
    return rows, model


@pytest.mark.parametrize("lie", LIES)
def test_a_lie_gets_no_credit_and_says_why(hostile_run, lie):
    rows, _ = hostile_run
    mine = rows[rows["attack"] == lie.replace("_", "-")]
    assert len(mine) == 6
    assert not mine["success"].any()
    assert not mine["valid"].any()
    assert mine["violation"].str.contains(LIES[lie], regex=False).all(), mine["violation"].tolist()


@pytest.mark.parametrize("attack", HIDDEN)
def test_hidden_passes_are_counted(hostile_run, attack):
    rows, _ = hostile_run
    mine = rows[rows["attack"] == attack.replace("_", "-")]
    forward, backward = HIDDEN[attack]
    assert (mine["forward_passes"] == forward).all() and (mine["backward_passes"] == backward).all()
    assert mine["valid"].all() and not mine["success"].any()  # it returned the clean inputs


def test_honest_control_keeps_its_successes_and_inherits_nothing(hostile_run, tmp_path, dropout_model):
    rows, model = hostile_run
    columns = ["sample_id", "success", "valid", "l0_elements", "adversarial_prediction", "forward_passes"]
    before = rows[rows["attack"] == "control-before"][columns].reset_index(drop=True)
    after = rows[rows["attack"] == "control-after"][columns].reset_index(drop=True)
    assert before["success"].sum() >= 4 and before["valid"].all()
    pd.testing.assert_frame_equal(before, after)
    alone = _run(tmp_path, copy.deepcopy(dropout_model), [{**CONTROL, "label": "control-before"}], name="alone")
    pd.testing.assert_frame_equal(alone[columns].reset_index(drop=True), before)


def test_the_judging_model_and_torch_are_as_they_were(hostile_run, dropout_model):
    _, model = hostile_run
    assert not any(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for (name, a), b in zip(model.state_dict().items(), dropout_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not nn.modules.module._global_forward_hooks
    assert torch.Tensor.argmax is ORIGINAL_ARGMAX and nn.Linear.forward is ORIGINAL_LINEAR_FORWARD


def test_targeted_label_lie(tmp_path, dropout_model):
    """Overwriting the targets (targeted mode) gets nothing either."""
    rows = _run(tmp_path, copy.deepcopy(dropout_model), [_outside("overwrite_labels"), {**CONTROL, "label": "c"}],
                name="targets", modes=("targeted",))
    mine = rows[rows["attack"] == "overwrite-labels"]
    assert not mine["success"].any() and mine["violation"].str.contains("labels or targets").all()


@pytest.mark.parametrize("architecture", ["robustbench/Wong2020Fast", "torchvision-resnet18"])
def test_zoo_architectures_are_guarded_without_false_alarms_and_counted_right(architecture):
    """Real zoo architectures (untrained): an honest attack is not voided, and passes are counted per pass even
    where one module runs several times in a pass (torchvision's ResNet reuses its ReLU; BatchNorm has buffers)."""
    import torchvision

    from bench.counting import CountingModel
    from bench.guard import Guard, call_attack
    from bench.models import prepare_model, untrained_model
    from bench.registry import get_attack

    if architecture.startswith("robustbench"):
        model, shape = untrained_model(architecture, "cifar10"), (3, 32, 32)
    else:
        model, shape = prepare_model(torchvision.models.resnet18(weights=None), "cpu"), (3, 64, 64)
    attacked = copy.deepcopy(model)
    counting, guard = CountingModel(attacked), Guard(attacked)
    images, labels = torch.rand(2, *shape), torch.tensor([1, 2])
    call = call_attack(get_attack("i-fgsm", steps=3), counting, guard, images, labels)
    assert call.void == ""
    assert (call.passes.forward_samples, call.passes.backward_samples) == (6, 6)  # 3 steps x 2 samples
    lie = call_attack(lying_attacks.train_mode, counting, guard, images, labels)
    assert "put model in training mode" in lie.void and not attacked.training  # and put back
