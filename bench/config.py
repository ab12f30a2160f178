"""Benchmark configs: a TOML file checked in full before any work starts.

A config says what to measure::

    name = "default"
    seed = 0
    n_samples = 100          # correctly classified test images per model
    batch_size = 100
    modes = ["untargeted", "targeted"]
    target_selection = "random"      # or "least-likely"
    budgets = [1, 2, 5, 10, 20, 50]  # L0 budgets k for "fooling rate within k"
    budget_unit = "pixels"           # or "elements"
    device = "auto"
    warmup = "auto"          # an untimed run of each unit's first batch: true, false, auto (on CUDA)
    precision = "fp32"       # the attacked model's autocast: fp32, bf16, fp16 (CUDA)
    channels_last = false    # the attacked model in channels-last memory layout
    exclude_runs = ["lin2025-study-0123456789ab"]   # never attack the samples of these runs (same store)
    exclude_indices = [[0, 1000], [4911, 4912]]     # nor these dataset indices (half-open [start, stop))

``batch_size = "auto"`` picks each unit's batch size from the attack's
measured memory on the device (:func:`bench.speed.largest_batch`).

    [[datasets]]
    name = "fashion-mnist"
    models = ["smallcnn-standard", "smallcnn-pgd-at", "smallcnn-fast-at"]

    [[attacks]]
    name = "i-fgsm"
    overrides = { steps = 20 }       # optional
    label = "i-fgsm-20"              # optional: a second entry of the same attack
    modes = ["untargeted"]           # optional: a subset of the run's modes

Every error names the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from bench.data import DATASETS, DatasetInfo, load_dataset
from bench.errors import SparseBenchError
from bench.models import all_models, model_names
from bench.outside import image_shape, import_object, load_outside_dataset
from bench.registry import FAMILIES, MODES, Attack, AttackEntry, bind, check_overrides, get_entry, outside_entry
from bench.vocabulary import BudgetUnit, Mode, Precision, TargetSelection

__all__ = [
    "AttackConfig", "BenchmarkConfig", "DatasetConfig", "ModelConfig", "default_config_path", "load_config", "packaged_configs",
    "parse_config", "resolve_config", "stored_dataset",
]

TARGET_SELECTIONS = tuple(TargetSelection)
BUDGET_UNITS = tuple(BudgetUnit)


@dataclass(frozen=True)
class DatasetConfig:
    """One ``[[datasets]]`` table: a registered dataset by ``name``, or an outside one by ``folder`` or ``function``.

    An outside dataset is a test set: a folder in ``ImageFolder`` layout or a
    callable returning ``(images, labels)`` (:mod:`bench.outside`), with its
    ``num_classes``. ``models_of`` names a registered dataset whose models it
    can be attacked with (same image shape and classes, checked when it
    loads); ``family`` picks the attacks' default hyperparameters (from
    ``models_of`` when it is given).
    """

    name: str
    models: tuple[str, ...]
    root: str | None = None
    split: str = "test"
    folder: str | None = None
    function: str | None = None
    num_classes: int | None = None
    models_of: str | None = None
    family: str | None = None

    @property
    def outside(self) -> bool:
        return self.folder is not None or self.function is not None

    @property
    def weights_of(self) -> str:
        """The dataset whose registered models' weights serve here: ``models_of``, else the dataset itself."""
        return self.models_of or self.name

    def info(self) -> DatasetInfo:
        """Classes, image shape and family (an outside dataset's shape is read when it loads)."""
        if not self.outside:
            return DATASETS[self.name]
        like = DATASETS.get(self.models_of or "")
        if like is None:  # parse_config required num_classes and family then
            return DatasetInfo(self.name, self.num_classes or 0, (0, 0, 0), self.family or "")
        return DatasetInfo(self.name, like.num_classes, like.shape, self.family or like.family)

    def load(self) -> Dataset:
        """The split to attack; an outside dataset is checked against ``models_of``'s shape and classes."""
        if not self.outside:
            return load_dataset(self.name, split=self.split, root=self.root)
        info = self.info()
        dataset = load_outside_dataset(name=self.name, folder=self.folder, function=self.function,
                                       num_classes=info.num_classes)
        shape = image_shape(dataset)
        if self.models_of is not None and shape != DATASETS[self.models_of].shape:
            raise SparseBenchError(f"dataset {self.name!r}: images of shape {shape} do not fit the models of "
                             f"{self.models_of!r}, which take {DATASETS[self.models_of].shape}")
        return dataset


