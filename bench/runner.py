"""The runner: every dataset x model x attack x mode of a config, verified and stored.

For each model the runner picks the samples to attack (the first
``n_samples`` test images, in a seeded random order, that the model
classifies correctly and the config does not exclude: :class:`Exclusion`,
checked again before any attack), picks targets reproducibly, runs the attack in
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

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import random
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from bench.config import BenchmarkConfig, DatasetConfig
from bench.counting import CountingModel, PassTotals
from bench.data import DATASETS, get_batch
from bench.errors import SparseBenchError
from bench.guard import AttackCall, Guard, call_attack
from bench.models import load_model, prepare_model
from bench.outside import image_shape, load_outside_model
from bench.provenance import git_commit, hardware, versions
from bench.registry import AttackEntry, bind
from bench.speed import largest_batch, speed_up
from bench.store import ResultsStore, SampleRow, UnitKey, encode_example
from bench.verify import verify
from bench.vocabulary import Mode

__all__ = [
    "Exclusion", "ModelLoader", "ModelSession", "Selection", "Unit", "attack_batch", "batch_bounds", "batch_seed",
    "check_resumable", "choose_batch_size", "choose_targets", "default_run_id", "make_unit", "open_model",
    "prepare_unit", "record_unit", "resolve_device", "resolve_exclusion", "run_benchmark", "run_unit", "select_samples", "start_run",
    "warm_up", "wants_warmup",
]

ModelLoader = Callable[[str, str, torch.device], nn.Module]
"""``(model name, dataset name, device) -> model`` ready for attack (eval mode, frozen)."""

SELECTION_CHUNK = 500
"""Candidates classified at a time while selecting samples; fixed so the selection never depends on batch size."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU; any other device must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SparseBenchError(f"config.device: {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SparseBenchError(f"config.device: {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SparseBenchError(f"config.device: {name!r} but this machine has {torch.cuda.device_count()} CUDA "
                               "device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SparseBenchError(f"config.device: {name!r} but MPS is not available here; use 'cpu' or 'auto'")
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


@dataclass(frozen=True)
class Exclusion:
    """The samples a run must not attack: the config's ``exclude_indices`` and ``exclude_runs``.

    A sample is its dataset and its identity in the store: the SHA-1 of its input (the ``input_sha1`` every
    stored row has), else its ``sample_id`` (``<split>/<index>``). ``ranges`` are half-open ranges of dataset
    indices, for every dataset; ``inputs`` and ``sample_ids`` map a dataset's name to the excluded identities
    on it, each to the run it comes from (:func:`resolve_exclusion`).
    """

    ranges: tuple[tuple[int, int], ...] = ()
    inputs: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    sample_ids: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ranges or self.inputs or self.sample_ids)

    def range_of(self, index: int) -> tuple[int, int] | None:
        """The excluded range holding a dataset index, if one does."""
        return next(((start, stop) for start, stop in self.ranges if start <= index < stop), None)

    def why(self, dataset: str, index: int, sample_id: str, sha1: str) -> str | None:
        """Why a sample is excluded, or ``None`` when it is not."""
        where = self.range_of(index)
        if where is not None:
            return f"index in exclude_indices {list(where)}"
        run = self.inputs.get(dataset, {}).get(sha1)
        if run is not None:
            return f"input sha1 {sha1[:12]} attacked in run {run}"
        run = self.sample_ids.get(dataset, {}).get(sample_id)
        if run is not None:
            return f"sample attacked in run {run}"
        return None

    def check_ranges(self, dataset: str, size: int) -> None:
        """A range that starts past the dataset's end excludes nothing: a mistake, said before any work."""
        for i, (start, stop) in enumerate(self.ranges):
            if start >= size:
                raise SparseBenchError(f"config.exclude_indices[{i}]: {[start, stop]} starts past the end of "
                                       f"{dataset!r}, which has {size} images (indices 0 to {size - 1})")

    def check_disjoint(self, dataset: str, samples: list[tuple[int, str, str]], what: str) -> None:
        """Raise, naming each one, if any of ``samples`` (index, sample id, input SHA-1) is excluded."""
        overlap = [f"{sample_id} ({reason})" for index, sample_id, sha1 in samples
                   if (reason := self.why(dataset, index, sample_id, sha1)) is not None]
        if overlap:
            raise SparseBenchError(f"{what} on {dataset} overlap the excluded samples (config.exclude_runs / "
                                   f"exclude_indices), in {len(overlap)} case(s): {', '.join(overlap)}; refusing "
                                   "to attack them")


def resolve_exclusion(config: BenchmarkConfig, store: ResultsStore | None, run_id: str | None = None) -> Exclusion:
    """The config's exclusions, with the samples of its ``exclude_runs`` read from ``store``.

    Every excluded run must be in the store, have samples, and not be the run itself (``run_id``).
    """
    if config.exclude_runs and store is None:
        raise SparseBenchError(f"config.exclude_runs: {list(config.exclude_runs)!r} are runs of a results store, "
                               "and this run has none to look them up in; run it with a store (sparsebench run)")
    inputs: dict[str, dict[str, str]] = {}
    sample_ids: dict[str, dict[str, str]] = {}
    for i, excluded in enumerate(config.exclude_runs):
        assert store is not None
        if excluded == run_id:
            raise SparseBenchError(f"config.exclude_runs[{i}]: {excluded!r} is this run itself; a run cannot be "
                                   "held out from its own samples")
        if store.get_run(excluded) is None:
            known = ", ".join(store.runs()["run_id"]) or "none"
            raise SparseBenchError(f"config.exclude_runs[{i}]: {excluded!r} is not a run in {store.path}; "
                                   f"runs: {known}")
        rows = store.samples(excluded)
        if rows.empty:
            raise SparseBenchError(f"config.exclude_runs[{i}]: run {excluded!r} has no samples stored yet, so "
                                   "there is nothing to hold out from; finish it first")
        for dataset, sample_id, sha1 in rows[["dataset", "sample_id", "input_sha1"]].itertuples(index=False):
            if isinstance(sha1, str) and sha1:
                inputs.setdefault(dataset, {}).setdefault(sha1, excluded)
            else:
                sample_ids.setdefault(dataset, {}).setdefault(sample_id, excluded)
    return Exclusion(config.exclude_indices, inputs, sample_ids)


def correct_batch(model: nn.Module, dataset, *, n_samples: int, seed: int, target_selection: str = "random",
                  num_classes: int = 10) -> tuple[Tensor, Tensor, Tensor]:
    """The images, labels and targets a run with this seed attacks, as one batch (CPU, nothing excluded).

    :func:`select_samples` and :func:`choose_targets`, for scripts that attack what a run would attack
    without running the harness.
    """
    selection = select_samples(model, dataset, n_samples=n_samples, seed=seed, device=torch.device("cpu"))
    images, labels = get_batch(dataset, selection.indices)
    return images, labels, choose_targets(selection, how=target_selection, seed=seed, num_classes=num_classes)


@torch.no_grad()
def select_samples(model: nn.Module, dataset, *, n_samples: int, seed: int, device: torch.device,
                   exclusion: Exclusion | None = None, dataset_name: str = "", split: str = "test") -> Selection:
    """The first ``n_samples`` images of a seeded permutation that ``model`` classifies correctly.

    Images that ``exclusion`` names (by index, or as ``dataset_name``'s input hash or ``<split>/<index>``)
    are passed over; ``candidates_seen`` still counts positions in the whole permutation.
    """
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    indices: list[int] = []
    labels: list[Tensor] = []
    logits: list[Tensor] = []
    seen = excluded = 0
    while len(indices) < n_samples and seen < len(order):
        chunk = order[seen:seen + SELECTION_CHUNK]
        seen += len(chunk)
        if exclusion:
            kept = [index for index in chunk if exclusion.range_of(index) is None]
            excluded += len(chunk) - len(kept)
            chunk = kept
            if not chunk:
                continue
        images, chunk_labels = get_batch(dataset, chunk)
        chunk_logits = model(images.to(device)).float().cpu()
        correct = chunk_logits.argmax(1) == chunk_labels
        for position in torch.nonzero(correct).flatten().tolist():
            if len(indices) == n_samples:
                break
            index = chunk[position]
            if exclusion and exclusion.why(dataset_name, index, f"{split}/{index}", _sha1(images[position])):
                excluded += 1
                continue
            indices.append(index)
            labels.append(chunk_labels[position])
            logits.append(chunk_logits[position])
    passed_over = f" ({excluded} excluded by the config)" if excluded else ""
    if not indices:
        raise SparseBenchError(f"no sample of {seen}{passed_over} is classified correctly: is the model trained?")
    if len(indices) < n_samples:
        warnings.warn(f"n_samples: {n_samples} asked, but only {len(indices)} of the dataset's {len(dataset)} images "
                      f"are classified correctly{passed_over}; attacking those", UserWarning, stacklevel=2)
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
        raise SparseBenchError(f"target_selection: {how!r} is not one of random, least-likely")
    offsets = [int(np.random.default_rng([seed, index]).integers(1, num_classes)) for index in selection.indices]
    return (selection.labels + torch.tensor(offsets)) % num_classes


def _sha1(image: Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().float().numpy().tobytes()).hexdigest()


def _default_loader(cache_dir: Path | None, progress: bool, config: BenchmarkConfig | None = None,
                    shapes: Mapping[str, tuple[int, ...]] | None = None) -> ModelLoader:
    """Registered models through :func:`bench.models.load_model`; the config's outside models (``[[models]]``)
    through :func:`bench.outside.load_outside_model`, probed on the image shape of the dataset as loaded
    (``shapes``, by dataset name)."""
    def loader(name: str, dataset: str, device: torch.device) -> nn.Module:
        outside = config.model(name) if config is not None else None
        if outside is not None:
            assert config is not None  # outside models come from the config
            table = config.dataset(dataset)
            info = table.info() if table is not None else DATASETS[dataset]
            shape = (shapes or {}).get(dataset, info.shape)
            return load_outside_model(outside.function, outside.checkpoint, num_classes=info.num_classes,
                                      shape=shape, name=name)
        return load_model(name, dataset, cache_dir=cache_dir, device=device, progress=progress)

    return loader


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelSession:
    """One model ready to be attacked: its data, the samples chosen, and the two views of it.

    ``model`` is the float32 original, which selects the samples and verifies
    every example; no attack ever gets it. ``counting`` wraps the attacked
    model, a copy of it under the config's speed options (:mod:`bench.speed`),
    and is what attacks run on; ``guard`` watches that copy and torch
    (:class:`bench.guard.Guard`).
    """

    dataset_name: str
    split: str
    dataset: Dataset
    num_classes: int
    model_name: str
    model: nn.Module
    counting: CountingModel
    guard: Guard
    selection: Selection
    device: torch.device
    family: str
    """The dataset family whose default hyperparameters the attacks take."""
    commit: str | None = None
    """The code that attacks here (:func:`bench.provenance.git_commit`), recorded on every row."""


@dataclass
class Unit:
    """One (dataset, model, attack, mode) of a run, its attack built and its targets chosen."""

    key: UnitKey
    attack: Any  # a bench.registry.Attack: bind's or AttackConfig.build's
    targets: Tensor | None
    void: str = ""
    """Why every batch of the unit is invalid, when its preparation raised or tampered ("" otherwise)."""
    unprepared: bool = False
    """Its preparation raised: the attack is not called, every batch records why."""


def open_model(config: BenchmarkConfig, dataset_config: DatasetConfig, dataset, model_name: str,
               loader: ModelLoader, device: torch.device, exclusion: Exclusion | None = None) -> ModelSession:
    """Load a model, prepare it and its attacked view, and select its samples.

    A registered model on an outside dataset loads the weights of the dataset it was registered for
    (the outside dataset's ``models_of``). The samples skip what ``exclusion`` names (default: the config's
    ``exclude_indices``; ``exclude_runs`` need :func:`resolve_exclusion` and a store), and are checked
    against it once more, by index and input hash, before anything is attacked.
    """
    dataset_name, split = dataset_config.name, dataset_config.split
    exclusion = exclusion if exclusion is not None else resolve_exclusion(config, None)
    exclusion.check_ranges(dataset_name, len(dataset))
    weights_of = dataset_config.weights_of if config.model(model_name) is None else dataset_name
    model = prepare_model(loader(model_name, weights_of, device), device)
    attacked = speed_up(copy.deepcopy(model), precision=config.precision, channels_last=config.channels_last,
                        device=device)
    selection = select_samples(model, dataset, n_samples=config.n_samples, seed=config.seed, device=device,
                               exclusion=exclusion, dataset_name=dataset_name, split=split)
    if exclusion:
        images, _ = get_batch(dataset, selection.indices)
        exclusion.check_disjoint(dataset_name, [(index, f"{split}/{index}", _sha1(image))
                                                for index, image in zip(selection.indices, images)],
                                 f"the samples selected for {model_name}")
    counting = CountingModel(attacked)
    info = dataset_config.info()
    return ModelSession(dataset_name, split, dataset, info.num_classes, model_name, model,
                        counting, Guard(attacked), selection, device, info.family, git_commit())


def make_unit(config: BenchmarkConfig, session: ModelSession, attack_config, mode: str,
              entry: AttackEntry | None = None) -> Unit:
    """Build the unit's attack (with the config's overrides) and choose its targets.

    ``entry`` replaces the one the attack's table names (an attack handed in as an object, by
    :func:`bench.api.evaluate`).
    """
    attack = (bind(entry, dataset=session.dataset_name, family=session.family, **attack_config.overrides)
              if entry is not None else attack_config.build(dataset=session.dataset_name, family=session.family))
    targets = (choose_targets(session.selection, how=config.target_selection, seed=config.seed,
                              num_classes=session.num_classes)
               if mode == Mode.TARGETED else None)
    return Unit(UnitKey(session.dataset_name, session.model_name, attack_config.label, mode), attack, targets)


def prepare_unit(unit: Unit, session: ModelSession, *, cache_dir: Path | None, progress: bool) -> None:
    """The attack's one-off preparation: outside the timing and uncounted, since what an attack
    learns once is not its cost. It gets a copy of the float32 model; if it raises, or tampers with
    torch (see :class:`bench.guard.Guard`), every batch of the unit is void, with the reason, and
    the run goes on to the next unit, as it does when an attack call raises."""
    try:
        unit.attack.prepare(copy.deepcopy(session.model), targeted=unit.key.mode == Mode.TARGETED,
                            cache_dir=cache_dir, progress=progress)
    except Exception as exc:
        unit.void, unit.unprepared = f"prepare raised {type(exc).__name__}: {exc}", True
    tampered = session.guard.check_and_restore()
    if tampered:
        unit.void = "; ".join(filter(None, [unit.void, f"prepare: {tampered}"]))


def _batch_inputs(session: ModelSession, unit: Unit, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor | None]:
    images, labels = get_batch(session.dataset, session.selection.indices[start:stop])
    targets = unit.targets[start:stop].to(session.device) if unit.targets is not None else None
    return images.to(session.device), labels.to(session.device), targets


def choose_batch_size(config: BenchmarkConfig, session: ModelSession, unit: Unit) -> int:
    """The config's batch size, or with ``"auto"`` :func:`bench.speed.largest_batch`'s (at most the samples)."""
    n = len(session.selection.indices)
    if config.batch_size != "auto":
        return int(config.batch_size)
    images, labels, targets = _batch_inputs(session, unit, 0, n)
    size = largest_batch(unit.attack, session.counting.model, images, labels, targets=targets, limit=n).batch_size
    session.guard.check_and_restore()  # what the estimate's runs changed does not reach the batches
    return size


def wants_warmup(config: BenchmarkConfig, device: torch.device) -> bool:
    """``warmup = "auto"`` warms up on CUDA, where the first call loads kernels and picks algorithms."""
    return device.type == "cuda" if config.warmup == "auto" else bool(config.warmup)


def warm_up(session: ModelSession, unit: Unit, start: int, stop: int) -> None:
    """Run the attack once, untimed and unrecorded, on the samples of a batch of the real shape.

    Same shape, same kernels: CUDA loads kernels lazily and cuDNN/cuBLAS pick
    algorithms per shape, so a smaller warm-up batch would leave part of that
    one-off cost in the first timed batch. Every timed batch reseeds, so the
    warm-up changes no result.
    """
    images, labels, targets = _batch_inputs(session, unit, start, stop)
    call_attack(unit.attack, session.counting, session.guard, images, labels, targets)


def attack_batch(session: ModelSession, unit: Unit, batch: int, start: int, stop: int,
                 seed: int) -> tuple[list[SampleRow], list[tuple]]:
    """Attack one batch, timed and counted, verify every example, and return its rows and examples.

    The attack runs through :func:`bench.guard.call_attack`: on copies of
    the batch, on the session's attacked copy of the model, with everything
    it may not change checked and put back afterwards. Verification uses
    the originals and the session's own model. A call that raised or
    tampered makes every example of the batch invalid, with the reason.
    """
    indices = session.selection.indices[start:stop]
    images, labels, batch_targets = _batch_inputs(session, unit, start, stop)
    size = len(indices)

    seed_everything(seed)
    call = (AttackCall(None, unit.void, 0.0, PassTotals()) if unit.unprepared
            else call_attack(unit.attack, session.counting, session.guard, images, labels, batch_targets))
    error = unit.void or call.void
    if error:
        warnings.warn(f"{'/'.join(unit.key)} batch {batch}: {error}", RuntimeWarning, stacklevel=2)
    verified = verify(session.model, images, call.returned if not error else images, labels, targets=batch_targets)

    rows, examples = [], []
    for i, index in enumerate(indices):
        sample_id = f"{session.split}/{index}"
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
            forward_passes=call.passes.forward_samples / size,
            backward_passes=call.passes.backward_samples / size,
            seconds=call.seconds / size,
            peak_memory_mib=call.peak_memory_mib,
            git_commit=session.commit,
        ))
        examples.append((sample_id, list(images[i].shape), *encode_example(images[i], verified.adversarial[i])))
    return rows, examples


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """``(batch, start, stop)`` of each batch of ``n`` samples."""
    return [(b, start, min(start + batch_size, n)) for b, start in enumerate(range(0, n, batch_size))]


