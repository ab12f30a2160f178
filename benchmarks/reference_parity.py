"""Native baselines against their reference implementations on the offline Fashion-MNIST SmallCNNs.

For ``--attack`` (sigma-zero against adv-lib's, SparseFool or OnePixel
against torchattacks') and each of ``smallcnn-standard``, ``smallcnn-fast-at`` and
``smallcnn-pgd-at`` (loaded from the cache by :func:`bench.models.load_model`,
no download), the script draws ``--samples`` correctly classified test images
(a permutation of the test split seeded by ``--seed``), runs every variant
untargeted (adv-lib's sigma-zero and both SparseFools are untargeted only)
with their default hyperparameters in one batch (OnePixel: 5 pixels, 100
candidates, 20 generations, as the ``parity-offline`` config), and checks every example with
:func:`bench.verify.verify` (the [0, 1] box, success by the harness's argmax).
L0 is counted in elements (C*H*W = 784, one channel, so elements are pixels
here). ``--steps`` is sigma-zero's number of steps; SparseFool runs 20 outer
iterations on both sides (the authors' release).

Pass criteria, per model, for the native attack against the reference:

* native median L0 over its successes at most ``--factor`` (1.1) times the
  reference's median over the reference's successes;
* native fooling rate not lower than the reference's by more than one sample.

The script prints a markdown table and the checks and exits with status 1 if
one fails. Run (about a minute per model on 2 cores)::

    .tox/sparsebench/bin/python benchmarks/reference_parity.py --attack sigma-zero
    .tox/sparsebench/bin/python benchmarks/reference_parity.py --attack sparsefool
    .tox/sparsebench/bin/python benchmarks/reference_parity.py --attack onepixel
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torchattacks
from adv_lib.attacks.sigma_zero import sigma_zero as adv_lib_sigma_zero
from torch import Tensor, nn

from baselines.onepixel import onepixel
from baselines.sigma_zero import sigma_zero
from baselines.sparsefool import sparsefool
from bench.data import load_dataset
from bench.models import load_model
from bench.runner import correct_batch
from bench.verify import verify

MODELS = ("smallcnn-standard", "smallcnn-fast-at", "smallcnn-pgd-at")
SPARSEFOOL_ITERATIONS = 20
ONEPIXEL = {"pixels": 5, "population": 100, "generations": 20}  # as the parity-offline config


def variants(attack: str, steps: int) -> dict[str, Callable[[nn.Module, Tensor, Tensor], Tensor]]:
    """The variants run for ``attack``: ``native`` first, the reference last."""
    if attack == "sigma-zero":
        return {
            "native": lambda m, x, y: sigma_zero(m, x, y, steps=steps),
            "adv-lib": lambda m, x, y: adv_lib_sigma_zero(m, x, y, num_steps=steps),
        }
    if attack == "onepixel":
        return {
            "native": lambda m, x, y: onepixel(m, x, y, **ONEPIXEL),
            "native, DE/rand/1 (paper)": lambda m, x, y: onepixel(m, x, y, strategy="rand1", **ONEPIXEL),
            "torchattacks": lambda m, x, y: torchattacks.OnePixel(
                m, pixels=ONEPIXEL["pixels"], steps=ONEPIXEL["generations"], popsize=ONEPIXEL["population"])(x, y),
        }
    return {
        "native": lambda m, x, y: sparsefool(m, x, y, max_iter=SPARSEFOOL_ITERATIONS),
        "native, fixed lam (paper)": lambda m, x, y: sparsefool(m, x, y, max_iter=SPARSEFOOL_ITERATIONS,
                                                                lam_growth=1.0),
        "torchattacks": lambda m, x, y: torchattacks.SparseFool(m, steps=SPARSEFOOL_ITERATIONS)(x, y),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=("sigma-zero", "sparsefool", "onepixel"), default="sigma-zero")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factor", type=float, default=1.1)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)

    test = load_dataset("fashion-mnist", split="test")
    budget = {"sigma-zero": f"{args.steps} steps", "sparsefool": f"{SPARSEFOOL_ITERATIONS} iterations",
              "onepixel": ", ".join(f"{key} {value}" for key, value in ONEPIXEL.items())}[args.attack]
    print(f"{args.attack}: {args.samples} correctly classified Fashion-MNIST test images (seed {args.seed}), "
          f"untargeted, {budget}, {torch.get_num_threads()} torch threads\n")
    print("| model | attack | fooling rate | median L0 elements | mean L0 elements | seconds |")
    print("|---|---|---|---|---|---|")
    checks: dict[str, bool] = {}
    for name in args.models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels, _ = correct_batch(model, test, n_samples=args.samples, seed=args.seed)
        rows = {}
        for attack_name, attack in variants(args.attack, args.steps).items():
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            adversarial = attack(model, images, labels)
            seconds = time.perf_counter() - start
            verified = verify(model, images, adversarial, labels)
            success = verified.success
            l0 = verified.l0_elements[success]
            rows[attack_name] = (int(success.sum()), float(np.median(l0)) if success.any() else float("nan"))
            print(f"| {name} | {attack_name} | {success.mean():.3f} ({int(success.sum())}/{len(success)}) | "
                  f"{rows[attack_name][1]:g} | {l0.mean() if success.any() else float('nan'):.2f} | {seconds:.1f} |")
        reference = list(rows)[-1]
        (native_fooled, native_median), (reference_fooled, reference_median) = rows["native"], rows[reference]
        checks[f"{name}: native median L0 {native_median:g} <= {args.factor}x {reference}'s {reference_median:g}"] = (
            native_median <= args.factor * reference_median
        )
        checks[f"{name}: native fooled {native_fooled} >= {reference}'s {reference_fooled} - 1"] = (
            native_fooled >= reference_fooled - 1
        )
    print()
    for check, passed in checks.items():
        print(f"- [{'x' if passed else ' '}] {check}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
