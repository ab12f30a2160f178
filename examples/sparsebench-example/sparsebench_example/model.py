"""An outside model: a constructor, a few seconds of training, and a checkpoint of its weights.

``python -m sparsebench_example.model weights.pt`` trains it and writes the checkpoint the config names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

MEAN, STD = 0.286, 0.353  # Fashion-MNIST's pixel mean and deviation


class Standardize(nn.Module):
    """Normalisation inside the model: SparseBench gives every model images in [0, 1]."""

    def forward(self, inputs: Tensor) -> Tensor:
        return (inputs - MEAN) / STD


def build() -> nn.Module:
    """The architecture, untrained."""
    return nn.Sequential(Standardize(), nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def train(path: str | os.PathLike, *, images: int = 10000, epochs: int = 2, seed: int = 0) -> nn.Module:
    """Train on the first ``images`` Fashion-MNIST training images (a few seconds on a CPU) and save the weights."""
    from bench.data import get_batch, load_dataset

    torch.manual_seed(seed)
    x, y = get_batch(load_dataset("fashion-mnist", split="train"), list(range(images)))
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(images).split(100):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def trained() -> nn.Module:
    """The trained model, from the cache (``$SPARSEBENCH_CACHE`` or ``~/.cache/sparsebench``), trained on first use."""
    from bench.data import default_cache_dir

    path = default_cache_dir() / "models" / "sparsebench-example" / "example-mlp.pt"
    if not path.is_file():
        train(path)
    model = build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sparsebench_example.model WEIGHTS.pt")
    train(sys.argv[1])
    print(f"wrote {sys.argv[1]}")
