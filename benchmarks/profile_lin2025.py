"""Where lin2025's time goes: torch.profiler over 30 steps at batch 256 on the offline standard SmallCNN.

    OMP_NUM_THREADS=1 python benchmarks/profile_lin2025.py --cache-dir /tmp/default-cache

Prints the operators by self CPU time: the model's convolutions, ReLUs and pooling against the
attack's own elementwise work (docs/measured/hot-paths-cpu.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from attacks.lin2025 import lin2025
from bench.data import get_batch, load_dataset
from bench.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    model = load_model("smallcnn-standard", "fashion-mnist", cache_dir=args.cache_dir)
    images, labels = get_batch(load_dataset("fashion-mnist"), list(range(args.batch_size)))
    lin2025(model, images[:8], labels[:8], steps=5)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        lin2025(model, images, labels, steps=args.steps)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
