"""Homotopy Attack: sparse and imperceptible adversarial examples (Zhu, Chen & Wang, arXiv:2106.06027)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attacks.checks import check_choice, check_int, check_real
from attacks.losses import adversarial_cross_entropy, logit_margin
from attacks.projections import project_l0_elements
from attacks.success import is_adversarial_argmax

__all__ = ["TARGETED_LOSSES", "homotopy", "initial_lambda", "prox_l0_box"]

TARGETED_LOSSES = ("ce", "cw")

_ALPHA_INIT = 1e-3  # nmAPG's first step size, and the one the search for lambda_0 uses
_ALPHA_MIN, _ALPHA_MAX = 1e-20, 1e20  # safeguards of the Barzilai-Borwein step
_POST_STEPS_PER = 500  # the post-attack runs post_steps more per this many changed elements ...
_POST_STEPS_TIMES = 6  # ... up to this many times post_steps
_GIVE_UP = 0.95  # a sample stops once it changes more than this fraction of its elements


def homotopy(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    targeted: bool = False,
    eps: float = 0.05,
    lambda_scale: float = 3.0,
    lambda_decay: float = 0.98,
    max_update: int = 200,
    gamma: float = 0.8,
    post_loss_weight: float = 1e-2,
    post_linf_weight: float = 1e-4,
    post_steps: int = 200,
    post_max_update: int = 10,
    eta: float = 0.9,
    sufficient_decrease: float = 0.3,
    rho: float = 0.8,
    inner_steps: int = 100,
    inner_tol: float = 1e-3,
    max_outer: int = 200,
    line_search_steps: int = 20,
    reduce_linf: bool = True,
    linf_step: float = 1e-3,
    targeted_loss: str = "ce",
) -> Tensor:
    """Homotopy Attack, a native batched implementation.

    Zhu, Chen & Wang, "Sparse and Imperceptible Adversarial Attack via a
    Homotopy Algorithm", ICML 2021, arXiv:2106.06027. Per sample it solves

        min_delta  f(delta) + lambda * ||delta||_0
        s.t.       ||delta||_inf <= eps,  inputs + delta in [0, 1]

    along a homotopy path of decreasing ``lambda``. ``f`` is the C&W loss
    with kappa 0, ``max(z_y - max_{j != y} z_j, 0)`` (untargeted), or the
    cross-entropy of the target (targeted; ``targeted_loss="cw"`` takes the
    C&W loss ``max(max_{j != t} z_j - z_t, 0)`` instead). L0 counts
    *elements* (values out of C*H*W), as the paper does.

    1. ``lambda_0 = lambda_scale * lambda*``, where ``lambda*`` is the
       smallest ``lambda`` at which the first proximal-gradient step from
       ``delta = 0`` (step size 1e-3) stays at 0 (:func:`initial_lambda`).
    2. Outer iteration (the homotopy): warm-started at the current
       ``delta``, the nonmonotone accelerated proximal gradient method
       (nmAPG: Li & Lin, "Accelerated Proximal Gradient Methods for
       Nonconvex Programming", NeurIPS 2015, with line search) minimises the
       L0-regularised loss at fixed ``lambda``. Its proximal operator is the
       closed form for L0 under the box (:func:`prox_l0_box`: hard
       thresholding of the clipped value). Step sizes start from the
       Barzilai-Borwein rule (1e-3 at the first iteration) and backtrack by
       ``rho`` until the objective ``F = f + lambda ||.||_0`` falls by
       ``sufficient_decrease * ||step||^2`` below its value at the
       extrapolated point or below the nonmonotone average ``c_k`` (weight
       ``eta``); when the extrapolated candidate fails the test against
       ``c_k``, a proximal step from ``x_k`` is tried too and the better one
       kept. After every nmAPG step the *L0 change control* keeps the
       ``||delta_start||_0 + max_update`` largest entries, so one outer
       iteration adds at most ``max_update`` elements. nmAPG stops for a
       sample as soon as its iterate is adversarial.
    3. If nmAPG did not succeed and the perturbed elements are small on
       average, ``||delta||_1 <= gamma * eps * ||delta||_0``, the
       *post-attack* runs: projected steps on the current support only,
       ``delta <- delta - post_linf_weight * d||delta||_inf -
       post_loss_weight * grad f``, ``post_steps`` of them plus
       ``post_steps`` per 500 perturbed elements (at most six times
       ``post_steps``), stopping at success; the next outer iteration then
       adds at most ``post_max_update`` elements. The selected elements grow
       towards ``eps`` instead of new ones being added.
    4. ``lambda <- lambda_decay * lambda``, and back to 2, until the sample
       succeeds, has changed more than 95% of its elements (once enough
       outer iterations have passed to add them), or ``max_outer`` is reached.
    5. After success, when ``reduce_linf``, the magnitude is lowered:
       every entry is cut to ``||delta||_inf - j * linf_step``, j = 1, 2,
       ..., while the example stays adversarial (the support, hence L0, does
       not change).

    Sources. The paper's abstract names the three parts (nmAPG on the
    L0-regularised loss, the L0 change control, an optional post-attack);
    where its equations and appendix could not be consulted here the steps
    follow the authors' release (github.com/VITA-Group/SparseADV_Homotopy,
    read, not copied) and Li & Lin for nmAPG. The defaults are that
    release's, which its README says follow the paper's appendix: ``eps``
    0.05 (``max_epsilon``), ``lambda_scale`` 3 (``val_c``),
    ``lambda_decay`` 0.98 (``dec_factor``), ``max_update`` 200, ``gamma``
    0.8, ``post_loss_weight`` 1e-2 and ``post_linf_weight`` 1e-4
    (``val_w1``, ``val_w2``), ``post_steps`` 200 and ``post_max_update``
    10, ``inner_steps`` 100 (``maxiter``), the settled-loss tolerance 1e-3,
    nmAPG's ``eta`` 0.9, ``sufficient_decrease`` 0.3 (Li & Lin's delta)
    and ``rho`` 0.8, cross-entropy for targeted attacks and the final L-inf
    reduction. They are ImageNet (Inception-v3) values; the README says to
    lower ``lambda_scale`` and raise ``max_update`` for a lower ``eps`` and
    the reverse for a higher one. On 28x28 images ``max_update`` 200 is a
    quarter of the image.

    Departures from the release and choices the paper leaves open:

    * Budget caps (ours): ``max_outer`` outer iterations (the release has
      none); nmAPG stops when the loss has settled (two changes in a row
      below ``inner_tol``) or after ``inner_steps`` iterations, where the
      release runs at least ``maxiter`` iterations and only then applies
      that test; each line search tries at most ``line_search_steps`` step
      sizes (the release: 1000 at ``y``, 10 at ``x``).
    * The final L-inf reduction cuts every entry to a falling level, one
      forward pass per level; the release takes subgradient steps of 1e-3
      on ``||delta||_inf`` (up to 40,000), which lower the largest entries
      along the same path one at a time.
    * ``lambda*`` in closed form (the largest per-element gain of the first
      step over ``2 * step``); the release searches for it (up in steps of
      1e-6, then down by 1%), which lands within 1% of it.
    * The Barzilai-Borwein step is ``<s, r> / <r, r>`` clipped to [1e-20,
      1e20]. Where it carries no curvature (``<s, r> <= 0`` or ``r = 0``,
      frequent with ReLU networks and the piecewise-linear C&W loss) we take
      the step size of the previous iteration divided by ``rho``; the
      release then gets a step at one of the safeguards, depending on the
      sign of a sum.
    * The nonmonotone average is Li & Lin's ``c_{k+1} = (eta q_k c_k +
      F(x_{k+1})) / q_{k+1}`` (the release uses ``q_{k+1}`` in the
      numerator).
    * The post-attack stops at the first success (the release runs its
      steps out and checks afterwards).
    * Each sample has its own ``lambda``, step sizes, nmAPG state and
      stopping, so its result does not depend on its batch-mates; finished
      samples leave the batch. The line searches and the per-sample
      stopping ask the host which samples are done, once per trial and
      per iteration.
    * Success is the model's argmax at ``clip(inputs + delta, 0, 1)`` (the
      harness's criterion); gradients at nmAPG's extrapolated points ``y``
      are taken at ``inputs + y`` unclipped, as the method defines them.
    * No randomness: the same inputs give the same result, whatever the seed.

    Each nmAPG iteration costs one forward and backward pass at ``y``, one
    forward pass per line-search trial and, when the extrapolated candidate
    is rejected, one forward and backward pass at ``x`` and its line
    search; each post-attack step one forward and backward pass; each
    L-inf level one forward pass.

    Follows the attack contract (:class:`bench.registry.AttackFunction`): ``model``, ``inputs``,
    ``labels`` (targets when ``targeted``) and the returned images in [0, 1].

    Parameters
    ----------
    eps : float
        L-inf bound of the perturbation, in input units ([0, 1] scale);
        1 leaves only the box. Default 0.05.
    lambda_scale : float
        ``c``: ``lambda_0`` as a multiple of ``lambda*``. Default 3.
    lambda_decay : float
        Factor on ``lambda`` after each unsuccessful outer iteration. Default 0.98.
    max_update : int
        Most elements an outer iteration may add (L0 change control). Default 200.
    gamma : float
        Post-attack trigger: mean magnitude of the perturbed elements at most
        ``gamma * eps``. Default 0.8.
    post_loss_weight : float
        Step on the loss gradient in the post-attack (``w_1``). Default 1e-2.
    post_linf_weight : float
        Step on the L-inf subgradient in the post-attack (``w_2``). Default 1e-4.
    post_steps : int
        Post-attack steps, plus as many per 500 perturbed elements (at most
        six times as many); 0 turns the post-attack off. Default 200.
    post_max_update : int
        ``max_update`` of the outer iteration after a post-attack. Default 10.
    eta : float
        nmAPG's weight of the nonmonotone average, in [0, 1). Default 0.9.
    sufficient_decrease : float
        nmAPG's ``delta`` of the sufficient-decrease tests. Default 0.3.
    rho : float
        Backtracking factor of the line searches, in (0, 1). Default 0.8.
    inner_steps : int
        Most nmAPG iterations per outer iteration. Default 100.
    inner_tol : float
        nmAPG stops once the loss changed by less than this twice in a row. Default 1e-3.
    max_outer : int
        Most outer (homotopy) iterations. Default 200.
    line_search_steps : int
        Most step sizes each line search tries. Default 20.
    reduce_linf : bool
        Lower the magnitude of successful perturbations at the end. Default True.
    linf_step : float
        Decrement of the L-inf level in that reduction. Default 1e-3.
    targeted_loss : str
        ``"ce"`` (cross-entropy of the target) or ``"cw"`` (C&W loss); only
        used when ``targeted``. Default ``"ce"``.

    Returns
    -------
    Tensor
        Per sample, the adversarial example found, or the clean input where none
        was found; within ``eps`` of ``inputs`` in L-inf (up to the float
        rounding of ``eps`` and of ``inputs + delta``).
    """
    check_real("eps", eps, low=0, high=1, low_open=True)
    check_real("lambda_scale", lambda_scale, low=0, low_open=True)
    check_real("lambda_decay", lambda_decay, low=0, high=1, low_open=True, high_open=True)
    check_int("max_update", max_update, 1)
    check_real("gamma", gamma, low=0)
    check_real("post_loss_weight", post_loss_weight, low=0)
    check_real("post_linf_weight", post_linf_weight, low=0)
    check_int("post_steps", post_steps, 0)
    check_int("post_max_update", post_max_update, 1)
    check_real("eta", eta, low=0, high=1, high_open=True)
    check_real("sufficient_decrease", sufficient_decrease, low=0)
    check_real("rho", rho, low=0, high=1, low_open=True, high_open=True)
    check_int("inner_steps", inner_steps, 1)
    check_real("inner_tol", inner_tol, low=0)
    check_int("max_outer", max_outer, 1)
    check_int("line_search_steps", line_search_steps, 1)
    check_real("linf_step", linf_step, low=0, low_open=True)
    check_choice("targeted_loss", targeted_loss, TARGETED_LOSSES)

    batch = inputs.shape[0]
    numel = inputs[0].numel()
    flat = inputs.detach().flatten(1)
    objective = _Objective(model, flat, labels, inputs.shape[1:], targeted=targeted, targeted_loss=targeted_loss)
    lower = (-flat).clamp(min=-eps)  # the box and the L-inf ball: lower <= delta <= upper
    upper = (1 - flat).clamp(max=eps)
    rows = torch.arange(batch, device=flat.device)
    delta = torch.zeros_like(flat)

    _, grad, clean_success = objective(rows, delta, gradient=True)
    lam = lambda_scale * initial_lambda(grad, lower, upper)
    won = torch.zeros_like(clean_success)  # succeeded with a perturbation
    finished = clean_success.clone()  # already adversarial: the clean input is returned
    update_cap = torch.full_like(lam, float(max_update))
    nmapg = {"eta": eta, "sufficient": sufficient_decrease, "rho": rho, "steps": inner_steps, "tol": inner_tol,
             "trials": line_search_steps}

    for outer in range(1, max_outer + 1):
        active = (~finished).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        start = delta[active]
        budget = _l0(start) + update_cap[active]
        found, success = _nmapg(objective, active, start, lam[active], budget, lower[active], upper[active], **nmapg)
        delta[active] = found
        won[active] = success
        finished[active] = success
        update_cap[active] = float(max_update)

        failed = active[~success]
        if failed.numel() == 0:
            continue
        l0 = _l0(delta[failed])
        small = (l0 > 0) & (delta[failed].abs().sum(1) <= gamma * eps * l0)  # the post-attack's trigger
        if post_steps > 0 and bool(small.any()):
            post = failed[small]
            times = (1 + torch.div(l0[small], _POST_STEPS_PER, rounding_mode="floor")).clamp(max=_POST_STEPS_TIMES)
            found, success = _post_attack(objective, post, delta[post], lower[post], upper[post], post_steps * times,
                                          loss_weight=post_loss_weight, linf_weight=post_linf_weight)
            delta[post] = found
            won[post] = success
            finished[post] = success
            update_cap[post] = float(post_max_update)
        lam[failed] = lambda_decay * lam[failed]
        if outer * max_update > _GIVE_UP * numel:
            finished[failed[l0 > _GIVE_UP * numel]] = True

    if reduce_linf and bool(won.any()):
        done = won.nonzero().squeeze(1)
        delta[done] = _reduce_linf(objective, done, delta[done], linf_step)
    adversarial = torch.where(won[:, None], (flat + delta).clamp(0, 1), flat)
    return adversarial.view_as(inputs)


def prox_l0_box(values: Tensor, step: Tensor, lam: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """The proximal operator of ``lam * ||.||_0`` plus the box, per element.

    ``argmin_z ||z - v||^2 / (2 * step) + lam * ||z||_0`` subject to
    ``lower <= z <= upper`` (``lower <= 0 <= upper``) separates over the
    elements; each is either 0 (cost ``v^2``) or the clipped value
    ``clip(v, lower, upper)`` (cost ``(v - clip)^2 + 2 * step * lam``), so
    it keeps the clipped value where ``v^2 - (v - clip)^2 > 2 * step * lam``
    and is 0 elsewhere (on a tie too: the sparser of two minimisers).

    Parameters
    ----------
    values : Tensor
        ``v``, ``(B, n)``.
    step, lam : Tensor
        Step size and L0 weight per sample, ``(B,)``.
    lower, upper : Tensor
        Bounds ``(B, n)``, ``lower <= 0 <= upper``.
    """
    clipped, gain = _clip_and_gain(values, lower, upper)
    return torch.where(gain > (2 * step * lam)[:, None], clipped, torch.zeros_like(values))


def initial_lambda(grad: Tensor, lower: Tensor, upper: Tensor, step: float = _ALPHA_INIT) -> Tensor:
    """The smallest ``lambda`` for which ``prox_l0_box(-step * grad, step, lambda)`` is all zero.

    It is the largest per-element gain ``v^2 - (v - clip(v))^2`` of
    ``v = -step * grad`` over ``2 * step``, per sample ``(B,)``: the
    ``lambda`` the release searches for, before the factor ``lambda_scale``.
    """
    return _clip_and_gain(-step * grad, lower, upper)[1].amax(1) / (2 * step)


def _clip_and_gain(values: Tensor, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """``clip(v, lower, upper)`` and what keeping it saves over 0 in ``||z - v||^2``: ``v^2 - (v - clip)^2``."""
    clipped = torch.minimum(torch.maximum(values, lower), upper)
    return clipped, values.square() - (values - clipped).square()


def _l0(delta: Tensor) -> Tensor:
    """Nonzero entries per row, as floats ``(B,)`` (they enter the objective)."""
    return (delta != 0).sum(1).to(delta.dtype)


def _attack_loss(logits: Tensor, labels: Tensor, *, targeted: bool, targeted_loss: str) -> Tensor:
    """Per-sample loss to minimise: C&W with kappa 0, or the target's cross-entropy."""
    if targeted and targeted_loss == "ce":
        return -adversarial_cross_entropy(logits, labels, targeted=True)
    return (-logit_margin(logits, labels, targeted=targeted)).clamp_min(0)


