"""GreedyFool (uniform map) and EGS-TSSA: their defining properties, the generator cache and the prepare step."""

from __future__ import annotations

import pytest
import torch
from tiny import train_linear

from attacks.losses import adversarial_cross_entropy
from baselines.egs_tssa import egs_tssa, group_mask, prepare_egs_tssa
from baselines.generators import forget_generators, generator_path, model_fingerprint
from baselines.greedyfool import greedyfool_uniform
from bench.counting import CountingModel
from bench.data import get_batch
from bench.registry import ATTACKS, Attack, AttackEntry
from bench.verify import verify

# A generator trained in under a second on the tiny model (the registry entry's smoke settings);
# the defaults are the benchmark's.
EGS_FAST = ATTACKS["egs-tssa"].smoke


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
                                         ("stages", 0), ("lam_sparsity", -1.0), ("train_steps", 0), ("lr", 0.0)])
def test_egs_tssa_rejects_bad_values(tiny_model, batch, field, value):
    images, labels = batch
    with pytest.raises(ValueError, match=field):
        egs_tssa(tiny_model, images, labels, **{**EGS_FAST, field: value})


def _settings(**overrides):
    from baselines.egs_tssa import _settings as settings

    return settings(**{"targeted": False, **EGS_FAST, **overrides})
