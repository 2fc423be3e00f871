"""Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro (COLT 2020,
arXiv:2002.09277), "Kernel and Rich Regimes in Overparametrized Models": the initialisation
scale α moves gradient descent on a diagonal linear network from the kernel regime (the
minimum-ℓ2 interpolant) to the rich regime (the minimum-ℓ1 interpolant), and depth makes
the move sharper.

The problem: sparse regression with fewer samples than features. Each seed draws (as the
sweep draws it, `LinearRegression.draw` from fold_in(key(seed), 2)) X: (n, d) with iid
N(0, 1) entries, a k-sparse β* with entries ±1 on a random support and noiseless labels
y = Xβ*. The model is the depth-L diagonal network (`Diagonal`)

    β = w₊^(L) ⊙ ⋯ ⊙ w₊^(1) − w₋^(L) ⊙ ⋯ ⊙ w₋^(1),   every entry of every layer α at t = 0,

so β(0) = 0 and each branch's product starts at α^L. The layers of a branch start equal and
receive equal gradients, so they stay equal: β = w₊^L − w₋^L, the paper's depth-D model
(their D is our L; at L = 2 our α is their α, w₊ = w₋ = α·1), whose GD with step η/L is
ours with step η. Gradient descent runs on R(β) = (1/2n)‖Xβ − y‖² (`LinearRegression`; the
limits below do not depend on the normalisation, a learning rate does).

What the paper says and what we measure:

* Depth 2 (their Theorem 1): gradient flow converges to argmin Q_α(β) subject to Xβ = y,
  Q_α(β) = α² Σ q(β_i/α²), which tends to the minimum-ℓ2 interpolant as α → ∞ and to the
  minimum-ℓ1 interpolant as α → 0. `diagonal_limit` solves that problem; each depth-2 GD
  limit is put beside it (`dist_to_limit`), a distance that should be O(η) (GD is not the
  flow: Even et al., NeurIPS 2023).
* Depth L > 2 (their depth-D analysis): the same two ends, with the rich end reached at
  polynomially small α rather than exponentially small, i.e. a transition that is sharper
  and sits at a larger α. We measure the test error ‖β − β*‖ (`beta_error`) against α per
  depth, the two ends' errors ‖β_ℓ1 − β*‖ and ‖β_ℓ2 − β*‖ (`min_l1_interpolant`,
  `min_l2_interpolant`, per seed), and per depth the transition α, where the error crosses
  the midpoint between the two ends, with its width (the α at 10 % and 90 % of the way).

Learning rates, honestly per run. The sharpness changes by orders of magnitude across α,
so each run gets its own step η = lr_scale / (an estimate of the largest Hessian eigenvalue
along its path), per (seed, depth, α): `sharpness`, the largest of the start's, where it is
a bound, and the Gauss–Newton part JᵀAJ (A = XᵀX/n, J = ∂β/∂w) at the two interpolants,
the ends of the run at small and at large α. With balanced layers near β that part is at
most (L/n)‖X diag(c) Xᵀ‖₂, c_i ≈ (|β_i| + 2α^L)^{2−2/L} (exact at β = 0; at depth 2 an
upper bound everywhere on the flow, where w₊w₋ = α²); at the start the residual adds at
most ‖∂R/∂β(0)‖∞ (L − 1)α^{L−2}, the norm of the Hessian of a product of L weights equal
to α. In the kernel regime the estimate is the true sharpness 2Lα^{2L−2}λ_max(A) times
2^{1−2/L} (1 at depth 2, 1.41 at depth 4); in the rich regime it is that of the sparse
end. A sweep's rates are keyed by (seed, depth) only, so the study runs one `Grid` per α,
all in one `SweepSpec` (one compiled program: the shapes are the same), each slice one
depth's seeds at one α.

Plateaus, reported rather than hidden. From small α the flow first waits on a plateau:
from β ≈ 0 the weights of coordinate i grow as ẇ = |g_i| w^{L−1}, g = ∂R/∂β(0), which
leaves the plateau after ln(1/α)/|g_i| at L = 2 but after α^{−(L−2)}/((L − 2)|g_i|) at
L > 2 — 10⁴/|g| in flow time at L = 3 and 5·10⁷/|g| at L = 4 from α = 10⁻⁴. Every run has
this prediction for its fastest coordinate (`plateau_iterations`, in steps η); runs
that cannot leave the plateau within `max_iters` end as `max-iters` at R ≈ R(0) and are
listed as such. Near the rich end the last stretch is also slow (the coordinates off β*'s
support hold weights ~α, and what is left of the residual lies partly in their span), so
some runs stop at `max_iters` with a small but not tiny loss. A run is `converged` when
R ≤ loss_tol·R(0); it is `fitted` when R ≤ fit_tol·R(0) (converged or not), and only
fitted runs enter the curves, medians over the fitted seeds, drawn hollow where a seed
did not reach loss_tol.

Outputs: `woodworth.csv` (one row per depth, α and seed: status, iterations, final loss,
‖β − β*‖, ‖β‖₁, support found, the ends' errors, at depth 2 `diagonal_limit`'s error and
the distance to it), `summary.json` (the curves, the transitions, the depth-2 distances,
every run that did not converge) and `woodworth.png`; the sweep itself (rows, final β) is
kept in `sweep/`, and the same command resumes it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections import defaultdict
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compilation import persistent_cache
from .._implicit_bias import diagonal_limit, min_l1_interpolant, min_l2_interpolant
from .._load import load_sweep
from .._objectives import LinearRegression
from .._plots import save, subplots
from .._sweep import Grid, SweepSpec, sweep
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = ("Woodworth et al. (COLT 2020): diagonal linear networks of depth 2-4, test "
               "error vs init scale alpha, from the min-l2 (kernel) to the min-l1 (rich) "
               "interpolant")

#: α of the full study: 4 per decade from 10⁻⁴ to 10 (21 values).
ALPHAS = tuple(float(f"{a:.3g}") for a in np.geomspace(1e-4, 10.0, 21))

COLUMNS = ("depth", "alpha", "seed", "lr", "status", "iterations", "steps", "final_loss",
           "loss_ratio", "fitted", "beta_error", "l1_norm", "support_found",
           "plateau_iterations", "l1_error", "l2_error", "limit_error", "dist_to_limit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    """Full: d = 100 features, n = 40 samples, a 5-sparse β*, depths 2, 3, 4, 21 values of α
    from 10⁻⁴ to 10, 8 seeds, up to 10⁵ steps, converged at R ≤ 10⁻⁸·R(0). Quick: 2 seeds,
    7 values of α from 10⁻³ to 10 (depth 4 cannot leave the plateau from 10⁻³ in its
    3·10⁴ steps: the study says so), converged at R ≤ 10⁻⁶·R(0).

    One threshold serves a grid (an α): converged means R ≤ loss_tol·R(0) of the seed with
    the smallest R(0), stricter for the others; `fitted` is each seed's own ratio."""

    dim: int = option(100, "d: features (the width of the diagonal network)")
    samples: int = option(40, "n: samples, n < d")
    sparsity: int = option(5, "k: nonzeros of β* (entries ±1)")
    depths: tuple[int, ...] = option((2, 3, 4), "comma list of depths L >= 2")
    alphas: tuple[float, ...] = option(ALPHAS, "comma list of init scales α (every weight "
                                               "starts at α)")
    seeds: int = option(8, "problems (X, β*) per depth and α: seeds 0..seeds-1")
    lr_scale: float = option(1.0, "η = lr_scale / the estimated sharpness (GD is "
                                  "unstable from 2 on)")
    loss_tol: float = option(1e-8, "converged: R <= loss_tol · min over seeds of R(0)")
    fit_tol: float = option(1e-4, "fitted (enters the curves): R <= fit_tol · R(0)")
    max_iters: int = option(100_000, "GD budget per run")

    QUICK = dict(alphas=(1e-3, 0.03, 0.1, 0.2, 0.4, 1.0, 10.0), seeds=2, loss_tol=1e-6,
                 max_iters=30_000)

    def check(self):
        _runner.check_at_least(self, 1, "dim", "samples", "sparsity", "seeds", "max_iters")
        _runner.check_depths(self, "depths")
        if min(self.depths) < 2:
            raise ValueError(f"depths must be >= 2 (depth 1 is linear regression: its "
                             f"limit is the minimum-ℓ2 interpolant at every α), got "
                             f"{self.depths}")
        if len(set(self.depths)) != len(self.depths):
            raise ValueError(f"depths must be distinct, got {self.depths}")
        if not self.samples < self.dim:
            raise ValueError(f"samples must be below dim (n < d: many interpolants), got "
                             f"n = {self.samples}, d = {self.dim}")
        if self.sparsity > self.dim:
            raise ValueError(f"sparsity must be at most dim = {self.dim}, got "
                             f"{self.sparsity}")
        _runner.check_positive(self, "alphas", "lr_scale", "loss_tol", "fit_tol")
        if len(self.alphas) < 2 or len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas must be at least two distinct values, got "
                             f"{self.alphas}")
        if not self.lr_scale < 2:
            raise ValueError(f"lr_scale must be below 2 (the stability limit), got "
                             f"{self.lr_scale}")
        if not self.loss_tol <= self.fit_tol < 1:
            raise ValueError(f"need loss_tol <= fit_tol < 1, got loss_tol = "
                             f"{self.loss_tol:g}, fit_tol = {self.fit_tol:g}")


