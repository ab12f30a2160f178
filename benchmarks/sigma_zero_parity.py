"""Native sigma-zero against adv-lib's sigma-zero on the offline Fashion-MNIST SmallCNNs.

For each of ``smallcnn-standard``, ``smallcnn-fast-at`` and ``smallcnn-pgd-at``
(loaded from the cache by :func:`bench.models.load_model`, no download), the
script draws ``--samples`` correctly classified test images (a permutation of
the test split seeded by ``--seed``), runs both attacks untargeted with
``--steps`` steps and their default hyperparameters in one batch, and checks
every example with :func:`bench.verify.verify` (the [0, 1] box, success by the
harness's argmax). L0 is counted in elements (C*H*W = 784, one channel, so
elements are pixels here).

Pass criteria, per model:

* native median L0 over its successes at most ``--factor`` (1.1) times
  adv-lib's median over adv-lib's successes;
* native fooling rate not lower than adv-lib's by more than one sample.

The script prints a markdown table and the checks and exits with status 1 if
one fails. Run (about a minute per model on 2 cores)::

    .tox/sparsebench/bin/python benchmarks/sigma_zero_parity.py
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from adv_lib.attacks.sigma_zero import sigma_zero as adv_lib_sigma_zero

from baselines.sigma_zero import sigma_zero
from bench.data import get_batch, load_dataset
from bench.models import load_model
from bench.verify import verify

MODELS = ("smallcnn-standard", "smallcnn-fast-at", "smallcnn-pgd-at")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factor", type=float, default=1.1)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)

    test = load_dataset("fashion-mnist", split="test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
    print(f"{args.samples} correctly classified Fashion-MNIST test images (seed {args.seed}), untargeted, "
          f"{args.steps} steps, {torch.get_num_threads()} torch threads\n")
    print("| model | attack | fooling rate | median L0 elements | mean L0 elements | seconds |")
    print("|---|---|---|---|---|---|")
    checks: dict[str, bool] = {}
    for name in args.models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels = get_batch(test, order[: 4 * args.samples])
        with torch.no_grad():
            correct = model(images).argmax(1) == labels
        images, labels = images[correct][: args.samples], labels[correct][: args.samples]
        rows = {}
        for attack_name, attack in (
            ("native", lambda m, x, y: sigma_zero(m, x, y, steps=args.steps)),
            ("adv-lib", lambda m, x, y: adv_lib_sigma_zero(m, x, y, num_steps=args.steps)),
        ):
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
        (native_fooled, native_median), (reference_fooled, reference_median) = rows["native"], rows["adv-lib"]
        checks[f"{name}: native median L0 {native_median:g} <= {args.factor}x adv-lib's {reference_median:g}"] = (
            native_median <= args.factor * reference_median
        )
        checks[f"{name}: native fooled {native_fooled} >= adv-lib's {reference_fooled} - 1"] = (
            native_fooled >= reference_fooled - 1
        )
    print()
    for check, passed in checks.items():
        print(f"- [{'x' if passed else ' '}] {check}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
