"""The attack registry, as data.

One :class:`AttackEntry` per attack: its name, kind, source, modes, default
hyperparameters per dataset family, and citation. The CLI, the config
checker, the runner, the docs and the tests all read :data:`ATTACKS`;
adding an attack is adding an entry.

Names are lower-case with hyphens; a wrapper of a library's implementation
carries the library's name before a slash (``torchattacks/sparsefool``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Protocol

from torch import Tensor, nn

from attacks.checks import check_inputs
from attacks.prune import with_pruning
from bench.data import DATASETS
from bench.errors import SparseBenchError
from bench.outside import import_object
from bench.vocabulary import Family, Kind, Mode, Threat

__all__ = [
    "ATTACKS",
    "AttackFunction",
    "FAMILIES",
    "Interval",
    "inferred_range",
    "ENTRY_POINT_GROUP",
    "all_attacks",
    "bind",
    "check_contract",
    "outside_entry",
    "plugin_attacks",
    "PRUNED",
    "pruned_entry",
    "KINDS",
    "MODES",
    "Attack",
    "AttackEntry",
    "attack_names",
    "get_attack",
    "get_entry",
]

KINDS = tuple(Kind)
MODES = tuple(Mode)
FAMILIES = tuple(Family)
THREATS = tuple(Threat)


class AttackFunction(Protocol):
    """The attack contract: ``attack(model, inputs, labels, *, targeted=False, **hyperparameters) -> Tensor``.

    ``inputs`` are float images ``(B, C, H, W)`` in [0, 1]; ``labels`` the true classes, or the target
    classes when ``targeted``; the model returns logits and holds its own normalisation. It returns
    adversarial images of the inputs' shape in [0, 1], which the harness verifies itself. Its
    hyperparameters are keyword-only arguments with defaults.
    """

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, /, *, targeted: bool = ...,
                 **hyperparameters: Any) -> Tensor: ...


@dataclass(frozen=True)
class Interval:
    """A closed, open or half-open interval of valid values; ``inf`` for no bound."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = True

    @classmethod
    def parse(cls, text: str | Interval) -> Interval:
        """``"[1, inf)"``, ``"(0, 1]"``, ... (an :class:`Interval` is returned as it is)."""
        if isinstance(text, Interval):
            return text
        match = re.fullmatch(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*", text)
        if not match:
            raise SparseBenchError(f"range: {text!r} is not an interval like '(0, 1]' or '[1, inf)'")
        return cls(float(match[2]), float(match[3]), match[1] == "(", match[4] == ")")

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def bound(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'(' if self.low_open else '['}{bound(self.low)}, {bound(self.high)}{')' if self.high_open else ']'}"


def inferred_range(default: Any) -> Interval | None:
    """The interval a hyperparameter's default implies: a count (an int default of 1 or more) is at least 1,
    any other int at least 0; a positive float is positive, a zero float at least 0, both finite. Other
    defaults (None, strings, booleans, tuples) imply none; a tuple of budgets is checked element by element."""
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if isinstance(default, int):
        return Interval(1 if default >= 1 else 0, math.inf) if default >= 0 else None
    if default > 0:
        return Interval(0, math.inf, low_open=True)
    return Interval(0, math.inf) if default == 0 else None


@dataclass(frozen=True)
class AttackEntry:
    """What the harness knows about one attack.

    Attributes
    ----------
    name : str
        Registry name (lower-case, hyphens, ``library/`` prefix for wrappers).
    function : str
        ``"module:function"`` of the callable with SparseBench's contract.
    kind : str
        ``"minimum-norm"`` (finds the smallest perturbation that succeeds)
        or ``"fixed-budget"`` (succeeds within a given budget).
    norm : str
        The norm the attack minimises or bounds: ``"l0"`` or ``"linf"``.
    source : str
        ``"native"`` or the library it wraps.
    modes : tuple[str, ...]
        Supported modes, a subset of :data:`MODES`.
    threat : str
        ``"white-box"`` (gradients) or ``"black-box"`` (outputs only).
    citation : str
        The paper, with its arXiv id.
    defaults : Mapping[str, Mapping[str, Any]]
        Hyperparameters per dataset family (``"mnist"``, ``"cifar10"``,
        ``"imagenet"``) over those under ``"*"`` (all datasets); the paper's
        values where it gives them.
    prepare : str, optional
        ``"module:function"`` of a one-off step the runner calls before it
        times the attack on a model, for attacks that learn something first
        (a generator, a distortion map):
        ``prepare(model, *, targeted, cache_dir, progress, **hyperparameters)``.
        It trains and caches what the attack needs, so that neither its time
        nor its passes count as the attack's; the attack itself trains on
        first use when nothing prepared it (a call outside the runner).
    smoke : Mapping[str, Any]
        Hyperparameters under which the attack runs in seconds on a tiny
        model; the registry's test runs every entry with them
        (``tests/test_attacks_registry.py``). Each key is one of the
        attack's hyperparameters (checked by that test, not here: checking
        would import the attack).
    smoke_success : float
        The fooling rate it must reach there (8 samples, the tiny linear
        model); 0 where a small budget may not suffice.
    """

    name: str
    function: str
    kind: str
    norm: str
    source: str
    modes: tuple[str, ...]
    threat: str
    citation: str
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prepare: str | None = None
    implementation: AttackFunction | None = field(default=None, compare=False, repr=False)
    """The callable itself, for an attack handed in as an object (:func:`bench.api.evaluate`); then
    ``function`` only names it."""
    smoke: Mapping[str, Any] = field(default_factory=dict)
    smoke_success: float = 0.0
    ranges: Mapping[str, str | Interval] = field(default_factory=dict)
    """Valid ranges of hyperparameters, as intervals (``"(0, 1]"``, ``"[1, inf)"``), where the rule of
    :func:`inferred_range` (from the function's default) is not the whole truth."""
    preparation: Callable[..., None] | None = field(default=None, compare=False, repr=False)
    """The one-off preparation itself, for an entry built in code (:func:`pruned_entry`); then ``prepare``
    only names it."""

    def __post_init__(self) -> None:
        _check_choice(f"{self.name}.kind", self.kind, KINDS)
        _check_choice(f"{self.name}.threat", self.threat, THREATS)
        for mode in self.modes:
            _check_choice(f"{self.name}.modes", mode, MODES)
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "threat", Threat(self.threat))
        object.__setattr__(self, "modes", tuple(Mode(m) for m in self.modes))
        for family in self.defaults:
            _check_choice(f"{self.name}.defaults", family, ("*",) + FAMILIES)
        object.__setattr__(self, "defaults", MappingProxyType({k: dict(v) for k, v in self.defaults.items()}))
        object.__setattr__(self, "smoke", MappingProxyType(dict(self.smoke)))
        object.__setattr__(self, "ranges", MappingProxyType({k: Interval.parse(v) for k, v in self.ranges.items()}))

    def load(self) -> AttackFunction:
        """Import the attack's function (or return the one handed in)."""
        return self.implementation if self.implementation is not None else _import(self.function)

    def load_prepare(self) -> Callable[..., None] | None:
        """Import the attack's one-off preparation, if it has one."""
        if self.preparation is not None:
            return self.preparation
        return _import(self.prepare) if self.prepare is not None else None

    def parameters(self) -> dict[str, Any]:
        """The attack's hyperparameters and the function's own defaults."""
        signature = inspect.signature(self.load())
        return {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "targeted"
        }

    def valid_ranges(self) -> dict[str, Interval]:
        """Every numeric hyperparameter's valid interval: the entry's own, else the one its default implies."""
        found = {name: inferred_range(default) for name, default in self.parameters().items()}
        found.update({name: Interval.parse(interval) for name, interval in self.ranges.items()})
        return {name: interval for name, interval in found.items() if interval is not None}

    def hyperparameters(self, dataset_family: str | None = None) -> dict[str, Any]:
        """The defaults for a dataset family (the function's, then ``*``, then the family's)."""
        values = self.parameters()
        values.update(self.defaults.get("*", {}))
        if dataset_family is not None:
            _check_choice("dataset family", dataset_family, FAMILIES)
            values.update(self.defaults.get(dataset_family, {}))
        return values


