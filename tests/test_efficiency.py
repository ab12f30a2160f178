"""The efficiency figures: counted passes against the bare model's pass times."""

from __future__ import annotations

import pytest
import torch

from bench.counting import timed
from bench.data import get_batch
from bench.efficiency import bare_pass_seconds, measure_efficiency
from bench.registry import get_attack


def test_efficiency_counts_and_formula(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(32)))
    attack = get_attack("i-fgsm", eps=0.1, alpha=0.01, steps=7)
    result = measure_efficiency(attack, tiny_model, images, labels, warmup=4, repeats=2)
    assert (result.forward_per_sample, result.backward_per_sample) == (7, 7)
    assert (result.forward_calls, result.backward_calls) == (7, 7)  # one call per step on the whole batch
    assert result.attack == "i-fgsm" and result.mode == "untargeted" and result.batch_size == 32
    # expected = (F - B) t_f + B t_fb; here F = B, so only gradient steps count.
    assert result.expected_seconds_per_sample == pytest.approx(7 * result.bare_forward_backward_seconds)
    assert result.ratio == pytest.approx(result.seconds_per_sample / result.expected_seconds_per_sample)
    assert 0 < result.bare_forward_seconds and 0 < result.bare_forward_backward_seconds


def test_targeted_uses_targets_and_forward_only_checks(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(16)))
    targets = (labels + 1) % 10
    result = measure_efficiency(get_attack("lin2025", steps=5), tiny_model, images, labels, targets=targets,
                                warmup=0, repeats=1)
    assert result.mode == "targeted"
    # lin2025 checks its sparse iterate with extra forward passes that have no backward.
    assert result.forward_per_sample > result.backward_per_sample > 0
    f, b = result.forward_per_sample, result.backward_per_sample
    assert result.expected_seconds_per_sample == pytest.approx(
        (f - b) * result.bare_forward_seconds + b * result.bare_forward_backward_seconds)


def test_bare_pass_seconds_positive(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(8)))
    t_forward, t_forward_backward = bare_pass_seconds(tiny_model, images, labels, repeats=2)
    assert t_forward > 0 and t_forward_backward > 0


def test_rounds_give_median_ratio_and_spread(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(16)))
    attack = get_attack("i-fgsm", eps=0.1, alpha=0.01, steps=3)
    result = measure_efficiency(attack, tiny_model, images, labels, warmup=0, repeats=2, rounds=3)
    assert result.rounds == 3 and result.clock == "wall"
    assert result.ratio_low <= result.ratio <= result.ratio_high
    assert (result.forward_per_sample, result.backward_per_sample) == (3, 3)
    with pytest.raises(ValueError, match="rounds: 0"):
        measure_efficiency(attack, tiny_model, images, labels, rounds=0)


def test_cpu_clock_counts_work_and_refuses_other_devices(tiny_model, fashion_test):
    images, labels = get_batch(fashion_test, list(range(16)))
    result = measure_efficiency(get_attack("i-fgsm", steps=3), tiny_model, images, labels, warmup=0, repeats=2,
                                clock="cpu")
    assert result.clock == "cpu" and result.seconds_per_sample > 0 and result.bare_forward_seconds > 0
    assert result.peak_memory_mib is None  # recorded on CUDA devices only
    with pytest.raises(ValueError, match="clock: 'sundial'"):
        bare_pass_seconds(tiny_model, images, labels, clock="sundial")
    with pytest.raises(ValueError, match="clock: 'cpu' times CPU work only"):
        with timed(torch.device("cuda"), "cpu"):
            pass


def test_calls_show_steps_on_few_remaining_samples(tiny_model, fashion_test):
    """An early-stopping attack makes more calls than its passes per sample: later steps run on fewer samples."""
    images, labels = get_batch(fashion_test, list(range(32)))
    result = measure_efficiency(get_attack("sparse-rs", k=10, n_queries=60), tiny_model, images, labels,
                                warmup=0, repeats=1)
    assert result.forward_calls > result.forward_per_sample  # some samples stopped before the others
    assert result.backward_calls == 0


def test_calls_priced_at_their_own_size_cost_more_than_their_share_of_a_full_batch(tiny_model, fashion_test):
    from bench.efficiency import call_seconds

    images, labels = get_batch(fashion_test, list(range(32)))
    # One full-batch call against the same 32 samples sent as 32 calls of one: per pass they are equal,
    # but each small call carries the model's fixed cost per call.
    full = call_seconds(tiny_model, images, labels, {32: 1}, {}, repeats=9)
    singles = call_seconds(tiny_model, images, labels, {1: 32}, {}, repeats=9)
    assert singles > full > 0
    # Sizes between powers of two are interpolated; sizes above the batch repeat the inputs.
    assert call_seconds(tiny_model, images, labels, {48: 1}, {48: 1}, repeats=3) > 0
    result = measure_efficiency(get_attack("sparse-rs", k=10, n_queries=60), tiny_model, images, labels,
                                warmup=0, repeats=1)
    assert result.call_expected_seconds_per_sample > 0 and result.call_ratio > 0


