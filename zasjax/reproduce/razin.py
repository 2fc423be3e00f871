"""Razin & Cohen (NeurIPS 2020, arXiv:2005.06398), "Implicit Regularization in Deep Learning
May Not Be Explainable by Norms": the 2 × 2 completion where every norm diverges.

The problem (their Sec. 3; noamrazin/imp_reg_dl_not_norms, dmf_data_generator.py's custom
target and data/dmf/completion_2x2_w_1_1_0.pt): observe W_12 = 1, W_21 = 1, W_22 = 0 and
leave W_11 unobserved. Every solution [[x, 1], [1, 0]] has determinant −1, so from an
initial end-to-end matrix with det W_{L:1}(0) > 0 gradient flow cannot reach one while the
determinant keeps its sign — which it does on a balanced factorization, whose singular
values move as σ̇ ∝ σ^{2−2/L} and so never reach 0. On that branch the loss still tends to
0, but only along X = [[x, 1 + a], [1 + b, c]] with xc > (1 + a)(1 + b): with
R = ½(a² + b² + c²),

    |x| ≥ (1 − √(2R))² / √(2R) → ∞   as R → 0,

so |W_11|, and with it every norm and quasi-norm of W_{L:1}, grows without bound while the
smaller singular value σ_2 = det/σ_1 → 0 and the effective rank → 1: the implicit
regularization lowers rank and raises norms. That is their Theorem 1; their experiments
(their Figure 2; `dmf_multiple_experiments_runner.py`: depth 3, iid N(0, α²) layers, α =
8·10⁻³, resampled until det W_{L:1}(0) > 0, full-batch GD with η = 5·10⁻³ on the mean squared
error of the 3 observations, up to 5·10⁶ steps or loss ≤ 10⁻⁴; plots for depths 2, 3, 4)
show |W_11| growing as the loss falls.

Here: gradient descent on R = ½ Σ_observed r² (`Completion`; their loss is (2/3)·R, so their
η is our 2η/3), from both
* `gaussian`: their default, iid N(0, α²) layers (α = `init_stds`), and
* `balanced`: their `use_balanced_init`, an end-to-end A with iid N(0, s²) entries split
  evenly across the layers (Arora et al.'s Procedure 1), with s = α^L·2^{(L−1)/2}, the
  entry scale of a product of L iid 2 × 2 layers of std α, so both inits start at the same
  size and differ only in balancedness;
each redrawn until det W_{L:1}(0) > 0 (one draw per seed, shared by every α: scaling the
layers keeps the sign). All runs (inits × depths × α × seeds) are one vmapped
`_diagnostics.trajectory`, depth as data (identity layers under a zero mask). It records
the loss, the singular values (hence the nuclear and Frobenius norms and the Schatten-½
quasi-norm), the effective rank and the reconstruction error against Φ = [[0, 1], [1, 0]]
(the unobserved value set to 0, which R never reads), from which |W_11| follows exactly:
‖W_{L:1} − Φ‖²_F = W_11² + 2R. (The trajectory records no matrix entries.)

Summary per run (`run_summary`): the values at the start, at their stopping point (MSE ≤
`loss_tol`, the `horizon`) and at the end; where each norm stops decreasing and the
effective rank stops increasing; whether the run is still on det > 0 (certified by the
bound: below it, det ≤ 0); and the claim — every norm non-decreasing from MSE ≤
`growth_from` to the stop, effective rank within `erank_tol` of 1 there.

What the runs show (REPRODUCTION.md has the numbers). On det > 0 the claim holds at every
depth and init, and every run reaches their stop at |W_11| = 57.7 ≈ 1/√(2R), the bound
itself. Two ways off the branch: iid Gaussian layers are far from balanced near the origin
(unbalancedness ~α², end-to-end matrix ~α^L), and the determinant changes sign — at depth 2
in the first steps, at depth 3 from the largest α after a long stretch on the branch; and
at depth 2 even a balanced run loses it, because σ_2 decays exponentially there
(σ̇ ∝ σ^{2−2/L} = σ) down to the rounding of σ_1 (~10⁻¹⁵ in float64) within a few thousand
steps, after which its sign is noise — a tenfold smaller η only delays it, float32 makes it
sooner. Such a run fits the observations exactly (det = −1, finite norms). Separately, GD's own
limit: the sharpness on the branch is σ_1^{2−2/L}, so with their η the iterates cannot
follow the flow beyond |W_11| = (2/η)^{L/(2L−2)} (71 at depth 4, 121 at depth 3 in our
units): depth 4 reaches it after their stopping point and then creeps at the edge of
stability, its norms no longer monotone (`norms_nondecreasing_after_stop`).

Outputs: `razin.csv` (about 300 log-spaced records per run), `summary.json`, `razin.png`.
"""