def _import(path: str) -> Callable[..., Any]:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _check_choice(field_name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SparseBenchError(f"{field_name}: {value!r} is not one of {', '.join(allowed)}")


# Section 5.1: lambda 1e-2 and T = 100 (MNIST, CIFAR-10), lambda 1e-3 and T = 200 (ImageNet); eps 4/255
# for all three. Table 2's eps = 0.3 (MNIST) is the budget of its adversarially trained models (its
# ImageNet value, 2/255, is below 4/255), so the MNIST family keeps 4/255 here; a robust-model run
# overrides eps=0.3, alpha=0.075.
_LIN2025_DEFAULTS: dict[str, dict[str, Any]] = {
    "*": {"lam": 1e-2},
    "mnist": {"lam": 1e-2, "steps": 100, "eps": 4 / 255},
    "cifar10": {"lam": 1e-2, "steps": 100},
    "imagenet": {"lam": 1e-3, "steps": 200},
}
_LIN2025_CITE = (
    "Lin, Lou, Wang, Jalaian & Yuan, 'Towards Interpretable Adversarial Examples via Sparse "
    "Adversarial Attack', arXiv:2506.17250"
)
_SPARSE_RS_CITE = ("Croce, Singh, Andriushchenko, Flammarion & Hein, 'Sparse-RS: a versatile framework for "
                   "query-efficient sparse black-box adversarial attacks', AAAI 2022, arXiv:2006.12834")
_PGD_L0_CITE = "Croce & Hein, 'Sparse and Imperceivable Adversarial Attacks', ICCV 2019, arXiv:1909.05040"
_SPGD_CITE = ("Zhong, Huang & Liu, 'Towards Efficient Training and Evaluation of Robust Models against l0 "
              "Bounded Adversarial Perturbations', ICML 2024, arXiv:2405.05075")
_SEARCH = "; minimum-norm by binary search over k (attacks/search.py)"
_IMAGENET_BUDGETS = (10, 20, 50, 100, 150, 200, 300, 500, 750, 1000)
_SA_MOO_CITE = ("Williams & Li, 'Black-Box Sparse Adversarial Attack via Multi-Objective Optimisation', CVPR 2023, "
                "pp. 12291-12301 (no arXiv version; CVF open access)")
_BRUSLE_CITE = ("Vo, Abbasnejad & Ranasinghe, 'BruSLeAttack: A Query-Efficient Score-Based Black-Box Sparse "
                "Adversarial Attack', ICLR 2024, arXiv:2404.05311")
_EGS_TSSA_CITE = ("Ming, Ren, Wang & Feng, 'Transferable Structural Sparse Adversarial Attack Via Exact Group "
                  "Sparsity Training', CVPR 2024, doi:10.1109/CVPR52733.2024.02332 (no arXiv version); builds on "
                  "He, Wang, Dong & Tan, 'Transferable Sparse Adversarial Attack', CVPR 2022, arXiv:2105.14727")
_TORCHATTACKS_CITE = "Kim, 'Torchattacks: A PyTorch Repository for Adversarial Attacks', arXiv:2010.01950"
_ADVLIB_CITE = "Rony & Ben Ayed, 'Adversarial Library' (adv-lib 0.2.8), github.com/jeromerony/adversarial-library"

ATTACKS: Mapping[str, AttackEntry] = MappingProxyType({
    entry.name: entry
    for entry in (
        AttackEntry(
            ranges={"eps": "(0, 1]", "alpha": "(0, 1]"},
            name="i-fgsm",
            function="attacks.ifgsm:i_fgsm",
            kind="fixed-budget",
            norm="linf",
            source="native",
            modes=MODES,
            threat="white-box",
            citation="Kurakin, Goodfellow & Bengio, 'Adversarial examples in the physical world', "
                     "ICLR workshop 2017, arXiv:1607.02533",
            # Lin et al. (arXiv:2506.17250), Section 5.1: eps 4/255, alpha 1/255, 10 steps.
            defaults={"*": {"eps": 4 / 255, "alpha": 1 / 255, "steps": 10}},
            smoke={"eps": 0.3, "alpha": 0.05, "steps": 10}, smoke_success=0.75,
        ),
        AttackEntry(
            name="torchattacks/sparsefool",
            function="baselines.torchattacks_wrappers:sparsefool",
            kind="minimum-norm",
            norm="l0",
            source="torchattacks",
            modes=("untargeted",),
            threat="white-box",
            citation="Modas, Moosavi-Dezfooli & Frossard, 'SparseFool: a few pixels make a big "
                     f"difference', CVPR 2019, arXiv:1811.02248; via {_TORCHATTACKS_CITE}",
            smoke={"steps": 5}, smoke_success=0.75,
        ),
        AttackEntry(
            name="torchattacks/onepixel",
            function="baselines.torchattacks_wrappers:onepixel",
            kind="fixed-budget",
            norm="l0",
            source="torchattacks",
            modes=MODES,
            threat="black-box",
            citation="Su, Vargas & Sakurai, 'One pixel attack for fooling deep neural networks', "
                     f"IEEE TEVC 2019, arXiv:1710.08864; via {_TORCHATTACKS_CITE}",
            smoke={"pixels": 5, "steps": 5, "popsize": 10},
        ),
        AttackEntry(
            name="torchattacks/jsma",
            function="baselines.torchattacks_wrappers:jsma",
            kind="minimum-norm",
            norm="l0",
            source="torchattacks",
            modes=MODES,
            threat="white-box",
            citation="Papernot et al., 'The limitations of deep learning in adversarial settings', "
                     f"EuroS&P 2016, arXiv:1511.07528; via {_TORCHATTACKS_CITE}",
            # No step count to shorten: gamma (a tenth of the values) bounds its iterations, and the
            # defaults already run in seconds on the tiny model.
            smoke={}, smoke_success=0.5,
        ),
        AttackEntry(
            name="torchattacks/pixle",
            function="baselines.torchattacks_wrappers:pixle",
            kind="minimum-norm",
            norm="l0",
            source="torchattacks",
            modes=MODES,
            threat="black-box",
            citation="Pomponi, Scardapane & Uncini, 'Pixle: a fast and effective black-box attack "
                     f"based on rearranging pixels', IJCNN 2022, arXiv:2202.02236; via {_TORCHATTACKS_CITE}",
            smoke={"restarts": 5, "max_iterations": 5},
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "alpha": "(0, 1]", "momentum": "[0, 1)", "lam": "[0, inf)"},
            name="lin2025",
            function="attacks.lin2025:lin2025",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation=_LIN2025_CITE,
            defaults=_LIN2025_DEFAULTS,
            smoke={"steps": 20},
            # Measured 7/8 untargeted, 3/8 targeted (the bound covers both modes; its eq.-22 output
            # cannot move Fashion-MNIST's many pixels at exactly 0).
            smoke_success=0.25,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "alpha": "(0, 1]", "momentum": "[0, 1)", "lam": "[0, inf)"},
            name="lin2025-signed-omega",
            function="attacks.lin2025:lin2025",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation=_LIN2025_CITE + "; Omega per sign of delta (the per-case bounds, eqs. 36-37, of "
                                     "Proposition 2's proof), a reading of the proof, not the paper's eq.-22 formula",
            # lin2025 with omega="signed" bound (attacks/lin2025.py:signed_box_scale): where delta > 0 the
            # move is capped by 1 - x, where delta < 0 by x, instead of min(x, 1 - x) on both sides.
            # Everything else is lin2025's, per family as above.
            defaults={family: {**values, "omega": "signed"} for family, values in _LIN2025_DEFAULTS.items()},
            smoke={"steps": 20}, smoke_success=0.25,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]"},
            name="lin2025-code",
            function="attacks.lin2025:lin2025_code",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation=_LIN2025_CITE + "; the variant of the authors' public demo code",
            # Their code's values (eps 6/255, tau 0.45, 200 steps, CE weight lam = 1e3 times
            # beta = 1e2) are the function's defaults for every dataset; its lam is a CE
            # weight, not Section 5.1's L0 weight, so the per-family 1e-2 / 1e-3 do not apply.
            defaults={"*": {}},
            # smoke_success 0: its sparse iterates never succeed on the tiny model (only its dense
            # fallback does, untargeted).
            smoke={"steps": 20},
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "alpha": "(0, 1]", "momentum": "[0, 1)", "lam": "[0, inf)"},
            name="lin2025-improved",
            function="attacks.lin2025_improved:lin2025_improved",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation=_LIN2025_CITE + "; modified (no Omega, eps 1, adaptive lam), not the paper's method",
            defaults={"*": {}},
            smoke={"steps": 20}, smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "alpha": "(0, 1]", "momentum": "[0, 1)", "lam": "[0, inf)",
                    "delta_step": "[0, 1]"},
            name="lin2025-frontier",
            function="attacks.lin2025_frontier:lin2025_frontier",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation=_LIN2025_CITE + "; modified (Omega per sign, loss on the output, sigma-zero's update and "
                                     "threshold, adaptive lam, refined dense start), not the paper's method",
            # One set of defaults for every family: 985 steps keep it within sigma-zero's 1000 forward and
            # 1000 backward passes per sample (attacks/lin2025_frontier.py).
            defaults={"*": {}},
            smoke={"steps": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"gamma_init": "(0, 1]", "gamma_final": "(0, 1]"},
            name="fmn-l0",
            function="baselines.fmn_l0:fmn_l0",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",
            citation="Pintor, Roli, Brendel & Biggio, 'Fast Minimum-norm Adversarial Attacks through "
                     "Adaptive Norm Bounds', NeurIPS 2021, arXiv:2102.12827",
            smoke={"steps": 200}, smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"threshold": "(0, 1)", "threshold_factor": "(0, 1)"},
            name="sigma-zero",
            function="baselines.sigma_zero:sigma_zero",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,  # targeted is our extension (see its docstring)
            threat="white-box",
            citation="Cinà, Villani, Pintor, Schönherr, Biggio & Pelillo, 'σ-zero: Gradient-based "
                     "Optimization of ℓ0-norm Adversarial Examples', ICLR 2025, arXiv:2402.01879",
            smoke={"steps": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="vfga",
            function="baselines.vfga:vfga",
            kind="minimum-norm",
            norm="l0",
            source="native",
            modes=MODES,
            threat="white-box",  # the gradient picks the elements
            citation="Césaire, Schott, Hajri, Lamprier & Gallinari, 'Stochastic sparse adversarial "
                     "attacks', ICTAI 2021, arXiv:2011.12423",
            smoke={"max_iter": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="sparse-rs", function="baselines.sparse_rs:sparse_rs", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="black-box", citation=_SPARSE_RS_CITE,
            # k = 24 px CIFAR-10, 150 ImageNet; 10,000 queries; alpha_init None = 0.3 untargeted / 0.1 targeted.
            defaults={"cifar10": {"k": 24}, "imagenet": {"k": 150}},
            smoke={"k": 40, "n_queries": 300}, smoke_success=0.375,
        ),
        AttackEntry(
            name="sparse-rs-min", function="baselines.sparse_rs:sparse_rs_min", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="black-box", citation=_SPARSE_RS_CITE + _SEARCH,
            defaults={"imagenet": {"budgets": _IMAGENET_BUDGETS}},
            smoke={"budgets": (1, 2, 5, 10, 20, 50, 100), "n_queries": 300}, smoke_success=0.75,
        ),
        AttackEntry(
            name="pgd-l0", function="baselines.pgd_l0:pgd_l0", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="white-box", citation=_PGD_L0_CITE,
            # Authors' released settings: k = 5, 100 steps, 5 restarts, step 120000/255.
            smoke={"k": 40, "steps": 20, "restarts": 2}, smoke_success=0.75,
        ),
        AttackEntry(
            name="pgd-l0-min", function="baselines.pgd_l0:pgd_l0_min", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="white-box", citation=_PGD_L0_CITE + _SEARCH,
            defaults={"imagenet": {"budgets": _IMAGENET_BUDGETS}},
            smoke={"budgets": (1, 2, 5, 10, 20, 50, 100), "steps": 20, "restarts": 2}, smoke_success=0.75,
        ),
        AttackEntry(
            name="sparse-pgd", function="baselines.sparse_pgd:sparse_pgd", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="white-box", citation=_SPGD_CITE,
            # k = 20 CIFAR-10, 200 ImageNet-100; 10,000 iterations; alpha = beta = 0.25; patience 3. Loss: the
            # release's switch to a margin near success (the function's default; docs/measured/sparse-pgd-loss-cpu).
            defaults={"imagenet": {"k": 200}},
            smoke={"k": 40, "steps": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="sparse-pgd-min", function="baselines.sparse_pgd:sparse_pgd_min", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="white-box", citation=_SPGD_CITE + _SEARCH,
            defaults={"imagenet": {"budgets": _IMAGENET_BUDGETS}},
            smoke={"budgets": (1, 2, 5, 10, 20, 50, 100), "steps": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="sparsefool", function="baselines.sparsefool:sparsefool", kind="minimum-norm", norm="l0",
            source="native", modes=("untargeted",), threat="white-box",
            citation="Modas, Moosavi-Dezfooli & Frossard, 'SparseFool: a few pixels make a big difference', "
                     "CVPR 2019, arXiv:1811.02248",
            # Paper: lambda 3, overshoot 0.02; the authors' release: 20 outer iterations.
            defaults={"*": {"lam": 3.0, "max_iter": 20, "overshoot": 0.02}},
            smoke={"max_iter": 10}, smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"shrink": "(0, 1)"},
            name="cw-l0", function="baselines.cw_l0:cw_l0", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="white-box",
            citation="Carlini & Wagner, 'Towards Evaluating the Robustness of Neural Networks', "
                     "IEEE S&P 2017, arXiv:1608.04644",
            # kappa 0 (paper); steps/const/shrink/round cap are ours (harness budget), see the docstring.
            defaults={"*": {"confidence": 0.0}},
            smoke={"steps": 30, "max_rounds": 10}, smoke_success=0.75,
        ),
        AttackEntry(
            name="art/cw-l0", function="baselines.art_wrappers:cw_l0", kind="minimum-norm", norm="l0",
            source="art", modes=MODES, threat="white-box",
            citation="Carlini & Wagner, IEEE S&P 2017, arXiv:1608.04644; via Nicolae et al., "
                     "'Adversarial Robustness Toolbox v1.0.0', arXiv:1807.01069",
            smoke={"max_iter": 5, "binary_search_steps": 3, "initial_const": 1.0}, smoke_success=0.75,
        ),
        # adv-lib 0.2.8's implementations, the references of fmn-l0, sigma-zero and vfga (`sparsebench parity`);
        # the library's defaults (baselines/advlib_wrappers.py), an optional install like ART.
        AttackEntry(
            ranges={"gamma_init": "(0, 1]", "gamma_final": "(0, 1]"},
            name="adv-lib/fmn-l0", function="baselines.advlib_wrappers:fmn_l0", kind="minimum-norm", norm="l0",
            source="adv-lib", modes=MODES, threat="white-box",
            citation="Pintor, Roli, Brendel & Biggio, NeurIPS 2021, arXiv:2102.12827; via " + _ADVLIB_CITE,
            smoke={"steps": 200}, smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"tau0": "[0, 1]", "tau_factor": "(0, 1)", "grad_norm": "(0, inf]"},
            name="adv-lib/sigma-zero", function="baselines.advlib_wrappers:sigma_zero", kind="minimum-norm",
            norm="l0", source="adv-lib", modes=("untargeted",),  # adv-lib returns the inputs when targeted
            threat="white-box",
            citation="Cinà, Villani, Pintor, Schönherr, Biggio & Pelillo, ICLR 2025, arXiv:2402.01879; via "
                     + _ADVLIB_CITE,
            smoke={"num_steps": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="adv-lib/vfga", function="baselines.advlib_wrappers:vfga", kind="minimum-norm", norm="l0",
            source="adv-lib", modes=MODES, threat="white-box",
            citation="Césaire, Schott, Hajri, Lamprier & Gallinari, ICTAI 2021, arXiv:2011.12423; via "
                     + _ADVLIB_CITE,
            smoke={"max_iter": 100}, smoke_success=0.75,
        ),
        AttackEntry(
            name="onepixel", function="baselines.onepixel:onepixel", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="black-box",
            citation="Su, Vargas & Sakurai, 'One pixel attack for fooling deep neural networks', "
                     "IEEE TEVC 2019, arXiv:1710.08864",
            defaults={"*": {"pixels": 1, "population": 400, "generations": 100, "differential_weight": 0.5,
                            "strategy": "best1"}},
            smoke={"pixels": 5, "population": 50, "generations": 20},
            # Measured 3/8 targeted with these small settings (seeds 0-2); 1/8 keeps a margin.
            smoke_success=0.125,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "map_floor": "[0, 1)", "map_ceiling": "(0, 1]", "map_density": "(0, 1)",
                    "noise_amplitude": "(0, 0.5]", "warmup_steps": "[0, inf)", "ema": "[0, 1)"},
            name="greedyfool", function="baselines.greedyfool:greedyfool", kind="minimum-norm",
            norm="l0", source="native", modes=MODES, threat="white-box",
            citation="Dong, Chen, Bao, Zhang, Yu, Liu & Hua, 'GreedyFool: Distortion-Aware Sparse Adversarial "
                     "Attack', NeurIPS 2020, arXiv:2010.13773; distortion map learned by our generator-discriminator game",
            prepare="baselines.greedyfool:prepare_greedyfool",
            # The release's stages (as greedyfool-uniform) and its map weighting: 30th/75th percentiles, 3x3 mean.
            defaults={"*": {"eps": 1.0, "pixels_per_step": 1, "reduce_scales": 10, "max_reduce_steps": 3000,
                            "map_floor": 0.3, "map_ceiling": 0.75, "map_smoothing": 3}},
            smoke={"max_iter": 100, "train_steps": 20, "warmup_steps": 10, "batch_size": 8, "lr": 3e-3},
            smoke_success=0.75,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]"},
            name="greedyfool-uniform", function="baselines.greedyfool:greedyfool_uniform", kind="minimum-norm",
            norm="l0", source="native", modes=MODES, threat="white-box",
            citation="Dong, Chen, Bao, Zhang, Yu, Liu & Hua, 'GreedyFool: Distortion-Aware Sparse Adversarial "
                     "Attack', NeurIPS 2020, arXiv:2010.13773; uniform distortion map (greedyfool's ablation)",
            # Authors' release for sparse attacks: max_epsilon 255, one pixel per step, reduce grid eps/10, 3000 reduce steps.
            defaults={"*": {"eps": 1.0, "pixels_per_step": 1, "reduce_scales": 10, "max_reduce_steps": 3000}},
            smoke={"max_iter": 100}, smoke_success=0.75,  # measured 8/8 and 7/8
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "top_groups": "(0, 1]"},
            name="egs-tssa", function="baselines.egs_tssa:egs_tssa", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="white-box", citation=_EGS_TSSA_CITE,
            prepare="baselines.egs_tssa:prepare_egs_tssa",
            # eps 255/255 and tk 0.6 (the release's); 8x8 groups on 224 ImageNet (paper), 4x4 on 28/32 px (ours).
            defaults={"*": {"eps": 1.0, "top_groups": 0.6}, "mnist": {"group_size": 4},
                      "cifar10": {"group_size": 4}, "imagenet": {"group_size": 8}},
            # The registry test's tiny model is linear: no convolution for Grad-CAM, so the smoke run ranks the
            # groups by the gradient; tests/test_learned_baselines.py runs Grad-CAM through the guard on a CNN.
            smoke={"train_steps": 20, "batch_size": 16, "saliency": "gradient"},
            smoke_success=0.375,  # measured 7/8 and 4/8 (20 training steps)
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "top_groups": "(0, 1]"},
            name="egs-tssa-gradient", function="baselines.egs_tssa:egs_tssa", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="white-box",
            citation=_EGS_TSSA_CITE + "; groups ranked by the input gradient, not the paper's Grad-CAM (an ablation)",
            prepare="baselines.egs_tssa:prepare_egs_tssa",
            # egs-tssa's defaults but the saliency (docs/measured/egs-tssa-saliency-cpu compares the two).
            defaults={"*": {"eps": 1.0, "top_groups": 0.6, "saliency": "gradient"}, "mnist": {"group_size": 4},
                      "cifar10": {"group_size": 4}, "imagenet": {"group_size": 8}},
            smoke={"train_steps": 20, "batch_size": 16}, smoke_success=0.375,
        ),
        AttackEntry(
            ranges={"eps": "(0, 1]", "lambda_decay": "(0, 1)", "gamma": "(0, 1)", "eta": "(0, 1)", "sufficient_decrease": "(0, 1)", "rho": "(0, 1)"},
            name="homotopy", function="baselines.homotopy:homotopy", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="white-box",
            citation="Zhu, Chen & Wang, 'Sparse and Imperceptible Adversarial Attack via a Homotopy Algorithm', "
                     "ICML 2021, arXiv:2106.06027",
            # Function defaults = the authors' release (ImageNet): eps 0.05, lambda_scale 3, lambda_decay 0.98,
            # max_update 200, gamma 0.8, w1 1e-2, w2 1e-4, post_steps 200, post_max_update 10, maxiter 100,
            # nmAPG eta 0.9 / delta 0.3 / rho 0.8. On 28x28 eps 0.05 caps the fooling rate (dense I-FGSM at
            # 0.05: 67% / 14%) and max_update 200 is a quarter of the image; MNIST family: box only,
            # max_update 5 (the release README: higher eps, lower max_update).
            defaults={"mnist": {"eps": 1.0, "max_update": 5}},
            smoke={"eps": 1.0, "max_update": 5, "lambda_scale": 1.0, "max_outer": 20, "post_steps": 10,
                   "inner_steps": 20, "linf_step": 0.05},
            smoke_success=0.625,  # measured 8/8 untargeted, 7/8 targeted
        ),
        AttackEntry(
            ranges={"p_crossover": "[0, 1]", "p_zero": "[0, 1]"},
            name="sa-moo", function="baselines.sa_moo:sa_moo", kind="minimum-norm", norm="l0",
            source="native", modes=MODES, threat="black-box", citation=_SA_MOO_CITE,
            # Paper: k = 24 px and 1,000 queries CIFAR-10, k = 150 and 5,000 queries ImageNet; population 2,
            # pc 0.1, pm 0.4 untargeted / 0.2 targeted (p_mutation None), pr0 0.3; dominance of Def. 3.1, L2 objective.
            defaults={"cifar10": {"k": 24, "n_queries": 1000}, "imagenet": {"k": 150, "n_queries": 5000}},
            smoke={"n_queries": 200},
            # Measured at batch 8, seeds 0-2: 3/8, 2/8, 3/8 targeted (8/8 untargeted).
            smoke_success=0.125,
        ),
        AttackEntry(
            ranges={"m1": "(0, 1)", "m2": "(0, 1)", "prior": "(0, 1)"},
            name="brusleattack", function="baselines.brusleattack:brusleattack", kind="fixed-budget", norm="l0",
            source="native", modes=MODES, threat="black-box", citation=_BRUSLE_CITE,
            # 10,000 queries; authors' release: lambda_0 0.3 untargeted / 0.05 targeted (lambda_init None),
            # m1 0.24, m2 0.997, 10 initial masks, prior 0.01; k = Sparse-RS's budgets (24 CIFAR-10, 150 ImageNet).
            defaults={"cifar10": {"k": 24}, "imagenet": {"k": 150}},
            smoke={"k": 40, "n_queries": 300}, smoke_success=0.375,  # measured 4-6/8 (batch 8, seeds 0-2)
        ),
        AttackEntry(
            ranges={"m1": "(0, 1)", "m2": "(0, 1)", "prior": "(0, 1)"},
            name="brusleattack-min", function="baselines.brusleattack:brusleattack_min", kind="minimum-norm",
            norm="l0", source="native", modes=MODES, threat="black-box", citation=_BRUSLE_CITE + _SEARCH,
            defaults={"imagenet": {"budgets": _IMAGENET_BUDGETS}},
            smoke={"budgets": (1, 5, 20, 100), "n_queries": 150},
            smoke_success=0.375,  # measured 5/8 targeted (batch 8, seeds 0-2)
        ),
    )
})