def batch_seed(config: BenchmarkConfig, key: tuple[str, ...], batch: int) -> int:
    """A batch's seed: from the config's seed and the batch's identity alone, never from what ran before."""
    return _seed(config.seed, *key, batch)


def record_unit(store: ResultsStore, run_id: str, session: ModelSession, unit: Unit, batch_size: int) -> None:
    store.put_unit(run_id, unit.key, attack_name=unit.attack.name, hyperparameters=unit.attack.hyperparameters,
                   samples_planned=len(session.selection.indices),
                   candidates_seen=session.selection.candidates_seen,
                   clean_correct=len(session.selection.indices), batch_size=batch_size)


def start_run(config: BenchmarkConfig, store: ResultsStore, run_id: str | None,
              device: torch.device) -> str:
    """Create the run's record unless it exists (then it is resumed); return its id.

    The record is made by one atomic insert: of processes starting the same run at once, one makes it and
    the others join it.
    """
    run_id = run_id or default_run_id(config)
    if store.get_run(run_id) is None:
        store.create_run(run_id, name=config.name, created=_now(), config=config.to_dict(), seed=config.seed,
                         versions=versions(), git_commit=git_commit(), hardware=hardware(device), exist_ok=True)
    return run_id


CLAIM_POLL_S = 0.5
"""Seconds between looks at batches that another process holds, once a process has none left to claim."""


