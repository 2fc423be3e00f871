"""Trajectory diagnostics: the quantities the convergence proofs track, as pure functions.

Every function acts on ONE network `W: (L, D, D)` (layer 1 first) and, where needed, ONE
target `phi: (D, D)`; batch them with `jax.vmap`. The quantities come from

* Wu, Wang & Ma (2019), "Global convergence of gradient descent for deep linear residual
  networks": the invariants D_l = W_{l+1}ᵀW_{l+1} − W_lW_lᵀ (eq. 4.3, `_measures.invariants`),
  constant under gradient flow (Lemma 4.2); for the zero-asymmetric (ZAS) init, D_l = 0
  (l < L−1) and D_{L−1} = −I, whence σ_min(W_{L−1:1})² = λ_min((I + W_LᵀW_L)^{L−1}) ≥ 1 and
  the gradient bound ‖∇_{W_L} R‖²_F ≥ 2R (eq. 4.8);
* Arora, Cohen, Golowich & Hu (ICLR 2019): δ-balancedness and the deficiency margin
  (Defs. 1-2, `_measures.balancedness` and `_measures.deficiency_margin`).

The measures of one network (its invariants, balancedness, deficiency margin, end-to-end
spectrum) live in `_measures`; this module gathers them with the proofs' own quantities
(`diagnostics`) and records them along a gradient-descent run (`trajectory`).

Padded networks. A network built from widths d_0..d_L sits in the top-left blocks of
`W: (L, D, D)` (see `_network.py`). Pass `widths=(d_0, …, d_L)` to every function that takes
it: layers beyond L = len(widths) − 1 (depth padding) are ignored, and a "minimum singular
value" of a d_r × d_c block is its min(d_r, d_c)-th largest singular value, so the zero
padding never shows up as a spurious σ_min = 0. Without `widths` the whole D × D array is
the network. The invariants and Frobenius norms need no special care: zero padding
contributes zero to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._learning_times import learning_times, plateaus
from ._measures import (
    balancedness,
    deficiency_margin,
    effective_rank,
    invariant_drift,
    invariants,
    kth_singular_value as _kth_singular,
    nuclear_norm,
    reconstruction_error,
    spectral_norm as _spectral_norm,
    true_layers as _layout,
    unobserved_error,
)
from ._models import OnModel, as_model, check_fits, check_params
from ._network import end_to_end, loss_and_grad
from ._objectives import (
    Completion,
    Whitened,
    as_objective,
    check_width,
    full_batch,
    is_objective,
    target_of,
)
from ._run import Settings, init_state, step
from ._sharpness import sharpness as _sharpness
from ._status import DIVERGED, RUNNING

Widths = Sequence[int] | None


# ---------------------------------------------------------------------------------------------
# The invariants from ZAS (Wu-Wang-Ma eq. 4.3; the invariants themselves are in `_measures`)
# ---------------------------------------------------------------------------------------------


def zas_invariant_gap(W: jax.Array, widths: Widths = None) -> jax.Array:
    """‖I + D_{L−1}‖₂, I the d_{L−1} × d_{L−1} identity: 0 along the flow from ZAS
    (there D_{L−1} = W_LᵀW_L − W_{L−1}W_{L−1}ᵀ = −I). 0 for depth 1 by convention."""
    W, ws = _layout(W, widths)
    if W.shape[0] < 2:
        return jnp.zeros((), W.dtype)
    D = W.shape[-1]
    eye = (jnp.arange(D) < ws[-2]).astype(W.dtype)
    return _spectral_norm(jnp.diag(eye) + invariants(W)[-1])


# ---------------------------------------------------------------------------------------------
# Singular values (Wu-Wang-Ma Lemma 4.4 / eq. 4.7)
# ---------------------------------------------------------------------------------------------


def sigma_min_lower(W: jax.Array, widths: Widths = None) -> jax.Array:
    """σ_min(W_{L−1:1}) over its true d_{L−1} × d_0 block (1 for depth 1: the empty product)."""
    W, ws = _layout(W, widths)
    if W.shape[0] < 2:
        return jnp.ones((), W.dtype)
    return _kth_singular(end_to_end(W[:-1]), min(ws[-2], ws[0]))


def zas_lambda_min(W: jax.Array, widths: Widths = None) -> jax.Array:
    """λ_min((I + W_LᵀW_L)^{L−1}) = (1 + σ_{d_{L−1}}(W_L)²)^{L−1}, over the d_{L−1}-dim space.

    From ZAS the invariants give W_{L−1:1}W_{L−1:1}ᵀ = (I + W_LᵀW_L)^{L−1} exactly, so this
    equals σ_min(W_{L−1:1})² along the flow and is ≥ 1 (Wu-Wang-Ma, proof of Theorem 4.1).
    """
    W, ws = _layout(W, widths)
    L = W.shape[0]
    s = _kth_singular(W[-1], ws[-2])  # 0 when d_L < d_{L−1}: W_LᵀW_L is then singular
    return (1.0 + s * s) ** (L - 1)


def end_to_end_singular_values(W: jax.Array, widths: Widths = None) -> jax.Array:
    """Singular values of W_{L:1}, largest first: `(min(d_L, d_0),)` with widths, else `(D,)`."""
    W, ws = _layout(W, widths)
    return jnp.linalg.svd(end_to_end(W), compute_uv=False)[: min(ws[-1], ws[0])]


# ---------------------------------------------------------------------------------------------
# Gradients (eq. 4.8)
# ---------------------------------------------------------------------------------------------


def layer_grad_norms(W: jax.Array, phi: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """‖∇_{W_l} R‖_F for l = 1..L, `(L,)`, of the (masked) whitened-loss gradient."""
    _, grad = loss_and_grad(W, phi)
    if mask is not None:
        grad = grad * mask
    return jnp.sqrt(jnp.sum(grad * grad, axis=(-2, -1)))


def last_layer_grad_ratio(W: jax.Array, phi: jax.Array, widths: Widths = None) -> jax.Array:
    """‖∇_{W_L} R‖²_F / R, the quantity bounded below by 2 in eq. (4.8) along the ZAS flow.

    ∇_{W_L} R = (W_{L:1} − Φ) W_{L−1:1}ᵀ, so the ratio is ≥ 2 σ_min(W_{L−1:1})² whenever
    d_{L−1} ≥ d_0. NaN where R = 0.
    """
    W, _ = _layout(W, widths)
    loss, grad = loss_and_grad(W, phi)
    g2 = jnp.sum(grad[-1] ** 2)
    return jnp.where(loss > 0, g2 / jnp.where(loss > 0, loss, 1.0), jnp.nan)


def saddle_loss(phi: jax.Array) -> jax.Array:
    """R at the saddle W_{L:1} = 0 (e.g. ZAS itself): ½‖Φ‖²_F."""
    return 0.5 * jnp.sum(phi * phi)


# ---------------------------------------------------------------------------------------------
# All of the above at once
# ---------------------------------------------------------------------------------------------


def diagnostics(W: jax.Array, phi, W0: jax.Array | None = None,
                widths: Widths = None, mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """A dict of every diagnostic of one network (pure; vmappable over W, W0, phi).

    `phi`: a target `(D, D)` (the whitened loss) or an objective (`_objectives`: `Whitened`,
    `Regression`, `Completion`, `Sensing`).

    Keys (shapes): `loss` (), `invariant_drift` () [needs W0, else omitted], `zas_gap` (),
    `balancedness` (), `sigma_min_lower` (), `zas_lambda_min` (), `end_to_end_sv` (r,),
    `effective_rank` (), `nuclear_norm` () [of W_{L:1}, `_measures`], `grad_norms` (L,);
    for the whitened loss also `grad_ratio_last` () and `deficiency_margin` () (the
    quantities of its convergence proofs); where a ground truth Φ is known (the whitened
    target, completion's, a sensing problem's given one) `reconstruction_error` ()
    = ‖W_{L:1} − Φ‖_F/‖Φ‖_F; for completion `unobserved_error` () (`_measures`).
    """
    whitened = not is_objective(phi) or isinstance(phi, Whitened)
    objective = full_batch(phi) if is_objective(phi) else Whitened(phi)
    target = target_of(objective)
    if whitened:
        out = {"loss": 0.5 * jnp.sum((end_to_end(_layout(W, widths)[0]) - target) ** 2)}
    else:
        loss, grad = objective.value_and_grad(W, jax.random.key(0), jnp.matmul)
        grad = grad if mask is None else grad * mask
        out = {"loss": loss}
    if W0 is not None:
        out["invariant_drift"] = invariant_drift(W, W0, widths)
    sv = end_to_end_singular_values(W, widths)
    out.update(
        zas_gap=zas_invariant_gap(W, widths),
        balancedness=balancedness(W, widths),
        sigma_min_lower=sigma_min_lower(W, widths),
        zas_lambda_min=zas_lambda_min(W, widths),
        end_to_end_sv=sv,
        effective_rank=effective_rank(sv),
        nuclear_norm=nuclear_norm(sv),
    )
    if whitened:
        out.update(
            grad_norms=layer_grad_norms(W, target, mask),
            grad_ratio_last=last_layer_grad_ratio(W, target, widths),
            deficiency_margin=deficiency_margin(W, target, widths),
        )
    else:
        out["grad_norms"] = jnp.sqrt(jnp.sum(grad * grad, axis=(-2, -1)))
    if target is not None:
        out["reconstruction_error"] = reconstruction_error(W, target, widths)
    if isinstance(objective, Completion):
        out["unobserved_error"] = unobserved_error(W, target, objective.observed, widths)
    return out


# ---------------------------------------------------------------------------------------------
# Saddle plateaus (Wu-Wang-Ma Fig. 3: escape time from the ZAS saddle)
# ---------------------------------------------------------------------------------------------


class Plateau(NamedTuple):
    """Iterations a recorded run spent near a saddle value.

    `length`: iterations with |R − R_s| ≤ rtol·R_s (and gradient norm ≤ grad_tol, if given);
    `start`: the first such iteration; `escape`: the iteration after the last one (the
    escape time); `start` and `escape` are −1 if the run never came near the saddle.
    """

    length: jax.Array
    start: jax.Array
    escape: jax.Array


def plateau(losses: jax.Array, saddle: jax.Array, grad_norms: jax.Array | None = None,
            rtol: float = 0.05, grad_tol: float | jax.Array | None = None,
            record_every: int = 1) -> Plateau:
    """Measure a saddle plateau in a recorded loss curve `losses: (n,)` (NaN entries, e.g.
    after a run finished, count as off the plateau).

    `saddle` is the loss at the saddle, e.g. `saddle_loss(phi)` = ½‖Φ‖²_F for W_{L:1} = 0.
    With `grad_norms: (n,)` a record counts only while the gradient is small as well:
    ‖∇R‖ ≤ grad_tol, by default 0.1·√(2R_s) = 0.1‖Φ‖_F for the default saddle. Records are
    `record_every` iterations apart; counts are returned in iterations.
    """
    saddle = jnp.asarray(saddle, losses.dtype)
    near = jnp.abs(losses - saddle) <= rtol * jnp.abs(saddle)
    if grad_norms is not None:
        tol = 0.1 * jnp.sqrt(2.0 * jnp.abs(saddle)) if grad_tol is None else grad_tol
        near = near & (grad_norms <= tol)
    n = losses.shape[0]
    idx = jnp.arange(n)
    any_ = jnp.any(near)
    first = jnp.where(any_, jnp.min(jnp.where(near, idx, n)), -1)
    last = jnp.where(any_, jnp.max(jnp.where(near, idx, -1)) + 1, -1)
    every = int(record_every)
    return Plateau(jnp.sum(near) * every, jnp.where(any_, first * every, -1),
                   jnp.where(any_, last * every, -1))


# ---------------------------------------------------------------------------------------------
# Diagnostics along a gradient-descent run
# ---------------------------------------------------------------------------------------------


#: Half-width of the band around 2/η that counts as "at the edge of stability": |λ_max − 2/η|
#: ≤ EOS_BAND · 2/η (Cohen, Kaur, Li, Kolter &
#: Talwalkar, ICLR 2021, see full-batch GD's sharpness hover just around 2/η).
EOS_BAND = 0.1


class EdgeOfStability(NamedTuple):
    """Options of `trajectory` for recording the sharpness λ_max(∇²R) against 2/η.

    `every`: steps between sharpness records, a multiple of the trajectory's `every`;
    `band`: half-width of the edge-of-stability band as a fraction of 2/η;
    `max_iters`, `rtol`: passed to `sharpness` (Lanczos steps, relative tolerance).
    """

    every: int = 1
    band: float = EOS_BAND
    max_iters: int = 32
    rtol: float | None = None


def edge_of_stability_summary(sharp: jax.Array, steps: jax.Array, status: jax.Array,
                              final_status: jax.Array, lr,
                              band: float = EOS_BAND) -> dict[str, jax.Array]:
    """Summarise λ_max recorded at `steps: (n,)` (`sharp: (n,)`, run status `status: (n,)` at
    each record, `final_status` () at the end of the run) against 2/η.

    Returns `two_over_lr` (), `eos_first_step` () — the first recorded step with λ_max > 2/η,
    −1 if none —, `eos_band_records` () — how many records had |λ_max − 2/η| ≤ band·2/η —,
    and `sharpness_exceeded_before_divergence` () — True iff the run ended DIVERGED and some
    record taken while it was still running had λ_max > 2/η (False for runs that did not
    diverge). NaN sharpness (a diverged W) counts as neither above nor in the band.
    """
    edge = 2.0 / jnp.asarray(lr, sharp.dtype)
    above = sharp > edge
    first = jnp.where(jnp.any(above), steps[jnp.argmax(above)], -1)
    in_band = jnp.abs(sharp - edge) <= band * edge
    diverged = final_status == DIVERGED
    before = jnp.any(above & (status == RUNNING))
    return {"two_over_lr": edge, "eos_first_step": first,
            "eos_band_records": jnp.sum(in_band).astype(jnp.int32),
            "sharpness_exceeded_before_divergence": diverged & before}


def trajectory(W0: jax.Array, phi, lr, n_steps: int, every: int = 1,
               mask: jax.Array | None = None, widths: Widths = None,
               settings: Settings = Settings(),
               sharpness: EdgeOfStability | None = None) -> dict[str, jax.Array]:
    """Run `n_steps` of gradient descent from `W0` with the core runner's `step`, on
    R = ½‖W_{L:1} − Φ‖²_F for a target `phi: (D, D)` or on the objective given in its place
    (`Whitened`, `Regression`, `Completion`, `Sensing`; its floating data cast to W0's
    dtype), and record `diagnostics(W_t, phi, W0)` at t = 0, every, 2·every, … (for
    completion and sensing these include the effective rank, nuclear norm and
    reconstruction error of W_{L:1}, and for completion the error off the observed entries).

    Returns the diagnostics dict with a leading `(n_steps // every + 1,)` axis, plus `step`
    (t of each record) and `status` (the runner's flag at that record; a run that diverged
    freezes, so its later records repeat the frozen W). `n_steps`, `every`, `widths`,
    `settings` and `sharpness` are static; `lr`, `W0`, `phi`, `mask` may be traced, so the
    function jits (`jax.jit(trajectory, static_argnames=("n_steps", "every", "widths",
    "settings", "sharpness"))`) and vmaps over learning rates, targets (objectives) and
    inits. Pure and unjitted.

    Also `learning_times` `(r,)`: the first record at which each singular value of W_{L:1}
    reaches half of its final value (`_learning_times.learning_times`), and the loss
    plateaus between those jumps, `plateau_start`, `plateau_end`, `plateau_loss` `(r + 1,)`
    (`_learning_times.plateaus`): the resolution is `every`.

    With `sharpness=EdgeOfStability(every=s)` (s a multiple of `every`) it also records the
    sharpness λ_max of the masked Hessian (`_sharpness.sharpness`, k = 1) at t = 0, s, 2s, …:
    `sharpness` `(n_steps // s + 1,)` (NaN once the run has diverged), `sharpness_converged`
    (same), `sharpness_step` (same), and the `edge_of_stability_summary` of it:
    `two_over_lr`, `eos_first_step`, `eos_band_records`,
    `sharpness_exceeded_before_divergence` (all scalars).
    """
    n_steps, every = int(n_steps), int(every)
    if n_steps < 0 or every < 1:
        raise ValueError(f"need n_steps >= 0 and every >= 1, got {n_steps} and {every}")
    if sharpness is not None:
        s_every = int(sharpness.every)
        if s_every < 1 or s_every % every:
            raise ValueError(f"sharpness.every must be a positive multiple of every={every}, "
                             f"got {sharpness.every}")
        if not sharpness.band > 0:
            raise ValueError(f"sharpness.band must be > 0, got {sharpness.band}")
    objective = as_objective(phi, W0.dtype)
    if is_objective(phi):
        check_width(objective, W0.shape[-1])
    mask = jnp.ones_like(W0) if mask is None else mask.astype(W0.dtype)
    lr = jnp.asarray(lr, W0.dtype)
    eps = jnp.zeros((), W0.dtype)  # never "converge": record the whole horizon
    max_iters = jnp.asarray(n_steps, jnp.int32)

    def record(state):
        return {**diagnostics(state.W, objective, W0, widths, mask), "status": state.status}

    def block(state, _):
        state = lax.fori_loop(
            0, every, lambda _, s: step(s, objective, mask, lr, eps, max_iters, settings), state)
        return state, record(state)

    def blocks(state, n):
        return lax.scan(block, state, None, length=n)

    state = init_state(W0, objective, lr, settings)
    first = record(state)
    n_records = n_steps // every
    if sharpness is None:
        _, rest = blocks(state, n_records)
    else:
        # Outer scan over sharpness records, inner scans over the diagnostics records between
        # them, so the Lanczos runs only where it is recorded (a `cond` would run it at every
        # record under vmap).
        ratio = s_every // every

        def measure(state):
            res = _sharpness(state.W, objective, mask=mask, max_iters=sharpness.max_iters,
                             rtol=sharpness.rtol)
            return res.max, res.converged

        def chunk(state, _):
            state, recs = blocks(state, ratio)
            return state, (recs, measure(state), state.status)

        state, (recs, sharp, s_status) = lax.scan(chunk, state, None,
                                                  length=n_records // ratio)
        recs = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), recs)
        _, tail = blocks(state, n_records % ratio)
        rest = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), recs, tail)
        lam0, ok0 = measure(init_state(W0, objective, lr, settings))
        s_status = jnp.concatenate([first["status"][None], s_status])
        # A diverged run's frozen W has no meaningful curvature (it may overflow).
        lam = jnp.where(s_status == DIVERGED, jnp.nan, jnp.concatenate([lam0[None], sharp[0]]))
        s_steps = s_every * jnp.arange(lam.shape[0])
    out = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    out["step"] = every * jnp.arange(n_records + 1)
    out.update(_learning(out["end_to_end_sv"], out["loss"], out["step"]))
    if sharpness is not None:
        out.update(sharpness=lam, sharpness_converged=jnp.concatenate([ok0[None], sharp[1]]),
                   sharpness_step=s_steps)
        out.update(edge_of_stability_summary(lam, s_steps, s_status, out["status"][-1], lr,
                                             sharpness.band))
    return out


def _learning(modes, losses, steps) -> dict:
    times = learning_times(modes, steps)
    p = plateaus(losses, times, steps)
    return dict(learning_times=times, plateau_start=p.start, plateau_end=p.end,
                plateau_loss=p.loss)


def learning_curve(params0, objective, lr, n_steps: int, every: int = 1, model=None,
                   settings: Settings = Settings()) -> dict[str, jax.Array]:
    """`n_steps` of gradient descent on any parametrization (`_models`: the stacked network
    by default, `Diagonal`, a name) and objective, recording every `every` steps what
    learning times follow: `step` `(T,)`, `loss` `(T,)`, `modes` `(T, k)` (singular values
    of the end-to-end matrix, or a diagonal network's β), `status` `(T,)`; then
    `learning_times` `(k,)` and the plateaus between them (`plateau_start`, `plateau_end`,
    `plateau_loss`, `(k + 1,)`), as in `trajectory`. The run records its whole horizon
    (ε = 0). Pure and unjitted: jit with `static_argnames=("n_steps", "every", "model",
    "settings")`; `lr`, `params0` and the objective's data may be traced (vmap over them)."""
    n_steps, every = int(n_steps), int(every)
    if n_steps < 0 or every < 1:
        raise ValueError(f"need n_steps >= 0 and every >= 1, got {n_steps} and {every}")
    model = as_model(model)
    check_params(model, params0)
    objective = as_objective(objective, params0.dtype)
    check_fits(model, objective)
    bound = OnModel(objective, model)
    mask = jnp.ones_like(params0)
    lr = jnp.asarray(lr, params0.dtype)
    eps = jnp.zeros((), params0.dtype)
    max_iters = jnp.asarray(n_steps, jnp.int32)

    def record(state):
        return state.loss, model.modes(state.W), state.status

    def block(state, _):
        state = lax.fori_loop(
            0, every, lambda _, s: step(s, bound, mask, lr, eps, max_iters, settings), state)
        # `state.loss` is R at the last evaluation, one step behind W: evaluate at W
        return state, record(state._replace(loss=bound.value_and_grad(
            state.W, state.key, jnp.matmul)[0]))

    state = init_state(params0, bound, lr, settings)
    first = record(state)
    _, rest = lax.scan(block, state, None, length=n_steps // every)
    loss, modes, status = (jnp.concatenate([a[None], b]) for a, b in zip(first, rest))
    steps = every * jnp.arange(n_steps // every + 1)
    return dict(step=steps, loss=loss, modes=modes, status=status,
                **_learning(modes, loss, steps))


__all__ = ["zas_invariant_gap", "sigma_min_lower", "zas_lambda_min",
           "end_to_end_singular_values", "layer_grad_norms", "last_layer_grad_ratio",
           "saddle_loss",
           "diagnostics", "Plateau", "plateau", "trajectory", "learning_curve",
           "EdgeOfStability", "EOS_BAND",
           "edge_of_stability_summary"]