class _Objective:
    """The attack loss at ``inputs[rows] + delta``: values, gradients and success, on flat tensors."""

    def __init__(self, model: nn.Module, inputs: Tensor, labels: Tensor, shape: torch.Size, *, targeted: bool,
                 targeted_loss: str) -> None:
        self.model, self.inputs, self.labels, self.shape = model, inputs, labels, shape
        self.targeted, self.targeted_loss = targeted, targeted_loss
        self._rows: Tensor | None = None
        self._at: tuple[Tensor, Tensor] = (inputs, labels)

    def rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The inputs and labels of ``rows``, gathered once for as long as the solver asks for the same rows."""
        if rows is not self._rows:
            self._rows, self._at = rows, (self.inputs[rows], self.labels[rows])
        return self._at

    def __call__(self, rows: Tensor, delta: Tensor, *, gradient: bool = False,
                 clip: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
        """Loss ``(B,)``, its gradient ``(B, n)`` (``None`` unless ``gradient``), success ``(B,)``.

        ``clip`` evaluates at ``clip(inputs + delta, 0, 1)``, the example itself.
        """
        inputs, labels = self.rows(rows)
        point = inputs + delta
        if clip:
            point = point.clamp(0, 1)
        point = point.detach().view(-1, *self.shape).requires_grad_(gradient)
        with torch.set_grad_enabled(gradient):
            logits = self.model(point)
            loss = _attack_loss(logits, labels, targeted=self.targeted, targeted_loss=self.targeted_loss)
        success = is_adversarial_argmax(logits.detach(), labels, targeted=self.targeted)
        grad = torch.autograd.grad(loss.sum(), point)[0].flatten(1) if gradient else None
        return loss.detach(), grad, success


def _bb_step(s: Tensor, r: Tensor, fallback: Tensor) -> Tensor:
    """Barzilai-Borwein ``<s, r> / <r, r>`` per row, clipped; ``fallback`` where it carries no curvature."""
    sr, rr = (s * r).sum(1), (r * r).sum(1)
    curved = (sr > 0) & (rr > 0)
    step = torch.where(curved, sr / torch.where(curved, rr, torch.ones_like(rr)), fallback)
    return step.clamp(_ALPHA_MIN, _ALPHA_MAX)


def _line_search(objective: _Objective, rows: Tensor, center: Tensor, grad: Tensor, step: Tensor, lam: Tensor,
                 lower: Tensor, upper: Tensor, threshold: Tensor, *, sufficient: float, rho: float,
                 trials: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backtracking proximal step from ``center``: the first step size ``step * rho^i`` whose
    candidate ``c`` has ``F(c) <= threshold - sufficient * ||c - center||^2``.

    Returns the candidates, their objective ``F``, their success and the step sizes taken
    (the last one tried where none passed within ``trials``).
    """
    step = step.clone()
    # The first trial runs on every row, without gathering them; later ones on the rows still rejected.
    proposal = prox_l0_box(center - step[:, None] * grad, step, lam, lower, upper)
    loss, _, success = objective(rows, proposal)
    candidate, value = proposal, loss + lam * _l0(proposal)
    rejected = value > threshold - sufficient * (proposal - center).square().sum(1)
    pending = torch.arange(center.shape[0], device=center.device)
    for _ in range(1, trials):
        pending = pending[rejected]
        if pending.numel() == 0:
            break
        step[pending] = rho * step[pending]
        proposal = prox_l0_box(center[pending] - step[pending, None] * grad[pending], step[pending], lam[pending],
                               lower[pending], upper[pending])
        loss, _, hit = objective(rows[pending], proposal)
        objective_value = loss + lam[pending] * _l0(proposal)
        candidate[pending], value[pending], success[pending] = proposal, objective_value, hit
        moved = (proposal - center[pending]).square().sum(1)
        rejected = objective_value > threshold[pending] - sufficient * moved
    return candidate, value, success, step


