"""The runner: every dataset x model x attack x mode of a config, verified and stored.

For each model the runner picks the samples to attack (the first
``n_samples`` test images, in a seeded random order, that the model
classifies correctly), picks targets reproducibly, runs the attack in
batches through a :class:`~bench.counting.CountingModel`, verifies every
returned example itself (:func:`bench.verify.verify`) and writes each batch
to the store in one transaction.

Reproducibility and resumption rest on one rule: everything random is
seeded from the config's seed and the unit's and batch's identity, never
from what ran before. A run cut off at any point and started again redoes
only the batches that are not in the store, and gets the rows an
uninterrupted run would have written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bench.config import BenchmarkConfig
from bench.counting import CountingModel, timed
from bench.data import get_batch
from bench.provenance import git_commit, hardware, versions
from bench.registry import get_attack
from bench.store import ResultsStore, SampleRow, encode_example
from bench.verify import verify

__all__ = ["ModelLoader", "Selection", "resolve_device", "run_benchmark", "select_samples", "choose_targets"]

ModelLoader = Callable[[str, str, torch.device], nn.Module]
"""``(model name, dataset name, device) -> model`` ready for attack (eval mode, frozen)."""

SELECTION_CHUNK = 500
"""Candidates classified at a time while selecting samples; fixed so the selection never depends on batch size."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config.device: {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def _seed(*parts: object) -> int:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Selection:
    """The samples a model is attacked on."""

    indices: list[int]
    labels: Tensor
    clean_logits: Tensor
    candidates_seen: int