ENTRY_POINT_GROUP = "sparsebench.attacks"
"""Installed packages add attacks here: each entry point names an :class:`AttackEntry` or a sequence of them."""


@functools.lru_cache(maxsize=None)
def plugin_attacks() -> Mapping[str, tuple[AttackEntry, str]]:
    """Attacks added by installed packages (entry point group ``sparsebench.attacks``), with each package's name.

    A name that clashes with a built-in attack or with another package's is an error.
    """
    return MappingProxyType(plugin_entries(ENTRY_POINT_GROUP, AttackEntry, ATTACKS, "attack"))


def plugin_entries(group: str, kind: type[Any], builtins: Mapping[str, Any], what: str) -> dict[str, tuple[Any, str]]:
    """The ``kind`` entries that installed packages' entry points of ``group`` name, with each package's name.

    An entry point names one entry or a sequence of them; a name that clashes with ``builtins`` or with
    another package's entry is an error naming both.
    """
    found: dict[str, tuple[Any, str]] = {}
    for entry_point in entry_points(group=group):
        package = entry_point.dist.name if entry_point.dist is not None else entry_point.module
        value = entry_point.load()
        entries = list(value) if isinstance(value, (list, tuple)) else [value]
        for entry in entries:
            if not isinstance(entry, kind):
                raise SparseBenchError(f"{package}: entry point {entry_point.name!r} gives {entry!r}, not a {kind.__name__}")
            clash = f"a built-in {what}" if entry.name in builtins else (
                f"{what} {entry.name!r} of {found[entry.name][1]}" if entry.name in found else "")
            if clash:
                raise SparseBenchError(f"{package}: {what} {entry.name!r} (entry point {entry_point.value}) clashes "
                                 f"with {clash}; rename it")
            found[entry.name] = (entry, package)
    return found