from __future__ import annotations

import dataclasses
import itertools
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._diagnostics import trajectory
from .._objectives import Completion
from .._plots import save, subplots
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = ("Razin & Cohen (NeurIPS 2020): 2x2 completion, GD drives the effective rank to "
               "1 while every norm grows without bound")

INITS = ("gaussian", "balanced")
#: Observed W_12 = 1, W_21 = 1, W_22 = 0; W_11 unobserved (its value here, 0, is never read).
PHI = ((0.0, 1.0), (1.0, 0.0))
OBSERVED = ((False, True), (True, True))
N_OBSERVED = 3
NORMS = ("nuclear_norm", "frobenius_norm", "schatten_half", "spectral_norm")
COLUMNS = ("init", "depth", "init_std", "seed", "step", "loss", "mse", "unobserved_abs",
           "effective_rank", *NORMS, "abs_det")
BRANCH = {True: "det > 0", False: "crossed to det < 0", None: "not escaped"}
#: Candidate draws per run for det W_{L:1}(0) > 0 (each has probability about ½).
CANDIDATES = 32


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    """Full: their step, budget and depths, three init scales around theirs, both inits.
    Quick: depths 2 and 3, two scales, 2·10⁵ steps, the stopping point at MSE ≤ 10⁻³ (depth
    3 reaches 10⁻⁴ only after about 10⁶ steps)."""

    depths: tuple[int, ...] = option((2, 3, 4), "comma list of depths L >= 2")
    inits: tuple[str, ...] = option(INITS, f"comma list from {', '.join(INITS)}")
    init_stds: tuple[float, ...] = option((3e-3, 8e-3, 3e-2),
                                          "α: std of each iid layer (balanced: matched)")
    seeds: int = option(1, "initialisations per (init, depth, α)")
    lr: float = option(5e-3, "η on their loss, the mean of the 3 squared residuals (ours: "
                             "2η/3 on R = ½ Σ r²)")
    n_steps: int = option(5_000_000, "GD steps (their epoch budget)")
    record_every: int = option(500, "record every k steps")
    loss_tol: float = option(1e-4, "their stopping rule: mean squared error <= this")
    growth_from: float = option(1e-2, "norms must not decrease from MSE <= this to the stop")
    erank_tol: float = option(0.05, "effective rank within this of 1 counts as rank one")
    seed: int = option(0, "PRNG seed")
    dtype: Literal["float64", "float32"] = option(
        "float64", "float64, or float32 (whose rounding floor a depth-2 σ_2 reaches sooner)")

    QUICK = dict(depths=(2, 3), init_stds=(8e-3, 3e-2), n_steps=200_000, record_every=100,
                 loss_tol=1e-3)

    def check(self):
        _runner.check_known(self, "inits", INITS)
        _runner.check_depths(self, "depths")
        if min(self.depths) < 2:
            raise ValueError(f"depths must be >= 2 (depth 1 fits the observations and "
                             f"stops), got {self.depths}")
        _runner.check_positive(self, "init_stds", "lr", "loss_tol", "growth_from", "erank_tol")
        if not self.loss_tol < self.growth_from:
            raise ValueError(f"growth_from ({self.growth_from:g}) must be above loss_tol "
                             f"({self.loss_tol:g})")
        _runner.check_at_least(self, 1, "seeds", "n_steps", "record_every")
        if self.record_every > self.n_steps:
            raise ValueError(f"record_every ({self.record_every}) must be at most n_steps "
                             f"({self.n_steps})")

    @property
    def our_lr(self) -> float:
        """Their η on (1/3) Σ r² is 2η/3 on R = ½ Σ r² (same step: ∇ theirs = (2/3) ∇R)."""
        return 2 * self.lr / N_OBSERVED