@dataclass(frozen=True)
class ModelConfig:
    """One ``[[models]]`` table: an outside model (:func:`bench.outside.load_outside_model`)."""

    name: str
    function: str
    datasets: tuple[str, ...]
    checkpoint: str | None = None
    description: str = ""
    citation: str = ""


@dataclass(frozen=True)
class AttackConfig:
    """One ``[[attacks]]`` table: a registered attack by ``name``, or an outside one by ``function``.

    For an outside attack (``function = "module:attribute"``), ``name`` is
    its label and ``kind``, ``threat`` and ``citation`` describe it as a
    registry entry would.
    """

    name: str
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] = MODES
    function: str | None = None
    kind: str | None = None
    threat: str | None = None
    citation: str | None = None

    def entry(self) -> AttackEntry:
        """The registry entry, or the outside attack's entry built from this table."""
        if self.function is None:
            return get_entry(self.name)
        return outside_entry(self.function, label=self.label, kind=self.kind or "minimum-norm", modes=self.modes,
                             threat=self.threat or "white-box", citation=self.citation or "")

    def build(self, dataset: str | None = None, *, family: str | None = None) -> Attack:
        """The attack bound to its defaults for ``dataset`` (or ``family``) and this table's overrides."""
        return bind(self.entry(), dataset=dataset, family=family, **self.overrides)


@dataclass(frozen=True)
class BenchmarkConfig:
    datasets: tuple[DatasetConfig, ...]
    attacks: tuple[AttackConfig, ...]
    models: tuple[ModelConfig, ...] = ()
    name: str = "benchmark"
    seed: int = 0
    n_samples: int = 100
    batch_size: int | str = 100
    modes: tuple[str, ...] = MODES
    target_selection: str = "random"
    budgets: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    budget_unit: str = "pixels"
    device: str = "auto"
    warmup: bool | str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    proposed: str = "lin2025"
    """The attack a report sets beside the best other one (a label of this config's attacks)."""
    exclude_runs: tuple[str, ...] = ()
    """Runs of the same store whose samples this run never attacks (a sample is its dataset and its input's
    hash): a held-out evaluation provably disjoint from the samples something was tuned on."""
    exclude_indices: tuple[tuple[int, int], ...] = ()
    """Half-open ranges ``[start, stop)`` of dataset indices this run never attacks, in every dataset."""

    def to_dict(self) -> dict[str, Any]:
        content = json.loads(json.dumps(dataclasses.asdict(self)))
        # Registered attacks and datasets read as they did before outside ones existed (fingerprints hold).
        for table, keys in [(a, _OUTSIDE_ONLY) for a in content["attacks"]] + [
                (d, _OUTSIDE_DATASET) for d in content["datasets"]]:
            for key in keys:
                if table[key] is None:
                    table.pop(key)
        for attack in content["attacks"]:
            if "function" in attack:  # an outside attack's table, as written: its label names it
                attack.pop("name")
        if not content["models"]:
            content.pop("models")
        for key in _EXCLUSIONS:  # absent when unused: configs written before they existed keep their fingerprints
            if not content[key]:
                content.pop(key)
        return content

    def model(self, name: str) -> ModelConfig | None:
        """The outside model of that name, if the config has one."""
        return next((m for m in self.models if m.name == name), None)

    def dataset(self, name: str) -> DatasetConfig | None:
        """The config's dataset of that name."""
        return next((d for d in self.datasets if d.name == name), None)

    def fingerprint(self) -> str:
        """A short hash of everything that decides the results.

        Not the device or the warm-up, which change only the time. The speed
        options that can change results (precision, channels-last) count
        when they are not at their defaults, so configs written before they
        existed keep their fingerprints, and their runs resume.
        """
        content = self.to_dict()
        for key in _TIME_ONLY:
            content.pop(key)
        for key, default in _LATER_FIELDS.items():
            if content[key] == default:
                content.pop(key)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


