"""GreedyFool (learned and uniform map) and EGS-TSSA: their defining properties, the generator cache and the prepare step."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import train_cnn, train_linear
from torch import nn

from attacks.losses import adversarial_cross_entropy
from baselines import generators
from baselines.egs_tssa import egs_tssa, group_mask, prepare_egs_tssa
from baselines.generators import TrainingData, forget_generators, generator_path, model_fingerprint
from baselines.greedyfool import (
    MAP_GENERATOR,
    distortion_weights,
    greedyfool,
    greedyfool_uniform,
    invisibility_map,
    prepare_greedyfool,
)
from bench.counting import CountingModel
from bench.data import get_batch
from bench.registry import ATTACKS, Attack, AttackEntry
from bench.verify import verify

# A generator trained in under a second on the tiny model (the registry entry's smoke settings);
# the defaults are the benchmark's. The tiny model is linear, so the smoke settings rank the groups
# by the gradient (no convolution for Grad-CAM); the Grad-CAM tests below use CNNs.
EGS_FAST = ATTACKS["egs-tssa"].smoke
# GreedyFool's map trained in about a second (the entry's smoke settings less its max_iter).
MAP_FAST = {key: value for key, value in ATTACKS["greedyfool"].smoke.items() if key != "max_iter"}
GRAD_CAM_FAST = {**EGS_FAST, "saliency": "grad-cam"}


@pytest.fixture(autouse=True, scope="module")
def _own_cache_one_thread(tmp_path_factory):
    """The module's generators go to a cache of its own (and this process's memory), not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARSEBENCH_CACHE", str(tmp_path_factory.mktemp("default-cache")))
        forget_generators()
        yield
    forget_generators()


@pytest.fixture
def batch(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(40)))
    correct = tiny_model(images).argmax(1) == labels
    return images[correct][:8], labels[correct][:8]


def _changed_pixels(images, adversarial):
    return (adversarial != images).any(1)


# --------------------------------------------------------------------------
# GreedyFool


@pytest.mark.parametrize("targeted", [False, True])
def test_greedyfool_fools_and_targets(tiny_model, batch, targeted):
    images, labels = batch
    targets = (labels + 3) % 10 if targeted else None
    adversarial = greedyfool_uniform(tiny_model, images, targets if targeted else labels, targeted=targeted)
    verified = verify(tiny_model, images, adversarial, labels, targets=targets)
    assert verified.valid.all(), verified.violation
    assert verified.success.all()
    if targeted:
        assert (verified.adversarial_prediction == targets.numpy()).all()


@pytest.mark.parametrize("targeted", [False, True])
def test_greedyfool_reduce_stage_never_adds_pixels_and_stays_adversarial(tiny_model, batch, targeted):
    images, labels = batch
    goal = (labels + 3) % 10 if targeted else labels
    targets = goal if targeted else None
    increased = greedyfool_uniform(tiny_model, images, goal, targeted=targeted, max_reduce_steps=0)
    reduced = greedyfool_uniform(tiny_model, images, goal, targeted=targeted)
    before = verify(tiny_model, images, increased, labels, targets=targets)
    after = verify(tiny_model, images, reduced, labels, targets=targets)
    assert before.success.all() and after.success.all()
    assert (after.l0_pixels <= before.l0_pixels).all()
    assert (after.l0_pixels < before.l0_pixels).any()  # the stage does remove pixels here
    # It only removes: every pixel it left changed was changed by the increasing stage.
    assert not (_changed_pixels(images, reduced) & ~_changed_pixels(images, increased)).any()


def test_greedyfool_adds_pixels_per_step_and_returns_failures_clean(tiny_model, batch):
    images, labels = batch
    adversarial = greedyfool_uniform(tiny_model, images, labels, max_iter=2, pixels_per_step=3, max_reduce_steps=0)
    verified = verify(tiny_model, images, adversarial, labels)
    assert (verified.l0_pixels <= 2 * 3).all()
    failed = ~verified.success
    assert failed.any()  # two steps of three pixels do not fool every sample of the tiny model
    assert torch.equal(adversarial[torch.from_numpy(failed)], images[torch.from_numpy(failed)])


