"""Transferability: stored adversarial examples evaluated on other models, without re-running attacks.

Every example a run made is in its store (:mod:`bench.store`, a change list
against the clean input). This module rebuilds each one from the clean data,
classifies it with every target model and writes the matrix of Table 3 of
Lin et al. (arXiv:2506.17250): rows are (attack, source model), columns the
evaluated model, the white-box cells (target = source) marked.

What a cell counts
------------------
The fooling rate on the target model over the attacked samples that the
target classifies correctly when clean: a sample the target already gets
wrong was not fooled by the perturbation. Untargeted: the target model does
not predict the true class; targeted: it predicts the attack's target.
Every attacked sample counts, whether or not the attack succeeded on its
source model (an example that failed there may still transfer, and leaving
failures out would flatter weak attacks); ``source_fooling_rate`` gives the
white-box rate beside it. The verdict is :func:`bench.verify.verify`'s, the
same check the runner applies, so a white-box cell equals the run's own
fooling rate over those samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from bench.config import stored_dataset
from bench.data import get_batch
from bench.errors import SparseBenchError
from bench.store import ResultsStore, decode_example
from bench.verify import verify

__all__ = ["rebuild_examples", "transfer_matrix", "transfer_rates"]

ModelLoader = Callable[[str, str], nn.Module]


def transfer_rates(store: ResultsStore, run_id: str, load_model: ModelLoader, *,
                   targets: Sequence[str] | None = None, device: str | torch.device = "cpu",
                   batch_size: int = 256) -> pd.DataFrame:
    """Fooling rate of every stored unit's examples on every target model.

    Parameters
    ----------
    store, run_id
        The run whose examples to evaluate.
    load_model : callable
        ``load_model(name, dataset) -> nn.Module`` for a target model, prepared
        (eval mode) on ``device``.
    targets : sequence of str, optional
        Models to evaluate on (default: the models of the run, per dataset);
        models not in the run add columns (another architecture, say).
    device : str or torch.device
        Where the target models run.
    batch_size : int
        Examples classified per forward pass.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, attack, mode, source model, target model):
        ``samples`` (attacked samples the target classifies correctly when
        clean), ``fooled``, ``fooling_rate`` (%), ``white_box`` and
        ``source_fooling_rate`` (the run's own rate on the source model).
    """
    run = store.get_run(run_id)
    if run is None:
        raise SparseBenchError(f"run: {run_id!r} is not in {store.path}")
    samples = store.samples(run_id)
    if samples.empty:
        raise SparseBenchError(f"run: {run_id!r} has no attacked samples")
    config = run["config"]
    # Rows and columns in the config's order: sources and targets as its models, then its attacks.
    model_rank = {m: i for i, m in enumerate(m for d in config["datasets"] for m in d["models"])}
    attack_rank = {a.get("label") or a["name"]: i for i, a in enumerate(config["attacks"])}
    samples = samples.assign(_model=samples["model"].map(model_rank), _attack=samples["attack"].map(attack_rank))
    samples = samples.sort_values(["_model", "_attack"], kind="stable")
    rows = []
    for dataset_name, dataset_rows in samples.groupby("dataset", sort=False):
        dataset = stored_dataset(config, dataset_name)
        models = list(targets) if targets is not None else list(dict.fromkeys(dataset_rows["model"]))
        examples = rebuild_examples(store, run_id, dataset_name, dataset, dataset_rows)
        for target_name in models:
            target = load_model(target_name, dataset_name)
            for key, unit in dataset_rows.groupby(["model", "attack", "mode"], sort=False):
                clean, adversarial = examples[key]
                rows.append(_cell(target, target_name, key, unit, clean, adversarial, dataset_name, device,
                                  batch_size))
    return pd.DataFrame(rows)


def rebuild_examples(store: ResultsStore, run_id: str, dataset_name: str, dataset, rows: pd.DataFrame) -> dict:
    """Per (source model, attack, mode): the clean inputs and the stored examples, in ``rows``' order."""
    result = {}
    for key, unit in rows.groupby(["model", "attack", "mode"], sort=False):
        clean, _ = get_batch(dataset, unit["sample_index"].tolist())
        stored = {sample_id: (fmt, indices, values)
                  for _, sample_id, fmt, _, indices, values in store.examples(run_id, (dataset_name, *key))}
        adversarial = torch.stack([decode_example(image, *stored[sample_id])
                                   for image, sample_id in zip(clean, unit["sample_id"])])
        result[key] = (clean, adversarial)
    return result


def _cell(target: nn.Module, target_name: str, key: tuple, unit: pd.DataFrame, clean, adversarial,
          dataset_name: str, device, batch_size: int) -> dict:
    source, attack, mode = key
    labels = torch.tensor(unit["label"].to_numpy())
    goals = torch.tensor(unit["target"].to_numpy(dtype="int64")) if mode == "targeted" else None
    correct_parts, fooled_parts = [], []
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            part = slice(start, start + batch_size)
            x, x_adv, y = clean[part].to(device), adversarial[part].to(device), labels[part].to(device)
            correct_parts.append(target(x).argmax(1).cpu() == labels[part])
            verified = verify(target, x, x_adv, y, targets=goals[part].to(device) if goals is not None else None)
            fooled_parts.append(torch.as_tensor(verified.success))
    correct, fooled = torch.cat(correct_parts), torch.cat(fooled_parts)
    counted = int(correct.sum())
    return {
        "dataset": dataset_name, "attack": attack, "mode": mode, "source": source, "target": target_name,
        "samples": counted, "fooled": int((fooled & correct).sum()),
        "fooling_rate": 100.0 * float((fooled & correct).sum()) / counted if counted else float("nan"),
        "white_box": source == target_name,
        "source_fooling_rate": 100.0 * float(unit["success"].astype(bool).mean()),
    }


def transfer_matrix(rates: pd.DataFrame) -> pd.DataFrame:
    """Table 3's layout: a row per (dataset, mode, source, attack), a column per target model.

    Cells read ``"63.3"``, white-box cells ``"99.9*"``; ``-`` where a target
    classified none of the samples correctly.
    """
    rates = rates.assign(cell=[
        "-" if pd.isna(rate) else f"{rate:.1f}{'*' if white else ''}"
        for rate, white in zip(rates["fooling_rate"], rates["white_box"])
    ])
    index = ["dataset", "mode", "source", "attack"]
    matrix = rates.pivot_table(index=index, columns="target", values="cell", aggfunc="first", sort=False)
    matrix = matrix.reindex(columns=list(dict.fromkeys(rates["target"])))
    matrix.columns.name = None
    return matrix.reset_index()