def run_unit(config: BenchmarkConfig, store: ResultsStore, run_id: str, session: ModelSession, unit: Unit, *,
             cache_dir: Path | None, progress: bool) -> None:
    """Attack every batch of one unit not yet in the store.

    Several processes may share the store: this one attacks only the batches it claims
    (:meth:`ResultsStore.claim_batch`), then waits for those others hold, taking over any whose owner
    is gone. The attack is prepared (and warmed up) on the first batch this process attacks.
    """
    device = session.device
    n = len(session.selection.indices)
    batch_size = store.unit_batch_size(run_id, unit.key)
    prepared = batch_size is None and config.batch_size == "auto"
    if prepared:  # the estimate runs the attack: prepare it first
        prepare_unit(unit, session, cache_dir=cache_dir, progress=progress)
    batch_size = batch_size or choose_batch_size(config, session, unit)
    record_unit(store, run_id, session, unit, batch_size)
    done = store.done_batches(run_id, unit.key)
    pending = [b for b in batch_bounds(n, batch_size) if b[0] not in done]
    if not pending:
        return
    ready = False
    bar = tqdm(total=n, initial=n - sum(stop - start for _, start, stop in pending), desc=" | ".join(unit.key[1:]),
               unit="sample", disable=not progress, leave=False, file=sys.stderr)
    try:
        while pending:
            held = []
            for batch, start, stop in pending:
                if not store.claim_batch(run_id, unit.key, batch):
                    held.append((batch, start, stop))
                    continue
                if not ready:  # the first batch this process attacks in the unit
                    if not prepared:
                        prepare_unit(unit, session, cache_dir=cache_dir, progress=progress)
                    ready = True
                    if wants_warmup(config, device) and not unit.unprepared:
                        warm_up(session, unit, start, stop)
                rows, examples = attack_batch(session, unit, batch, start, stop, batch_seed(config, unit.key, batch))
                store.put_batch(run_id, unit.key, rows, examples)
                bar.update(stop - start)
            done = store.done_batches(run_id, unit.key)
            pending = [b for b in held if b[0] not in done]
            bar.update(sum(stop - start for b, start, stop in held if b in done))
            if pending:
                time.sleep(CLAIM_POLL_S)
    except BaseException:
        with contextlib.suppress(Exception):  # others need not wait for a batch dropped here
            store.release_claims(run_id)
        raise
    finally:
        bar.close()


