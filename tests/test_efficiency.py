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
