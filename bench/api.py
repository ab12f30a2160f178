"""The Python API, for notebooks and scripts: :func:`evaluate` one attack on one model.

It builds a one-unit config and runs it through the same runner as the
command line: the same sample selection, the same guarded attack call, the
same verification and the same store (in memory unless a path is given).
What comes back is the store's verified per-sample rows; pass them to
:func:`reports.summarize` for the report's summary table::

    from bench import evaluate
    from reports import summarize

    rows = evaluate(my_attack, my_model, inputs=images, labels=labels, overrides={"steps": 50})
    print(summarize(rows, budgets=[5, 10, 20]))

The API lives in ``bench`` (the harness) and ``summarize`` in ``reports``:
reports sit above the harness, so the harness never imports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from bench.config import AttackConfig, BenchmarkConfig, DatasetConfig
from bench.data import DATASETS, TensorImageDataset
from bench.errors import SparseBenchError
from bench.registry import FAMILIES, MODES, AttackEntry, check_contract, check_overrides, get_entry
from bench.runner import run_benchmark
from bench.store import ResultsStore

__all__ = ["evaluate"]

TENSORS = "tensors"
"""The dataset name rows carry when :func:`evaluate` was given tensors."""


def evaluate(
    attack: str | Callable[..., Tensor],
    model: str | nn.Module,
    *,
    dataset: str = "fashion-mnist",
    n_samples: int = 100,
    inputs: Tensor | None = None,
    labels: Tensor | None = None,
    modes: Sequence[str] = ("untargeted",),
    overrides: Mapping[str, Any] | None = None,
    target_selection: str = "random",
    seed: int = 0,
    batch_size: int = 100,
    device: str = "auto",
    store: str | Path | None = None,
    label: str | None = None,
    kind: str = "minimum-norm",
    threat: str = "white-box",
    family: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run one attack on one model, verified by the harness, and return the per-sample rows.

    Parameters
    ----------
    attack : str or callable
        A registry name (``sparsebench list``) or any callable that follows
        the contract ``attack(model, inputs, labels, *, targeted=False,
        **hyperparameters) -> Tensor``.
    model : str or nn.Module
        A registry name (``sparsebench models``) or a model that takes
        images in [0, 1] and returns logits (normalisation inside it).
    dataset, n_samples : str, int
        A registered dataset and how many correctly classified test images
        to attack. With ``inputs``, ``n_samples`` is ignored, and a
        registered ``model`` takes its weights for ``dataset``.
    inputs, labels : Tensor, optional
        Images ``(N, C, H, W)`` in [0, 1] and their classes, instead of a
        dataset. Images the model misclassifies are left out, as in every run.
    modes : sequence of str
        ``"untargeted"`` and/or ``"targeted"``.
    overrides : mapping, optional
        Hyperparameters replacing the attack's defaults.
    target_selection, seed, batch_size, device
        As in a config (``bench/config.py``).
    store : path, optional
        A results store to write to (and resume from); default in memory.
    label, kind, threat : str
        How a callable attack is named and described (a registered one has its entry).
    family : str, optional
        The dataset family whose defaults apply with ``inputs`` (``mnist``,
        ``cifar10``, ``imagenet``); by default the one whose image shape
        matches the inputs, else ``mnist``.
    progress : bool
        Progress bars.

    Returns
    -------
    pandas.DataFrame
        One row per sample and mode, as ``ResultsStore.samples`` gives them.
    """
    overrides = dict(overrides or {})
    modes = tuple(modes)
    for mode in modes:
        if mode not in MODES:
            raise SparseBenchError(f"modes: {mode!r} is not one of {', '.join(MODES)}")
    attack_config, entries = _attack(attack, label=label, kind=kind, threat=threat, modes=modes, overrides=overrides)
    model_name = model if isinstance(model, str) else _name(model)
    datasets: dict[str, Any] = {}
    if inputs is not None:
        if labels is None:
            raise SparseBenchError("labels: give the classes of the inputs")
        dataset_config, datasets = _tensors(inputs, labels, model, dataset, family)
        n_samples = len(inputs)
    else:
        if dataset not in DATASETS:
            raise SparseBenchError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
        dataset_config = DatasetConfig(name=dataset, models=(model_name,))
    config = BenchmarkConfig(
        datasets=(dataset_config,), attacks=(attack_config,), name=f"evaluate-{attack_config.label}",
        seed=seed, n_samples=n_samples, batch_size=batch_size, modes=modes, target_selection=target_selection,
        device=device,
    )
    loader = None if isinstance(model, str) else (lambda *_: model)
    with ResultsStore(":memory:" if store is None else store) as results:
        run_id = run_benchmark(config, results, load_model=loader, progress=progress, datasets=datasets,
                               entries=entries)
        return results.samples(run_id)