def all_attacks() -> dict[str, AttackEntry]:
    """The built-in attacks, then those installed packages add."""
    return {**ATTACKS, **{name: entry for name, (entry, _) in plugin_attacks().items()}}


def attack_names() -> list[str]:
    """Registered attack names (built-in, then installed packages'), in registry order."""
    return list(all_attacks())


def get_entry(name: str) -> AttackEntry:
    """The registry entry for ``name`` (``prune/<name>``: :func:`pruned_entry` of ``<name>``'s);
    ``ValueError`` naming the allowed names otherwise."""
    entries = all_attacks()
    inner = name.removeprefix(PRUNED)
    if name not in entries and inner != name and inner in entries:
        return pruned_entry(entries[inner])
    try:
        return entries[name]
    except KeyError:
        raise SparseBenchError(f"attack: {name!r} is not registered; allowed: {', '.join(entries)}, "
                               f"or {PRUNED}<any of them>") from None


PRUNED = "prune/"
"""``prune/<name>`` is attack ``<name>`` followed by :func:`attacks.prune.prune` (:func:`pruned_entry`)."""


def pruned_entry(entry: AttackEntry) -> AttackEntry:
    """``entry``'s attack followed by the pruning pass :func:`attacks.prune.prune`, as entry ``prune/<name>``.

    The same modes, threat (pruning only queries outputs), defaults, ranges, smoke settings and
    preparation; minimum-norm, since pruning makes the L0 of each success as small as it can. The
    function is :func:`attacks.prune.with_pruning` of ``entry``'s: the attack's hyperparameters pass
    through, pruning's options are ``prune_rounds``, ``prune_single_rounds`` and ``prune_batch_elements``.
    Its preparation gets the attack's hyperparameters only.
    """
    if entry.name.startswith(PRUNED):
        raise SparseBenchError(f"attack: {PRUNED + entry.name!r} prunes twice; allowed: {PRUNED}<an attack "
                               f"that does not start with {PRUNED!r}>")
    attack = entry.load()
    function = with_pruning(attack)
    options = set(inspect.signature(function).parameters) - set(inspect.signature(attack).parameters)
    inner_prepare = entry.load_prepare()

    def preparation(model: nn.Module, **arguments: Any) -> None:
        assert inner_prepare is not None  # only handed on when there is one
        inner_prepare(model, **{key: value for key, value in arguments.items() if key not in options})

    return AttackEntry(
        name=PRUNED + entry.name, function=f"{entry.function} + attacks.prune:prune", kind=Kind.MINIMUM_NORM,
        norm="l0", source=entry.source, modes=entry.modes, threat=entry.threat,
        citation=f"{entry.citation} + pruning pass (SparseBench)", defaults=entry.defaults, prepare=entry.prepare,
        preparation=preparation if inner_prepare is not None else None, implementation=function,
        smoke=entry.smoke, smoke_success=entry.smoke_success,
        ranges={**entry.ranges, "prune_rounds": "[0, inf)", "prune_single_rounds": "[0, inf)"},
    )


