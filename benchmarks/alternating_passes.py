"""The noise floor of `sparsebench bench` on a CPU: alternating passes against the bare medians.

An attack alternates forward+backward and forward passes on fresh inputs; the efficiency ratio
compares it with the median of each pass timed alone. This script times such an alternation of
bare passes (no attack at all) against the same medians, three times:

    OMP_NUM_THREADS=1 python benchmarks/alternating_passes.py --cache-dir /tmp/default-cache

A ratio above 1 here is the machine's, not an attack's (docs/measured/hot-paths-cpu.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.data import get_batch, load_dataset
from bench.efficiency import bare_pass_seconds
from bench.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    model = load_model("smallcnn-standard", "fashion-mnist", cache_dir=args.cache_dir)
    images, labels = get_batch(load_dataset("fashion-mnist"), list(range(args.batch_size)))

    def forward_backward(inputs):
        inputs = inputs.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(inputs), labels, reduction="sum"), inputs)

    def forward(inputs):
        with torch.no_grad():
            model(inputs)

    for _ in range(3):
        t_forward, t_forward_backward = bare_pass_seconds(model, images, labels)
        started = time.perf_counter()
        for step in range(args.steps):
            forward_backward(images + 1e-3 * step)
            forward(images - 1e-3 * step)
        alternating = (time.perf_counter() - started) / args.steps / args.batch_size
        print(f"bare medians {t_forward + t_forward_backward:.3e} s/sample, alternating {alternating:.3e} "
              f"s/sample: ratio {alternating / (t_forward + t_forward_backward):.3f}")


if __name__ == "__main__":
    main()
