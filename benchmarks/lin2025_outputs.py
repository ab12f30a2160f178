"""Save lin2025's and lin2025-improved's outputs in eight configurations, to compare two versions bit for bit.

    OMP_NUM_THREADS=1 python benchmarks/lin2025_outputs.py before.pt --cache-dir /tmp/default-cache
    (change the code)
    OMP_NUM_THREADS=1 python benchmarks/lin2025_outputs.py after.pt --cache-dir /tmp/default-cache --compare before.pt

Used to check that a speed-up of the attack's loop changes no output (64 test images, 60 steps; both
modes of each attack, and lin2025 with patience, the eq.-22 forward, keep_best off and the dense fallback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.data import get_batch, load_dataset
from bench.models import load_model
from bench.registry import get_attack


def outputs(cache_dir: Path | None) -> dict[str, torch.Tensor]:
    model = load_model("smallcnn-standard", "fashion-mnist", cache_dir=cache_dir)
    images, labels = get_batch(load_dataset("fashion-mnist"), list(range(64)))
    cases = [(name, targeted, {}) for name in ("lin2025", "lin2025-improved") for targeted in (False, True)]
    cases += [("lin2025", False, extra) for extra in
              ({"patience": 5}, {"forward": "eq22"}, {"keep_best": False}, {"on_failure": "dense"})]
    result = {}
    for name, targeted, extra in cases:
        torch.manual_seed(0)
        goal = (labels + 3) % 10 if targeted else labels
        attack = get_attack(name, dataset="fashion-mnist", steps=60, **extra)
        result[f"{name} targeted={targeted} {extra}"] = attack(model, images, goal, targeted=targeted)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None, help="a file an earlier run saved")
    args = parser.parse_args()
    result = outputs(args.cache_dir)
    torch.save(result, args.out)
    if args.compare is None:
        return 0
    before = torch.load(args.compare)
    differ = [key for key in result if not torch.equal(result[key], before[key])]
    for key in result:
        print(f"{key}: {'differs' if key in differ else 'identical'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