def check_contract(function: Callable[..., Any], where: str) -> None:
    """Raise ``ValueError`` unless ``function`` takes SparseBench's attack contract.

    The contract: ``function(model, inputs, labels, *, targeted=False, **hyperparameters) -> Tensor``,
    its hyperparameters keyword-only with defaults.
    """
    if not callable(function):
        raise SparseBenchError(f"{where}: {function!r} is not callable")
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise SparseBenchError(f"{where}: cannot read the signature of {function!r}") from None
    kinds = inspect.Parameter
    positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is kinds.VAR_POSITIONAL for p in parameters)
    contract = "function(model, inputs, labels, *, targeted=False, **hyperparameters)"
    if len(positional) < 3 and not variadic:
        raise SparseBenchError(f"{where}: takes {len(positional)} positional argument(s); the contract is {contract}")
    extra = [p.name for p in positional[3:] if p.default is inspect.Parameter.empty]
    extra += [p.name for p in parameters if p.kind is kinds.KEYWORD_ONLY and p.default is inspect.Parameter.empty
              and p.name != "targeted"]
    if extra:
        raise SparseBenchError(f"{where}: argument(s) {', '.join(extra)} have no default; the contract is {contract}")
    names = {p.name for p in parameters}
    if "targeted" not in names and not any(p.kind is kinds.VAR_KEYWORD for p in parameters):
        raise SparseBenchError(f"{where}: has no 'targeted' keyword; the contract is {contract}")


