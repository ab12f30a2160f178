"""Save attacks' outputs in fixed configurations, to compare two versions of the code bit for bit.

    OMP_NUM_THREADS=1 python benchmarks/attack_outputs.py before.pt --set stragglers
    (change the code)
    OMP_NUM_THREADS=1 python benchmarks/attack_outputs.py after.pt --set stragglers --compare before.pt

Used to check that a speed-up of an attack's loop changes no output: 64 test images of the offline
standard SmallCNN, each case seeded alike. ``--set lin2025``: lin2025 and lin2025-improved, 60 steps,
both modes, and lin2025 with patience, the eq.-22 forward, keep_best off and the dense fallback.
``--set stragglers``: the early-stopping attacks (Sparse-RS, BruSLeAttack, Sparse-PGD, PGD-L0,
Homotopy and the minimum-norm searches), both modes, budgets cut so the set runs in about a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.data import get_batch, load_dataset
from bench.models import load_model
from bench.registry import get_attack

BOTH = (False, True)
SETS: dict[str, list[tuple[str, bool, dict]]] = {
    "lin2025": [(name, targeted, {"steps": 60}) for name in ("lin2025", "lin2025-improved") for targeted in BOTH]
    + [("lin2025", False, {"steps": 60, **extra}) for extra in
       ({"patience": 5}, {"forward": "eq22"}, {"keep_best": False}, {"on_failure": "dense"})],
    "stragglers": [(name, targeted, extra) for targeted in BOTH for name, extra in (
        ("sparse-rs", {"n_queries": 300}), ("sparse-rs", {"n_queries": 100, "k": 784}),
        ("sparse-rs-min", {"n_queries": 60}),
        ("brusleattack", {"n_queries": 300}), ("brusleattack-min", {"n_queries": 60}),
        ("sparse-pgd", {"steps": 100}), ("sparse-pgd", {"steps": 60, "gradient": "projected", "loss": "ce"}),
        ("sparse-pgd-min", {"steps": 20}),
        ("pgd-l0", {"steps": 30, "restarts": 2}), ("pgd-l0-min", {"steps": 10, "restarts": 1}),
        ("homotopy", {"max_outer": 20, "inner_steps": 20, "post_steps": 20, "lambda_scale": 0.3}))],
}


def outputs(cases: list[tuple[str, bool, dict]], cache_dir: Path | None) -> dict[str, torch.Tensor]:
    model = load_model("smallcnn-standard", "fashion-mnist", cache_dir=cache_dir)
    images, labels = get_batch(load_dataset("fashion-mnist"), list(range(64)))
    result = {}
    for name, targeted, extra in cases:
        torch.manual_seed(0)
        goal = (labels + 3) % 10 if targeted else labels
        attack = get_attack(name, dataset="fashion-mnist", **extra)
        result[f"{name} targeted={targeted} {extra}"] = attack(model, images, goal, targeted=targeted)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", choices=sorted(SETS), default="lin2025", help="which cases (default: lin2025)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None, help="a file an earlier run saved")
    args = parser.parse_args()
    result = outputs(SETS[args.set], args.cache_dir)
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