def test_greedyfool_respects_eps_and_counts_its_passes(tiny_model, batch):
    images, labels = batch
    counting = CountingModel(tiny_model)
    adversarial = greedyfool_uniform(counting, images, labels, eps=0.3, max_iter=50, reduce_scales=4)
    assert (adversarial - images).abs().max() <= 0.3 + 1e-6
    assert counting.backward_samples >= len(images)  # at least one gradient per sample
    assert counting.backward_samples <= 51 * len(images)  # at most one per sample and iteration
    assert counting.forward_samples > counting.backward_samples  # the reduce stage's forward passes


@pytest.mark.parametrize("field,value", [("eps", 0.0), ("eps", 1.5), ("max_iter", 0), ("pixels_per_step", 0),
                                         ("reduce_scales", 0), ("max_reduce_steps", -1)])
def test_greedyfool_rejects_bad_values(tiny_model, batch, field, value):
    images, labels = batch
    with pytest.raises(ValueError, match=field):
        greedyfool_uniform(tiny_model, images, labels, **{field: value})


# --------------------------------------------------------------------------
# GreedyFool's learned distortion map


def _given_weights(patch, weights):
    """Make greedyfool use ``weights`` (B, 1, H, W) instead of its learned map."""
    patch.setattr("baselines.greedyfool.distortion_weights", lambda inputs, **_: weights[: len(inputs)])


@pytest.mark.parametrize("targeted", [False, True])
def test_greedyfool_is_the_uniform_attack_when_the_weights_are_flat(tiny_model, batch, targeted, monkeypatch):
    images, labels = batch
    goal = (labels + 3) % 10 if targeted else labels
    _given_weights(monkeypatch, torch.ones_like(images))
    assert torch.equal(greedyfool(tiny_model, images, goal, targeted=targeted),
                       greedyfool_uniform(tiny_model, images, goal, targeted=targeted))


def test_greedyfool_adds_pixels_where_the_map_weighs(tiny_model, batch, monkeypatch):
    images, labels = batch
    weights = torch.zeros_like(images)
    weights[..., 14:] = 1.0  # only the right half hides noise
    _given_weights(monkeypatch, weights)
    adversarial = greedyfool(tiny_model, images, labels, max_iter=20, max_reduce_steps=0)
    changed = _changed_pixels(images, adversarial)
    assert changed.any()
    assert not changed[..., :14].any()  # the gradient alone would pick pixels of both halves
    assert _changed_pixels(images, greedyfool_uniform(tiny_model, images, labels, max_iter=20,
                                                      max_reduce_steps=0))[..., :14].any()


@pytest.fixture
def halves():
    """A training set whose images are black on the left and random texture on the right, as dataset "halves"."""
    images = torch.zeros(256, 1, 28, 28)
    images[..., 14:] = torch.rand(256, 1, 28, 14, generator=torch.Generator().manual_seed(0))
    data = TrainingData(channels=1, num_classes=10, load=lambda: images,
                        get_batch=lambda split, indices: (split[indices], torch.zeros(len(indices), dtype=torch.long)))
    previous = generators._SOURCE[0]
    generators.set_training_source(lambda name: data if name == "halves" else previous(name))
    forget_generators()
    yield images[:16]
    generators.set_training_source(previous)
    forget_generators()


def test_learned_map_puts_the_noise_where_it_hides(halves, tmp_path):
    # Noise on a flat black area shows; on random texture it hides: the map must learn that in a few steps.
    settings = {"train_steps": 30, "warmup_steps": 10, "batch_size": 8, "lr": 3e-3, "ema": 0.0}
    rho = invisibility_map(halves, dataset="halves", cache_dir=tmp_path, **settings)
    assert torch.allclose(rho.mean((1, 2, 3)), torch.full((16,), 0.3), atol=1e-3)  # the fixed noise budget
    assert rho[..., 14:].sum() / rho.sum() > 0.75  # the texture holds most of it (half the area)
    weights = distortion_weights(halves, dataset="halves", cache_dir=tmp_path, **settings)
    assert weights[..., 16:].mean() > 4 * weights[..., :12].mean()