def objective(dtype) -> Completion:
    return Completion(jnp.asarray(PHI, dtype), jnp.asarray(OBSERVED))


def end_to_end_scale(init: str, depth: int, alpha: float) -> float:
    """The init's `scale`: α per layer (gaussian), or the matched end-to-end entry std
    α^L·2^{(L−1)/2} (balanced)."""
    return alpha if init == "gaussian" else alpha**depth * 2 ** ((depth - 1) / 2)


# ---------------------------------------------------------------------------------------------
# Initialisations with det W_{L:1}(0) > 0
# ---------------------------------------------------------------------------------------------


def layers(init: str, z: np.ndarray, depth: int, scale: float) -> np.ndarray:
    """`(L, 2, 2)` layers of `init` from standard normals `z: (L + 1, 2, 2)`.

    gaussian: W_l = scale · z_l (iid N(0, scale²) entries: `make_init("gaussian", scale=α)`).
    balanced: A = scale · z_0 = U diag(σ) Vᵀ split as W_l = Q_l diag(σ^{1/L}) Q_{l−1}ᵀ with
    Q_0 = V, Q_L = U and Q_1..Q_{L−1} Haar-orthogonal (QR of z_l, signs fixed), so that
    W_{L:1} = A and W_{l+1}ᵀW_{l+1} = W_lW_lᵀ: Arora et al.'s Procedure 1,
    `make_init("balanced", scale=s)`. (Drawn on the host: a few 2 × 2 matrices, where a
    compiled draw would cost more than all the steps of the quick study.)
    """
    if init == "gaussian":
        return scale * z[:depth]
    U, sigma, Vt = np.linalg.svd(scale * z[0])
    Qs = [Vt.T]
    for j in range(1, depth):
        q, r = np.linalg.qr(z[j])
        Qs.append(q * np.sign(np.diag(r)))
    Qs.append(U)
    root = np.diag(sigma ** (1.0 / depth))
    return np.stack([Qs[j + 1] @ root @ Qs[j].T for j in range(depth)])


def product(W: np.ndarray) -> np.ndarray:
    """W_{L:1} = W_L ⋯ W_1 of `(L, 2, 2)` layers (layer 1 first)."""
    X = np.eye(2)
    for w in W:
        X = w @ X
    return X


def runs_of(cfg: Config) -> list[dict]:
    return [dict(init=i, depth=L, init_std=a, seed=s) for i, L, a, s in itertools.product(
        cfg.inits, cfg.depths, cfg.init_stds, range(cfg.seeds))]


def initial_weights(cfg: Config, runs: list[dict]) -> np.ndarray:
    """`(runs, C, 2, 2)`, C = max depth, identity layers above each run's depth: for each run
    the first of `CANDIDATES` draws (normals from default_rng((seed, s, j)), shared by both
    inits, every depth and every α: scaling the layers keeps the sign) whose end-to-end
    matrix has det > 0 — their `enforce_pos_det`."""
    C = max(cfg.depths)
    out = np.tile(np.eye(2), (len(runs), C, 1, 1))
    for i, r in enumerate(runs):
        scale = end_to_end_scale(r["init"], r["depth"], r["init_std"])
        for j in range(CANDIDATES):
            z = np.random.default_rng((cfg.seed, r["seed"], j)).standard_normal((C + 1, 2, 2))
            W = layers(r["init"], z, r["depth"], scale)
            if np.linalg.det(product(W)) > 0:
                out[i, : r["depth"]] = W
                break
        else:  # probability about 2^-32
            raise RuntimeError(f"no draw of {CANDIDATES} had det W_{{L:1}}(0) > 0: {r}")
    return out