# ---------------------------------------------------------------------------------------------
# The problems, as the sweep draws them, and their two ends
# ---------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One seed's regression: `X: (n, d)`, `y: (n,)`, `beta_star: (d,)`, R(0) = ‖y‖²/(2n),
    the interpolants `l1: (d,)`, `l2: (d,)` and `grad0 = Xᵀy/n` (−∂R/∂β at β = 0)."""

    X: np.ndarray
    y: np.ndarray
    beta_star: np.ndarray
    loss0: float
    l1: np.ndarray
    l2: np.ndarray
    grad0: np.ndarray


def base_grid(cfg: Config, lrs, alpha: float) -> Grid:
    """The sweep's grid at one α (every depth and seed); `lrs` as `Grid` takes them."""
    return Grid(model="diagonal", objective="linear-regression", dims=(cfg.dim,),
                depths=cfg.depths, seeds=tuple(range(cfg.seeds)), lrs=lrs,
                init_scale=(alpha,), samples=(cfg.samples,), sparsity=cfg.sparsity)


def draw(cfg: Config, seed: int) -> LinearRegression:
    """Seed `seed`'s regression exactly as the sweep draws it: `LinearRegression.draw` from
    fold_in(key(seed), 2) with the zero target a vector objective gets (`_sweep._programs`;
    the draw depends on the seed, not on the depth or α). `zasjax.sweep_problem` returns the
    same, but compiles the sweep's whole start program once more for it (5 s more than this
    on the loaded 2-core machine); `rows_of` checks the two agree through the sweep's own
    measure of ‖β − β*‖."""
    key = jax.random.fold_in(jax.random.key(seed), 2)
    return LinearRegression.draw(key, jnp.zeros(cfg.dim, jnp.float64), samples=cfg.samples,
                                 most_samples=cfg.samples, sparsity=cfg.sparsity)


