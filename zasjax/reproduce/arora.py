"""Arora, Cohen, Golowich & Hu (ICLR 2019, arXiv:1810.02281): balanced init, deficiency margin.

Scalar regression: Φ is a 1 × d_0 row with ‖Φ‖ = 1 (so σ_min(Φ) = 1), the network has widths
(d_0, d_0, …, d_0, 1) and depth N, and gradient descent runs on ℓ = ½‖W_{N:1} − Φ‖²_F
(whitened data). For every depth and initialisation we draw `--seeds` networks, vmap one run
over them, and record

* the deficiency margin c = σ_min(Φ) − ‖W_{N:1}(0) − Φ‖ (Definition 2) and the balancedness
  δ (Definition 1) at init, with `_theory.arora_conditions`;
* success: c > 0 at init AND ℓ ≤ ε within `--max-iters` steps;
* the measured linear rate −d log ℓ / dt (least-squares slope of log ℓ against t over the
  run, `fit_log_linear`) against the Theorem 1 bound η · c^{2(N−1)/N}.

Initialisations. `balanced` is Procedure 1 of the paper: A ~ N(0, s² I) of shape 1 × d_0,
its SVD split evenly across the layers (δ = 0). `gaussian` draws every layer iid
N(0, σ²) with σ chosen so that E‖W_{N:1}‖²_F = d_0 s², the balanced end-to-end scale
(σ = (d_0 s²)^{1/(2N)} / √d_0): same end-to-end size, but unbalanced. The default
s = ‖Φ‖ / d_0 puts A inside the ball ‖A − Φ‖ < ‖Φ‖ (margin > 0) with a probability that
does not shrink with d_0; `exact_margin_probability` gives it in closed form.

Theorem 1's step size η_max = c^{(4N−2)/N} / (6144 N³ ‖Φ‖^{(6N−4)/N}) is ~1e-8 here, far too
small to converge in any budget, so the success runs use the practical step `--lr-scale`/N;
the bound's rate formula is still evaluated at that η for comparison, and a separate check
runs `--theorem-steps` steps AT η_max on the margin-positive balanced seeds, where the
theorem applies, and reports max_t ℓ(t) / (ℓ(0) e^{−η c^{2(N−1)/N} t}) (≤ 1: bound held).

Outputs in `--out`: `summary.json` (per init and depth: success probability, margin-positive
fraction, converged fraction, median measured rate, median bound, theorem check),
`arora.csv` (one row per seed), `arora.png`.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._fits import fit_log_linear
from .._inits import make_init
from .._network import pad_square, support_mask
from .._plots import save, subplots
from .._run import run as gd_run
from .._status import CONVERGED, DIVERGED, name as status_name
from .._theory import arora_conditions
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = ("Arora et al. (ICLR 2019): balanced init + deficiency margin, success "
               "probability and linear rate vs depth, scalar regression")

INITS = ("balanced", "gaussian")
COLUMNS = ("init", "depth", "seed", "margin", "balancedness", "margin_positive", "status",
           "converged", "success", "iterations", "final_loss", "lr", "measured_rate",
           "bound_rate", "rate_ratio")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    depths: tuple[int, ...] = option((2, 4, 8, 16, 32), "comma list of depths N")
    seeds: int = option(128, "initialisations per (init, depth)")
    d0: int = option(20, "input dimension")
    inits: tuple[str, ...] = option(INITS, f"comma list from {', '.join(INITS)}")
    init_std: float | None = option(None, "s, std of the balanced end-to-end A (none: ‖Φ‖/d_0)")
    lr_scale: float = option(0.5, "practical step η = lr_scale / N")
    eps: float = option(1e-8, "success threshold on ℓ")
    max_iters: int = option(2000, "GD budget")
    theorem_seeds: int = option(8, "margin-positive balanced seeds run at Theorem 1's η_max")
    theorem_steps: int = option(1000, "steps of the η_max check")
    seed: int = option(0, "PRNG seed")

    QUICK = dict(depths=(2, 4, 8), seeds=100, max_iters=600, theorem_seeds=4,
                 theorem_steps=500)

    def check(self):
        _runner.check_depths(self, "depths")
        _runner.check_known(self, "inits", INITS)
        _runner.check_at_least(self, 1, "seeds", "max_iters", "theorem_steps")
        _runner.check_at_least(self, 0, "theorem_seeds")
        _runner.check_at_least(self, 2, "d0")  # scalar regression needs d_0 >= 2
        _runner.check_positive(self, "lr_scale", "eps")
        _runner.check_positive(self, "init_std", allow_none=True)

    @property
    def s(self) -> float:
        """Std of the balanced end-to-end matrix A (default ‖Φ‖/d_0 = 1/d_0)."""
        return self.init_std or 1.0 / self.d0


# ---------------------------------------------------------------------------------------------
# The problem and the initialisations
# ---------------------------------------------------------------------------------------------


def scalar_target(key: jax.Array, d0: int, dtype=None) -> jax.Array:
    """A unit-norm row Φ: (1, d_0), uniformly random direction."""
    phi = jax.random.normal(key, (1, d0), dtype)
    return phi / jnp.linalg.norm(phi)


def widths_for(depth: int, d0: int) -> tuple[int, ...]:
    """(d_0, d_0, …, d_0, 1): hidden widths d_0 ≥ min(d_0, d_N), as Theorem 1 needs."""
    return (d0,) * depth + (1,)


def matched_gaussian_std(depth: int, d0: int, s: float) -> float:
    """σ with E‖W_{N:1}‖²_F = d_0 s² for iid N(0, σ²) layers of widths (d_0, …, d_0, 1).

    E‖W_{N:1}‖²_F = d_0 ∏_l (d_l σ²) = d_0 · d_0^{N−1} σ^{2N}, and balanced gives E‖A‖² = d_0 s².
    """
    return (d0 * s * s) ** (1.0 / (2 * depth)) / math.sqrt(d0)


def init_batch(name: str, keys: jax.Array, depth: int, d0: int, s: float, dtype) -> jax.Array:
    """`(seeds, N, d_0, d_0)` initialisations, one per key."""
    widths = widths_for(depth, d0)
    scale = s if name == "balanced" else matched_gaussian_std(depth, d0, s)
    return jax.vmap(lambda k: make_init(name, k, widths, scale=scale, dtype=dtype))(keys)


def exact_margin_probability(d0: int, s: float, phi_norm: float = 1.0) -> float:
    """P(deficiency margin > 0) for the balanced init, scalar regression, in closed form.

    W_{N:1}(0) = A ~ N(0, s² I_{d_0}) whatever N is, and margin > 0 ⟺ ‖A − Φ‖ < ‖Φ‖, i.e.
    ‖A − Φ‖²/s², a noncentral χ² with d_0 degrees of freedom and noncentrality ‖Φ‖²/s², is
    below ‖Φ‖²/s². For s → 0 this tends to 1/2; with s = ‖Φ‖/d_0 it is ≈ P(Z > 1/2) ≈ 0.31.
    """
    from scipy.stats import ncx2

    lam = (phi_norm / s) ** 2
    return float(ncx2.cdf(lam, d0, lam))


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("widths",))
def _conditions(W0, phi_pad, widths):
    return jax.vmap(lambda W: arora_conditions(W, phi_pad, widths))(W0)


def _measured_rates(losses: np.ndarray, record_every: int = 1) -> np.ndarray:
    """−slope of log ℓ against t for every run (rows of `losses`), NaN after a run stopped."""
    t = np.arange(losses.shape[1]) * record_every
    return np.array([-fit_log_linear(t, row) for row in losses])


def _bound_ratio(losses: np.ndarray, lr: float, rate: np.ndarray) -> np.ndarray:
    """max_t ℓ(t) / (ℓ(0) exp(−η · rate · t)) per run (≤ 1: Theorem 1's bound held)."""
    t = np.arange(losses.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(losses) - np.log(losses[:, :1]) + lr * rate[:, None] * t[None, :]
    return np.exp(np.nanmax(log_ratio, axis=1))


def theorem_check(W0: jax.Array, phi_pad: jax.Array, widths: tuple[int, ...],
                  n_steps: int) -> dict:
    """Run GD at Theorem 1's own η_max from each `W0: (k, N, D, D)` (margin-positive, balanced)
    and compare the measured rate with the bound's η_max · c^{2(N−1)/N}."""
    cond = _conditions(W0, phi_pad, widths)
    lr = cond.lr_max
    mask = support_mask(widths, W0.shape[-1], W0.dtype)
    tiny = float(jnp.finfo(W0.dtype).tiny)
    res = jax.vmap(lambda W, eta: gd_run(W, phi_pad, lr=eta, mask=mask, eps=tiny,
                                      max_iters=n_steps))(W0, lr)
    losses = np.asarray(res.losses, float)
    lr, rate = np.asarray(lr, float), np.asarray(cond.rate, float)
    measured = _measured_rates(losses)
    t = np.arange(losses.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = (np.log(losses) - np.log(losses[:, :1])
                     + (lr * rate)[:, None] * t[None, :])
    return dict(seeds=int(W0.shape[0]), steps=int(n_steps),
                lr_max=[float(v) for v in lr], holds=[bool(v) for v in np.asarray(cond.holds)],
                measured_rate=[float(v) for v in measured],
                bound_rate=[float(v) for v in lr * rate],
                min_rate_ratio=float(np.min(measured / (lr * rate))),
                max_loss_over_bound=float(np.exp(np.nanmax(log_ratio))))


def study_one(name: str, depth: int, cfg: Config, phi: jax.Array, key: jax.Array) -> tuple:
    """All seeds of one (init, depth): per-seed rows and the summary entry."""
    d0, dtype, s = cfg.d0, phi.dtype, cfg.s
    widths = widths_for(depth, d0)
    keys = jax.random.split(key, cfg.seeds)
    W0 = init_batch(name, keys, depth, d0, s, dtype)
    phi_pad = pad_square(phi, d0)
    cond = _conditions(W0, phi_pad, widths)
    lr = cfg.lr_scale / depth
    mask = support_mask(widths, d0, dtype)
    res = jax.vmap(lambda W: gd_run(W, phi_pad, lr=lr, mask=mask, eps=cfg.eps,
                                 max_iters=cfg.max_iters))(W0)
    losses = np.asarray(res.losses, float)
    margin = np.asarray(cond.margin, float)
    positive = margin > 0
    status = np.asarray(res.status)
    converged = status == CONVERGED
    success = positive & converged
    measured = _measured_rates(losses)
    bound = lr * np.asarray(cond.rate, float)  # η c^{2(N−1)/N}, 0 where c ≤ 0
    ratio_bound = _bound_ratio(losses, lr, np.asarray(cond.rate, float))
    rows = [dict(init=name, depth=depth, seed=i, margin=float(margin[i]),
                 balancedness=float(cond.delta[i]), margin_positive=bool(positive[i]),
                 status=status_name(status[i]), converged=bool(converged[i]),
                 success=bool(success[i]),
                 iterations=int(res.iterations[i]), final_loss=float(res.final_loss[i]), lr=lr,
                 measured_rate=float(measured[i]),
                 bound_rate=float(bound[i]) if positive[i] else float("nan"),
                 rate_ratio=float(measured[i] / bound[i]) if positive[i] else float("nan"))
            for i in range(cfg.seeds)]
    ok = success
    entry = dict(
        init=name, depth=depth, seeds=int(cfg.seeds), lr=lr,
        init_std_end_to_end=s,
        layer_std=None if name == "balanced" else matched_gaussian_std(depth, d0, s),
        success_probability=float(success.mean()),
        margin_positive_fraction=float(positive.mean()),
        converged_fraction=float(converged.mean()),
        diverged_fraction=float((status == DIVERGED).mean()),
        converged_given_margin=float(converged[positive].mean()) if positive.any() else None,
        median_balancedness=float(np.median(np.asarray(cond.delta))),
        conditions_hold_fraction=float(np.asarray(cond.holds).mean()),
        median_iterations=float(np.median(np.asarray(res.iterations)[ok])) if ok.any() else None,
        median_measured_rate=float(np.median(measured[ok])) if ok.any() else None,
        median_bound_rate=float(np.median(bound[ok])) if ok.any() else None,
        min_rate_ratio=float(np.min(measured[ok] / bound[ok])) if ok.any() else None,
        bound_held_fraction=float(np.mean(ratio_bound[ok] <= 1 + 1e-9)) if ok.any() else None,
        median_lr_max=float(np.median(np.asarray(cond.lr_max)[positive]))
        if positive.any() else None,
    )
    if name == "balanced":
        pick = np.flatnonzero(positive)[: cfg.theorem_seeds]
        if pick.size and cfg.theorem_seeds > 0:
            entry["theorem_check"] = theorem_check(W0[pick], phi_pad, widths,
                                                   cfg.theorem_steps)
    return rows, entry


def run(cfg: Config, files=None) -> Outcome:
    # float64 (the runner's default): rates at η_max ~ 1e-8 need it.
    key = jax.random.key(cfg.seed)
    phi = scalar_target(jax.random.fold_in(key, 10_000), cfg.d0, jnp.dtype(cfg.dtype))
    s = cfg.s
    rows, entries = [], []
    for name in cfg.inits:
        for depth in cfg.depths:
            r, e = study_one(name, depth, cfg, phi, jax.random.fold_in(key, depth))
            rows += r
            entries.append(e)
            print(f"[arora] {name:>8} N={depth:>3}: success {e['success_probability']:.2f}  "
                  f"margin>0 {e['margin_positive_fraction']:.2f}  converged "
                  f"{e['converged_fraction']:.2f}  rate {e['median_measured_rate']}  "
                  f"bound {e['median_bound_rate']}", flush=True)
    summary = dict(
        paper="Arora, Cohen, Golowich & Hu, ICLR 2019 (arXiv:1810.02281), Theorem 1",
        setting=dict(d0=cfg.d0, d_out=1, phi_norm=1.0, init_std=s,
                     lr="lr_scale / N", lr_scale=cfg.lr_scale, eps=cfg.eps,
                     max_iters=cfg.max_iters, seeds=cfg.seeds, depths=cfg.depths,
                     inits=cfg.inits),
        bound="ℓ(t) ≤ ℓ(0)·exp(−η c^{2(N−1)/N} t) for η ≤ c^{(4N−2)/N}/(6144 N³ ‖Φ‖^{(6N−4)/N}) "
              "and δ ≤ c²/(256 N³ ‖Φ‖^{2(N−1)/N})",
        exact_margin_probability_balanced=exact_margin_probability(cfg.d0, s),
        results=entries)
    return Outcome(summary, rows, COLUMNS, plot=entries)


def figure(outcome: Outcome, folder) -> None:
    """Success probability and rates against depth (`arora.png`)."""
    success_and_rate(outcome.plot, f"{folder}/arora.png",
                     exact=outcome.summary["exact_margin_probability_balanced"])


def success_and_rate(entries, path, exact: float | None = None) -> None:
    """(left) success probability and margin-positive fraction vs depth, one colour per
    init, with the closed-form P(margin > 0) of the balanced init; (right) median measured
    linear rate −d log ℓ/dt against the Theorem 1 bound η c^{2(N−1)/N}."""
    fig, (ax, bx) = subplots(1, 2, figsize=(11, 4.2))
    inits = sorted({e["init"] for e in entries})
    for i, name in enumerate(inits):
        es = sorted((e for e in entries if e["init"] == name), key=lambda e: e["depth"])
        depths = [e["depth"] for e in es]
        colour = f"C{i}"
        ax.plot(depths, [e["success_probability"] for e in es], "o-", color=colour,
                label=f"{name}: success (c > 0 and converged)")
        ax.plot(depths, [e["margin_positive_fraction"] for e in es], "s--", color=colour,
                alpha=0.6, label=f"{name}: margin c > 0 at init")
        pts = [(e["depth"], e["median_measured_rate"], e["median_bound_rate"]) for e in es
               if e.get("median_measured_rate") is not None]
        if pts:
            d, m, b = zip(*pts)
            bx.plot(d, m, "o-", color=colour, label=f"{name}: measured")
            held = any(e.get("conditions_hold_fraction", 1.0) > 0 for e in es)
            bx.plot(d, b, "v:", color=colour, label=f"{name}: bound η c^(2(N−1)/N)"
                    + ("" if held else " (δ too large: formula only)"))
    if exact is not None:
        ax.axhline(exact, color="k", lw=0.8, ls=":",
                   label=f"exact P(c > 0), balanced = {exact:.3f}")
    ax.set_xlabel("depth N")
    ax.set_ylabel("fraction of seeds")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Scalar regression: success probability")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    bx.set_xlabel("depth N")
    bx.set_ylabel("linear rate per step (median over successes)")
    bx.set_yscale("log")
    bx.set_title("Measured rate vs Theorem 1 bound (same η)")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend(fontsize=7)
    save(fig, path)