# ---------------------------------------------------------------------------------------------
# The trajectories and what they show
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_steps", "every"))
def _trajectories(W0, masks, lr, n_steps, every):
    obj = objective(W0.dtype)
    keep = ("loss", "end_to_end_sv", "effective_rank", "nuclear_norm", "reconstruction_error",
            "step")

    def one(W, mask):
        out = trajectory(W, obj, lr, n_steps, every, mask=mask)
        return {k: out[k] for k in keep}

    return jax.vmap(one)(W0, masks)


def measured(out: dict) -> dict[str, np.ndarray]:
    """Per record: the loss R, their MSE = 2R/3, |W_11| from ‖W − Φ‖²_F = W_11² + 2R
    (‖Φ‖²_F = 2), the norms from the singular values, the effective rank, |det| = σ_1σ_2."""
    sv = np.asarray(out["end_to_end_sv"], float)
    loss = np.asarray(out["loss"], float)
    rec = np.asarray(out["reconstruction_error"], float)
    return dict(
        step=np.asarray(out["step"]), loss=loss, mse=2 * loss / N_OBSERVED,
        unobserved_abs=np.sqrt(np.maximum(2 * rec**2 - 2 * loss, 0.0)),
        effective_rank=np.asarray(out["effective_rank"], float),
        nuclear_norm=np.asarray(out["nuclear_norm"], float),
        frobenius_norm=np.sqrt((sv**2).sum(-1)), schatten_half=np.sqrt(sv).sum(-1) ** 2,
        spectral_norm=sv[..., 0], abs_det=sv.prod(-1))