def test_learned_map_is_cached_and_prepared_outside_the_counted_call(tiny_model, batch, tmp_path, monkeypatch):
    images, labels = batch
    forget_generators()
    counting = CountingModel(tiny_model)
    prepare_greedyfool(counting, cache_dir=tmp_path, **MAP_FAST, max_iter=5)  # the attack's own ones are ignored
    assert counting.forward_samples == 0 and counting.backward_samples == 0  # the map never asks the model
    settings = {"map_density": 0.3, "noise_amplitude": 0.3, "train_steps": 20, "warmup_steps": 10, "batch_size": 8,
                "lr": 3e-3, "ema": 0.98, "seed": 0, "network": 3}
    path = generator_path(MAP_GENERATOR, "fashion-mnist", settings, cache_dir=tmp_path)
    assert path.is_file()
    rho = invisibility_map(images, cache_dir=tmp_path, **MAP_FAST)
    assert rho.std() > 0.05  # a learned map, not a uniform one

    forget_generators()  # the next prepare reads the file; training now would raise
    monkeypatch.setattr("baselines.greedyfool.training_batches", _no_training)
    for targeted in (False, True):  # one map for both modes (and every model)
        prepare_greedyfool(tiny_model, targeted=targeted, cache_dir=tmp_path, **MAP_FAST)
    assert torch.equal(invisibility_map(images, cache_dir=tmp_path, **MAP_FAST), rho)

    entry = ATTACKS["greedyfool"]
    attack = Attack(entry, {**entry.hyperparameters("mnist"), **MAP_FAST, "max_iter": 50})
    attack.prepare(tiny_model, cache_dir=tmp_path)
    uniform = Attack(ATTACKS["greedyfool-uniform"], {"max_iter": 50})
    for run in (attack, uniform):
        counting = CountingModel(tiny_model)
        run(counting, images, labels)
        # The attack's passes alone: at most one gradient per sample and iteration, then the reducing stage.
        assert len(images) <= counting.backward_samples <= 51 * len(images)


def _no_training(*args, **kwargs):
    raise AssertionError("the map was trained again")


@pytest.mark.parametrize("field,value", [("map_floor", 1.0), ("map_ceiling", 0.0), ("map_ceiling", 0.2),
                                         ("map_smoothing", 2), ("map_density", 1.0), ("noise_amplitude", 0.6),
                                         ("warmup_steps", -1), ("ema", 1.0), ("eps", 0.0)])
def test_greedyfool_rejects_bad_values_of_its_map(tiny_model, batch, field, value):
    images, labels = batch
    with pytest.raises(ValueError, match=field):
        greedyfool(tiny_model, images, labels, **{**MAP_FAST, field: value})


# --------------------------------------------------------------------------
# EGS-TSSA


def test_group_mask_selects_whole_groups_by_norm():
    saliency = torch.zeros(1, 10, 10)
    saliency[0, 0, 0] = 5.0  # group (0, 0)
    saliency[0, 9, 9] = 4.0  # group (2, 2), cut to 1x1 by the edge
    saliency[0, 4, 5] = 3.0  # group (1, 1)
    mask = group_mask(saliency, 4, 2 / 9)  # 3x3 groups, the top 2
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[0:4, 0:4] = True
    expected[8:10, 8:10] = True
    assert mask.shape == (1, 1, 10, 10)
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("targeted", [False, True])
def test_egs_tssa_changes_only_the_selected_groups_within_eps(tiny_model, batch, targeted):
    images, labels = batch
    goal = (labels + 3) % 10 if targeted else labels
    adversarial = egs_tssa(tiny_model, images, goal, targeted=targeted, eps=0.5, top_groups=0.3, **EGS_FAST)
    verified = verify(tiny_model, images, adversarial, labels, targets=goal if targeted else None)
    assert verified.valid.all(), verified.violation
    assert (adversarial - images).abs().max() <= 0.5 + 1e-6

    current = images.clone().requires_grad_(True)
    loss = adversarial_cross_entropy(tiny_model(current), goal, targeted=targeted).sum()
    (grad,) = torch.autograd.grad(loss, current)
    groups = group_mask(grad.abs().sum(1), 4, 0.3)
    assert int(groups[0].sum()) == round(0.3 * 49) * 16  # exactly the budget of 4x4 groups
    changed = _changed_pixels(images, adversarial)
    assert changed.any()
    assert not (changed & ~groups[:, 0]).any()  # nothing outside the groups the saliency selected