def _nmapg(objective: _Objective, rows: Tensor, start: Tensor, lam: Tensor, budget: Tensor, lower: Tensor,
           upper: Tensor, *, eta: float, sufficient: float, rho: float, steps: int, tol: float,
           trials: int) -> tuple[Tensor, Tensor]:
    """Li & Lin's nmAPG at fixed ``lam`` from ``start``, with the L0 change control ``budget``.

    Returns the last iterate per sample (the first adversarial one where it stopped
    early) and whether it is adversarial.
    """
    result = start.clone()
    won = torch.zeros(start.shape[0], dtype=torch.bool, device=start.device)
    loss, _, success = objective(rows, start)
    state = {
        "index": torch.arange(start.shape[0], device=start.device),  # positions in `result`
        "rows": rows, "lam": lam, "budget": budget, "lower": lower, "upper": upper,
        "x": start, "x_prev": start, "z": start,
        "c": loss + lam * _l0(start), "q": torch.ones_like(lam), "loss": loss,
        "settled": torch.zeros_like(success, dtype=torch.long),
        "step_y": torch.full_like(lam, _ALPHA_INIT), "step_x": torch.full_like(lam, _ALPHA_INIT),
        "y_prev": start, "grad_y_prev": torch.zeros_like(start),
    }
    t_prev, t = 0.0, 1.0
    for k in range(steps + 1):
        settled = state["settled"] >= 2
        if bool((success | settled).any()) or k == steps:
            stop = success | settled if k < steps else torch.ones_like(success)
            result[state["index"][stop]] = state["x"][stop]
            won[state["index"][stop]] = success[stop]
            if bool(stop.all()):
                break
            state = {name: value[~stop] for name, value in state.items()}
        s = state
        x, lam_s, c = s["x"], s["lam"], s["c"]
        y = x + (t_prev / t) * (s["z"] - x) + ((t_prev - 1) / t) * (x - s["x_prev"])
        loss_y, grad_y, _ = objective(s["rows"], y, gradient=True, clip=False)
        if k > 0:
            s["step_y"] = _bb_step(y - s["y_prev"], grad_y - s["grad_y_prev"], s["step_y"] / rho)
        value_y = loss_y + lam_s * _l0(y)
        z, value_z, success_z, s["step_y"] = _line_search(
            objective, s["rows"], y, grad_y, s["step_y"], lam_s, s["lower"], s["upper"],
            torch.maximum(value_y, c), sufficient=sufficient, rho=rho, trials=trials)
        accept_z = value_z <= c - sufficient * (z - y).square().sum(1)
        new_x, new_value, success = z.clone(), value_z.clone(), success_z.clone()
        new_loss = new_value - lam_s * _l0(z)
        if not bool(accept_z.all()):
            # The accelerated candidate failed the nonmonotone test: a proximal step from x too.
            j = (~accept_z).nonzero().squeeze(1)
            _, grad_x, _ = objective(s["rows"][j], x[j], gradient=True)
            if k > 0:
                s["step_x"][j] = _bb_step(x[j] - s["y_prev"][j], grad_x - s["grad_y_prev"][j], s["step_x"][j] / rho)
            v, value_v, success_v, s["step_x"][j] = _line_search(
                objective, s["rows"][j], x[j], grad_x, s["step_x"][j], lam_s[j], s["lower"][j], s["upper"][j],
                c[j], sufficient=sufficient, rho=rho, trials=trials)
            take_v = value_v < value_z[j]
            new_x[j] = torch.where(take_v[:, None], v, z[j])
            new_value[j] = torch.where(take_v, value_v, value_z[j])
            new_loss[j] = new_value[j] - lam_s[j] * _l0(new_x[j])
            success[j] = torch.where(take_v, success_v, success_z[j])
        over = _l0(new_x) > s["budget"]
        if bool(over.any()):  # the L0 change control, then a fresh look at what it left
            j = over.nonzero().squeeze(1)
            new_x[j] = project_l0_elements(new_x[j], s["budget"][j].long())
            new_loss[j], _, success[j] = objective(s["rows"][j], new_x[j])
            new_value[j] = new_loss[j] + lam_s[j] * _l0(new_x[j])
        # The release's test of a settled loss: two changes in a row below tol.
        s["settled"] = torch.where((new_loss - s["loss"]).abs() < tol, s["settled"] + 1, 0)
        s["loss"] = new_loss
        q_next = eta * s["q"] + 1
        s["c"] = (eta * s["q"] * c + new_value) / q_next
        s["q"] = q_next
        s["x_prev"], s["x"], s["z"] = x, new_x, z
        s["y_prev"], s["grad_y_prev"] = y, grad_y
        t_prev, t = t, (math.sqrt(4 * t * t + 1) + 1) / 2
    return result, won


