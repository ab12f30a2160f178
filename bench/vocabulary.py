"""The closed vocabularies of the harness, as string enums.

Each member is a ``str`` (``Mode.TARGETED == "targeted"``), so a config,
a store and a table hold plain strings, while code names the members and a
typo fails where it is written. Values are checked where they enter: the
config parser and the registry's entries.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BudgetUnit", "Family", "Kind", "Mode", "Precision", "TargetSelection", "Threat"]


class Kind(StrEnum):
    """What an attack promises: the smallest perturbation that succeeds, or success within a given budget."""

    MINIMUM_NORM = "minimum-norm"
    FIXED_BUDGET = "fixed-budget"


class Mode(StrEnum):
    UNTARGETED = "untargeted"
    TARGETED = "targeted"


class Threat(StrEnum):
    WHITE_BOX = "white-box"
    """Gradients of the model."""
    BLACK_BOX = "black-box"
    """Its outputs only."""


class Family(StrEnum):
    """Which default hyperparameters of an attack apply to a dataset."""

    MNIST = "mnist"
    CIFAR10 = "cifar10"
    IMAGENET = "imagenet"


class BudgetUnit(StrEnum):
    """How L0 is counted: positions where any channel changed, or every changed value (C*H*W)."""

    PIXELS = "pixels"
    ELEMENTS = "elements"


class TargetSelection(StrEnum):
    RANDOM = "random"
    LEAST_LIKELY = "least-likely"
    """The class of lowest clean logit, as Lin et al. (Section 5.1) attack."""


class Precision(StrEnum):
    """The attacked model's autocast (selection and verification stay float32)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