def test_egs_tssa_fools_the_source_model(tiny_model, batch):
    images, labels = batch
    adversarial = egs_tssa(tiny_model, images, labels, **EGS_FAST)
    assert verify(tiny_model, images, adversarial, labels).success.mean() >= 0.5


def test_generator_is_cached_on_disk_and_reloaded_without_training(tiny_model, batch, tmp_path):
    images, labels = batch
    forget_generators()  # another test may have trained this one in this process
    counting = CountingModel(tiny_model)
    prepare_egs_tssa(counting, cache_dir=tmp_path, **EGS_FAST)
    assert counting.forward_samples > 0  # it trained, through the model it was given
    path = generator_path("egs-tssa", "fashion-mnist", _settings(), model=tiny_model, cache_dir=tmp_path)
    assert path.is_file()
    assert model_fingerprint(counting) == model_fingerprint(tiny_model)  # the wrapper shares the key
    first = egs_tssa(tiny_model, images, labels, **EGS_FAST)

    forget_generators()  # the next call must read the file
    counting.reset()
    prepare_egs_tssa(counting, cache_dir=tmp_path, **EGS_FAST)
    assert counting.forward_samples == 0 and counting.backward_samples == 0  # loaded, not trained
    assert torch.equal(egs_tssa(tiny_model, images, labels, **EGS_FAST), first)


def test_generator_key_depends_on_model_mode_and_settings(tiny_model, tmp_path):
    other = train_linear(seed=1)
    base = generator_path("egs-tssa", "fashion-mnist", _settings(), model=tiny_model, cache_dir=tmp_path)
    assert generator_path("egs-tssa", "fashion-mnist", _settings(), model=other, cache_dir=tmp_path) != base
    assert generator_path("egs-tssa", "fashion-mnist", _settings(targeted=True), model=tiny_model,
                          cache_dir=tmp_path) != base
    assert generator_path("egs-tssa", "fashion-mnist", _settings(seed=1), model=tiny_model,
                          cache_dir=tmp_path) != base
    assert generator_path("egs-tssa", "fashion-mnist", _settings(saliency="grad-cam"), model=tiny_model,
                          cache_dir=tmp_path) != base
    assert base.parent == tmp_path / "generators" / "fashion-mnist" and base.name.startswith("egs-tssa-")


def test_training_is_seeded(tiny_model, batch, tmp_path):
    images, labels = batch
    torch.manual_seed(123)
    first = egs_tssa(tiny_model, images, labels, **EGS_FAST)
    forget_generators()
    prepare_egs_tssa(tiny_model, cache_dir=tmp_path / "elsewhere", **EGS_FAST)  # trains again, elsewhere
    assert torch.equal(egs_tssa(tiny_model, images, labels, **EGS_FAST), first)
    assert not torch.equal(egs_tssa(tiny_model, images, labels, **EGS_FAST, seed=1), first)


def test_prepare_keeps_training_out_of_the_counted_call(tiny_model, batch, tmp_path):
    images, labels = batch
    entry = AttackEntry(name="egs-tssa", function="baselines.egs_tssa:egs_tssa", kind="fixed-budget", norm="l0",
                        source="native", modes=("untargeted", "targeted"), threat="white-box",
                        citation="Ming et al., CVPR 2024; TSAA arXiv:2105.14727",
                        prepare="baselines.egs_tssa:prepare_egs_tssa")
    attack = Attack(entry, {**entry.hyperparameters("mnist"), **EGS_FAST})
    for targeted in (False, True):
        attack.prepare(tiny_model, targeted=targeted, cache_dir=tmp_path)
        counting = CountingModel(tiny_model)
        goal = (labels + 3) % 10 if targeted else labels
        attack(counting, images, goal, targeted=targeted)
        # What the attack alone needs: one forward and one backward pass per sample (the saliency).
        assert counting.forward_samples == len(images) and counting.backward_samples == len(images)


