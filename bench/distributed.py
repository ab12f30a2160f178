"""One benchmark over many workers and machines, with Ray.

A run is cut into **shards**: one (dataset, model, attack, mode) and some of
its batches. Each shard is a Ray task; the worker that takes it loads the
model, selects the samples, builds and prepares the attack, warms it up and
attacks its batches exactly as :func:`bench.runner.run_benchmark` does (the
same functions do it), then returns the rows and examples. Nothing about a
batch depends on which worker ran it or on what ran before it: the samples
are chosen by the config's seed, and every batch is seeded by the config's
seed and its own identity. So a distributed run writes the same rows as a
single process, which ``tests/test_distributed.py`` checks row by row.

**The driver is the only writer.** Workers never open the results store:
the driver writes each finished shard's batches, one transaction per batch,
and skips a batch already there. Workers therefore need no shared file
system (SQLite over NFS is unsafe), a batch is never written twice, and a
driver killed midway leaves whole batches that a rerun does not redo.

**Sharing the store.** Other processes (plain runs, other drivers) may work
on the same run: the driver claims each batch before it submits it and leaves
batches another live process holds (:meth:`bench.store.ResultsStore.claim_batch`);
once its own are written it waits for theirs, and takes over any whose owner
is gone. Workers still never touch the store.

**Failures.** A shard whose worker dies (process crash, lost node) or whose
task raises is submitted again, up to ``retries`` more times; then the run
stops with the shard and the last error. An exception inside an *attack* is
not a task failure: as in a single process, the batch is recorded as failed
with the reason.

Why Ray: it runs the same code on one machine (``ray.init()`` starts a local
cluster) and on a cluster (``address="auto"`` inside one, or a Ray Client
address), schedules GPUs as resources (``gpus_per_task``), and moves
results back without a shared file system. Slurm sites run Ray on their
allocations too (``ray start`` per node); a submitit backend is not written.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.config import BenchmarkConfig
from bench.errors import SparseBenchError
from bench.outside import image_shape
from bench.provenance import hardware
from bench.runner import (
    CLAIM_POLL_S,
    ModelLoader,
    _default_loader,
    _now,
    attack_batch,
    batch_bounds,
    batch_seed,
    check_resumable,
    default_run_id,
    make_unit,
    open_model,
    prepare_unit,
    resolve_device,
    start_run,
    wants_warmup,
    warm_up,
)
from bench.store import ResultsStore, SampleRow, UnitKey

__all__ = ["Shard", "ShardResult", "plan_shards", "run_distributed", "run_shard"]


@dataclass(frozen=True)
class Shard:
    """Some batches of one unit: the work one task does."""

    dataset: str
    model: str
    attack: str
    """The attack's label in the config."""
    mode: str
    batches: tuple[int, ...]

    @property
    def key(self) -> UnitKey:
        return UnitKey(self.dataset, self.model, self.attack, self.mode)

    def __str__(self) -> str:
        return f"{'/'.join(self.key)} batches {list(self.batches)}"


@dataclass
class ShardResult:
    """What a worker sends back: the unit's plan (to record it) and each batch's rows and examples."""

    shard: Shard
    unit: dict[str, Any]
    batches: list[tuple[int, list[SampleRow], list[tuple]]] = field(default_factory=list)
    hardware: dict[str, Any] = field(default_factory=dict)


def _batch_count(config: BenchmarkConfig) -> int:
    if not isinstance(config.batch_size, int):
        raise SparseBenchError("config.batch_size: a distributed run needs a fixed batch size (its shards are planned "
                         f"before any worker measures memory), not {config.batch_size!r}")
    return math.ceil(config.n_samples / config.batch_size)