_TIME_ONLY = ("device", "warmup")
_OUTSIDE_ONLY = ("function", "kind", "threat", "citation")
_OUTSIDE_DATASET = ("folder", "function", "num_classes", "models_of", "family")
_LATER_FIELDS = {"precision": "fp32", "channels_last": False, "proposed": "lin2025"}
_EXCLUSIONS = ("exclude_runs", "exclude_indices")


_TOP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "seed": int, "n_samples": int, "batch_size": (int, str), "modes": list,
    "target_selection": str, "budgets": list, "budget_unit": str, "device": str,
    "warmup": (bool, str), "precision": str, "channels_last": bool, "proposed": str,
    "datasets": list, "attacks": list, "models": list, "exclude_runs": list, "exclude_indices": list,
}
_DATASET_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "models": list, "root": str, "split": str,
    "folder": str, "function": str, "num_classes": int, "models_of": str, "family": str,
}
_MODEL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "function": str, "datasets": list, "checkpoint": str, "description": str, "citation": str,
}
_ATTACK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "label": str, "overrides": dict, "modes": list,
    "function": str, "kind": str, "threat": str, "citation": str,
}


def _check_fields(where: str, table: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]],
                  required: tuple[str, ...]) -> None:
    for key, value in table.items():
        if key not in fields:
            raise SparseBenchError(f"{where}: unknown field {key!r}; allowed: {', '.join(fields)}")
        expected = fields[key]
        types = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            name = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise SparseBenchError(f"{where}.{key}: {value!r} is a {type(value).__name__}; expected {name}")
    for key in required:
        if key not in table:
            raise SparseBenchError(f"{where}: missing field {key!r}")


def _check_table(where: str, table: Any, fields: Mapping[str, type | tuple[type, ...]],
                 required: tuple[str, ...]) -> None:
    if not isinstance(table, dict):
        raise SparseBenchError(f"{where}: {table!r} is a {type(table).__name__}; expected a table")
    _check_fields(where, table, fields, required)


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""What a config, model, dataset or label name may be: it becomes part of run ids, file names and tables."""
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/-]*")
"""An attack label may also hold ``/``, as the registry's ``library/name`` entries do."""


def _name(where: str, value: str, pattern: re.Pattern[str] = NAME) -> str:
    if not pattern.fullmatch(value) or ".." in value:
        raise SparseBenchError(f"{where}: {value!r} must start with a letter or digit and hold only letters, "
                               f"digits and {'._+-/' if pattern is LABEL else '._+-'} (no '..')")
    return value


def _positive(where: str, value: int) -> int:
    if value < 1:
        raise SparseBenchError(f"{where}: {value!r} must be a positive integer")
    return value


