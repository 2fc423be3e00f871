"""Arora, Cohen, Hu & Luo (NeurIPS 2019, arXiv:1905.13655): implicit regularization in deep
matrix factorization — reconstruction error against the number of observations for depths
1–4 and the minimum-nuclear-norm solution, matrix completion and matrix sensing.

The problem (their Sec. 2 and code, roosephu/deep_matrix_factorization: gen_gt.py,
gen_obs.py, configs/): a random d × d target Φ of rank r (d = 100, r = 5), ‖Φ‖_F = d so its
entries have root-mean-square 1 (`_targets.low_rank_target`); completion observes N of its
d² entries, uniformly without replacement (N = 2000 and 5000 in their configs; we add 3000
and 4000); sensing observes m Gaussian measurements y_k = ⟨A_k, Φ⟩, entries of A_k iid
N(0, 1/d²) (their `randn(m, n, n) / n`). A depth-L factorization W_{L:1} = W_L ⋯ W_1 of d × d
layers starts from iid Gaussian layers scaled alike with ‖W_{L:1}(0)‖_F = s√d, s their
`init_scale` (10⁻³ in their runs; their Figure 1 sweeps 10⁻³..10⁻⁷), and gradient descent
runs until the training mean squared error is ≤ 10⁻⁶ (their `train_thres`). Depth 1 is
the plain (non-factorized) matrix: GD changes only the observed entries (completion) or the
span of the A_k (sensing) and leaves the rest at its tiny init — no implicit low rank.

What differs, and why:

* Optimiser. They used "GroupRMSprop" (opt.py: one RMS step size shared by all layers,
  lr 10⁻³ or 3·10⁻⁴) to cross the long plateau near the origin; we run plain gradient
  descent, the object of the paper's analysis, with a step that follows the depth,
  η_L = lr_scale / (L σ_1(Φ)^{2−2/L} ‖𝒜‖²_op): L σ_1^{2−2/L} is the sharpness of the end-to-end
  map at a balanced solution and ‖𝒜‖²_op that of the measurement operator (1 for
  completion), so lr_scale = 1 is half the stability limit 2/λ_max.
* Loss normalisation. They minimise the mean squared error (1/N) Σ r²; our objectives
  (`Completion`, `Sensing`) are R = ½ Σ r², whose gradient is N/2 times theirs: a GD step
  η on R is a step 2η/N on theirs, and their stopping rule MSE ≤ 10⁻⁶ is R ≤ ½ N 10⁻⁶. One
  threshold serves a sweep, so we stop at R ≤ ½ N_min·`train_thres`, N_min the smallest
  count (stricter, in MSE, for the larger counts).
* Seeds. They fixed one target and one observed set per count and repeated the init; each
  of our seeds draws its own target, observations and init (the sweep's convention: init
  from fold_in(key(s), 0), Φ from fold_in(key(s), 1), observations from fold_in(key(s), 2)).
* Error. `reconstruction_error` is ‖W_{L:1} − Φ‖_F / ‖Φ‖_F; their plotted "reconst error"
  is the mean squared error over all d² entries, ‖W_{L:1} − Φ‖²_F / d², which with
  ‖Φ‖_F = d is its square (column `squared_error`).
* Baseline solver. `nuclear_norm_completion` / `nuclear_norm_sensing` (cvxpy), every answer
  certified by its duality gap. At d = 100 the default interior-point solver (Clarabel)
  needed more than the 20 GB of our machine, so the study uses SCS (their solver too) at
  tolerance 10⁻⁶, certified to 10⁻⁵.

The GD runs are one `zasjax.sweep` per problem (depths × counts × seeds in one compiled
program per width; depth 1..4 share it, padded with identity layers); with an output folder
each sweep keeps its rows in `sweeps/<problem>/`, and the same command resumes it.

Outputs: `dmf.csv` (one row per problem, method, count and seed: `method` is `depth-L` or
`nuclear-norm`), `summary.json` (medians per problem, method and count; the paper's claims
checked) and `dmf.png` (reconstruction error and effective rank against the count).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from .. import _baselines
from .._measures import effective_rank, nuclear_norm, reconstruction_error, unobserved_error
from .._objectives import observed_entries, sensing_matrices
from .._plots import save, subplots
from .._sweep import Grid, sweep
from .._targets import low_rank_target
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = ("Arora et al. (NeurIPS 2019): deep matrix factorization, reconstruction error "
               "vs observations for depths 1-4 and the nuclear-norm minimiser (completion, "
               "sensing)")

PROBLEMS = ("completion", "sensing")
NUCLEAR = "nuclear-norm"
COLUMNS = ("problem", "method", "depth", "observations", "seed", "reconstruction_error",
           "squared_error", "effective_rank", "nuclear_norm", "unobserved_error", "status",
           "iterations", "final_loss", "lr", "init_scale", "seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    """The full study is the paper's completion (100 × 100, rank 5, 2000..5000 of 10,000
    entries); its sensing runs at 2000 measurements only (the paper also ran 5000: the
    nuclear-norm program with SCS took 7 GB and 2 minutes at 2000 dense measurements and
    grows with m, beyond our 23 GB machine). Quick: 20 × 20, rank 2, completion only, 2
    seeds (the sensing sweep would double its compile time)."""

    problems: tuple[str, ...] = option(PROBLEMS, f"comma list from {', '.join(PROBLEMS)}")
    dim: int = option(100, "d: the target is d × d")
    rank: int = option(5, "rank r of the target")
    observations: tuple[int, ...] = option((2000, 3000, 4000, 5000),
                                           "completion: counts of observed entries")
    measurements: tuple[int, ...] = option((2000,), "sensing: counts of measurements")
    depths: tuple[int, ...] = option((1, 2, 3, 4), "comma list of depths L")
    seeds: int = option(3, "problems (target, observations, init) per count")
    init_scale: float = option(1e-3, "Arora et al.'s init_scale s: ‖W_{L:1}(0)‖_F = s√d")
    lr_scale: float = option(1.0, "η_L = lr_scale / (L σ_1(Φ)^{2−2/L} ‖𝒜‖²_op)")
    train_thres: float = option(1e-6, "stop when the training mean squared error is below "
                                      "this (at the smallest count)")
    max_iters: int = option(30_000, "GD budget")
    baseline: bool = option(True, "the minimum-nuclear-norm solution (needs cvxpy: the "
                                  "[baselines] extra)")
    solver: str = option("SCS", "cvxpy solver of the baseline")
    solver_tol: float = option(1e-6, "its relative tolerance (the answer is certified to "
                                     "10× this)")

    QUICK = dict(problems=("completion",), dim=20, rank=2, observations=(160, 240),
                 measurements=(160, 240), seeds=2, max_iters=5000)

    def check(self):
        _runner.check_known(self, "problems", PROBLEMS)
        _runner.check_depths(self, "depths")
        _runner.check_at_least(self, 1, "dim", "rank", "seeds", "max_iters")
        _runner.check_positive(self, "init_scale", "lr_scale", "train_thres", "solver_tol")
        if self.rank > self.dim:
            raise ValueError(f"rank must be at most dim = {self.dim}, got {self.rank}")
        for name, problem in (("observations", "completion"), ("measurements", "sensing")):
            counts = getattr(self, name)
            if problem not in self.problems:
                continue
            if not counts or len(set(counts)) != len(counts):
                raise ValueError(f"{name} must be a non-empty list of distinct counts, got "
                                 f"{counts!r}")
            if not all(1 <= n <= self.dim * self.dim for n in counts):
                raise ValueError(f"{name} must be in [1, {self.dim * self.dim}] (d² = "
                                 f"{self.dim}²), got {counts!r}")
        if not self.solver_tol < 1:
            raise ValueError(f"solver_tol must be in (0, 1), got {self.solver_tol!r}")

    def counts(self, problem: str) -> tuple[int, ...]:
        return self.observations if problem == "completion" else self.measurements


def preflight(cfg: Config) -> None:
    """With the baseline on, cvxpy must be importable (else a one-line `MissingExtraError`,
    exit 2 on the command line) and have the solver, checked before anything runs, not
    after an hour of gradient descent."""
    if cfg.baseline:
        installed = _baselines._cvxpy().installed_solvers()
        if cfg.solver.upper() not in installed:
            raise ValueError(f"solver {cfg.solver!r} is not installed for cvxpy; installed: "
                             f"{', '.join(installed)}")


# ---------------------------------------------------------------------------------------------
# The problems, drawn as the sweep draws them
# ---------------------------------------------------------------------------------------------


def target(seed: int, cfg: Config) -> jax.Array:
    """Φ of seed `seed`: `low_rank_target(fold_in(key(seed), 1), (d, d), r)`, ‖Φ‖_F = d."""
    return low_rank_target(jax.random.fold_in(jax.random.key(seed), 1), (cfg.dim, cfg.dim),
                           cfg.rank)


def observed(seed: int, n: int, cfg: Config) -> jax.Array:
    """The `n` observed entries of seed `seed` (boolean `(d, d)`), from fold_in(key(seed), 2):
    the observed sets of one seed are nested, the first n of one random order."""
    return observed_entries(jax.random.fold_in(jax.random.key(seed), 2), (cfg.dim, cfg.dim), n)


def measurements(seed: int, n: int, cfg: Config, dtype) -> jax.Array:
    """The first `n` of the max(`cfg.measurements`) measurement matrices of seed `seed`
    `(n, d, d)`, from fold_in(key(seed), 2), entries N(0, 1/d²)."""
    A = sensing_matrices(jax.random.fold_in(jax.random.key(seed), 2), max(cfg.measurements),
                         (cfg.dim, cfg.dim), dtype=dtype)
    return A[:n]


def learning_rates(problem: str, cfg: Config) -> dict[tuple[int, int], tuple[float]]:
    """(seed, depth) → (η,), η_L = lr_scale / (L σ_1(Φ)^{2−2/L} ‖𝒜‖²_op) (module docstring);
    for sensing ‖𝒜‖_op is that of the largest count (a smaller count's is at most that)."""
    lrs = {}
    for s in range(cfg.seeds):
        phi = np.asarray(target(s, cfg))
        s1 = float(np.linalg.norm(phi, 2))
        op = 1.0
        if problem == "sensing":
            A = np.asarray(measurements(s, max(cfg.measurements), cfg, phi.dtype))
            op = float(np.linalg.norm(A.reshape(len(A), -1), 2)) ** 2
        for L in cfg.depths:
            lrs[(s, L)] = (cfg.lr_scale / (L * s1 ** (2 - 2 / L) * op),)
    return lrs


def grid(problem: str, cfg: Config) -> Grid:
    """Every GD run of one problem: depths × counts × seeds, one learning rate each."""
    counts = cfg.counts(problem)
    return Grid(inits=("small-gaussian",), targets=("low-rank",), rank=cfg.rank,
                dims=(cfg.dim,), depths=cfg.depths, seeds=tuple(range(cfg.seeds)),
                lrs=learning_rates(problem, cfg), objective=problem, observations=counts,
                init_scale=(cfg.init_scale * cfg.dim**0.5,),
                eps=0.5 * min(counts) * cfg.train_thres, max_iters=cfg.max_iters)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def gd_rows(problem: str, cfg: Config, files=None) -> list[dict]:
    """The sweep of one problem as `dmf.csv` rows. With `files`, its rows live in
    `sweeps/<problem>/` and a rerun resumes (a folder of other options is refused)."""
    g = grid(problem, cfg)
    out = None if files is None else str(files.path("sweeps", problem))
    resume = out is not None and os.path.exists(os.path.join(out, "runs.csv"))
    # One slice per depth (about): a slice runs until its slowest member stops.
    batch = cfg.seeds * len(cfg.counts(problem))
    rows = sweep(g, out, resume=resume, dtype=cfg.dtype, chunk=500, max_batch=batch)
    return [dict(problem=problem, method=f"depth-{r['depth']}", depth=r["depth"],
                 observations=r["observations"], seed=r["seed"],
                 reconstruction_error=r["reconstruction_error"],
                 squared_error=_square(r["reconstruction_error"]),
                 effective_rank=r["effective_rank"], nuclear_norm=r["nuclear_norm"],
                 unobserved_error=r["unobserved_error"], status=r["status"],
                 iterations=r["iterations"], final_loss=r["final_loss"], lr=r["lr"],
                 init_scale=cfg.init_scale) for r in rows]


def _square(x):
    return None if x is None else float(x) ** 2


def baseline_rows(problem: str, cfg: Config) -> list[dict]:
    """The minimum-nuclear-norm solution of every (count, seed) problem the sweep ran."""
    rows = []
    for s in range(cfg.seeds):
        phi = target(s, cfg)
        for n in cfg.counts(problem):
            start = time.perf_counter()
            mask = None
            if problem == "completion":
                mask = observed(s, n, cfg)
                X = _baselines.nuclear_norm_completion(
                    np.asarray(phi), np.asarray(mask), solver=cfg.solver, tol=cfg.solver_tol)
            else:
                A = np.asarray(measurements(s, n, cfg, phi.dtype))
                X = _baselines.nuclear_norm_sensing(A, A.reshape(n, -1) @ np.ravel(phi),
                                                    solver=cfg.solver, tol=cfg.solver_tol)
            seconds = time.perf_counter() - start
            X = jnp.asarray(X, phi.dtype)
            err = float(reconstruction_error(X, phi))
            rows.append(dict(
                problem=problem, method=NUCLEAR, depth=None, observations=n, seed=s,
                reconstruction_error=err, squared_error=err**2,
                effective_rank=float(effective_rank(X)), nuclear_norm=float(nuclear_norm(X)),
                unobserved_error=None if mask is None else float(unobserved_error(X, phi, mask)),
                status="solved", seconds=round(seconds, 2)))
            print(f"[dmf] {problem} nuclear norm, N={n} seed {s}: error {err:.3g} "
                  f"({seconds:.1f} s)", flush=True)
    return rows


def _median(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(values)) if values else None


def medians(rows: list[dict]) -> list[dict]:
    """Medians over seeds per (problem, method, observations)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["problem"], r["method"], r["observations"])].append(r)
    out = []
    for (problem, method, n), rs in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1] != NUCLEAR, kv[0][1], kv[0][2])):
        out.append(dict(
            problem=problem, method=method, observations=n, seeds=len(rs),
            reconstruction_error=_median(r["reconstruction_error"] for r in rs),
            squared_error=_median(r["squared_error"] for r in rs),
            effective_rank=_median(r["effective_rank"] for r in rs),
            nuclear_norm=_median(r["nuclear_norm"] for r in rs),
            converged=sum(r["status"] in ("converged", "solved") for r in rs)))
    return out


def claims(table: list[dict], cfg: Config) -> dict:
    """The paper's statements, per problem and count, on the medians: every depth ≥ 2 beats
    depth 1, and the deepest factorization's error against the nuclear norm's."""
    by = {(e["problem"], e["method"], e["observations"]): e for e in table}
    out = {}
    deep = f"depth-{max(cfg.depths)}"
    for problem in cfg.problems:
        entries = []
        for n in cfg.counts(problem):
            err = lambda m: (by.get((problem, m, n)) or {}).get("reconstruction_error")
            e = dict(observations=n)
            if 1 in cfg.depths:
                shallow = err("depth-1")
                e["deep_beats_depth_1"] = all(
                    err(f"depth-{L}") is not None and err(f"depth-{L}") < shallow
                    for L in cfg.depths if L >= 2)
            if err(NUCLEAR) is not None and err(deep) is not None:
                e[f"{deep}_over_nuclear_norm"] = err(deep) / err(NUCLEAR)
            entries.append(e)
        out[problem] = entries
    return out


def run(cfg: Config, files=None) -> Outcome:
    rows = []
    for problem in cfg.problems:
        start = time.perf_counter()
        rows += gd_rows(problem, cfg, files)
        print(f"[dmf] {problem}: {len(rows)} GD rows ({time.perf_counter() - start:.0f} s)",
              flush=True)
        if cfg.baseline:
            rows += baseline_rows(problem, cfg)
    table = medians(rows)
    for e in table:
        print(f"[dmf] {e['problem']:>10} {e['method']:>12} N={e['observations']:>5}: error "
              f"{e['reconstruction_error']:.3g}  effective rank {e['effective_rank']:.3g}",
              flush=True)
    targets = {s: target(s, cfg) for s in range(cfg.seeds)}
    summary = dict(
        paper="Arora, Cohen, Hu & Luo, NeurIPS 2019 (arXiv:1905.13655), Sec. 2, Figures 1-2",
        setting=dict(
            dim=cfg.dim, rank=cfg.rank, target_norm=cfg.dim, problems=cfg.problems,
            observations=cfg.observations, measurements=cfg.measurements, depths=cfg.depths,
            seeds=cfg.seeds, init="small-gaussian", init_scale=cfg.init_scale,
            end_to_end_init_norm=cfg.init_scale * cfg.dim**0.5,
            lr="lr_scale / (L σ_1(Φ)^{2−2/L} ‖𝒜‖²_op), on R = ½ Σ r² (their loss: the mean, "
               "so a step η here is 2η/N there)", lr_scale=cfg.lr_scale,
            stop=f"R ≤ ½ N_min · {cfg.train_thres:g} (their MSE ≤ train_thres)",
            max_iters=cfg.max_iters,
            baseline=dict(solver=cfg.solver, tol=cfg.solver_tol) if cfg.baseline else
            "skipped (--no-baseline)"),
        target_effective_rank=_median(float(effective_rank(p)) for p in targets.values()),
        target_nuclear_norm=_median(float(nuclear_norm(p)) for p in targets.values()),
        results=table,
        claims=claims(table, cfg))
    return Outcome(summary, rows, COLUMNS, plot=dict(table=table, rows=rows,
                                                     rank=cfg.rank, problems=cfg.problems))


# ---------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------


def figure(outcome: Outcome, folder) -> None:
    """Per problem: reconstruction error (log) and effective rank against the count, one
    line per method (median over seeds, the seeds as faint points) — `dmf.png`."""
    plot = outcome.plot
    problems = plot["problems"]
    fig, axes = subplots(len(problems), 2, figsize=(11, 4.0 * len(problems)), squeeze=False)
    methods = sorted({r["method"] for r in plot["rows"]}, key=lambda m: (m == NUCLEAR, m))
    for row, problem in enumerate(problems):
        ax, bx = axes[row]
        for i, method in enumerate(methods):
            colour = "k" if method == NUCLEAR else f"C{i}"
            style = "s--" if method == NUCLEAR else "o-"
            es = [e for e in plot["table"] if e["problem"] == problem and e["method"] == method]
            rs = [r for r in plot["rows"] if r["problem"] == problem and r["method"] == method]
            if not es:
                continue
            n = [e["observations"] for e in es]
            ax.plot(n, [e["reconstruction_error"] for e in es], style, color=colour,
                    label=method)
            bx.plot(n, [e["effective_rank"] for e in es], style, color=colour, label=method)
            ax.plot([r["observations"] for r in rs], [r["reconstruction_error"] for r in rs],
                    ".", color=colour, alpha=0.3)
            bx.plot([r["observations"] for r in rs], [r["effective_rank"] for r in rs], ".",
                    color=colour, alpha=0.3)
        bx.axhline(plot["rank"], color="grey", lw=0.8, ls=":", label=f"rank of Φ = {plot['rank']}")
        what = "observed entries" if problem == "completion" else "measurements"
        ax.set(xlabel=f"number of {what}", ylabel="‖W − Φ‖_F / ‖Φ‖_F", yscale="log",
               title=f"{problem}: reconstruction error")
        bx.set(xlabel=f"number of {what}", ylabel="effective rank", yscale="log",
               title=f"{problem}: effective rank of the solution")
        for a in (ax, bx):
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
    save(fig, f"{folder}/dmf.png")