@torch.no_grad()
def select_samples(model: nn.Module, dataset, *, n_samples: int, seed: int, device: torch.device) -> Selection:
    """The first ``n_samples`` images of a seeded permutation that ``model`` classifies correctly."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    indices: list[int] = []
    labels: list[Tensor] = []
    logits: list[Tensor] = []
    seen = 0
    while len(indices) < n_samples and seen < len(order):
        chunk = order[seen:seen + SELECTION_CHUNK]
        seen += len(chunk)
        images, chunk_labels = get_batch(dataset, chunk)
        chunk_logits = model(images.to(device)).float().cpu()
        correct = chunk_logits.argmax(1) == chunk_labels
        for position in torch.nonzero(correct).flatten().tolist()[: n_samples - len(indices)]:
            indices.append(chunk[position])
            labels.append(chunk_labels[position])
            logits.append(chunk_logits[position])
    if not indices:
        raise RuntimeError(f"no sample of {seen} is classified correctly: is the model trained?")
    last = indices[-1]
    candidates_seen = order.index(last) + 1
    return Selection(indices, torch.stack(labels), torch.stack(logits), candidates_seen)


def choose_targets(selection: Selection, *, how: str, seed: int, num_classes: int) -> Tensor:
    """Target classes, never the true one.

    ``"random"``: a class drawn per sample from a generator seeded by the
    run's seed and the sample's index, so a sample keeps its target whatever
    else is attacked. ``"least-likely"``: the class of lowest clean logit.
    """
    if how == "least-likely":
        return selection.clean_logits.argmin(1)
    if how != "random":
        raise ValueError(f"target_selection: {how!r} is not one of random, least-likely")
    offsets = [int(np.random.default_rng([seed, index]).integers(1, num_classes)) for index in selection.indices]
    return (selection.labels + torch.tensor(offsets)) % num_classes


def _sha1(image: Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().float().numpy().tobytes()).hexdigest()


def _default_loader(cache_dir: Path | None, progress: bool) -> ModelLoader:
    from bench.models import load_model

    def loader(name: str, dataset: str, device: torch.device) -> nn.Module:
        return load_model(name, dataset, cache_dir=cache_dir, device=device, progress=progress)

    return loader


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_benchmark(
    config: BenchmarkConfig,
    store: ResultsStore,
    *,
    run_id: str | None = None,
    cache_dir: Path | None = None,
    load_model: ModelLoader | None = None,
    progress: bool = True,
) -> str:
    """Run (or resume) a benchmark and return its run id.

    Parameters
    ----------
    config : BenchmarkConfig
        What to run.
    store : ResultsStore
        Where rows go. A run whose id is already there is resumed.
    run_id : str, optional
        Defaults to ``<config name>-<config fingerprint>``: running the same
        config again resumes (or, if complete, re-reads) the same run.
    cache_dir : Path, optional
        Model and data cache (default: :func:`bench.data.default_cache_dir`).
    load_model : callable, optional
        ``(name, dataset, device) -> nn.Module``; default :func:`bench.models.load_model`.
    progress : bool
        Show progress bars.
    """
    from bench.data import DATASETS, load_dataset
    from bench.models import prepare_model

    device = resolve_device(config.device)
    run_id = run_id or f"{config.name}-{config.fingerprint()}"
    if store.get_run(run_id) is None:
        store.create_run(run_id, name=config.name, created=_now(), config=config.to_dict(), seed=config.seed,
                         versions=versions(), git_commit=git_commit(), hardware=hardware(device))
    loader = load_model or _default_loader(cache_dir, progress)
    disable = not progress

    for dataset_config in config.datasets:
        info = DATASETS[dataset_config.name]
        dataset = load_dataset(dataset_config.name, split=dataset_config.split, root=dataset_config.root)
        for model_name in dataset_config.models:
            model = prepare_model(loader(model_name, dataset_config.name, device), device)
            counting = CountingModel(model)
            selection = select_samples(model, dataset, n_samples=config.n_samples, seed=config.seed, device=device)
            for attack_config in config.attacks:
                attack = get_attack(attack_config.name, dataset=dataset_config.name, **attack_config.overrides)
                for mode in attack_config.modes:
                    key = (dataset_config.name, model_name, attack_config.label, mode)
                    # Outside the timing and on the bare model: what an attack learns once is not its cost.
                    attack.prepare(model, targeted=mode == "targeted", cache_dir=cache_dir, progress=progress)
                    targets = (
                        choose_targets(selection, how=config.target_selection, seed=config.seed,
                                       num_classes=info.num_classes)
                        if mode == "targeted" else None
                    )
                    store.put_unit(run_id, key, attack_name=attack.name, hyperparameters=attack.hyperparameters,
                                   samples_planned=len(selection.indices),
                                   candidates_seen=selection.candidates_seen,
                                   clean_correct=len(selection.indices))
                    done = store.done_batches(run_id, key)
                    starts = range(0, len(selection.indices), config.batch_size)
                    bar = tqdm(total=len(selection.indices), desc=" | ".join(key[1:]), unit="sample",
                               disable=disable, leave=False, file=sys.stderr)
                    for batch, start in enumerate(starts):
                        stop = min(start + config.batch_size, len(selection.indices))
                        if batch not in done:
                            _run_batch(store, run_id, key, batch, dataset, dataset_config.split, selection,
                                       targets, start, stop,
                                       attack, model, counting, device, _seed(config.seed, *key, batch))
                        bar.update(stop - start)
                    bar.close()
    store.finish_run(run_id, _now())
    return run_id


def _run_batch(store: ResultsStore, run_id: str, key: tuple[str, ...], batch: int, dataset, split: str,
               selection: Selection,
               targets: Tensor | None, start: int, stop: int, attack, model: nn.Module, counting: CountingModel,
               device: torch.device, seed: int) -> None:
    indices = selection.indices[start:stop]
    images, labels = get_batch(dataset, indices)
    images, labels = images.to(device), labels.to(device)
    batch_targets = targets[start:stop].to(device) if targets is not None else None
    size = len(indices)

    seed_everything(seed)
    counting.reset()
    error = ""
    with timed(device) as seconds:
        try:
            adversarial = attack(counting, images, batch_targets if batch_targets is not None else labels,
                                 targeted=batch_targets is not None)
        except Exception as exc:  # the run goes on; the batch counts as failed and says why
            error = f"attack raised {type(exc).__name__}: {exc}"
            warnings.warn(f"{'/'.join(key)} batch {batch}: {error}", RuntimeWarning, stacklevel=2)
            adversarial = images
    verified = verify(model, images, adversarial, labels, targets=batch_targets)

    rows, examples = [], []
    for i, index in enumerate(indices):
        sample_id = f"{split}/{index}"
        rows.append(SampleRow(
            sample_id=sample_id,
            sample_index=index,
            input_sha1=_sha1(images[i]),
            batch=batch,
            label=int(labels[i]),
            target=int(batch_targets[i]) if batch_targets is not None else None,
            adversarial_prediction=int(verified.adversarial_prediction[i]),
            valid=bool(verified.valid[i]) and not error,
            violation=error or verified.violation[i],
            success=bool(verified.success[i]) and not error,
            l0_elements=int(verified.l0_elements[i]),
            l0_pixels=int(verified.l0_pixels[i]),
            l1=float(verified.l1[i]),
            l2=float(verified.l2[i]),
            linf=float(verified.linf[i]),
            forward_passes=counting.forward_samples / size,
            backward_passes=counting.backward_samples / size,
            seconds=seconds[0] / size,
        ))
        examples.append((sample_id, list(images[i].shape), *encode_example(images[i], verified.adversarial[i])))
    store.put_batch(run_id, key, rows, examples)