def problems(cfg: Config) -> dict[int, Problem]:
    """Every seed's problem (`draw`), with its interpolants."""
    out = {}
    for s in range(cfg.seeds):
        obj = draw(cfg, s)
        X, y = np.asarray(obj.X, float), np.asarray(obj.y, float)
        out[s] = Problem(X, y, np.asarray(obj.beta_star, float),
                         float(y @ y) / (2 * cfg.samples), min_l1_interpolant(X, y),
                         min_l2_interpolant(X, y), X.T @ y / cfg.samples)
    return out


def gauss_newton(p: Problem, depth: int, alpha: float, beta: np.ndarray) -> float:
    """(L/n)‖X diag(c) Xᵀ‖₂, c_i = (|β_i| + 2α^L)^{2−2/L}: the largest eigenvalue of JᵀAJ
    (A = XᵀX/n, J = ∂β/∂w) at a point with balanced layers near β, as estimated in the
    module docstring."""
    c = (np.abs(beta) + 2 * alpha**depth) ** (2 - 2 / depth)
    return depth * float(np.linalg.eigvalsh((p.X * c) @ p.X.T / p.X.shape[0])[-1])


def sharpness(p: Problem, depth: int, alpha: float) -> float:
    """An estimate of the largest Hessian eigenvalue of R along the run from α: the largest
    of (i) the start's bound, the Gauss–Newton part at β = 0 plus the residual's part
    ‖g‖∞(L − 1)α^{L−2} (the Hessian of the product α^L of L weights has norm
    (L − 1)α^{L−2}; g = ∂R/∂β(0)), an upper bound there; (ii) the Gauss–Newton part at
    the two interpolants, the ends of the run at small and at large α."""
    g = float(np.abs(p.grad0).max())
    start = gauss_newton(p, depth, alpha, np.zeros_like(p.l2)) + g * (depth - 1) * alpha ** (
        depth - 2)
    return max(start, gauss_newton(p, depth, alpha, p.l1), gauss_newton(p, depth, alpha, p.l2))