@pytest.mark.parametrize("field,value", [("eps", 0.0), ("group_size", 0), ("top_groups", 0.0), ("top_groups", 1.5),
                                         ("stages", 0), ("lam_sparsity", -1.0), ("train_steps", 0), ("lr", 0.0),
                                         ("saliency", "saliency-map")])
def test_egs_tssa_rejects_bad_values(tiny_model, batch, field, value):
    images, labels = batch
    with pytest.raises(ValueError, match=field):
        egs_tssa(tiny_model, images, labels, **{**EGS_FAST, field: value})


def _region_detector() -> nn.Module:
    """A CNN whose last convolution's map is the image itself (a 1x1 identity, then ReLU) and whose class 0 is
    its mean: Grad-CAM of class 0 is the image, so it is high exactly where the image is bright; the
    input gradient is the same at every lit pixel."""
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())
    model.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.classifier = nn.Linear(1, 10)
    with torch.no_grad():
        model.features[0].weight.fill_(1.0)
        model.features[0].bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.weight[0] = 1.0
        model.classifier.weight[1] = -1.0
        model.classifier.bias.zero_()
    return model.eval().requires_grad_(False)


def _bright_patch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Images dim everywhere (0.1) but an 8x8 patch (1.0) covering four 4x4 groups, bottom right; the patch."""
    images = torch.full((n, 1, 28, 28), 0.1)
    images[:, :, 16:24, 20:28] = 1.0
    patch = torch.zeros(28, 28, dtype=torch.bool)
    patch[16:24, 20:28] = True
    return images, patch


@pytest.mark.parametrize("targeted", [False, True])
def test_egs_tssa_grad_cam_groups_are_where_the_map_is_high(targeted):
    from baselines.egs_tssa import _saliency

    model = _region_detector()
    images, patch = _bright_patch()
    labels = torch.zeros(3, dtype=torch.long)  # the class it predicts
    goal = labels + 1 if targeted else labels
    _, _, cams = _saliency(model, images, goal, targeted=targeted, saliency="grad-cam")
    groups = group_mask(cams, 4, 4 / 49)
    assert (groups[:, 0] == patch).all()  # the four groups of the patch, none else
    # The gradient ranks every lit group alike: it does not single out the patch.
    _, _, gradient = _saliency(model, images, goal, targeted=targeted, saliency="gradient")
    assert torch.allclose(gradient[:, 0, 0], gradient[:, 16, 20])

    adversarial = egs_tssa(model, images, goal, targeted=targeted, top_groups=4 / 49, **GRAD_CAM_FAST)
    changed = _changed_pixels(images, adversarial)
    assert changed.any() and not (changed & ~patch).any()  # the attack changes the patch only


def test_egs_tssa_grad_cam_through_the_guard(fashion_test):
    from bench.guard import Guard, call_attack
    from bench.registry import bind

    cnn = train_cnn()
    images, labels = get_batch(fashion_test, list(range(40)))
    correct = cnn(images).argmax(1) == labels
    images, labels = images[correct][:8], labels[correct][:8]
    attack = bind(ATTACKS["egs-tssa"], dataset="fashion-mnist", **GRAD_CAM_FAST)
    for targets in (None, (labels + 3) % 10):
        attacked = copy.deepcopy(cnn)
        attack.prepare(attacked, targeted=targets is not None)
        counting, guard = CountingModel(attacked), Guard(attacked)
        call = call_attack(attack, counting, guard, images, labels, targets)
        assert call.void == ""  # its hook on features[1] came off again
        # One forward and one backward pass per sample: Grad-CAM's, whose backward stops at features[1].
        assert call.passes.forward_samples == 8 and call.passes.backward_samples == 8
        verified = verify(cnn, images, call.returned, labels, targets=targets)
        assert verified.valid.all(), verified.violation
        if targets is None:
            assert verified.success.mean() >= 0.5


def test_egs_tssa_grad_cam_needs_a_convolution(tiny_model, batch):
    images, labels = batch
    with pytest.raises(ValueError, match="saliency: 'grad-cam' needs a convolutional layer.*no Conv2d"):
        egs_tssa(tiny_model, images, labels, **GRAD_CAM_FAST)


def _settings(**overrides):
    from baselines.egs_tssa import _settings as settings

    return settings(**{"targeted": False, **EGS_FAST, **overrides})
