"""A fixed-budget L0 attack made minimum-norm by a search over its budget k.

Foolbox's distinction (see STYLE.md): a fixed-budget attack succeeds within
k pixels; a minimum-norm attack finds the fewest pixels that succeed. The
search below turns the first into the second, and every forward pass it
costs (the attack's own and the success check after each call) goes
through the model it is given, so the harness's ``CountingModel`` counts it.

Why a binary search over a sorted grid, per sample, rather than an
increasing sweep that re-attacks the unsolved samples: with early stopping,
a successful run of these attacks is cheap and a failed one costs the whole
iteration or query budget. A sweep fails at every grid value below a
sample's answer (a sample needing the 10th value of a 20-value grid pays 9
full failed runs); the binary search pays about ``log2(len(budgets) + 1)``
runs in all, about half of them failures. It also uses what a success
shows: a run at budget k that changed only l < k pixels moves the upper
end of the search to l at once. Its cost: it assumes success is monotone in
k, which a stochastic attack only approximately is, so it may stop above a
budget where a lucky run would have succeeded; the sweep makes the same
assumption with the opposite bias, it stops at the first success.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attacks.norms import l0_pixels
from attacks.success import is_adversarial

__all__ = ["DEFAULT_BUDGETS", "minimum_norm_attack", "minimum_norm_search"]

DEFAULT_BUDGETS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 64, 80, 100)
"""Default grid of L0 budgets in pixels: every value up to 6, then about 25% apart (MNIST/CIFAR scale)."""


@torch.no_grad()
def _check(model: nn.Module, adversarial: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    return is_adversarial(model(adversarial), labels, targeted=targeted)


def minimum_norm_search(
    attack_fn: Callable[..., Tensor],
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    targeted: bool = False,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    budget_param: str = "k",
    **hyperparameters: Any,
) -> Tensor:
    """Sparsest successful example per sample from a fixed-budget attack, by binary search over ``budgets``.

    Per sample, the search looks for the smallest grid budget at which the
    attack succeeds: it attacks at the middle of the open range, moves the
    upper end to the budget (or to the pixels the example actually changed,
    if fewer) on success and the lower end above it on failure. Samples are
    grouped by the budget they need next, one attack call per group and
    round, so a sample's result does not depend on its batch-mates beyond
    the random numbers they share. Each attack output is checked with one
    forward pass of ``model``.

    Parameters
    ----------
    attack_fn : callable
        ``attack_fn(model, inputs, labels, *, targeted, <budget_param>=k, **hyperparameters)``.
    model : nn.Module
        Returns logits; all passes (attack and checks) go through it.
    inputs : Tensor
        Clean images ``(B, C, H, W)`` in [0, 1].
    labels : Tensor
        True classes, or the target classes when ``targeted``.
    targeted : bool
        Passed to the attack; success then means predicting ``labels``.
    budgets : sequence of int
        The grid of budgets (pixels) to search; sorted and de-duplicated here.
    budget_param : str
        Name of the attack's budget keyword. Default ``"k"``.
    **hyperparameters
        The attack's other keyword arguments.

    Returns
    -------
    Tensor
        Per sample, the successful example with the fewest changed pixels
        among those found; the clean input where no budget succeeded.
    """
    grid = sorted(set(budgets))
    if not grid or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in grid):
        raise ValueError(f"budgets: {tuple(budgets)!r} must be a non-empty sequence of positive integers")
    batch = inputs.shape[0]
    # The search state is a handful of integers per sample: kept on the host.
    low = torch.zeros(batch, dtype=torch.long)
    high = torch.full((batch,), len(grid), dtype=torch.long)  # len(grid): nothing found yet
    best = inputs.detach().clone()
    best_l0 = torch.full((batch,), torch.iinfo(torch.long).max, dtype=torch.long)
    grid_tensor = torch.tensor(grid, dtype=torch.long)
    while bool((low < high).any()):
        middle = (low + high) // 2
        open_ = low < high
        for index in torch.unique(middle[open_]).tolist():
            members = torch.nonzero(open_ & (middle == index)).squeeze(1)
            on_device = members.to(inputs.device)
            sub_inputs, sub_labels = inputs[on_device], labels[on_device]
            adversarial = attack_fn(model, sub_inputs, sub_labels, targeted=targeted,
                                    **{budget_param: grid[index]}, **hyperparameters)
            success = _check(model, adversarial, sub_labels, targeted).cpu()
            changed = l0_pixels(sub_inputs, adversarial).cpu()
            better = success & (changed < best_l0[members])
            if bool(better.any()):
                best[on_device[better.to(inputs.device)]] = adversarial[better.to(inputs.device)].detach()
                best_l0[members[better]] = changed[better]
            # A success that changed only `changed` pixels puts the answer at most there.
            top = torch.searchsorted(grid_tensor, changed).clamp(max=index)
            won, lost = members[success], members[~success]
            high[won] = top[success]
            low[won] = torch.minimum(low[won], top[success])
            low[lost] = index + 1
    return best


def minimum_norm_attack(
    attack_fn: Callable[..., Tensor],
    *,
    name: str,
    budget_param: str = "k",
    budgets: tuple[int, ...] = DEFAULT_BUDGETS,
) -> Callable[..., Tensor]:
    """A registry-ready minimum-norm attack from a fixed-budget one.

    The returned function has SparseBench's contract and a real signature:
    ``attack_fn``'s keyword-only hyperparameters (its budget ``budget_param``
    replaced by ``budgets``), with their defaults, so that the registry and
    ``inspect.signature`` see them. Calling it runs :func:`minimum_norm_search`.

    Parameters
    ----------
    attack_fn : callable
        The fixed-budget attack.
    name : str
        ``__name__`` of the new function (the name it is bound to in its module).
    budget_param : str
        The attack's budget keyword, removed from the new signature.
    budgets : tuple of int
        Default grid of budgets for the new ``budgets`` hyperparameter.
    """
    signature = inspect.signature(attack_fn)
    if budget_param not in signature.parameters:
        raise ValueError(f"budget_param: {budget_param!r} is not a parameter of {attack_fn.__name__}")
    kept = [p for p in signature.parameters.values() if p.name != budget_param]
    position = next(i for i, p in enumerate(kept) if p.name == "targeted") + 1
    kept.insert(position, inspect.Parameter("budgets", inspect.Parameter.KEYWORD_ONLY,
                                            default=tuple(budgets), annotation="tuple[int, ...]"))
    new_signature = signature.replace(parameters=kept)

    def attack(model: nn.Module, inputs: Tensor, labels: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        bound = new_signature.bind(model, inputs, labels, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        model, inputs, labels = arguments.pop("model"), arguments.pop("inputs"), arguments.pop("labels")
        return minimum_norm_search(attack_fn, model, inputs, labels, budget_param=budget_param, **arguments)

    attack.__signature__ = new_signature  # type: ignore[attr-defined]
    attack.__name__ = attack.__qualname__ = name
    attack.__module__ = attack_fn.__module__
    attack.__doc__ = (
        f"Minimum-norm {attack_fn.__name__}: binary search over the budget ``{budget_param}``.\n\n"
        f"Runs :func:`attacks.search.minimum_norm_search` with ``{attack_fn.__module__}.{attack_fn.__name__}``"
        f" and returns, per sample, the sparsest successful example found (the clean input where none).\n\n"
        f"Parameters\n----------\n"
        f"budgets : tuple of int\n    Grid of budgets in pixels to search, default {tuple(budgets)}.\n"
        f"**hyperparameters\n    The other keyword-only parameters of {attack_fn.__name__}, same meaning and defaults.\n"
    )
    return attack