def outside_entry(function: str, *, label: str, kind: str, modes: tuple[str, ...] = MODES,
                  threat: str = "white-box", citation: str = "", where: str = "attack") -> AttackEntry:
    """An :class:`AttackEntry` for any importable callable that follows the contract (a config's ``function``).

    Raises ``ValueError`` when ``function`` is not ``"module:attribute"``, cannot be imported, or does
    not take the contract's arguments (:func:`check_contract`).
    """
    loaded = import_object(function, f"{where}.function")
    module = function.partition(":")[0]
    check_contract(loaded, f"{where}.function {function!r}")
    try:
        return AttackEntry(name=label, function=function, kind=kind, norm="l0", source=f"outside ({module})",
                           modes=tuple(modes), threat=threat, citation=citation or f"outside attack {function}")
    except ValueError as error:
        raise SparseBenchError(f"{where}: {error}") from None


class Attack:
    """A registered attack bound to its hyperparameters.

    Calling it follows SparseBench's contract:
    ``attack(model, inputs, labels, *, targeted=False) -> Tensor``.
    """

    def __init__(self, entry: AttackEntry, hyperparameters: Mapping[str, Any]) -> None:
        self.entry = entry
        self.hyperparameters = dict(hyperparameters)
        self._function = entry.load()

    @property
    def name(self) -> str:
        return self.entry.name

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False) -> Tensor:
        """Check the contract's inputs and mode once (:func:`attacks.checks.check_inputs`), then attack."""
        mode = Mode.TARGETED if targeted else Mode.UNTARGETED
        if mode not in self.entry.modes:
            raise SparseBenchError(
                f"mode: {self.entry.name} does not support {mode.value!r}; supported: {', '.join(self.entry.modes)}"
            )
        check_inputs(inputs, labels)
        return self._function(model, inputs, labels, targeted=targeted, **self.hyperparameters)

    def prepare(self, model: nn.Module, *, targeted: bool = False, cache_dir: Any = None,
                progress: bool = False) -> None:
        """Run the entry's one-off preparation on ``model`` (nothing for most attacks)."""
        prepare = self.entry.load_prepare()
        if prepare is not None:
            prepare(model, targeted=targeted, cache_dir=cache_dir, progress=progress, **self.hyperparameters)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"Attack({self.entry.name!r}, {arguments})"