def default_run_id(config: BenchmarkConfig) -> str:
    """``<config name>-<config fingerprint>``: running the same config again resumes the same run."""
    return f"{config.name}-{config.fingerprint()}"


def check_resumable(store: ResultsStore, run_id: str, *, force: bool = False) -> None:
    """Refuse to resume a run that other code made: its rows and this code's would mix.

    Other code is another commit (a dirty tree counts by the hash of its changes, see
    :func:`bench.provenance.git_commit`) or another version of any package the run recorded. ``force``
    resumes anyway; every row records the commit that made it.
    """
    run = store.get_run(run_id)
    if run is None or force:
        return
    changes = []
    commit = git_commit()
    if run["git_commit"] != commit:
        changes.append(f"commit {run['git_commit']} -> {commit}")
    now = versions()
    recorded = run.get("versions") or {}
    changes += [f"{package} {recorded.get(package)} -> {now.get(package)}"
                for package in sorted(set(recorded) | set(now)) if recorded.get(package) != now.get(package)]
    if changes:
        raise SparseBenchError(
            f"run {run_id} was made by other code ({'; '.join(changes)}); resuming would mix the rows of both. "
            "Start a new run (sparsebench run --new-run), or resume it anyway (--force-resume: every row "
            "records the commit that made it)")