def _attack(attack: str | Callable[..., Tensor], *, label: str | None, kind: str, threat: str,
            modes: tuple[str, ...], overrides: dict[str, Any]) -> tuple[AttackConfig, dict[str, AttackEntry]]:
    if isinstance(attack, str):
        entry = get_entry(attack)
        check_overrides(entry, overrides)
        unsupported = [m for m in modes if m not in entry.modes]
        if unsupported:
            raise SparseBenchError(f"modes: {entry.name} does not support {', '.join(unsupported)}")
        return AttackConfig(name=entry.name, label=label or entry.name, overrides=overrides, modes=modes), {}
    check_contract(attack, "attack")
    name = label or _name(attack)
    function = f"{getattr(attack, '__module__', None) or 'object'}:{getattr(attack, '__qualname__', name)}"
    entry = AttackEntry(name=name, function=function, kind=kind, norm="l0", source="outside (object)",
                        modes=modes, threat=threat, citation=f"outside attack {function}", implementation=attack)
    check_overrides(entry, overrides)
    return (AttackConfig(name=name, label=name, overrides=overrides, modes=modes, function=function, kind=kind,
                         threat=threat), {name: entry})


def _tensors(inputs: Tensor, labels: Tensor, model: str | nn.Module, dataset: str,
             family: str | None) -> tuple[DatasetConfig, dict[str, Any]]:
    if not isinstance(inputs, Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        raise SparseBenchError("inputs: expected float images (N, C, H, W) in [0, 1]")
    if float(inputs.min()) < 0 or float(inputs.max()) > 1:
        raise SparseBenchError("inputs: images must lie in [0, 1] (normalise inside the model)")
    if not isinstance(labels, Tensor) or labels.shape != inputs.shape[:1] or labels.is_floating_point():
        raise SparseBenchError("labels: expected integer classes (N,), one per input")
    data = {TENSORS: TensorImageDataset(inputs.detach().cpu().float(), labels.detach().cpu().long())}
    if isinstance(model, str):  # a registered model: its weights for ``dataset``, whose shape the inputs must have
        if dataset not in DATASETS or DATASETS[dataset].shape != tuple(inputs.shape[1:]):
            raise SparseBenchError(f"inputs: images of shape {tuple(inputs.shape[1:])} do not fit the models of "
                             f"{dataset!r}; give the dataset they come from")
        return DatasetConfig(name=TENSORS, models=(model,), function="<tensors>", models_of=dataset,
                             family=family), data
    shape = tuple(inputs.shape[1:])
    if family is None:
        family = next((info.family for info in DATASETS.values() if info.shape == shape), "mnist")
    if family not in FAMILIES:
        raise SparseBenchError(f"family: {family!r} is not one of {', '.join(FAMILIES)}")
    device = next(model.parameters(), torch.zeros(())).device
    with torch.no_grad():  # the classes are the model's outputs, not only those among the labels
        num_classes = int(model(inputs[:1].to(device)).shape[1])
    return DatasetConfig(name=TENSORS, models=(_name(model),), function="<tensors>", num_classes=num_classes,
                         family=family), data


def _name(thing: object) -> str:
    raw = getattr(thing, "__name__", None) or type(thing).__name__
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "attack"