def learning_rate(p: Problem, depth: int, alpha: float, cfg: Config) -> float:
    return cfg.lr_scale / sharpness(p, depth, alpha)


def plateau_time(p: Problem, depth: int, alpha: float) -> float:
    """Flow time for the fastest coordinate's weights to grow from α to 1 with the gradient
    held at its start, ẇ = |g| w^{L−1}: ln(1/α)/|g| at L = 2, (α^{−(L−2)} − 1)/((L − 2)|g|)
    above (0 from α ≥ 1: no plateau)."""
    g = float(np.abs(p.grad0).max())
    if alpha >= 1:
        return 0.0
    if depth == 2:
        return math.log(1 / alpha) / g
    return (alpha ** (2 - depth) - 1) / ((depth - 2) * g)


def grids(cfg: Config, probs: dict[int, Problem]) -> tuple[Grid, ...]:
    """One grid per α: every depth and seed, each (seed, depth) with its own η, one
    convergence threshold loss_tol · min_s R_s(0) (the strictest seed's)."""
    eps = cfg.loss_tol * min(p.loss0 for p in probs.values())
    out = []
    for a in cfg.alphas:
        lrs = {(s, L): (learning_rate(p, L, a, cfg),) for s, p in probs.items()
               for L in cfg.depths}
        out.append(dataclasses.replace(base_grid(cfg, lrs, a), eps=eps,
                                       max_iters=cfg.max_iters))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def gd_table(cfg: Config, probs: dict[int, Problem], folder: str):
    """The sweep (one grid per α) into `folder`, resumed if it holds one; its table with the
    final β of every run (`end_to_end`)."""
    spec = SweepSpec(grids=grids(cfg, probs), dtype="float64", chunk=5000,
                     max_batch=cfg.seeds, save=("end-to-end",))
    resume = os.path.exists(os.path.join(folder, "runs.csv"))
    sweep(spec, folder, resume=resume)
    return load_sweep(folder, arrays=True)


def rows_of(cfg: Config, probs: dict[int, Problem], table) -> list[dict]:
    """One row per run (`COLUMNS`), depth-major; at depth 2 beside `diagonal_limit`."""
    import pandas as pd

    limits = {}
    if 2 in cfg.depths:
        for s, p in probs.items():
            for a in cfg.alphas:
                limits[(s, a)] = diagonal_limit(p.X, p.y, a)
    rows = []
    for r in table.itertuples():
        s, L, a = int(r.seed), int(r.depth), float(r.init_scale)
        p = probs[s]
        beta = np.asarray(r.end_to_end, float)
        ratio = float(r.final_loss) / p.loss0
        error = float(np.linalg.norm(beta - p.beta_star))
        if np.isfinite(error) and not math.isclose(error, float(r.beta_error), rel_tol=1e-8,
                                                   abs_tol=1e-12):
            raise RuntimeError(f"seed {s}: the sweep measured ‖β − β*‖ = {r.beta_error}, "
                               f"the study's β* gives {error}: its problems are not the "
                               "sweep's (has the sweep's draw changed?)")
        row = dict(depth=L, alpha=a, seed=s, lr=float(r.lr), status=str(r.status),
                   iterations=None if pd.isna(r.iterations) else int(r.iterations),
                   steps=int(r.steps), final_loss=float(r.final_loss),
                   loss_ratio=ratio, fitted=bool(ratio <= cfg.fit_tol),
                   beta_error=error,
                   l1_norm=float(np.abs(beta).sum()), support_found=float(r.support_found),
                   plateau_iterations=plateau_time(p, L, a) / float(r.lr),
                   l1_error=float(np.linalg.norm(p.l1 - p.beta_star)),
                   l2_error=float(np.linalg.norm(p.l2 - p.beta_star)),
                   limit_error=None, dist_to_limit=None)
        if L == 2:
            lim = limits[(s, a)]
            row["limit_error"] = float(np.linalg.norm(lim - p.beta_star))
            row["dist_to_limit"] = float(np.linalg.norm(beta - lim))
        rows.append(row)
    rows.sort(key=lambda r: (r["depth"], r["alpha"], r["seed"]))
    return rows


