"""Study of ``lin2025-frontier`` (attacks/lin2025_frontier.py) against sigma-zero on the offline
Fashion-MNIST SmallCNNs: one idea at a time on a tuning split, then the final variant on held-out
samples.

Samples, per model: the Fashion-MNIST test set in the order of a seeded permutation, keeping the
images the model classifies correctly; the first ``--tuning`` of them are the tuning split, the next
``--heldout`` the held-out split, so the two are disjoint by construction. Targeted attacks aim at
the least-likely class (the lowest clean logit), as Lin et al. do. Every returned example is checked
by :func:`bench.verify.verify` (box, success by the harness's argmax; L0 in elements, which are
pixels for these one-channel images) and passes are counted by :class:`bench.counting.CountingModel`
around the model, not taken from the attack.

Prints markdown tables: per configuration, model and mode the fooling rate, the median L0 over the
successful samples, forward and backward passes per sample, and the same for sigma-zero (1000
steps) on the same samples; for the held-out split also a paired comparison
(:func:`reports.stats.paired_comparison`).

Usage::

    python benchmarks/lin2025_frontier_study.py --part tuning
    python benchmarks/lin2025_frontier_study.py --part heldout
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.lin2025_frontier import lin2025_frontier  # noqa: E402
from baselines.sigma_zero import sigma_zero  # noqa: E402
from bench.counting import CountingModel  # noqa: E402
from bench.data import get_batch, load_dataset  # noqa: E402
from bench.models import load_model  # noqa: E402
from bench.verify import verify  # noqa: E402
from reports.stats import paired_comparison  # noqa: E402

MODELS = ("smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at")
MODES = ("untargeted", "targeted")

#: The study's starting point: lin2025_frontier with changes 1 and 2 of its docstring only (Omega per
#: sign, the loss on the output's form), the paper's SGD and cross-entropy, a fixed lambda, a, threshold
#: and dense start, one start, no pruning.
START: dict[str, Any] = {"update": "sgd", "lr": 1e-2, "lam": 1e-2, "lam_factor": 0.0, "a": 0.3, "a_final": 0.3,
                         "threshold_factor": 0.0, "delta_step": 0.0, "loss": "ce", "restarts": 1, "pruning": False}


def _frontier(*, own_steps: bool = False, **overrides: Any) -> Callable[..., torch.Tensor]:
    """lin2025_frontier with ``overrides``, run for the study's ``--steps`` (its own default with ``own_steps``)."""
    def attack(model, inputs, labels, *, targeted=False, steps=850):
        chosen = {} if own_steps else {"steps": steps}
        return lin2025_frontier(model, inputs, labels, targeted=targeted, **chosen, **overrides)
    return attack


#: name -> (attack taking ``steps``, what it is). Ideas are applied one at a time to ``START``.
CONFIGS: dict[str, tuple[Callable[..., torch.Tensor], str]] = {
    "start": (_frontier(**START), "Omega per sign + loss on the output's form; paper SGD, lam 1e-2, a 0.3"),
    "+normalised": (_frontier(**{**START, "update": "normalised", "lr": 0.1}),
                    "sigma-zero's Linf-normalised gradient, Adam, cosine lr 0.1 -> 0.01"),
    "+adaptive-lam": (_frontier(**{**START, "lam_factor": 0.05}), "per-sample lambda, x/÷ 1.05 per step"),
    "+anneal-a": (_frontier(**{**START, "a": 1.0, "a_final": 0.1}), "a annealed 1.0 -> 0.1"),
    "+threshold": (_frontier(**{**START, "threshold_factor": 0.1}), "sigma-zero's adaptive threshold on w"),
    "+restarts4": (_frontier(**{**START, "restarts": 4}), "4 dense starts (3 random), steps split"),
    "+prune": (_frontier(**{**START, "pruning": True}), "attacks.prune.prune after success"),
    "+delta-step": (_frontier(**{**START, "delta_step": 1 / 255}),
                    "the dense start keeps taking I-FGSM steps (1/255) at the masked example's gradient"),
    "+margin-loss": (_frontier(**{**START, "loss": "margin"}),
                     "sigma-zero's loss, max(-margin, 0), in place of the cross-entropy"),
    "frontier": (_frontier(own_steps=True), "lin2025-frontier as registered (the combination, 985 steps)"),
}


@dataclass
class Result:
    success: np.ndarray
    l0: np.ndarray  # elements; +inf where the attack failed
    forward: float
    backward: float
    seconds: float