def _choices(where: str, values: list[Any], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise SparseBenchError(f"{where}: must not be empty; allowed: {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise SparseBenchError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise SparseBenchError(f"{where}: {values!r} repeats a value")
    return tuple(values)


def _attack_config(where: str, table: Any, modes: tuple[str, ...]) -> AttackConfig:
    """One ``[[attacks]]`` table, checked: a registered ``name`` or an outside ``function``."""
    _check_table(where, table, _ATTACK_FIELDS, ())
    outside = "function" in table
    if outside == ("name" in table):
        raise SparseBenchError(f"{where}: give either 'name' (a registered attack) or 'function' "
                         "('module:attribute' of an outside attack), not both or neither")
    if not outside:
        described = [key for key in _OUTSIDE_ONLY if key in table]
        if described:
            raise SparseBenchError(f"{where}: {', '.join(map(repr, described))} describe an outside attack; "
                             f"{table['name']!r} is registered, and its entry says that")
    try:
        if outside:
            function = table["function"]
            label = table.get("label", function.partition(":")[2].replace("_", "-"))
            entry = outside_entry(function, label=label, kind=table.get("kind", "minimum-norm"),
                                  modes=tuple(table.get("modes", modes)), threat=table.get("threat", "white-box"),
                                  citation=table.get("citation", ""), where=where)
        else:
            entry = get_entry(table["name"])
    except ValueError as error:
        raise SparseBenchError(error.args[0] if outside else f"{where}.name: {error}") from None
    try:
        check_overrides(entry, table.get("overrides", {}))
    except ValueError as error:
        raise SparseBenchError(f"{where}: {error}") from None
    supported = tuple(m for m in modes if m in entry.modes)
    attack_modes = _choices(f"{where}.modes", table["modes"], supported) if "modes" in table else supported
    if not attack_modes:
        raise SparseBenchError(f"{where}: {entry.name} supports {', '.join(entry.modes)}, none of config.modes {list(modes)}")
    if "label" in table:
        _name(f"{where}.label", table["label"], LABEL)
    if not outside:
        return AttackConfig(name=entry.name, label=table.get("label", entry.name),
                            overrides=dict(table.get("overrides", {})), modes=attack_modes)
    return AttackConfig(name=entry.name, label=entry.name, overrides=dict(table.get("overrides", {})),
                        modes=attack_modes, function=entry.function, kind=entry.kind, threat=entry.threat,
                        citation=table.get("citation"))


def _resolve_paths(data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    def resolved(table: Any, key: str) -> Any:
        if not isinstance(table, dict) or not isinstance(table.get(key), str):
            return table
        path = Path(table[key]).expanduser()
        return {**table, key: str(path if path.is_absolute() else (base / path).resolve())}

    data = dict(data)
    for section, key in (("models", "checkpoint"), ("datasets", "folder")):
        if isinstance(data.get(section), list):
            data[section] = [resolved(table, key) for table in data[section]]
    return data


def _model_config(where: str, table: Any, outside_datasets: list[str]) -> ModelConfig:
    """One ``[[models]]`` table: an outside model's constructor, checkpoint and datasets."""
    _check_table(where, table, _MODEL_FIELDS, ("name", "function", "datasets"))
    _name(f"{where}.name", table["name"])
    if table["name"] in all_models():
        raise SparseBenchError(f"{where}.name: {table['name']!r} is a registered model; give yours another name")
    build = import_object(table["function"], f"{where}.function")
    if not callable(build):
        raise SparseBenchError(f"{where}.function: {table['function']!r} is not callable")
    checkpoint = table.get("checkpoint")
    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise SparseBenchError(f"{where}.checkpoint: {checkpoint!r} does not exist")
    datasets = _choices(f"{where}.datasets", table["datasets"], tuple(DATASETS) + tuple(outside_datasets))
    return ModelConfig(name=table["name"], function=table["function"], datasets=datasets, checkpoint=checkpoint,
                       description=table.get("description", ""), citation=table.get("citation", ""))


def _dataset_config(where: str, table: Any, models: tuple[ModelConfig, ...]) -> DatasetConfig:
    """One ``[[datasets]]`` table: a registered dataset, or an outside one (``folder`` or ``function``)."""
    _check_table(where, table, _DATASET_FIELDS, ("name", "models"))
    if table.get("split", "test") not in ("test", "train"):
        raise SparseBenchError(f"{where}.split: {table['split']!r} is not one of test, train")
    mine = tuple(m.name for m in models if table["name"] in m.datasets)
    if "folder" not in table and "function" not in table:
        described = [key for key in _OUTSIDE_DATASET if key in table]
        if described:
            raise SparseBenchError(f"{where}: {', '.join(map(repr, described))} describe an outside dataset "
                             "('folder' or 'function'); a registered dataset's entry says that")
        _choices(f"{where}.name", [table["name"]], tuple(DATASETS))
        allowed = tuple(model_names(table["name"])) + mine
        return DatasetConfig(name=table["name"], models=_choices(f"{where}.models", table["models"], allowed),
                             root=table.get("root"), split=table.get("split", "test"))
    if "folder" in table and "function" in table:
        raise SparseBenchError(f"{where}: give 'folder' or 'function', not both")
    if table["name"] in DATASETS:
        raise SparseBenchError(f"{where}.name: {table['name']!r} is a registered dataset; give yours another name")
    _name(f"{where}.name", table["name"])
    if table.get("split", "test") != "test" or "root" in table:
        raise SparseBenchError(f"{where}: an outside dataset is one test set; 'split' and 'root' do not apply")
    if "function" in table:
        import_object(table["function"], f"{where}.function")  # fails now, not after the models load
    like = table.get("models_of")
    if like is not None:
        _choices(f"{where}.models_of", [like], tuple(DATASETS))
    if like is None and "num_classes" not in table:
        raise SparseBenchError(f"{where}: an outside dataset needs 'num_classes' (or 'models_of', a registered "
                         "dataset whose models fit it)")
    if like is not None and table.get("num_classes", DATASETS[like].num_classes) != DATASETS[like].num_classes:
        raise SparseBenchError(f"{where}.num_classes: {table['num_classes']} != {DATASETS[like].num_classes}, the "
                         f"classes of the models of {like!r}")
    if "num_classes" in table and table["num_classes"] < 2:
        raise SparseBenchError(f"{where}.num_classes: {table['num_classes']!r} must be at least 2")
    if like is None and "family" not in table:
        raise SparseBenchError(f"{where}: an outside dataset without 'models_of' needs 'family' (one of "
                         f"{', '.join(FAMILIES)}): the attacks' default hyperparameters to use")
    if "family" in table:
        _choices(f"{where}.family", [table["family"]], FAMILIES)
    allowed = (tuple(model_names(like)) if like is not None else ()) + mine
    return DatasetConfig(name=table["name"], models=_choices(f"{where}.models", table["models"], allowed),
                         folder=table.get("folder"), function=table.get("function"),
                         num_classes=table.get("num_classes"), models_of=like, family=table.get("family"))


def _top_level(top: dict[str, Any]) -> dict[str, Any]:
    """The config's own fields checked, their closed vocabularies as enums; ``modes`` and ``budgets`` as tuples."""
    if "name" in top:
        _name("config.name", top["name"])
    if "seed" in top and not 0 <= top["seed"] < 2**63:
        raise SparseBenchError(f"config.seed: {top['seed']!r} must be >= 0 and below 2**63")
    if "n_samples" in top:
        _positive("config.n_samples", top["n_samples"])
    if isinstance(top.get("batch_size"), str):
        if top["batch_size"] != "auto":
            raise SparseBenchError(f"config.batch_size: {top['batch_size']!r} is a str; expected a positive int or 'auto'")
    elif "batch_size" in top:
        _positive("config.batch_size", top["batch_size"])
    if isinstance(top.get("warmup"), str) and top["warmup"] != "auto":
        raise SparseBenchError(f"config.warmup: {top['warmup']!r} is a str; expected true, false or 'auto'")
    for key, vocabulary in (("precision", Precision), ("target_selection", TargetSelection),
                            ("budget_unit", BudgetUnit)):
        if key in top:
            top[key] = vocabulary(_choices(f"config.{key}", [top[key]], tuple(vocabulary))[0])
    top["modes"] = tuple(Mode(m) for m in _choices("config.modes", top.get("modes", list(MODES)), MODES))
    budgets = top.get("budgets", list(BenchmarkConfig.budgets))
    for i, k in enumerate(budgets):
        if isinstance(k, bool) or not isinstance(k, int):
            raise SparseBenchError(f"config.budgets[{i}]: {k!r} is a {type(k).__name__}; expected int")
        _positive(f"config.budgets[{i}]", k)
    if list(budgets) != sorted(set(budgets)):
        raise SparseBenchError(f"config.budgets: {list(budgets)} must be strictly increasing, "
                               f"e.g. {sorted(set(budgets))}")
    top["budgets"] = tuple(budgets)
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", top.get("device", "auto")):
        raise SparseBenchError(f"config.device: {top['device']!r} is not one of auto, cpu, cuda, cuda:N, mps")
    top["exclude_runs"] = _exclude_runs(top.get("exclude_runs", []))
    top["exclude_indices"] = _exclude_indices(top.get("exclude_indices", []))
    return top


def _exclude_runs(runs: list[Any]) -> tuple[str, ...]:
    """``exclude_runs``: distinct run ids (whether the store holds them is checked when the run starts)."""
    for i, run_id in enumerate(runs):
        if not isinstance(run_id, str) or not run_id.strip():
            raise SparseBenchError(f"config.exclude_runs[{i}]: {run_id!r} is not a run id; expected the id of a "
                                   "run in the same store (`sparsebench runs` lists them)")
    if len(set(runs)) != len(runs):
        raise SparseBenchError(f"config.exclude_runs: {runs!r} repeats a run id")
    return tuple(runs)


def _exclude_indices(ranges: list[Any]) -> tuple[tuple[int, int], ...]:
    """``exclude_indices``: ``[start, stop]`` pairs of integers, ``0 <= start < stop``, sorted and apart."""
    checked: list[tuple[int, int]] = []
    for i, pair in enumerate(ranges):
        if (not isinstance(pair, list) or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in pair) or not 0 <= pair[0] < pair[1]):
            raise SparseBenchError(f"config.exclude_indices[{i}]: {pair!r} is not a range of dataset indices; "
                                   "expected [start, stop] with integers 0 <= start < stop (stop is left out)")
        if checked and pair[0] < checked[-1][1]:
            raise SparseBenchError(f"config.exclude_indices[{i}]: {pair!r} starts before the previous range "
                                   f"{list(checked[-1])} ends; give the ranges in increasing order, not overlapping")
        checked.append((pair[0], pair[1]))
    return tuple(checked)


def parse_config(data: Mapping[str, Any], *, base: Path | None = None) -> BenchmarkConfig:
    """Check a config's content and build it; ``ValueError`` on the first problem.

    ``base`` is the folder of the config file: an outside model's relative ``checkpoint`` and an outside
    dataset's relative ``folder`` are read from there (and stored as absolute paths).
    """
    if base is not None:
        data = _resolve_paths(data, base)
    _check_fields("config", data, _TOP_FIELDS, ("datasets", "attacks"))
    top = _top_level(dict(data))
    modes, budgets = top.pop("modes"), top.pop("budgets")
    if not top["datasets"]:
        raise SparseBenchError("config.datasets: must not be empty")
    outside_names = [t["name"] for t in top["datasets"]
                     if isinstance(t, dict) and ("folder" in t or "function" in t) and isinstance(t.get("name"), str)]
    models = tuple(_model_config(f"config.models[{i}]", table, outside_names)
                   for i, table in enumerate(top.get("models", [])))
    datasets = tuple(_dataset_config(f"config.datasets[{i}]", table, models)
                     for i, table in enumerate(top["datasets"]))

    if not top["attacks"]:
        raise SparseBenchError("config.attacks: must not be empty")
    attacks = [_attack_config(f"config.attacks[{i}]", table, modes) for i, table in enumerate(top["attacks"])]
    labels = [a.label for a in attacks]
    for label in labels:
        if labels.count(label) > 1:
            raise SparseBenchError(f"config.attacks: label {label!r} is used twice; give each entry its own 'label'")
    if top.get("proposed", BenchmarkConfig.proposed) not in (*labels, BenchmarkConfig.proposed):
        raise SparseBenchError(f"config.proposed: {top['proposed']!r} is not a label of this config's attacks; "
                               f"labels: {', '.join(labels)}")

    kwargs = {k: v for k, v in top.items() if k not in ("datasets", "attacks", "models")}
    return BenchmarkConfig(datasets=datasets, attacks=tuple(attacks), models=models, modes=modes,
                           budgets=budgets, **kwargs)


def stored_dataset(run_config: Mapping[str, Any], name: str) -> Dataset:
    """A stored run's dataset ``name``, loaded as the run's config describes it (root, split, outside source)."""
    table = next((d for d in run_config["datasets"] if d["name"] == name), {"name": name, "models": []})
    fields = {f.name for f in dataclasses.fields(DatasetConfig)}
    kwargs: dict[str, Any] = {k: tuple(v) if k == "models" else v for k, v in table.items() if k in fields}
    return DatasetConfig(**kwargs).load()


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and check a TOML config file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SparseBenchError(f"config: file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise SparseBenchError(f"config: {path} is not valid TOML: {error}") from None
    return parse_config(data, base=path.resolve().parent)


def packaged_configs() -> dict[str, Path]:
    """The configs shipped with SparseBench, by name."""
    folder = resources.files("bench") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def default_config_path() -> Path:
    """The packaged offline Fashion-MNIST benchmark."""
    return packaged_configs()["default"]


def resolve_config(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a packaged config (``sparsebench list --configs``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = packaged_configs()
    if str(name_or_path) in packaged:
        return packaged[str(name_or_path)]
    raise SparseBenchError(f"--config: {str(name_or_path)!r} is neither a file nor a packaged config; "
                     f"packaged: {', '.join(sorted(packaged))}")