def plan_shards(config: BenchmarkConfig, *, batches_per_shard: int = 1,
                done: Iterable[tuple[tuple[str, ...], int]] = ()) -> list[Shard]:
    """Every unit's batches not in ``done`` (``(unit key, batch)`` pairs), ``batches_per_shard`` to a shard.

    The plan assumes each model has ``n_samples`` correctly classified test
    images; when one has fewer, the workers find its last batches empty and
    return nothing for them.
    """
    if batches_per_shard < 1:
        raise SparseBenchError(f"batches_per_shard: {batches_per_shard!r} must be a positive integer")
    finished = set(done)
    count = _batch_count(config)
    shards = []
    for dataset in config.datasets:
        for model in dataset.models:
            for attack in config.attacks:
                for mode in attack.modes:
                    key = (dataset.name, model, attack.label, mode)
                    todo = [b for b in range(count) if (key, b) not in finished]
                    for i in range(0, len(todo), batches_per_shard):
                        shards.append(Shard(*key, tuple(todo[i:i + batches_per_shard])))
    return shards


def run_shard(config: BenchmarkConfig, shard: Shard, *, cache_dir: Path | None = None,
              load_model: ModelLoader | None = None) -> ShardResult:
    """Attack a shard's batches, as the single-process runner would, and return the rows (no store access)."""
    device = resolve_device(config.device)
    dataset_config = next(d for d in config.datasets if d.name == shard.dataset)
    attack_config = next(a for a in config.attacks if a.label == shard.attack)
    dataset = dataset_config.load()
    loader = load_model or _default_loader(cache_dir, False, config, {dataset_config.name: image_shape(dataset)})
    session = open_model(config, dataset_config, dataset, shard.model, loader, device)
    unit = make_unit(config, session, attack_config, shard.mode)
    bounds = batch_bounds(len(session.selection.indices), int(config.batch_size))
    work = [bounds[b] for b in shard.batches if b < len(bounds)]
    result = ShardResult(shard, {
        "attack_name": unit.attack.name, "hyperparameters": unit.attack.hyperparameters,
        "samples_planned": len(session.selection.indices), "candidates_seen": session.selection.candidates_seen,
        "clean_correct": len(session.selection.indices), "batch_size": int(config.batch_size),
    }, hardware=hardware(device))
    if not work:
        return result
    prepare_unit(unit, session, cache_dir=cache_dir, progress=False)
    if wants_warmup(config, device) and not unit.unprepared:
        warm_up(session, unit, *work[0][1:])
    for batch, start, stop in work:
        rows, examples = attack_batch(session, unit, batch, start, stop, batch_seed(config, unit.key, batch))
        result.batches.append((batch, rows, examples))
    return result


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"a distributed run needs Ray (import failed: {error}): "
                          "pip install 'sparsebench[ray]'") from error
    return ray


def _write(store: ResultsStore, run_id: str, result: ShardResult) -> int:
    """Record the shard's unit and its batches not yet in the store; return the batches written."""
    store.put_unit(run_id, result.shard.key, **result.unit)
    done = store.done_batches(run_id, result.shard.key)
    written = 0
    for batch, rows, examples in result.batches:
        if batch not in done and store.put_batch(run_id, result.shard.key, rows, examples):
            written += 1  # put_batch skips a batch that another process stored meanwhile
    return written


def _claim_missing(config: BenchmarkConfig, store: ResultsStore, run_id: str) -> tuple[list[tuple], int]:
    """Claim the run's batches that are not stored; return those this driver got and how many are missing.

    A unit's batch count is its recorded plan once any process recorded it, else the config's (see
    :func:`plan_shards`). Batches that another live process holds are left to it.
    """
    count = _batch_count(config)
    recorded = {}
    for unit in store.units(run_id).to_dict("records"):
        if unit["batch_size"] and unit["batch_size"] == unit["batch_size"]:  # not NULL (a unit of schema 1)
            key = (unit["dataset"], unit["model"], unit["attack"], unit["mode"])
            recorded[key] = math.ceil(unit["samples_planned"] / unit["batch_size"])
    stored = {(tuple(row[:4]), row[4]) for row in store.stored_batches(run_id)}
    missing = [(key, b) for shard in plan_shards(config, done=stored) for key in [shard.key] for b in shard.batches
               if b < recorded.get(key, count)]
    return [(key, b) for key, b in missing if store.claim_batch(run_id, key, b)], len(missing)