def run_benchmark(
    config: BenchmarkConfig,
    store: ResultsStore,
    *,
    run_id: str | None = None,
    cache_dir: Path | None = None,
    load_model: ModelLoader | None = None,
    progress: bool = True,
    datasets: Mapping[str, Dataset] | None = None,
    entries: Mapping[str, AttackEntry] | None = None,
    force_resume: bool = False,
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
    datasets : mapping, optional
        Datasets in hand by name, used instead of loading the config's (tensors given to
        :func:`bench.api.evaluate`).
    entries : mapping, optional
        Attack entries in hand by label, used instead of the ones the config's tables name
        (callables given to :func:`bench.api.evaluate`).
    force_resume : bool
        Resume a run even when other code made it (:func:`check_resumable`).

    The run's record is created once its first dataset and model load, so an input that fails to
    load leaves no empty run behind.
    """
    device = resolve_device(config.device)
    run_id = run_id or default_run_id(config)
    check_resumable(store, run_id, force=force_resume)
    shapes: dict[str, tuple[int, ...]] = {}
    loader = load_model or _default_loader(cache_dir, progress, config, shapes)
    created = False
    datasets, entries = datasets or {}, entries or {}
    exclusion = resolve_exclusion(config, store, run_id)
    if exclusion and store.get_run(run_id) is not None:  # what a resumed run already attacked is checked too
        stored = store.samples(run_id)
        for name, rows in stored.groupby("dataset"):
            exclusion.check_disjoint(str(name), list(rows[["sample_index", "sample_id", "input_sha1"]].itertuples(
                index=False, name=None)), f"the samples run {run_id} already attacked")
    for dataset_config in config.datasets:
        dataset = datasets[dataset_config.name] if dataset_config.name in datasets else dataset_config.load()
        shapes[dataset_config.name] = image_shape(dataset)
        for model_name in dataset_config.models:
            session = open_model(config, dataset_config, dataset, model_name, loader, device, exclusion)
            if not created:  # the run exists once its first inputs load: a failed load leaves no empty run
                start_run(config, store, run_id, device)
                created = True
            for attack_config in config.attacks:
                for mode in attack_config.modes:
                    unit = make_unit(config, session, attack_config, mode, entries.get(attack_config.label))
                    run_unit(config, store, run_id, session, unit, cache_dir=cache_dir, progress=progress)
    store.finish_run(run_id, _now())
    return run_id