# ---------------------------------------------------------------------------------------------
# What the runs show
# ---------------------------------------------------------------------------------------------


def _median(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(values)) if values else None


def curves(rows: list[dict]) -> list[dict]:
    """Per (depth, α): the median, min and max of ‖β − β*‖ over the fitted seeds, and how
    many seeds converged, were only fitted, or neither."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["depth"], r["alpha"])].append(r)
    out = []
    for (L, a), rs in sorted(groups.items()):
        fit = [r["beta_error"] for r in rs if r["fitted"]]
        out.append(dict(
            depth=L, alpha=a, seeds=len(rs), converged=sum(r["status"] == "converged"
                                                           for r in rs),
            fitted=len(fit), diverged=sum(r["status"] == "diverged" for r in rs),
            median_error=_median(fit), min_error=min(fit) if fit else None,
            max_error=max(fit) if fit else None,
            median_iterations=_median(r["iterations"] for r in rs),
            max_loss_ratio=max(r["loss_ratio"] for r in rs), lr=_median(r["lr"] for r in rs),
            median_limit_error=_median(r["limit_error"] for r in rs)))
    return out


def crossing(alphas, errors, level: float) -> float | None:
    """The first α (log-linear interpolation) where `errors`, in the order of increasing
    α, reaches `level` from below; None if it never does. Missing points (None) are
    skipped."""
    pts = [(math.log(a), e) for a, e in zip(alphas, errors) if e is not None]
    for (x0, e0), (x1, e1) in zip(pts, pts[1:]):
        if e0 < level <= e1:
            return float(math.exp(x0 + (level - e0) / (e1 - e0) * (x1 - x0)))
    return None


def transitions(rows: list[dict], table: list[dict], depths) -> dict:
    """Per depth: the α where the median error crosses the midpoint of the ends' median
    errors (and 10 % and 90 % of the way, the width in decades between them), and the
    same midpoint crossing seed by seed (each seed against its own ends)."""
    l1 = _median(r["l1_error"] for r in rows)
    l2 = _median(r["l2_error"] for r in rows)
    out = {}
    for L in depths:
        pts = [c for c in table if c["depth"] == L]
        alphas = [c["alpha"] for c in pts]
        errs = [c["median_error"] for c in pts]
        at = {q: crossing(alphas, errs, l1 + q * (l2 - l1)) for q in (0.1, 0.5, 0.9)}
        per_seed = []
        for s in sorted({r["seed"] for r in rows}):
            rs = sorted((r for r in rows if r["depth"] == L and r["seed"] == s),
                        key=lambda r: r["alpha"])
            mid = 0.5 * (rs[0]["l1_error"] + rs[0]["l2_error"])
            per_seed.append(crossing([r["alpha"] for r in rs],
                                     [r["beta_error"] if r["fitted"] else None for r in rs],
                                     mid))
        found = [a for a in per_seed if a is not None]
        width = (math.log10(at[0.9] / at[0.1]) if at[0.1] is not None and at[0.9] is not None
                 else None)
        out[L] = dict(alpha_mid=at[0.5], alpha_10=at[0.1], alpha_90=at[0.9],
                      width_decades=width, alpha_mid_per_seed=per_seed,
                      alpha_mid_seed_median=_median(found),
                      alpha_mid_seed_range=[min(found), max(found)] if found else None)
    return out


def ordered(values: list) -> bool | None:
    """Whether `values` increase strictly (None if one is missing)."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    return all(a < b for a, b in zip(values, values[1:]))


