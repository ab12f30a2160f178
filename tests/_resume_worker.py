"""Run a small benchmark into a store; the resume test kills this process part-way.

Usage: python tests/_resume_worker.py STORE
"""

from __future__ import annotations

import sys

import torch
from tiny import train_linear

from bench.config import parse_config
from bench.runner import run_benchmark
from bench.store import ResultsStore

CONFIG = {
    "name": "resume",
    "seed": 3,
    "n_samples": 12,
    "batch_size": 3,
    "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard", "smallcnn-fast-at"]}],
    "attacks": [
        # Many steps so that a batch takes long enough to be interrupted part-way.
        {"name": "i-fgsm", "overrides": {"eps": 0.2, "alpha": 0.002, "steps": 1500}},
    ],
}


def main(store_path: str) -> None:
    torch.set_num_threads(1)  # as the suite (tests/conftest.py): tiny batches on shared cores
    model = train_linear(n=1000, steps=60)
    with ResultsStore(store_path) as store:
        run_benchmark(parse_config(CONFIG), store, load_model=lambda name, dataset, device: model,
                      progress=False)


if __name__ == "__main__":
    main(sys.argv[1])
