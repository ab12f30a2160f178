"""Sparse-PGD's loss: cross-entropy, margin, or the authors' release's switch, on the offline Fashion-MNIST SmallCNNs.

For each of ``smallcnn-standard``, ``smallcnn-pgd-at`` and ``smallcnn-fast-at``
(loaded from the cache by :func:`bench.models.load_model`, no download), the
script draws ``--samples`` correctly classified test images (a permutation of
the test split seeded by ``--seed``; targets: the label plus a random offset
in 1..9, seeded the same way) and, in each mode, runs

* ``sparse-pgd`` (fixed budget) at each ``--k`` (pixels), and
* ``sparse-pgd-min`` (binary search over ``--budgets``),

with ``--steps`` iterations (300, the step count of ``bench/configs/default.toml``
and ``offline-search.toml``; the paper's is 10,000) and each ``loss`` in
``ce``, ``margin``, ``switch``, every run seeded with ``--seed``. Every example
is checked by :func:`bench.verify.verify`; L0 is in pixels.

Printed: a markdown table of fooling rate, median and mean L0 over the
successes, and seconds. Run (about 15 minutes on one loaded CPU thread)::

    .tox/sparsebench/bin/python benchmarks/sparse_pgd_loss.py > seed0.md

``--summarize seed0.md seed1.md`` reads such tables back and prints, per
mode and loss, the samples fooled at fixed k (summed over models, k and
files) and the mean over the sparse-pgd-min rows of their mean L0.
"""

from __future__ import annotations

import argparse
import collections
import re
import time

import torch

from baselines.sparse_pgd import LOSSES, sparse_pgd, sparse_pgd_min
from bench.data import load_dataset
from bench.models import load_model
from bench.runner import correct_batch
from bench.verify import verify

MODELS = ("smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at")
MODES = ("untargeted", "targeted")


def summarize(paths: list[str]) -> int:
    """Totals of the tables :func:`main` printed, per mode and loss."""
    fooled: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    l0: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for path in paths:
        with open(path) as table:
            for line in table:
                cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
                if len(cells) != 8 or not cells[0].startswith("smallcnn"):
                    continue
                _, mode, attack, loss, rate, _, mean, _ = cells
                if attack == "sparse-pgd-min":
                    l0[(mode, loss)].append(float(mean))
                else:
                    count, total = map(int, re.search(r"\((\d+)/(\d+)\)", rate).groups())  # type: ignore[union-attr]
                    fooled[(mode, loss)][0] += count
                    fooled[(mode, loss)][1] += total
    print(f"Totals over {', '.join(paths)}\n")
    print("| mode | loss | fooled at fixed k | sparse-pgd-min: mean of the mean L0 pixels |")
    print("|---|---|---|---|")
    for mode in MODES:
        for loss in LOSSES:
            count, total = fooled[(mode, loss)]
            means = l0[(mode, loss)]
            print(f"| {mode} | {loss} | {count}/{total} | "
                  f"{sum(means) / len(means) if means else float('nan'):.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50, 100],
                        help="sparse-pgd-min's grid (that of bench/configs/default.toml); none: skip it")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summarize", nargs="+", metavar="TABLE", help="print the totals of saved outputs only")
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    torch.set_num_threads(args.threads)

    test = load_dataset("fashion-mnist", split="test")
    print(f"{args.samples} correctly classified Fashion-MNIST test images per model (seed {args.seed}), "
          f"{args.steps} steps, sparse-pgd-min budgets {args.budgets}, {torch.get_num_threads()} torch thread(s)\n")
    print("| model | mode | attack | loss | fooling rate | median L0 pixels | mean L0 pixels | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels, targets = correct_batch(model, test, n_samples=args.samples, seed=args.seed)
        for mode in args.modes:
            targeted = mode == "targeted"
            goal = targets if targeted else labels
            runs = [(f"sparse-pgd k={k}", sparse_pgd, {"k": k}) for k in args.k]
            if args.budgets:
                runs.append(("sparse-pgd-min", sparse_pgd_min, {"budgets": tuple(args.budgets)}))
            for label, attack, budget in runs:
                for loss in LOSSES:
                    torch.manual_seed(args.seed)
                    start = time.perf_counter()
                    adversarial = attack(model, images, goal, targeted=targeted, steps=args.steps, loss=loss,
                                         **budget)
                    seconds = time.perf_counter() - start
                    verified = verify(model, images, adversarial, labels, targets=targets if targeted else None)
                    print(f"| {name} | {mode} | {label} | {loss} | {verified.markdown_cells()} | {seconds:.1f} |",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