def depth2_limit(rows: list[dict]) -> dict | None:
    """Depth 2 beside `diagonal_limit`: per α the median and largest distance of the fitted
    runs, and the largest over all, absolute and relative to ‖β_ℓ2 − β_ℓ1‖'s scale (the
    ends' error gap)."""
    rs = [r for r in rows if r["depth"] == 2]
    if not rs:
        return None
    fit = [r for r in rs if r["fitted"]]
    per = []
    for a in sorted({r["alpha"] for r in rs}):
        d = [r["dist_to_limit"] for r in fit if r["alpha"] == a]
        per.append(dict(alpha=a, fitted=len(d), median_dist=_median(d),
                        max_dist=max(d) if d else None,
                        median_limit_error=_median(r["limit_error"] for r in rs
                                                   if r["alpha"] == a),
                        median_gd_error=_median(r["beta_error"] for r in fit
                                                if r["alpha"] == a)))
    gap = _median(r["l2_error"] - r["l1_error"] for r in rs)
    worst = max((r["dist_to_limit"] for r in fit), default=None)
    return dict(per_alpha=per, max_dist=worst, ends_gap=gap,
                max_dist_over_gap=None if worst is None else worst / gap,
                max_dist_converged=max((r["dist_to_limit"] for r in fit
                                        if r["status"] == "converged"), default=None))


