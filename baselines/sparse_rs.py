"""Sparse-RS in the L0 threat model (Croce, Singh, Andriushchenko, Flammarion & Hein, arXiv:2006.12834).

A native implementation from the paper (AAAI 2022, its L0 algorithm): a score-based black-box random search over sets of k
pixels, each set to a corner of the colour cube. It only reads the model's
outputs, under ``torch.no_grad``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attacks.checks import check_int, check_real
from attacks.search import minimum_norm_attack
from attacks.success import is_adversarial
from baselines.blackbox import draw_pixels, search_loss_and_success

__all__ = ["resample_schedule", "sparse_rs", "sparse_rs_min"]

# The paper's piecewise-constant schedule for L0, stated for 10,000 queries:
# after iteration t (rescaled to that budget) alpha is alpha_init / divisor.
_SCHEDULE = ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15))
_LAST_DIVISOR = 20


def resample_schedule(iteration: int, n_queries: int, alpha_init: float) -> float:
    """Fraction alpha of the k pixels resampled at ``iteration`` (1-based).

    The paper's schedule for 10,000 queries, rescaled linearly to
    ``n_queries``: ``alpha_init`` halved after 50 iterations and then
    divided by 4, 5, 6, 8, 10, 12, 15 and 20 after 200, 500, 1000, 2000,
    4000, 6000 and 8000.
    """
    t = int(iteration / n_queries * 10_000)
    for end, divisor in _SCHEDULE:
        if t <= end:
            return alpha_init / divisor
    return alpha_init / _LAST_DIVISOR


class _Corners:
    """Random corners of [0, 1]^C for pixels of a batch, each differing from the pixel's clean value.

    A pixel whose clean value is itself a corner gets one of the other
    ``2^C - 1`` corners (an XOR of its corner code with a nonzero code);
    any other pixel gets any of the ``2^C`` corners, all of which differ.
    Each pixel's corner code, and whether it is at one, are read once per
    batch (``clean`` is ``(B, C, N)``), so a draw is a few operations.
    """

    def __init__(self, clean: Tensor) -> None:
        channels = clean.shape[1]
        self.corners = 1 << channels
        bits = torch.arange(channels, device=clean.device)
        self.own = ((clean == 1).long() << bits[None, :, None]).sum(1)  # (B, N)
        self.at_corner = ((clean == 0) | (clean == 1)).all(1)
        # table[code, c]: channel c's value at the corner of that code
        self.table = ((torch.arange(self.corners, device=clean.device)[:, None] >> bits) & 1).to(clean.dtype)

    def keep(self, rows: Tensor) -> None:
        """Keep the rows ``rows`` only (the samples still searching)."""
        self.own, self.at_corner = self.own[rows], self.at_corner[rows]

    def draw(self, pixels: Tensor) -> Tensor:
        """``(A, C, m)`` corner values for the pixels ``pixels`` ``(A, m)`` of the rows kept."""
        own = self.own.gather(1, pixels)
        other = own ^ torch.randint(1, self.corners, own.shape, device=own.device)
        code = torch.where(self.at_corner.gather(1, pixels), other,
                           torch.randint(0, self.corners, own.shape, device=own.device))
        return self.table[code].transpose(1, 2)


@torch.no_grad()
def sparse_rs(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    targeted: bool = False,
    k: int = 24,
    n_queries: int = 10_000,
    alpha_init: float | None = None,
) -> Tensor:
    """Sparse-RS, L0 version: random search over k-pixel perturbations.

    Croce, Singh, Andriushchenko, Flammarion & Hein, "Sparse-RS: a versatile
    framework for query-efficient sparse black-box adversarial attacks",
    AAAI 2022, arXiv:2006.12834.

    The perturbation is a set M of k pixels, each set to a corner of
    [0, 1]^C. Start: M uniform among k-sets. Iteration i: swap
    ``max(1, floor(alpha_i * k))`` random pixels of M for as many random
    pixels outside M (the dropped ones return to their clean value, the
    added ones get a random corner) and keep the candidate if its loss is
    lower than the best so far. The loss is the logit margin
    ``z_y - max_{j != y} z_j`` untargeted and the cross-entropy of the
    target when targeted (as in the paper). A sample stops, and is never
    queried again, once it is misclassified (untargeted) or classified as
    its target; each iteration queries the unsolved samples only.

    Follows the attack contract (:class:`bench.registry.AttackFunction`): ``model``, ``inputs``,
    ``labels`` (targets when ``targeted``) and the returned images in [0, 1]. Only the model's
    outputs are used.

    Parameters
    ----------
    k : int
        Budget in pixels: spatial positions where any channel may change,
        ``1 <= k <= H * W``. Default 24, the paper's CIFAR-10 budget (150
        for ImageNet).
    n_queries : int
        Query budget per sample: candidates evaluated, the random start
        included. Default 10,000 (the paper's untargeted budget; it uses
        100,000 for targeted attacks on ImageNet). One more query per sample
        classifies the clean input, so samples that already succeed are
        returned unchanged.
    alpha_init : float, optional
        Initial fraction of the k pixels resampled per iteration, decreased
        by the paper's piecewise-constant schedule (see
        :func:`resample_schedule`, rescaled to ``n_queries``). ``None``
        takes the paper's value for the mode: 0.3 untargeted, 0.1 targeted.

    Returns
    -------
    Tensor
        Differing from ``inputs`` in at most ``k`` pixels. Where the search
        fails, the best candidate found (lowest loss) is returned.

    Notes
    -----
    Our choice: a new pixel's corner is drawn uniformly among the corners
    that differ from its clean value, where the paper draws among all 2^C
    corners. With saturated pixels (the black background of MNIST-like
    images) the paper's draw leaves a pixel unchanged with probability
    2^-C, wasting budget; ours always changes it.
    The per-iteration choice of which samples are still unsolved costs one
    host-device synchronisation per iteration; it is what keeps solved
    samples from being queried. The search's state holds the unsolved
    samples only, so a step costs no gathering and scattering of the whole
    batch's (steps on a few samples are what the long tail of a search
    costs, and on a GPU a step's cost is its number of operations).
    """
    batch, channels, height, width = inputs.shape
    n_pixels = height * width
    check_int("k", k, 1, n_pixels)
    check_int("n_queries", n_queries, 1)
    if alpha_init is None:
        alpha_init = 0.1 if targeted else 0.3
    check_real("alpha_init", alpha_init, low=0, high=1, low_open=True)
    if channels > 30:
        raise ValueError(f"inputs: {channels} channels; Sparse-RS draws corners of [0, 1]^C for C <= 30")

    clean = inputs.detach().flatten(2)  # (B, C, N)
    device = inputs.device
    corners = _Corners(clean)

    # Query 0: the clean input. Samples that already succeed stay clean.
    active = ~is_adversarial(model(inputs), labels, targeted=targeted)

    # Random start: k pixels per sample, each at a random corner.
    chosen = torch.rand(batch, n_pixels, device=device).topk(k, dim=1).indices
    start = clean.scatter(2, chosen[:, None, :].expand(-1, channels, -1), corners.draw(chosen))
    best = torch.where(active[:, None, None], start, clean)
    idx = torch.nonzero(active).squeeze(1)
    if idx.numel() == 0:
        return best.view_as(inputs)
    # The search's state, for the samples still searching only: rows leave it when they succeed
    # (written back to `best`), so a step touches nothing else.
    support = torch.zeros(idx.numel(), n_pixels, dtype=torch.bool, device=device).scatter_(1, chosen[idx], True)
    current, current_clean, goal = best[idx], clean[idx], labels[idx]
    corners.keep(idx)
    best_loss, success = search_loss_and_success(model(current.view(-1, channels, height, width)), goal,
                                                  targeted=targeted)

    for iteration in range(1, n_queries):
        keep = torch.nonzero(~success).squeeze(1)  # the one synchronisation per iteration
        if keep.numel() < idx.numel():
            best[idx] = current
            if keep.numel() == 0:
                return best.view_as(inputs)
            idx, current, current_clean, goal, support, best_loss = (
                t[keep] for t in (idx, current, current_clean, goal, support, best_loss))
            corners.keep(keep)
        n_swap = max(1, int(resample_schedule(iteration, n_queries, alpha_init) * k))
        n_swap = min(n_swap, k, n_pixels - k) if k < n_pixels else min(n_swap, k)
        drop = draw_pixels(support, n_swap)
        if k < n_pixels:
            add = draw_pixels(~support, n_swap)
        else:  # every pixel is in M: resample the dropped pixels' corners instead
            add = drop
        drop_c = drop[:, None, :].expand(-1, channels, -1)
        candidate = current.scatter(2, drop_c, current_clean.gather(2, drop_c))
        candidate.scatter_(2, add[:, None, :].expand(-1, channels, -1), corners.draw(add))
        candidate_support = support.scatter(1, drop, False).scatter_(1, add, True)

        loss, success = search_loss_and_success(model(candidate.view(-1, channels, height, width)), goal,
                                                targeted=targeted)
        accept = (loss < best_loss) | success
        current = torch.where(accept[:, None, None], candidate, current)
        support = torch.where(accept[:, None], candidate_support, support)
        best_loss = torch.where(accept, loss, best_loss)

    best[idx] = current
    return best.view_as(inputs)


sparse_rs_min = minimum_norm_attack(sparse_rs, name="sparse_rs_min")
