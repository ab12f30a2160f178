"""GreedyFool with its learned distortion map against the uniform map, on the offline Fashion-MNIST SmallCNNs.

First the map (``baselines.greedyfool.invisibility_map``, its default
training settings): trained once, or loaded from the cache, outside the
attacks' time; the script prints its training time and where it puts its
mass on ``--samples`` test images (the *object*: pixels above 0; the
background of Fashion-MNIST is exactly 0), both for the map ``rho`` and for
the weights the attack multiplies its scores by, and their correlation with
the local standard deviation of the image (3x3 window).

Then, for each of ``smallcnn-standard``, ``smallcnn-pgd-at`` and
``smallcnn-fast-at`` (loaded from the cache by
:func:`bench.models.load_model`, no download), the script draws
``--samples`` correctly classified test images (a permutation of the test
split seeded by ``--seed``; targets: a seeded random other class), runs
``greedyfool`` and ``greedyfool-uniform`` with their registry defaults,
untargeted and targeted, in one batch each, and checks every example with
:func:`bench.verify.verify`. Per run it prints the fooling rate, the median
L0 in pixels over the successes, and where the changed pixels lie: the
fraction on the background and the mean local standard deviation of the
clean image at them (3x3 window, [0, 1] units; higher: the change sits in
texture, where it shows less). Run::

    .tox/sparsebench/bin/python benchmarks/greedyfool_map.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from baselines.greedyfool import distortion_weights, invisibility_map
from bench.data import get_batch, load_dataset
from bench.models import load_model
from bench.registry import get_attack
from bench.runner import correct_batch
from bench.verify import verify

MODELS = ("smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at")
ATTACKS = ("greedyfool", "greedyfool-uniform")


def local_std(images: Tensor) -> Tensor:
    """Per pixel, the standard deviation of the image (mean over channels) in its 3x3 window, ``(B, H, W)``."""
    gray = images.mean(1, keepdim=True)
    mean = F.avg_pool2d(gray, 3, stride=1, padding=1, count_include_pad=False)
    square = F.avg_pool2d(gray.square(), 3, stride=1, padding=1, count_include_pad=False)
    return (square - mean.square()).clamp(min=0).sqrt()[:, 0]


def map_table(images: Tensor) -> None:
    started = time.perf_counter()
    rho = invisibility_map(images)[:, 0]
    weights = distortion_weights(images)[:, 0]
    seconds = time.perf_counter() - started
    obj = images.mean(1) > 0
    texture = local_std(images)
    print(f"Map: trained or loaded in {seconds:.1f} s (training happens once per dataset and settings, then cached)\n")
    print("| | object area | mass on object | mean on object | mean on background | corr. with local std |")
    print("|---|---|---|---|---|---|")
    for name, values in (("map rho", rho), ("weights w", weights)):
        mass = ((values * obj).flatten(1).sum(1) / values.flatten(1).sum(1)).mean()
        corr = np.corrcoef(values.flatten().numpy(), texture.flatten().numpy())[0, 1]
        print(f"| {name} | {obj.float().mean():.3f} | {mass:.3f} | {values[obj].mean():.3f} | "
              f"{values[~obj].mean():.3f} | {corr:.3f} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    test = load_dataset("fashion-mnist", split="test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
    print(f"{args.samples} correctly classified Fashion-MNIST test images per model (seed {args.seed}), "
          f"{torch.get_num_threads()} torch thread\n")
    map_table(get_batch(test, order[: args.samples])[0])

    print("| model | mode | attack | fooling rate | median L0 pixels | changed pixels on background | "
          "local std at changed pixels | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(name, "fashion-mnist", allow_download=False, progress=False)
        images, labels, targets = correct_batch(model, test, n_samples=args.samples, seed=args.seed)
        background, texture = images.mean(1) == 0, local_std(images)
        for mode in ("untargeted", "targeted"):
            targeted = mode == "targeted"
            for attack_name in ATTACKS:
                attack = get_attack(attack_name, dataset="fashion-mnist")
                attack.prepare(model, targeted=targeted)  # the map's training: not timed
                started = time.perf_counter()
                adversarial = attack(model, images, targets if targeted else labels, targeted=targeted)
                seconds = time.perf_counter() - started
                verified = verify(model, images, adversarial, labels, targets=targets if targeted else None)
                assert verified.valid.all(), verified.violation
                success = torch.from_numpy(verified.success)
                changed = (adversarial != images).any(1) & success.view(-1, 1, 1)
                median = np.median(verified.l0_pixels[verified.success]) if verified.success.any() else float("nan")
                print(f"| {name} | {mode} | {attack_name} | {verified.success.mean():.3f} | {median:.1f} | "
                      f"{background[changed].float().mean():.3f} | {texture[changed].mean():.3f} | {seconds:.1f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
