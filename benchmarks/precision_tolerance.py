"""Fooling rate and median L0 of three attacks with the attacked model in fp32, bf16 and/or channels-last.

The script behind the README's CPU figure (bf16 moved fmn-l0's untargeted fooling rate from 62.5 % to
40 %, and ran about 9x slower than fp32 on this 2-core CPU, 2026-11-28). A SmallCNN trained for one
epoch on 4,000 Fashion-MNIST images; 40 samples; verification, as always, by the float32 model.

    python benchmarks/precision_tolerance.py [--device cpu|cuda] [--out /tmp/precision]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore
from bench.training import train_small_cnn
from reports.tables import summarize

OPTIONS = [{}, {"precision": "bf16"}, {"channels_last": True}, {"precision": "bf16", "channels_last": True}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/precision"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model, _ = train_small_cnn("fashion-mnist", "standard", epochs=1, train_subset=4000, eval_pgd_images=10,
                               eval_pgd_steps=1)
    model = model.eval().requires_grad_(False).to(args.device)
    print(f"trained in {time.time() - started:.1f} s")
    for options in OPTIONS:
        started = time.time()
        config = parse_config({
            "name": "precision", "seed": 0, "n_samples": 40, "batch_size": 40, "device": args.device,
            "budgets": [5, 10, 20], "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
            "attacks": [{"name": "fmn-l0", "overrides": {"steps": 100}}, {"name": "vfga"},
                        {"name": "lin2025-improved"}],
            **options})
        label = "-".join(f"{k}={v}" for k, v in options.items()) or "fp32"
        store = ResultsStore(args.out / f"{label}.sqlite")
        summary = summarize(store.samples(run_benchmark(config, store, load_model=lambda *_: model, progress=False)))
        print(f"\n{label}: {time.time() - started:.1f} s")
        print(summary[["attack", "mode", "fooling_rate", "median_l0_pixels"]].to_markdown(index=False))


if __name__ == "__main__":
    main()
