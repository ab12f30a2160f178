"""Thin wrappers of adv-lib's L0 attacks (adv-lib 0.2.8, github.com/jeromerony/adversarial-library).

adv-lib is the reference the native ``fmn-l0``, ``sigma-zero`` and ``vfga`` are compared with
(``sparsebench parity``). Each wrapper calls the library's function under SparseBench's contract
``attack(model, inputs, labels, *, targeted=False, **hyperparameters)`` and keeps adv-lib's own
defaults, so a result under ``adv-lib/<name>`` is what a user of that library gets; nothing is
fixed here. adv-lib's Greek keyword names are spelled out (``α_init`` -> ``alpha_init``,
``η_0`` -> ``eta0``, ``τ_0`` -> ``tau0``).

adv-lib is optional. It requires visdom (imported by ``adv_lib.attacks``' package ``__init__``,
so every attack pulls it in), whose 0.2.4 sdist imports ``pkg_resources`` at build time:
``pip install --no-build-isolation visdom==0.2.4`` beside ``setuptools<81``, then
``pip install adv-lib==0.2.8`` (tox.ini does this). visdom adds jsonpatch, networkx, tornado,
websocket-client and requests; nothing here starts a visdom server.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

from torch import Tensor, nn

__all__ = ["fmn_l0", "sigma_zero", "vfga"]

_INSTALL = ("adv-lib is not installed: pip install --no-build-isolation visdom==0.2.4 "
            "(with setuptools<81), then pip install adv-lib==0.2.8")


def _import(module: str, name: str) -> Any:
    try:
        imported = importlib.import_module(f"adv_lib.attacks.{module}")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL) from error
    return getattr(imported, name)


def fmn_l0(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    steps: int = 10, alpha_init: float = 1.0, alpha_final: float | None = None,
    gamma_init: float = 0.05, gamma_final: float = 0.001,
) -> Tensor:
    """FMN with ``norm=0`` (Pintor et al., NeurIPS 2021, arXiv:2102.12827) from adv-lib's ``fmn``.

    ``steps`` is the number of iterations (one forward and one backward pass each; adv-lib's
    default is 10, the paper's experiments use 1000); ``alpha_init`` / ``alpha_final`` the step
    size of the L2-normalised gradient step, cosine-annealed (``None``: ``alpha_init / 100``);
    ``gamma_init`` / ``gamma_final`` the relative change of the L0 bound. adv-lib starts the bound
    at 1 element (the native ``fmn-l0`` at 0) and does not check the last iterate. One crash of
    adv-lib 0.2.8 is worked around (see the code), without changing any result it returns.
    """
    fmn = _import("fast_minimum_norm", "fmn")
    module: Any = sys.modules[fmn.__module__]
    projection = module.l0_projection_
    # The one change to adv-lib, a crash and not a result: its L0 projection takes
    # topk(k=max(eps)) and fails on k = 0, which happens when every sample of the batch has
    # eps = 0 at once (a batch of one that found a 1-element example). A sample with eps = 0
    # in any other batch is projected onto 1 element (its gather index is clamped to 0);
    # eps clamped to 1 does exactly that, so no result the library returns changes.
    module.l0_projection_ = lambda δ, ε: projection(δ, ε.clamp(min=1))
    try:
        return fmn(model, inputs, labels, norm=0, targeted=targeted, steps=steps, **{
            "α_init": alpha_init, "α_final": alpha_final, "γ_init": gamma_init, "γ_final": gamma_final,
        }).detach()
    finally:
        module.l0_projection_ = projection


def sigma_zero(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    num_steps: int = 1000, eta0: float = 1.0, sigma: float = 0.001, tau0: float = 0.3,
    tau_factor: float = 0.01, grad_norm: float = math.inf,
) -> Tensor:
    """σ-zero (Cinà et al., ICLR 2025, arXiv:2402.01879) from adv-lib's ``sigma_zero``; untargeted only.

    ``num_steps`` iterations of Adam (one forward and one backward pass each); ``eta0`` the initial
    step size (cosine-annealed to a tenth); ``sigma`` the smoothness of the L0 approximation
    ``d^2 / (d^2 + sigma)``; ``tau0`` the initial sparsity threshold and ``tau_factor`` its change
    per step relative to the step size; ``grad_norm`` the norm the gradient is normalised by.
    adv-lib warns and returns the inputs when asked for a targeted attack, so the registry entry
    offers the untargeted mode only; the wrapper refuses ``targeted`` outright.
    """
    if targeted:
        raise ValueError("targeted: adv-lib's sigma_zero is untargeted only; use the native 'sigma-zero'")
    attack = _import("sigma_zero", "sigma_zero")
    return attack(model, inputs, labels, num_steps=num_steps, σ=sigma, grad_norm=grad_norm, targeted=False, **{
        "η_0": eta0, "τ_0": tau0, "τ_factor": tau_factor,
    }).detach()


def vfga(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
    max_iter: int | None = None, n_samples: int = 10, large_memory: bool = False,
) -> Tensor:
    """VFGA (Césaire et al., ICTAI 2021, arXiv:2011.12423) from adv-lib's ``vfga``.

    One element changed per iteration, chosen by a vote among ``2 * n_samples`` folded-Gaussian
    candidates; ``max_iter`` bounds the iterations, hence the L0 in elements (``None``: all C*H*W
    elements). ``large_memory`` evaluates all candidates in one batch (same result, more memory).
    """
    attack = _import("stochastic_sparse_attacks", "vfga")
    return attack(model, inputs, labels, targeted=targeted, max_iter=max_iter, n_samples=n_samples,
                  large_memory=large_memory).detach()