def _linf_subgradient(delta: Tensor) -> Tensor:
    """A subgradient of ``||delta||_inf`` per row: ``sign`` at the largest entries, split evenly among them."""
    magnitude = delta.abs()
    top = (magnitude == magnitude.amax(1, keepdim=True)).to(delta.dtype)
    return delta.sign() * top / top.sum(1, keepdim=True)


def _post_attack(objective: _Objective, rows: Tensor, delta: Tensor, lower: Tensor, upper: Tensor, steps: Tensor, *,
                 loss_weight: float, linf_weight: float) -> tuple[Tensor, Tensor]:
    """Projected gradient steps on ``loss_weight * f + linf_weight * ||.||_inf`` over the
    current support, ``steps`` per sample, stopping at success."""
    result = delta.clone()
    won = torch.zeros(delta.shape[0], dtype=torch.bool, device=delta.device)
    index = torch.arange(delta.shape[0], device=delta.device)
    support = delta != 0
    for step in range(int(steps.max()) + 1):
        _, grad, success = objective(rows, delta, gradient=True)
        stop = success | (steps <= step)
        if bool(stop.any()):
            result[index[stop]] = delta[stop]
            won[index[stop]] = success[stop]
            keep = ~stop
            if not bool(keep.any()):
                break
            rows, delta, lower, upper, steps, support, grad, index = (
                t[keep] for t in (rows, delta, lower, upper, steps, support, grad, index))
        update = linf_weight * _linf_subgradient(delta) + loss_weight * grad
        delta = torch.minimum(torch.maximum(delta - update * support, lower), upper)
    return result, won


def _reduce_linf(objective: _Objective, rows: Tensor, delta: Tensor, linf_step: float) -> Tensor:
    """Cut every entry to ``||delta||_inf - j * linf_step``, j = 1, 2, ..., while still adversarial."""
    result = delta.clone()
    index = torch.arange(delta.shape[0], device=delta.device)
    peak = delta.abs().amax(1)
    level = peak
    for _ in range(math.ceil(float(peak.max()) / linf_step)):
        level = level - linf_step
        candidate = torch.minimum(torch.maximum(delta, -level[:, None]), level[:, None])
        _, _, success = objective(rows, candidate)
        keep = success & (level > 0)
        result[index[keep]] = candidate[keep]
        if not bool(keep.any()):
            break
        rows, delta, level, index = rows[keep], delta[keep], level[keep], index[keep]
    return result
