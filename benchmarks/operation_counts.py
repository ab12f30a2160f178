"""What each attack's steps cost in tensor operations and host-device synchronisations, on any machine.

On a GPU a step on a few samples costs what its operations number (each is a
kernel launch of a few microseconds, whatever the batch), and a
synchronisation makes the host wait for the device's queue. Neither depends
on the device, so the CPU counts what a GPU will pay: this script runs each
attack once, guarded as the runner does, on ``--samples`` correctly
classified test images of the offline standard SmallCNN (Fashion-MNIST; the
harness's sample selection for ``--seed``), with the step and query budgets
of ``--overrides-from`` (default ``timing-cifar10``, those of the H200
timing table), and counts with :func:`bench.efficiency.operation_figures`.

Columns: forward calls (steps, roughly); the attack's own operations per
forward call (views aside; everything but the model's passes) and its
synchronisations per forward call; ``op_ratio``, all operations over the
model's for the same calls, on the SmallCNN and, from the same counts, on
RobustBench's PreActResNet-18 (``Wong2020Fast``) and WideResNet-28-10
(``Standard``): the same calls priced in those models' operations (their
forward and backward counted by :func:`bench.efficiency.model_ops` on one
CIFAR-10-sized input). Where a GPU runs steps on few samples, ``op_ratio``
is what ``call_ratio`` tends to. Run (a few minutes on one CPU thread)::

    OMP_NUM_THREADS=1 python benchmarks/operation_counts.py > operation-counts.md
"""

from __future__ import annotations

import argparse

import torch

from bench.config import load_config, resolve_config
from bench.data import load_dataset
from bench.efficiency import model_ops, operation_figures
from bench.models import load_model, untrained_model
from bench.provenance import git_commit
from bench.registry import get_attack
from bench.runner import correct_batch

STRAGGLERS = ("sparse-rs", "sparse-rs-min", "brusleattack", "brusleattack-min", "pgd-l0", "pgd-l0-min",
              "sparse-pgd", "sparse-pgd-min", "homotopy")
REFERENCES = ("i-fgsm", "lin2025", "fmn-l0", "sigma-zero")
PROJECTED = ("robustbench/Wong2020Fast", "robustbench/Standard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("attacks", nargs="*", default=[*STRAGGLERS, *REFERENCES],
                        help="registry names (default: the early-stopping attacks, then four references)")
    parser.add_argument("--overrides-from", default="timing-cifar10", metavar="CONFIG")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    overrides = {a.name: dict(a.overrides) for a in load_config(resolve_config(args.overrides_from)).attacks}
    model = load_model("smallcnn-standard", "fashion-mnist", cache_dir=args.cache_dir)
    images, labels, targets = correct_batch(model, load_dataset("fashion-mnist"), n_samples=args.samples,
                                            seed=args.seed)
    priced = {"smallcnn": model_ops(model, images)}
    for name in PROJECTED:
        priced[name.split("/")[1]] = model_ops(untrained_model(name, "cifar10", seed=0, device=torch.device("cpu")),
                                               torch.rand(1, 3, 32, 32))
    print(f"Commit {git_commit()}; {args.samples} images, seed {args.seed}, budgets of {args.overrides_from}. "
          "Operations per forward + backward call of each model: "
          + ", ".join(f"{name} {f} + {b}" for name, (f, b) in priced.items()) + ".\n")
    print("| attack | mode | forward calls | backward calls | attack ops / call | syncs / call | "
          + " | ".join(f"op_ratio {name}" for name in priced) + " |")
    print("|---|---|" + "---:|" * (4 + len(priced)))
    for name in args.attacks:
        attack = get_attack(name, dataset="fashion-mnist", **overrides.get(name, {}))
        for mode in attack.entry.modes:
            torch.manual_seed(args.seed)
            figures = operation_figures(attack, model, images, labels,
                                        targets=targets if mode == "targeted" else None)
            forward, backward = figures["forward_calls"], figures["backward_calls"]
            own = figures["attack_ops_per_call"] * forward
            ratios = [(forward * f + backward * b + own) / (forward * f + backward * b) for f, b in priced.values()]
            print(f"| {name} | {mode} | {forward} | {backward} | {figures['attack_ops_per_call']:.1f} | "
                  f"{figures['syncs_per_call']:.2f} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