def lower_bound(loss: np.ndarray) -> np.ndarray:
    """(1 − √(2R))²/√(2R): |W_11| on the det > 0 branch is above it (module docstring);
    NaN where R ≥ ½."""
    r = np.sqrt(2 * np.asarray(loss, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r < 1, (1 - r) ** 2 / r, np.nan)


def monotone_from(x: np.ndarray, steps: np.ndarray, increasing: bool = True) -> int:
    """The first recorded step from which `x` never decreases (never increases), to a
    relative 1e-12."""
    d = np.diff(x) if increasing else -np.diff(x)
    bad = np.flatnonzero(d < -1e-12 * np.abs(x[1:]))
    return int(steps[0] if bad.size == 0 else steps[bad[-1] + 1])


def run_summary(m: dict, depth: int, cfg: Config) -> dict:
    """One run's summary from its records `m` (see `measured`).

    Their runs end at the stopping point (MSE ≤ `loss_tol`); ours are judged up to it (the
    `horizon`; the end if it never comes), from the `anchor`, the first record with MSE ≤
    `growth_from`. `det_positive` certifies the branch at the horizon: a run with
    det W_{L:1} > 0 has |W_11| above `lower_bound`, so one below it has crossed to det ≤ 0
    (None while R ≥ ½, where the bound says nothing). The claim, for a run on the branch:
    every norm non-decreasing from the anchor to the horizon, and the effective rank there
    within `erank_tol` of 1. `edge_step`: the first record where σ_1^{2−2/L}, the sharpness
    λ_max(∇²R) on this branch (X_12 moves with W_1's (1, 2) entry times σ_1^{(L−1)/L},
    X_21 with W_L's; Lanczos agrees to 1 %), passes 2/η, GD's stability limit: beyond it
    GD cannot follow the flow and creeps along at the edge of stability.
    """
    steps, mse = m["step"], m["mse"]
    first = lambda tol: (int(np.flatnonzero(mse <= tol)[0]) if (mse <= tol).any() else None)
    stop, anchor = first(cfg.loss_tol), first(cfg.growth_from)
    horizon = len(steps) - 1 if stop is None else stop
    at = lambda i: {k: float(m[k][i]) for k in ("loss", "mse", "unobserved_abs",
                                                 "effective_rank", *NORMS, "abs_det")}
    span = slice(0, horizon + 1)
    norms_from = {k: monotone_from(m[k][span], steps[span]) for k in NORMS}
    erank_from = monotone_from(m["effective_rank"][span], steps[span], increasing=False)
    growth = {k: float(m[k][horizon] / m[k][anchor]) if anchor is not None else None
              for k in NORMS}
    bound = lower_bound(m["loss"][horizon])
    branch = bool(m["unobserved_abs"][horizon] >= bound) if np.isfinite(bound) else None
    rank_one = bool(m["effective_rank"][horizon] - 1 <= cfg.erank_tol)
    grows = anchor is not None and all(norms_from[k] <= steps[anchor] for k in NORMS)
    sharp = m["spectral_norm"] ** (2 - 2 / depth)
    edge = np.flatnonzero(sharp * cfg.our_lr > 2)
    after = None
    if stop is not None and stop < len(steps) - 1:
        after = all(monotone_from(m[k][stop:], steps[stop:]) == steps[stop] for k in NORMS)
    return dict(
        stop_step=int(steps[stop]) if stop is not None else None,
        anchor_step=int(steps[anchor]) if anchor is not None else None,
        start=at(0), at_horizon=at(horizon), end=at(-1),
        norm_growth_anchor_to_horizon=growth, norms_nondecreasing_from=norms_from,
        effective_rank_nonincreasing_from=erank_from,
        bound_at_horizon=float(bound) if np.isfinite(bound) else None, det_positive=branch,
        effective_rank_to_one=rank_one, norms_grow_monotonically=bool(grows),
        claim_holds=bool(branch and rank_one and grows),
        edge_step=int(steps[edge[0]]) if edge.size else None,
        norms_nondecreasing_after_stop=after)


def _branches(entries: list[dict]) -> dict:
    """How many runs stayed on det > 0 and how many crossed, and whether the claim held on
    every run that stayed (and there was one)."""
    stayed = [e for e in entries if e["det_positive"]]
    return dict(runs=len(entries), det_positive=len(stayed),
                crossed=sum(e["det_positive"] is False for e in entries),
                not_escaped=sum(e["det_positive"] is None for e in entries),
                claim_holds_on_det_positive=bool(stayed) and all(e["claim_holds"]
                                                                 for e in stayed))


def log_spaced(n: int, count: int = 300) -> np.ndarray:
    """About `count` record indices out of n, log-spaced in the step (0 and n − 1 kept)."""
    idx = np.unique(np.round(np.geomspace(1, n, count)).astype(int) - 1)
    return np.union1d([0], idx)


def run(cfg: Config, files=None) -> Outcome:
    runs = runs_of(cfg)
    W0 = jnp.asarray(initial_weights(cfg, runs), cfg.dtype)
    C = max(cfg.depths)
    depth = np.array([r["depth"] for r in runs])
    masks = jnp.asarray((np.arange(C)[None, :] < depth[:, None]).astype(float)[:, :, None, None]
                        * np.ones((1, 1, 2, 2)), W0.dtype)
    out = jax.tree.map(np.asarray, _trajectories(W0, masks, jnp.asarray(cfg.our_lr, W0.dtype),
                                                 cfg.n_steps, cfg.record_every))
    rows, entries, curves = [], [], []
    for i, r in enumerate(runs):
        m = measured({k: v[i] for k, v in out.items()})
        s = run_summary(m, r["depth"], cfg)
        entries.append({**r, **s})
        keep = log_spaced(len(m["step"]))
        rows += [{**r, **{k: (int(m[k][j]) if k == "step" else float(m[k][j]))
                          for k in COLUMNS[4:]}} for j in keep]
        curves.append(dict(run=r, stop_step=s["stop_step"], **{k: m[k][keep] for k in m}))
        end = s["end"]
        print(f"[razin] {r['init']:>8} L={r['depth']} α={r['init_std']:g} seed {r['seed']}: "
              f"mse {end['mse']:.2e}  |W11| {end['unobserved_abs']:.3g}  erank "
              f"{end['effective_rank']:.4f}  nuclear {end['nuclear_norm']:.3g}  "
              f"{BRANCH[s['det_positive']]}  claim "
              f"{s['claim_holds']}", flush=True)
    summary = dict(
        paper="Razin & Cohen, NeurIPS 2020 (arXiv:2005.06398), Sec. 3, Theorem 1, Figure 2",
        setting=dict(observed=dict(W12=1.0, W21=1.0, W22=0.0), unobserved="W11",
                     depths=cfg.depths, inits=cfg.inits, init_stds=cfg.init_stds,
                     seeds=cfg.seeds, lr_theirs=cfg.lr, lr_ours=cfg.our_lr,
                     n_steps=cfg.n_steps, record_every=cfg.record_every,
                     loss_tol=cfg.loss_tol, growth_from=cfg.growth_from,
                     erank_tol=cfg.erank_tol,
                     det_positive_at_init=True),
        bound="on det W_{L:1} > 0: |W_11| ≥ (1 − √(2R))²/√(2R), R = ½ Σ r²",
        results=entries,
        branches={init: _branches([e for e in entries if e["init"] == init])
                  for init in cfg.inits})
    return Outcome(summary, rows, COLUMNS, plot=curves)


# ---------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------


def figure(outcome: Outcome, folder) -> None:
    """Per init (rows): |W_11| against their loss up to their stopping point (as their plot:
    loss falling to the right) with the det > 0 bound; the nuclear norm, the Schatten-½
    quasi-norm and the effective rank against the step (log-x), the whole run. Colour:
    depth; line style: α. `razin.png`."""
    curves = outcome.plot
    tol = outcome.summary["setting"]["loss_tol"]
    inits = list(dict.fromkeys(c["run"]["init"] for c in curves))
    depths = sorted({c["run"]["depth"] for c in curves})
    stds = sorted({c["run"]["init_std"] for c in curves})
    styles = ["-", "--", ":", "-."]
    fig, axes = subplots(len(inits), 4, figsize=(18, 4.0 * len(inits)), squeeze=False)
    for row, init in enumerate(inits):
        ax, bx, cx, ex = axes[row]
        for c in curves:
            r = c["run"]
            if r["init"] != init or r["seed"] != 0:
                continue
            colour = f"C{depths.index(r['depth'])}"
            ls = styles[stds.index(r["init_std"]) % len(styles)]
            label = f"L={r['depth']}, α={r['init_std']:g}"
            t = np.maximum(c["step"], 1)
            upto = c["step"] <= (c["stop_step"] if c["stop_step"] is not None else np.inf)
            ax.plot(c["mse"][upto], c["unobserved_abs"][upto], ls, color=colour, label=label)
            bx.plot(t, c["nuclear_norm"], ls, color=colour, label=label)
            cx.plot(t, c["schatten_half"], ls, color=colour, label=label)
            ex.plot(t, c["effective_rank"], ls, color=colour, label=label)
        grid = np.geomspace(tol / 10, 0.1, 100)
        ax.plot(grid, lower_bound(1.5 * grid), "k:", lw=1, label="det > 0 bound")
        ax.axvline(tol, color="grey", lw=0.8, ls="--", label="their stop")
        ax.set(xscale="log", yscale="log", xlabel="loss (their MSE)", ylabel="|W_11|",
               title=f"{init}: unobserved entry", xlim=(1, tol / 10))
        bx.set(xscale="log", yscale="log", xlabel="step", ylabel="‖W_{L:1}‖_*",
               title="nuclear norm")
        cx.set(xscale="log", yscale="log", xlabel="step", ylabel="‖W_{L:1}‖_{S_1/2}",
               title="Schatten-½ quasi-norm")
        ex.set(xscale="log", xlabel="step", ylabel="effective rank", title="effective rank")
        for a in (ax, bx, cx, ex):
            a.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    save(fig, f"{folder}/razin.png")