def test_bench_guards_the_attack_as_the_runner_does(tiny_model, samples):
    """``sparsebench bench`` times through the runner's guarded call: a lie ends its row, hidden passes count."""
    import lying_attacks

    from bench.guard import AttackVoid

    images, labels, _ = samples
    weight = tiny_model[1].weight.clone()
    with pytest.raises(AttackVoid, match="the attack changed the values of model.1.weight"):
        measure_efficiency(lying_attacks.zero_weights, tiny_model, images, labels, warmup=0, repeats=1)
    with pytest.raises(AttackVoid, match="wrote into the inputs"):
        measure_efficiency(lying_attacks.write_into_inputs, tiny_model, images, labels, warmup=0, repeats=1)
    assert torch.equal(tiny_model[1].weight, weight) and not tiny_model.training
    hidden = measure_efficiency(lying_attacks.hidden_passes, tiny_model, images, labels, warmup=0, repeats=1)
    assert (hidden.forward_per_sample, hidden.backward_per_sample) == (8, 0) and hidden.fooling_rate == 0
    honest = measure_efficiency(get_attack("i-fgsm", eps=0.3, alpha=0.05, steps=10), tiny_model, images, labels,
                                warmup=0, repeats=1)
    assert honest.fooling_rate >= 0.75  # verified by the harness, on the examples it timed


def test_count_ops_counts_operations_and_every_kind_of_sync():
    """Each way of reading a value from the device counts once; views and aliases launch nothing."""
    from bench.counting import count_ops

    x = torch.rand(4, 3)
    with count_ops() as views:
        x.unsqueeze(0).view(-1).expand(2, -1).t().detach()
    assert views[0].ops == 0 and views[0].syncs == 0
    with count_ops() as counted:
        x[x > 0.5]  # gt, and a boolean index: a sync
        x.tolist()
        bool((x > 0.2).any())  # gt, any, and the read
        x.sum().item()  # sum, and the read
        torch.nonzero(x > 0.5)  # gt, nonzero
        y = x.clone()
        y[y > 0.5] = 0  # gt, and a boolean index_put_
        torch.unique(x)
        x.cpu()
        x[torch.tensor([0, 1])]  # a long index: no sync
    assert counted[0].syncs == 8
    assert counted[0].ops >= 14


def test_operation_figures_price_what_the_attack_adds_to_its_model(tiny_model, samples):
    from bench.efficiency import model_ops, operation_figures

    images, labels, targets = samples
    forward, backward = model_ops(tiny_model, images)
    assert forward > 0 and backward > 0
    figures = operation_figures(get_attack("i-fgsm", steps=5), tiny_model, images, labels, targets=targets)
    assert (figures["forward_calls"], figures["backward_calls"]) == (5, 5)
    assert figures["op_ratio"] > 1 and figures["attack_ops_per_call"] > 0
    # I-FGSM decides nothing on the host: the one read is the registry's check that the inputs lie in [0, 1].
    assert figures["syncs_per_call"] * figures["forward_calls"] == 1
    # bench asks for them; without, they are not measured.
    measured = measure_efficiency(get_attack("i-fgsm", steps=3), tiny_model, images, labels, warmup=0, repeats=1,
                                  operations=True)
    assert measured.op_ratio > 1 and measured.syncs_per_call * 3 == 1
    plain = measure_efficiency(get_attack("i-fgsm", steps=3), tiny_model, images, labels, warmup=0, repeats=1)
    assert plain.op_ratio != plain.op_ratio  # NaN


@pytest.mark.parametrize("name,overrides,most_ops", [
    ("sparse-rs", {"k": 10, "n_queries": 100}, 45),
    ("brusleattack", {"k": 10, "n_queries": 100}, 72),
    ("sparse-pgd", {"k": 2, "steps": 60}, 70),
])
@pytest.mark.parametrize("targeted", [False, True])
def test_early_stopping_attacks_step_on_their_unsolved_samples_only(tiny_model, samples, name, overrides, most_ops,
                                                                    targeted):
    """A step of these searches touches the samples still searching and nothing else: one host sync per step,
    and no gathering and scattering of the whole batch's state (which once cost them 15 to 25 operations a step,
    a GPU's cost per step on a few samples)."""
    from bench.efficiency import operation_figures

    images, labels, targets = samples
    torch.manual_seed(0)
    figures = operation_figures(get_attack(name, **overrides), tiny_model, images, labels,
                                targets=targets if targeted else None)
    assert figures["forward_calls"] > 20  # the search ran
    assert figures["syncs_per_call"] <= 1.0
    assert figures["attack_ops_per_call"] <= most_ops