def run_distributed(
    config: BenchmarkConfig,
    store: ResultsStore,
    *,
    run_id: str | None = None,
    cache_dir: Path | None = None,
    load_model: ModelLoader | None = None,
    batches_per_shard: int = 1,
    retries: int = 2,
    cpus_per_task: float = 1,
    gpus_per_task: float = 0,
    address: str | None = None,
    progress: bool = True,
    force_resume: bool = False,
) -> str:
    """Run (or resume) a benchmark as Ray tasks and return its run id.

    A run made by other code is not resumed unless ``force_resume`` (:func:`bench.runner.check_resumable`).

    Uses the Ray cluster this process is connected to; otherwise connects to
    ``address`` (``"auto"``: the cluster of this node; ``"ray://host:port"``:
    Ray Client) or, with ``None``, starts a local one. The run's stored
    hardware is the driver's, with ``"workers"``: the distinct hardware of
    the workers that ran its shards.

    Parameters
    ----------
    config, store, run_id, cache_dir, load_model, progress
        As for :func:`bench.runner.run_benchmark`. ``load_model`` is sent to
        the workers, so it must pickle (cloudpickle: closures are fine).
    batches_per_shard : int
        Batches per task. One spreads work widest; more amortise each task's
        model load, sample selection and (on CUDA) warm-up.
    retries : int
        Extra attempts for a shard whose task failed.
    cpus_per_task, gpus_per_task : float
        Ray resources each task asks for (``gpus_per_task=1`` on GPU nodes).
    address : str, optional
        Where the Ray cluster is (see above).
    """
    ray = _import_ray()
    if retries < 0:
        raise SparseBenchError(f"retries: {retries!r} must be >= 0")
    _batch_count(config)  # a bad batch size fails before Ray starts
    if config.device.startswith("cuda") and gpus_per_task <= 0:
        raise SparseBenchError(f"config.device is {config.device!r} but gpus_per_task is {gpus_per_task}: Ray hides GPUs "
                         "from tasks that ask for none; give --gpus-per-task 1 (or a fraction)")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="error")
    check_resumable(store, run_id or default_run_id(config), force=force_resume)
    run_id = start_run(config, store, run_id, resolve_device("cpu"))  # the driver's machine; workers added below
    task = ray.remote(run_shard).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)

    def submit(shard: Shard):
        return task.remote(config, shard, cache_dir=cache_dir, load_model=load_model)

    # Other processes (plain runs, other drivers) may share the store: the driver claims the batches it
    # plans, leaves those others hold, and once its own are written waits for theirs, taking over any whose
    # owner is gone (bench.store.ResultsStore.claim_batch).
    pending: dict[Any, tuple[Shard, int]] = {}
    workers: list[dict[str, Any]] = []
    bar = tqdm(total=0, desc=config.name, unit="shard", disable=not progress, file=sys.stderr)
    try:
        while True:
            if not pending:
                mine, missing = _claim_missing(config, store, run_id)
                if not missing:
                    break
                if not mine:
                    time.sleep(CLAIM_POLL_S)
                    continue
                planned = {(key, b) for shard in plan_shards(config) for key in [shard.key] for b in shard.batches}
                shards = plan_shards(config, batches_per_shard=batches_per_shard, done=planned - set(mine))
                pending.update({submit(shard): (shard, 0) for shard in shards})
                bar.total += len(shards)
                bar.refresh()
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            shard, failures = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as error:  # the worker died, its node was lost, or the task raised
                if failures >= retries:
                    cause = getattr(error, "cause", None) or error  # a task's own exception, unwrapped
                    raise RuntimeError(f"shard {shard} failed {failures + 1} times; last error: "
                                       f"{type(cause).__name__}: {cause}") from error
                pending[submit(shard)] = (shard, failures + 1)
                continue
            _write(store, run_id, result)
            if result.hardware not in workers:
                workers.append(result.hardware)
            bar.update(1)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):  # those of batches a worker found empty, or of shards given up
            store.release_claims(run_id)
        if workers:
            run = store.get_run(run_id)
            assert run is not None  # start_run made it
            store.update_hardware(run_id, {**run["hardware"], "workers": workers})
    store.finish_run(run_id, _now())
    return run_id
