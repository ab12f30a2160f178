"""A pruning pass after success: give back the changes an adversarial example does not need.

Any attack's output can carry changes that do not matter (a dense start, a fixed budget spent in
full, a last step that overshot). :func:`prune` restores them to their clean values, smallest first,
for as long as the example stays adversarial, with forward passes only; :func:`with_pruning` turns an
attack into "the attack, then :func:`prune`", which the registry offers as ``prune/<name>``
(:func:`bench.registry.get_entry`). The scheme is ours (SparseBench); greedy restoration after success
is a common post-processing step of sparse attacks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from attacks.checks import check_int
from attacks.norms import changed
from attacks.success import is_adversarial_argmax, per_sample

__all__ = ["PRUNE_PREFIX", "prune", "with_pruning"]

PRUNE_PREFIX = "prune_"
"""How :func:`with_pruning` names :func:`prune`'s options among the attack's hyperparameters."""


def _check_options(*, rounds: int, single_rounds: int, batch_elements: int, prefix: str = "") -> None:
    check_int(f"{prefix}rounds", rounds, 0)
    check_int(f"{prefix}single_rounds", single_rounds, 0)
    check_int(f"{prefix}batch_elements", batch_elements, 1)


@torch.no_grad()
def prune(
    model: nn.Module,
    inputs: Tensor,
    adversarial: Tensor,
    labels: Tensor,
    *,
    targeted: bool = False,
    rounds: int = 100,
    single_rounds: int = 4,
    batch_elements: int = 8,
) -> Tensor:
    """Restore the smallest changes of successful adversarial examples while they stay adversarial.

    Success is the harness's (:func:`attacks.success.is_adversarial_argmax`, as ``bench.verify``
    reads it): untargeted, ``argmax != labels``; targeted, ``argmax == labels`` (the targets). Per
    sample, the changed elements (out of C*H*W) are sorted by ``|adversarial - inputs|``, smallest
    first (ties by position), and restored greedily in that order, all samples batched:

    1. Chunks (``rounds`` forward calls): a cursor walks the sorted changes with a chunk size per
       sample, at first half of its changes. Each call tries restoring the next ``chunk`` changes on
       top of what is restored so far: on success they stay restored, the cursor moves past them and
       the chunk doubles; on failure the chunk halves, and a single change that cannot go is kept and
       stepped over. A sample is done when its cursor has passed all its changes.
    2. Single elements (``single_rounds`` forward calls): each call takes, per sample, the
       ``batch_elements`` smallest changes left that are not yet decided and tries them one more at a
       time (candidate j restores the first j + 1 of them on top of the current example; all
       ``batch_elements`` candidates per sample in one call). The changes of the candidates that
       succeed in a row from the first stay restored; the change that ended the run failed on top of
       exactly that example and is kept for good. This decides what trying them one at a time would,
       up to ``batch_elements`` changes per call; run to the end, it leaves an example from which no
       single change can be restored.

    Each call forwards only the samples still at work. A last call checks the batch to be returned,
    whole, the way the harness verifies it; a sample whose pruned example fails there (a near tie that
    another batch breaks differently) gets its given example back.

    Forward passes per sample, at most: ``1 + rounds + single_rounds * batch_elements + 1`` (the
    check of the given examples, the chunks, the singles, the last check), 134 with the defaults;
    no backward pass.

    Parameters
    ----------
    model : nn.Module
        Returns logits; called normally, so that the harness counts every pass.
    inputs : Tensor
        Clean images ``(B, C, H, W)`` in [0, 1].
    adversarial : Tensor
        What an attack returned for ``inputs``, of the same shape.
    labels : Tensor
        True classes ``(B,)``, or the target classes when ``targeted``.
    targeted : bool
        Whether success means predicting ``labels`` rather than not predicting them.
    rounds : int
        Forward calls of the chunk phase (0 skips it). Default 100.
    single_rounds : int
        Forward calls of the single-element phase (0 skips it). Default 4.
    batch_elements : int
        Single-element candidates per sample in one call (the call forwards this many times the
        samples at work). Default 8.

    Returns
    -------
    Tensor
        ``inputs``' shape and dtype. Per element, either the clean or the adversarial value, so the
        result stays in [0, 1] and never changes an element the given example left clean: its
        ``l0_elements`` never grows, nor does its ``l0_pixels``. Pixels are not minimised as such: a
        pixel is restored only once each of its channels is, so pixel L0 falls less than element L0
        (channels of one pixel are sorted and restored independently). Samples whose given example is
        not adversarial, not finite or outside [0, 1] are returned as given.

    Raises
    ------
    ValueError
        A shape mismatch, or an option outside its range.
    """
    _check_options(rounds=rounds, single_rounds=single_rounds, batch_elements=batch_elements)
    if tuple(adversarial.shape) != tuple(inputs.shape):
        raise ValueError(f"adversarial: shape {tuple(adversarial.shape)} != inputs {tuple(inputs.shape)}")
    given = adversarial.detach().to(dtype=inputs.dtype)
    batch = inputs.shape[0]
    if batch == 0 or inputs[0].numel() == 0:
        return given.clone()
    clean = inputs.detach().flatten(1)
    dirty = given.flatten(1)
    size = clean.shape[1]

    def succeeds(examples: Tensor, rows: Tensor, repeat: int = 1) -> Tensor:
        """One forward call: whether each example is adversarial; ``repeat`` examples per row in turn."""
        logits = model(examples.reshape(-1, *inputs.shape[1:]))
        return is_adversarial_argmax(logits, labels[rows].repeat_interleave(repeat), targeted=targeted)

    everyone = torch.arange(batch, device=inputs.device)
    usable = (torch.isfinite(dirty) & (dirty >= 0) & (dirty <= 1)).all(1)
    ok = usable & succeeds(given, everyone)

    # Rank space: rank r of sample b is element order[b, r]; its changes hold ranks [0, count[b]).
    moved = changed(clean, dirty)
    count = moved.sum(1)
    magnitude = torch.where(moved, (dirty - clean).abs(), torch.full_like(clean, float("inf")))
    order = magnitude.argsort(dim=1, stable=True)
    rank = torch.arange(size, device=inputs.device).unsqueeze(0)
    restored = torch.zeros(batch, size, dtype=torch.bool, device=inputs.device)

    def compose(rows: Tensor, restored_ranks: Tensor) -> Tensor:
        """The examples of ``rows`` with the elements at ``restored_ranks`` set back to clean, ``(b, N)``."""
        mask = torch.zeros_like(restored_ranks).scatter_(1, order[rows], restored_ranks)
        return torch.where(mask, clean[rows], dirty[rows])

    # 1. Chunks: a galloping greedy walk over the sorted changes.
    cursor = torch.zeros_like(count)
    chunk = (count // 2).clamp(min=1)
    for _ in range(rounds):
        rows = torch.nonzero(ok & (cursor < count)).flatten()
        if rows.numel() == 0:
            break
        start, stop = cursor[rows, None], (cursor + chunk)[rows, None]
        trial = restored[rows] | ((rank >= start) & (rank < stop))
        success = succeeds(compose(rows, trial), rows)
        restored[rows] = torch.where(success[:, None], trial, restored[rows])
        step = chunk[rows]
        single = step == 1
        moved_on = torch.where(success, cursor[rows] + step, cursor[rows] + single.long())
        grown = torch.where(success, step * 2, torch.where(single, step, step // 2))
        cursor[rows] = moved_on
        chunk[rows] = torch.minimum(grown, count[rows] - moved_on).clamp(min=1)

    # 2. Single elements: the next ``batch_elements`` changes, restored one more per candidate.
    tried = torch.zeros_like(restored)
    width = min(batch_elements, size)
    column = torch.arange(width, device=inputs.device).unsqueeze(0)
    prefix = column.T >= column  # (width, width): candidate j restores picks 0..j
    for _ in range(single_rounds):
        open_ranks = (rank < count[:, None]) & ~restored & ~tried
        rows = torch.nonzero(ok & open_ranks.any(1)).flatten()
        if rows.numel() == 0:
            break
        key = torch.where(open_ranks[rows], rank, torch.full_like(rank, size))
        picks = key.topk(width, dim=1, largest=False, sorted=True).values  # (b, width) ranks, ascending
        valid = picks < size
        picks = torch.where(valid, picks, size + column)  # no pick: a column of its own past the end, cut off
        elements = torch.where(valid, order[rows].gather(1, picks.clamp(max=size - 1)), picks)
        mask = torch.zeros(len(rows), width, size + width, dtype=torch.bool, device=inputs.device).scatter_(
            2, elements.unsqueeze(1).expand(-1, width, -1), prefix.expand(len(rows), -1, -1))[..., :size]
        candidates = torch.where(mask, clean[rows].unsqueeze(1), compose(rows, restored[rows]).unsqueeze(1))
        success = succeeds(candidates, rows, width).view(-1, width) & valid
        run = success.long().cumprod(1).sum(1, keepdim=True)  # successes in a row from the first
        restored[rows] |= _marked(size, picks, column < run)
        tried[rows] |= _marked(size, picks, (column == run) & valid)  # it failed on the example kept

    # The last check: the batch to return, whole, as the harness will verify it.
    result = torch.where(per_sample(ok, dirty), compose(everyone, restored), dirty)
    pruned = ok & restored.any(1)
    if bool(pruned.any()):
        undone = pruned & ~succeeds(result, everyone)
        result = torch.where(per_sample(undone, dirty), dirty, result)
    return result.view_as(given)


def _marked(size: int, positions: Tensor, flags: Tensor) -> Tensor:
    """Boolean ``(rows, size)``: ``flags`` at ``positions`` ``(rows, k)``, distinct per row; those from
    ``size`` on are dropped."""
    rows, k = positions.shape
    return torch.zeros(rows, size + k, dtype=torch.bool, device=positions.device).scatter_(
        1, positions, flags)[:, :size]


def with_pruning(attack: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``attack`` followed by :func:`prune`, under the attack contract.

    The result takes ``attack``'s hyperparameters and :func:`prune`'s options with the prefix
    ``prune_`` (``prune_rounds``, ``prune_single_rounds``, ``prune_batch_elements``); its signature
    says both, so that the registry reads and checks them as any attack's. The options are checked
    before the attack runs. What ``attack`` returns that is not a floating tensor of the inputs'
    shape and device is passed on untouched, for the harness to reject.

    Raises
    ------
    ValueError
        When ``attack`` already has a hyperparameter named like one of the options.
    """
    signature = inspect.signature(attack)
    options = [parameter.replace(name=PRUNE_PREFIX + name)
               for name, parameter in inspect.signature(prune).parameters.items()
               if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "targeted"]
    clash = [option.name for option in options if option.name in signature.parameters]
    if clash:
        raise ValueError(f"attack: {getattr(attack, '__name__', attack)!r} already has {', '.join(clash)}; "
                         f"allowed: an attack without {PRUNE_PREFIX}* hyperparameters")
    option_names = {option.name for option in options}

    def pruned(model: nn.Module, inputs: Tensor, labels: Tensor, *, targeted: bool = False,
               **hyperparameters: Any) -> Tensor:
        chosen = {option.name[len(PRUNE_PREFIX):]: hyperparameters.pop(option.name, option.default)
                  for option in options}
        _check_options(prefix=PRUNE_PREFIX, **chosen)
        adversarial = attack(model, inputs, labels, targeted=targeted, **hyperparameters)
        if (not isinstance(adversarial, Tensor) or type(adversarial) not in (Tensor, nn.Parameter)
                or tuple(adversarial.shape) != tuple(inputs.shape) or not adversarial.is_floating_point()
                or adversarial.device != inputs.device):
            return adversarial
        return prune(model, inputs, adversarial, labels, targeted=targeted, **chosen)

    parameters = list(signature.parameters.values())
    variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    fixed = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    pruned.__signature__ = signature.replace(parameters=fixed + options + variadic)  # type: ignore[attr-defined]
    name = getattr(attack, "__name__", type(attack).__name__)
    pruned.__name__ = pruned.__qualname__ = f"pruned_{name}"
    pruned.__doc__ = f"{name}, then attacks.prune.prune (options {', '.join(sorted(option_names))})."
    return pruned
