"""EGS-TSSA with Grad-CAM groups (the paper's) against input-gradient groups, on the offline Fashion-MNIST SmallCNNs.

For each of ``smallcnn-standard``, ``smallcnn-pgd-at`` and ``smallcnn-fast-at``
(loaded from the cache by :func:`bench.models.load_model`, no download), the
script draws ``--samples`` correctly classified test images (a permutation of
the test split seeded by ``--seed``; targets: the label plus a random offset
in 1..9, seeded the same way), and for each mode and each ``saliency``
(``grad-cam``, ``gradient``) trains the generator (or loads it from
``--cache-dir``) with the registry's defaults for Fashion-MNIST, attacks the
batch and checks every example with :func:`bench.verify.verify`. L0 is in
pixels (one channel: pixels are elements here).

Printed: a markdown table of fooling rate and median and mean L0 over the
successes, and the seconds of training (0 when the generator was cached).
Run (about a minute per generator on one CPU thread)::

    .tox/sparsebench/bin/python benchmarks/egs_tssa_saliency.py

With ``--map-coverage`` it prints instead, per model, how much of Grad-CAM
(of the true class) is positive: the mean fraction of 4x4 groups with a
positive map, and the fraction of images where fewer groups than
``top_groups`` are (the rest of the budget then goes to groups tied at 0).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import torch
from torch.nn import functional as F

from attacks.gradcam import grad_cam
from bench.data import load_dataset
from bench.models import load_model
from bench.registry import ATTACKS, bind
from bench.runner import correct_batch
from bench.verify import verify

MODELS = ("smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at")
MODES = ("untargeted", "targeted")
SALIENCIES = ("grad-cam", "gradient")


def map_coverage(models: list[str], samples: int, seed: int) -> int:
    """Per model: the mean fraction of 4x4 groups where Grad-CAM of the true class is positive, and the
    fraction of images where fewer than egs-tssa's ``top_groups`` of the groups are."""
    defaults = ATTACKS["egs-tssa"].hyperparameters("mnist")
    size, budget = int(defaults["group_size"]), float(defaults["top_groups"])
    test = load_dataset("fashion-mnist", split="test")
    print(f"{samples} correctly classified Fashion-MNIST test images per model (seed {seed}); "
          f"Grad-CAM of the true class; {size}x{size} groups\n")
    print(f"| model | mean fraction of groups with a positive map | images with fewer than {budget:g} positive |")
    print("|---|---|---|")
    for name in models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels, _ = correct_batch(model, test, n_samples=samples, seed=seed)
        cams, _ = grad_cam(model, images, labels)
        positive = (F.avg_pool2d(cams[:, None], size, ceil_mode=True).flatten(1) > 0).float().mean(1)
        print(f"| {name} | {positive.mean():.2f} | {(positive < budget).float().mean():.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--cache-dir", type=pathlib.Path, default=None,
                        help="generator cache (default: SparseBench's, ~/.cache/sparsebench)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--map-coverage", action="store_true", help="print Grad-CAM's coverage of the groups only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.map_coverage:
        return map_coverage(args.models, args.samples, args.seed)

    entry = ATTACKS["egs-tssa"]
    defaults = {key: value for key, value in entry.hyperparameters("mnist").items() if key != "saliency"}
    test = load_dataset("fashion-mnist", split="test")
    print(f"{args.samples} correctly classified Fashion-MNIST test images per model (seed {args.seed}), "
          f"{torch.get_num_threads()} torch thread(s); egs-tssa defaults for Fashion-MNIST: "
          + ", ".join(f"{key} {value}" for key, value in sorted(defaults.items()) if key != "dataset") + "\n")
    print("| model | mode | saliency | fooling rate | median L0 pixels | mean L0 pixels | training seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels, targets = correct_batch(model, test, n_samples=args.samples, seed=args.seed)
        for mode in args.modes:
            targeted = mode == "targeted"
            for saliency in SALIENCIES:
                attack = bind(entry, dataset="fashion-mnist", saliency=saliency)
                start = time.perf_counter()
                attack.prepare(model, targeted=targeted, cache_dir=args.cache_dir)
                training = time.perf_counter() - start
                adversarial = attack(model, images, targets if targeted else labels, targeted=targeted)
                verified = verify(model, images, adversarial, labels, targets=targets if targeted else None)
                print(f"| {name} | {mode} | {saliency} | {verified.markdown_cells()} | {training:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
