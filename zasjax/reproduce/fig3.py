"""Figure 3 of Wu, Wang & Ma (NeurIPS 2019): escaping saddles, ZAS against near-identity.

Depth L = 6, target Φ = −I, step η = 0.01, width d = 25 (the paper does not state d; 25 is
Shamir's multi-dimensional setting). Gradient descent runs from ZAS and from five
near-identity initialisations (eq. (5.1)) in one vmapped call of the core runner.

Which saddles. Where k eigen-directions of W_{L:1} are stuck at 0 and the rest have
reached −1, R = k/2; so the saddle values are R_s = k/2, k = 1, …, d (k = d is W_{L:1} = 0,
ZAS's own starting point, where the gradient in W_L is nonetheless Φ ≠ 0). A near-identity
layer I + U_l has its eigenvalues within about 1/√L ≈ 0.41 of 1 (circular law for U_l), so
det W_l > 0 and det W_{L:1} > 0 at the start, while det(−I) = (−1)^d = −1 for odd d: at
least one real eigenvalue must pass through 0, and the run must cross the k = 1 saddle
value R = ½ (for even d a complex pair may circle round the origin instead). The crossing
is forced, its speed is not: how long a run lingers there depends on its seed.

The plateau detector (`_diagnostics.plateau`) is run for every saddle value with
* a band |R − k/2| ≤ δ, δ = 0.05 by default: a tenth of the spacing ½ between saddle
  values, so the bands are disjoint and a record belongs to at most one saddle;
* a small gradient, ‖∇R‖ ≤ 0.1·√(2R_s) (the detector's default): a hundred times below, in
  ‖∇R‖², the bound ‖∇_{W_L}R‖² ≥ 2R that eq. (4.8) guarantees along the ZAS path, so a
  record on a plateau is one where the Polyak-Łojasiewicz inequality behind Theorem 4.1
  visibly fails.
The gradient norm is not stored by the runner; it is read off the loss curve by the
first-order descent identity R(W_t) − R(W_{t+1}) = η‖∇R(W_t)‖² + O(η²): over a block of
`record_every` steps, ‖∇R‖² ≈ ΔR / (η·record_every) (its root-mean-square over the block).
On the plateaus this matches the exact ‖∇R‖ of `_diagnostics.trajectory` to 3-4 digits
and costs nothing, where recording the exact norms would double the run time.

Outputs: `summary.json`, `fig3.csv` (init, seed, iteration, loss, grad_norm every
`record_every` iterations while a run is going) and `fig3.png` (loss curves, log-y).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._diagnostics import plateau
from .._inits import make_init
from .._network import end_to_end
from .._plots import save, subplots
from .._run import run as gd_run
from .._status import name as status_name
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "Saddle escape at L = 6, Φ = −I, d = 25: ZAS vs 5 near-identity inits (Fig. 3)"

COLUMNS = ("init", "seed", "iteration", "loss", "grad_norm")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    """Quick keeps the paper's problem and cuts the budget; full gives the stuck runs
    200,000 updates (≈ 7× quick), enough to see the spread of escape times, at a few CPU
    minutes."""

    lr: float = option(0.01, "step size η (paper: 0.01)")
    depth: int = option(6, "depth L (paper: 6)")
    dim: int = option(25, "width d")
    seeds: int = option(5, "number of near-identity runs (paper: 5)")
    seed: int = option(0, "PRNG seed of the inits")
    eps: float = option(1e-10, "convergence threshold on R")
    max_iters: int = option(200_000, "update budget")
    record_every: int = option(50, "record R every k iterations")
    band: float = option(0.05, "plateau band |R − k/2| ≤ band around the saddle values, a "
                               "tenth of their spacing; must be < 0.25")
    dtype: Literal["float64", "float32"] = option(
        "float64", "float64 (needed to resolve R ≤ 1e-10) or float32")

    QUICK = dict(max_iters=30_000, record_every=10)

    def check(self):
        _runner.check_positive(self, "lr", "eps")
        _runner.check_at_least(self, 1, "depth", "dim", "seeds", "max_iters", "record_every")
        if not 0 < self.band < 0.25:
            raise ValueError(f"band must be in (0, 0.25) so the saddle bands stay disjoint, "
                             f"got {self.band}")


def saddle_values(dim: int) -> np.ndarray:
    """R at the saddles of R = ½‖W_{L:1} + I‖²_F reached with k directions stuck at 0: k/2."""
    return 0.5 * np.arange(1, dim + 1)


def descent_grad_norms(losses: jax.Array, lr, record_every: int = 1) -> jax.Array:
    """‖∇R‖ read off a GD loss curve `losses: (n,)` recorded every `record_every` steps:
    √(max(R_j − R_{j+1}, 0) / (η·record_every)), the root-mean-square gradient norm over
    block j by R(W_t) − R(W_{t+1}) = η‖∇R(W_t)‖² + O(η²). The last record (and any record
    followed by NaN) gets NaN. Returns `(n,)`."""
    drop = losses[:-1] - losses[1:]
    est = jnp.sqrt(jnp.maximum(drop, 0.0) / (lr * record_every))
    return jnp.concatenate([jnp.where(jnp.isnan(drop), jnp.nan, est),
                            jnp.full((1,), jnp.nan, losses.dtype)])


def saddle_plateaus(losses: jax.Array, grad_norms: jax.Array, saddles, band: float,
                    record_every: int = 1):
    """`plateau` at every saddle value R_s (band |R − R_s| ≤ `band`, default gradient test):
    a `Plateau` whose fields have a leading `(len(saddles),)` axis."""
    saddles = jnp.asarray(saddles, losses.dtype)
    return jax.vmap(lambda s: plateau(losses, s, grad_norms, rtol=band / s,
                                      record_every=record_every))(saddles)


def initial_spectrum(W0: np.ndarray) -> dict:
    """Sign of det W_{L:1} and the number of its positive real eigenvalues, at the start."""
    P = np.asarray(end_to_end(jnp.asarray(W0)))
    eig = np.linalg.eigvals(P)
    real = np.abs(eig.imag) <= 1e-9 * max(1.0, np.abs(eig).max())
    return dict(det_sign=int(np.sign(np.linalg.det(P))),
                positive_real_eigenvalues=int(np.sum(real & (eig.real > 0))))


def run(cfg: Config, files=None) -> Outcome:
    dtype = jnp.dtype(cfg.dtype)
    d, L, every = cfg.dim, cfg.depth, cfg.record_every
    widths = (d,) * (L + 1)
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.seeds)
    W0 = jnp.stack([make_init("zas", keys[0], widths, dtype=dtype)]
                   + [make_init("near-identity", k, widths, dtype=dtype) for k in keys])
    phi = -jnp.eye(d, dtype=dtype)
    labels = [("zas", None)] + [("near-identity", s) for s in range(cfg.seeds)]

    res = jax.vmap(lambda W: gd_run(W, phi, lr=cfg.lr, eps=cfg.eps,
                                    max_iters=cfg.max_iters, record_every=every))(W0)
    grads = jax.vmap(descent_grad_norms, in_axes=(0, None, None))(res.losses, cfg.lr, every)
    saddles = saddle_values(d)
    plats = jax.vmap(saddle_plateaus, in_axes=(0, 0, None, None, None))(
        res.losses, grads, saddles, cfg.band, every)
    res, grads, plats = jax.tree.map(np.asarray, (res, grads, plats))

    runs, rows = [], []
    for i, (init, seed) in enumerate(labels):
        length = plats.length[i]
        on = length > 0
        escaped = bool(res.final_loss[i] < saddles[0] - cfg.band)
        its = int(res.iterations[i])
        runs.append(dict(
            init=init, seed=seed, status=status_name(res.status[i]),
            iterations=its if its >= 0 else None, final_loss=float(res.final_loss[i]),
            escaped=escaped, plateau_length=int(length.sum()),
            plateau_lengths_by_saddle={f"{s:g}": int(n) for s, n in zip(saddles, length)
                                       if n > 0},
            plateau_saddle_loss=float(saddles[np.argmax(length)]) if on.any() else None,
            plateau_start=int(plats.start[i][on].min()) if on.any() else None,
            plateau_escape=(int(plats.escape[i][on].max()) if on.any() and escaped else None),
            **initial_spectrum(W0[i])))
        rec = res.losses[i]
        for j in np.flatnonzero(np.isfinite(rec)):
            rows.append(dict(init=init, seed=seed, iteration=int(j * every),
                             loss=float(rec[j]), grad_norm=float(grads[i, j])))

    zas, near = runs[0], runs[1:]
    summary = dict(
        paper="Wu, Wang & Ma (NeurIPS 2019), Section 5, Figure 3",
        paper_claim="ZAS converges without a plateau; near-identity runs get stuck at "
                    "saddles, 2 of 5 escaping within the plotted budget",
        lr=cfg.lr, depth=L, dim=d, target="-I", eps=cfg.eps, dtype=cfg.dtype,
        max_iters=cfg.max_iters, record_every=every, seed=cfg.seed,
        zas_iterations=zas["iterations"],
        iterations_near_identity=[r["iterations"] for r in near],
        plateau_length_zas=zas["plateau_length"],
        plateau_lengths_near_identity=[r["plateau_length"] for r in near],
        escaped_within_budget=sum(r["escaped"] for r in near),
        converged_within_budget=sum(r["iterations"] is not None for r in near),
        plateau_detector=dict(
            saddle_values="k/2, k = 1..d", band=cfg.band,
            grad_tol="0.1*sqrt(2*R_s)",
            grad_norm="sqrt(dR / (lr * record_every)) from the recorded loss"),
        runs=runs,
    )
    return Outcome(summary, rows, COLUMNS, plot=(labels, runs, res.losses, saddles, cfg))


def figure(outcome: Outcome, folder) -> None:
    """Loss curves, log-y (`fig3.png`)."""
    labels, runs, losses, saddles, cfg = outcome.plot
    every, L, d = cfg.record_every, cfg.depth, cfg.dim
    curves = {}
    for i, (init, seed) in enumerate(labels):
        r = runs[i]
        done = f"{r['iterations']} its" if r["iterations"] is not None else "not converged"
        name = "ZAS" if init == "zas" else f"near-identity #{seed}"
        t, loss = every * np.arange(losses.shape[1]), losses[i]
        if r["iterations"] is not None:  # end the line at R ≤ ε, between two records
            t, loss = np.append(t, r["iterations"]), np.append(loss, r["final_loss"])
            keep = t <= r["iterations"]
            t, loss = t[keep], loss[keep]
        curves[f"{name} ({done})"] = (t, loss)
    saddle_escape_curves(f"{folder}/fig3.png", curves, saddles=saddles[:3], eps=cfg.eps,
                         title=f"L = {L}, d = {d}, Φ = −I, η = {cfg.lr:g}")


def saddle_escape_curves(path, curves: dict, saddles=(), eps=None,
                         title: str = "Escaping saddles") -> None:
    """Loss against iteration (log-y), one line per run.

    `curves` maps a label to `(iterations, losses)`; a label starting with "ZAS" is drawn
    thick and black, the others thin. `saddles`: loss values of saddle plateaus (dotted
    lines, e.g. k/2 for Φ = −I); `eps`: the convergence threshold (dashed line).
    Non-positive or non-finite losses are not drawn.
    """
    fig, ax = subplots(figsize=(6.6, 4.4))
    for i, s in enumerate(saddles):
        ax.axhline(s, color="grey", lw=0.7, ls=":",
                   label=("saddle values " + ", ".join(f"{v:g}" for v in saddles)
                          if i == 0 else None))
    if eps is not None:
        ax.axhline(eps, color="grey", lw=0.7, ls="--", label=f"ε = {eps:g}")
    others = 0
    for label, (t, losses) in curves.items():
        y = np.asarray(losses, float)
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        if label.startswith("ZAS"):
            ax.plot(t, y, color="k", lw=2.2, label=label, zorder=3)
        else:
            ax.plot(t, y, color=f"C{others}", lw=1.0, alpha=0.9, label=label)
            others += 1
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("R = ½‖W_{L:1} − Φ‖²_F")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="center")
    save(fig, path)