def split(model: torch.nn.Module, dataset, *, seed: int, tuning: int, heldout: int) -> dict[str, list[int]]:
    """Test indices in a seeded permutation, correctly classified by ``model``: the first ``tuning``, the next
    ``heldout``."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: list[int] = []
    for start in range(0, len(order), 256):
        chunk = order[start:start + 256]
        images, labels = get_batch(dataset, chunk)
        with torch.no_grad():
            correct = (model(images).argmax(1) == labels).tolist()
        chosen += [index for index, ok in zip(chunk, correct) if ok]
        if len(chosen) >= tuning + heldout:
            break
    return {"tuning": chosen[:tuning], "heldout": chosen[tuning:tuning + heldout]}


def run(attack: Callable[..., torch.Tensor], model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
        targets: torch.Tensor | None, **kwargs: Any) -> Result:
    counting = CountingModel(model)
    try:
        torch.manual_seed(0)
        start = time.perf_counter()
        adversarial = attack(counting, images, targets if targets is not None else labels,
                             targeted=targets is not None, **kwargs)
        seconds = time.perf_counter() - start
        totals = counting.since_reset()
    finally:
        counting.close()
    checked = verify(model, images, adversarial, labels, targets=targets)
    assert checked.valid.all(), checked.violation
    l0 = np.where(checked.success, checked.l0_elements.astype(float), np.inf)
    n = len(images)
    return Result(checked.success, l0, totals.forward_samples / n, totals.backward_samples / n, seconds)


def row(name: str, model: str, mode: str, result: Result, reference: Result) -> str:
    def median(r: Result) -> str:
        return f"{np.median(r.l0[r.success]):g}" if r.success.any() else "-"
    return (f"| {name} | {model.removeprefix('smallcnn-')} | {mode} | {100 * result.success.mean():.1f} | "
            f"{median(result)} | {result.forward:.0f} / {result.backward:.0f} | "
            f"{100 * reference.success.mean():.1f} | {median(reference)} | {result.seconds:.1f} |")


HEADER = ("| config | model | mode | fooling rate (%) | median L0 | passes F / B per sample | "
          "sigma-zero FR (%) | sigma-zero median L0 | seconds |\n|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("tuning", "heldout"), default="tuning",
                        help="tuning: every configuration on the tuning split; heldout: 'frontier' on the "
                             "held-out split, with a paired comparison (default tuning)")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=None,
                        help="configurations to run (default: all for tuning, 'frontier' for heldout)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=850,
                        help="steps on the mask for every configuration but 'frontier', which runs its own "
                             "default, 985 (default 850: room for the pruning pass within 1000 forward passes)")
    parser.add_argument("--sigma-steps", type=int, default=1000, help="sigma-zero's steps (default 1000)")
    parser.add_argument("--tuning", type=int, default=32, help="tuning samples per model (default 32)")
    parser.add_argument("--heldout", type=int, default=64, help="held-out samples per model (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample permutation (default 0)")
    parser.add_argument("--set", nargs="+", action="append", default=[], metavar="NAME=VALUE",
                        help="run one more configuration: lin2025_frontier's defaults with these "
                             "hyperparameters changed (values read as Python literals), run for --steps "
                             "steps and named by its changes; repeat --set for several")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    customs = []
    for items in args.set:
        custom = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in items)}
        customs.append(" ".join(items))
        CONFIGS[customs[-1]] = (_frontier(**custom), f"lin2025-frontier's defaults with {custom}")
    configs = (args.configs or []) + customs
    configs = configs or (sorted(CONFIGS, key=list(CONFIGS).index) if args.part == "tuning" else ["frontier"])

    dataset = load_dataset("fashion-mnist", split="test")
    print(f"# lin2025-frontier study, {args.part} split\n")
    print(f"steps {args.steps} (sigma-zero {args.sigma_steps}); samples per model: "
          f"{args.tuning if args.part == 'tuning' else args.heldout}; seed {args.seed}\n")
    for name in configs:
        print(f"- `{name}`: {CONFIGS[name][1]}")
    print("\n" + HEADER)
    paired = []
    for model_name in args.models:
        model = load_model(model_name, "fashion-mnist", allow_download=False, progress=False).eval()
        model.requires_grad_(False)
        indices = split(model, dataset, seed=args.seed, tuning=args.tuning, heldout=args.heldout)[args.part]
        images, labels = get_batch(dataset, indices)
        with torch.no_grad():
            least_likely = model(images).argmin(1)
        for mode in args.modes:
            targets = least_likely if mode == "targeted" else None
            reference = run(sigma_zero, model, images, labels, targets, steps=args.sigma_steps)
            for name in configs:
                result = run(CONFIGS[name][0], model, images, labels, targets, steps=args.steps)
                print(row(name, model_name, mode, result, reference), flush=True)
                paired.append((name, model_name, mode, result, reference))
            print(row("sigma-zero", model_name, mode, reference, reference), flush=True)
    if args.part == "heldout":
        print("\n## Paired comparison with sigma-zero (L0 per sample, a failure counts as +inf)\n")
        print("| config | model | mode | n | wins | ties | losses | sign-test p | median ratio L0 / sigma-zero [95%] |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, model_name, mode, result, reference in paired:
            c = paired_comparison(result.l0, reference.l0, seed=0)
            print(f"| {name} | {model_name.removeprefix('smallcnn-')} | {mode} | {c.n} | {c.wins} | {c.ties} | "
                  f"{c.losses} | {c.sign_test_p:.3g} | {c.median_ratio:.3f} [{c.median_ratio_lo:.3f}, "
                  f"{c.median_ratio_hi:.3f}] |")


if __name__ == "__main__":
    main()