def check_overrides(name: str | AttackEntry, overrides: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for an override that is not one of the attack's hyperparameters."""
    entry = name if isinstance(name, AttackEntry) else get_entry(name)
    name = entry.name
    allowed = entry.parameters()
    for key, value in overrides.items():
        if key not in allowed:
            raise SparseBenchError(
                f"attacks.{name}.overrides: {key!r} (= {value!r}) is not a hyperparameter of {name}; "
                f"allowed: {', '.join(allowed) or 'none'}"
            )
        default = allowed[key]
        if default is not None and not _same_kind(default, value):
            raise SparseBenchError(
                f"attacks.{name}.overrides.{key}: {value!r} is a {type(value).__name__}; "
                f"expected {type(default).__name__} like the default {default!r}"
            )
    ranges = entry.valid_ranges()
    for key, value in overrides.items():
        interval = ranges.get(key)
        values = value if isinstance(value, (tuple, list)) else [value]
        if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            interval = interval or Interval(1, math.inf)  # budgets: counts
            if key == "budgets" and list(value) != sorted(set(value)):
                raise SparseBenchError(f"{entry.name}.{key}: {list(value)} must be strictly increasing")
        if interval is None:
            continue
        for item in values:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and item not in interval:
                raise SparseBenchError(f"{entry.name}.{key}: {item!r} is outside its valid range {interval}")


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


@functools.lru_cache(maxsize=None)
def _family(dataset: str) -> str:
    if dataset not in DATASETS:
        raise SparseBenchError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    return DATASETS[dataset].family


def get_attack(name: str, *, dataset: str | None = None, **overrides: Any) -> Attack:
    """A registered attack with its defaults for ``dataset`` and the given overrides.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"i-fgsm"`` or ``"torchattacks/sparsefool"``.
    dataset : str, optional
        Dataset name (``"fashion-mnist"``, ``"cifar10"``, ...) whose family's
        default hyperparameters to use.
    **overrides
        Hyperparameters that replace the defaults. An attack whose function
        takes a ``dataset`` keyword (one that trains on the dataset's training
        split) gets ``dataset`` unless it is overridden.

    Returns
    -------
    Attack
        ``attack(model, inputs, labels, *, targeted=False) -> Tensor``.
    """
    return bind(get_entry(name), dataset=dataset, **overrides)


def bind(entry: AttackEntry, *, dataset: str | None = None, family: str | None = None, **overrides: Any) -> Attack:
    """:func:`get_attack` for an entry in hand (a registered one or :func:`outside_entry`'s).

    ``family`` gives the defaults' dataset family directly (an outside dataset has no registered one).
    """
    check_overrides(entry, overrides)
    if family is None and dataset is not None:
        family = _family(dataset)
    hyperparameters = entry.hyperparameters(family)
    if dataset is not None and "dataset" in hyperparameters:
        hyperparameters["dataset"] = dataset
    hyperparameters.update(overrides)
    return Attack(entry, hyperparameters)