def run(cfg: Config, files=None) -> Outcome:
    with persistent_cache():  # as the sweep's programs: a second run loads the draw's
        probs = problems(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(files.path("sweep")) if files is not None else os.path.join(tmp, "sweep")
        table = gd_table(cfg, probs, folder)
        rows = rows_of(cfg, probs, table)
    table = curves(rows)
    for c in table:
        err = "—" if c["median_error"] is None else f"{c['median_error']:.4g}"
        print(f"[woodworth] L={c['depth']} α={c['alpha']:<8g} η={c['lr']:.3g}: error {err} "
              f"({c['converged']}/{c['seeds']} converged, {c['fitted']} fitted, median "
              f"{c['median_iterations']} steps)", flush=True)
    trans = transitions(rows, table, cfg.depths)
    depths = sorted(cfg.depths)
    mids = [trans[L]["alpha_mid"] for L in depths]
    widths = [trans[L]["width_decades"] for L in depths]
    for L in depths:
        t = trans[L]
        print(f"[woodworth] L={L}: transition α {t['alpha_mid']} (10-90 %: "
              f"{t['alpha_10']} - {t['alpha_90']})", flush=True)
    unconverged = [dict(depth=r["depth"], alpha=r["alpha"], seed=r["seed"], status=r["status"],
                        loss_ratio=r["loss_ratio"], fitted=r["fitted"],
                        beta_error=r["beta_error"],
                        plateau_iterations=r["plateau_iterations"])
                   for r in rows if r["status"] != "converged"]
    summary = dict(
        paper="Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro, COLT "
              "2020 (arXiv:2002.09277), Theorem 1 (depth 2) and the depth-D model",
        setting=dict(
            dim=cfg.dim, samples=cfg.samples, sparsity=cfg.sparsity, magnitude=1.0,
            covariates="gaussian", noise=0.0, depths=cfg.depths, alphas=cfg.alphas,
            seeds=cfg.seeds, model="diagonal: β = Πw₊ − Πw₋, every weight α at t = 0",
            loss="R = (1/2n)‖Xβ − y‖²",
            lr="lr_scale / sharpness estimate (module docstring), per seed, depth and α",
            lr_scale=cfg.lr_scale, loss_tol=cfg.loss_tol, fit_tol=cfg.fit_tol,
            max_iters=cfg.max_iters),
        ends=dict(l1_error=_median(r["l1_error"] for r in rows),
                  l2_error=_median(r["l2_error"] for r in rows),
                  l2_error_range=[min(r["l2_error"] for r in rows),
                                  max(r["l2_error"] for r in rows)],
                  l1_error_max=max(r["l1_error"] for r in rows)),
        curves=table,
        transition={str(L): trans[L] for L in depths},
        deeper_transitions_later=ordered(mids),
        deeper_transitions_sharper=ordered([-w if w is not None else None for w in widths]),
        depth2_limit=depth2_limit(rows),
        runs=len(rows), converged=sum(r["status"] == "converged" for r in rows),
        fitted=sum(r["fitted"] for r in rows),
        diverged=sum(r["status"] == "diverged" for r in rows),
        not_converged=unconverged)
    return Outcome(summary, rows, COLUMNS, plot=dict(rows=rows, table=table, trans=trans,
                                                     depths=depths))


# ---------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------


def figure(outcome: Outcome, folder) -> None:
    """`woodworth.png`: ‖β − β*‖ against α (log x), one curve per depth (median over the
    fitted seeds, the band their range; hollow where a seed did not converge), the depth-2
    flow limit (`diagonal_limit`), the ℓ1 and ℓ2 interpolants' errors as lines and each
    depth's transition α — on a linear and on a log error axis; and at depth 2 each run's
    distance to `diagonal_limit`."""
    plot = outcome.plot
    rows, table, trans = plot["rows"], plot["table"], plot["trans"]
    ends = outcome.summary["ends"]
    fig, axes = subplots(1, 3, figsize=(17, 4.6))
    for ax, scale in zip(axes[:2], ("linear", "log")):
        for i, L in enumerate(plot["depths"]):
            colour = f"C{i}"
            pts = [c for c in table if c["depth"] == L and c["median_error"] is not None]
            a = np.array([c["alpha"] for c in pts])
            med = np.array([c["median_error"] for c in pts])
            ax.fill_between(a, [c["min_error"] for c in pts], [c["max_error"] for c in pts],
                            color=colour, alpha=0.2, lw=0)
            ax.plot(a, med, "-", color=colour, label=f"depth {L}")
            done = np.array([c["converged"] == c["seeds"] for c in pts], bool)
            ax.plot(a[done], med[done], "o", color=colour, ms=4)
            ax.plot(a[~done], med[~done], "o", mfc="none", color=colour, ms=5)
            mid = trans[L]["alpha_mid"]
            if mid is not None:
                ax.axvline(mid, color=colour, lw=0.8, ls=":")
        lim = [c for c in table if c["depth"] == 2 and c["median_limit_error"] is not None]
        if lim:
            ax.plot([c["alpha"] for c in lim], [c["median_limit_error"] for c in lim], "k--",
                    lw=1, label="depth-2 flow limit (diagonal_limit)")
        ax.axhline(ends["l2_error"], color="grey", lw=1,
                   label=f"min-ℓ2 interpolant ({ends['l2_error']:.3g})")
        ax.axhline(max(ends["l1_error"], 1e-16), color="grey", lw=1, ls="-.",
                   label=f"min-ℓ1 interpolant ({ends['l1_error']:.1g})")
        ax.set(xscale="log", yscale=scale, xlabel="init scale α", ylabel="‖β − β*‖",
               title=f"test error ({scale} axis; dotted: transition α)")
        if scale == "log":
            ax.set_ylim(bottom=max(1e-5, 0.3 * min(c["min_error"] for c in table
                                                   if c["min_error"] is not None)))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    cx = axes[2]
    two = [r for r in rows if r["depth"] == 2 and r["fitted"]]
    if two:
        cx.plot([r["alpha"] for r in two], [r["dist_to_limit"] for r in two], ".",
                color="C0", label="‖β_GD − β_limit‖ (each run)")
        cx.plot([r["alpha"] for r in two], [r["lr"] for r in two], "x", color="grey", ms=3,
                label="η of the run")
    cx.set(xscale="log", yscale="log", xlabel="init scale α",
           title="depth 2: GD limit vs diagonal_limit")
    cx.grid(True, which="both", alpha=0.3)
    cx.legend(fontsize=7)
    save(fig, f"{folder}/woodworth.png")
