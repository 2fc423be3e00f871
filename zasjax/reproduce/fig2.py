"""Figure 2 of Wu, Wang & Ma (NeurIPS 2019): ZAS iterations to ε = 1e-10 against depth,
here to L = 2^20 through the exact mode engine.

Gradient descent from the zero-asymmetric initialisation (W_L = 0, W_l = I) on the whitened
loss R = ½‖W_{L:1} − Φ‖²_F, float64, η tuned per depth. Cases: Φ = −I (d = 1, d = 100) and
Φ Gaussian (d = 2, d = 100, several seeds). The paper reads iterations ∝ L^γ with γ ≈ 1/2 for
−I and γ ≈ 1 for the Gaussian target.

Engines. From ZAS, GD keeps W_l = V diag(a) Vᵀ (l < L), W_L = U diag(b) Vᵀ with Φ = U diag(s) Vᵀ,
so the run is d scalar pairs (`zasjax._modes`), O(d) a step at any L. Each case is ONE
`sweep` of the mode engine over every depth (`grids`: per-depth η lists); the full network
engine reruns the chosen (best) η and its two grid neighbours at the depths ≤
`full_max_depth` (`full_max_depth_wide` for d = 100) and the summary records whether both
engines give the same status and count there (`cross_check`).

The η grid at depth L: 2^{k/per_octave}/(L ν) for 2⁻⁴ ≤ 2^{k/per_octave} ≤ 2⁵, ν = 1 for −I and
4d for a Gaussian Φ (≈ E s_max²), capped at `lr_top` and at 2/λ_max of each seed's Φ
(`stable_top`). η = 1 is left out: it solves any target in one step
from ZAS (W_L ← Φ; tested), and the sweep's pruning would stop every slower rate. Which η
count:

* η ≤ `lr_top` (η = 1 is a shortcut, not depth scaling);
* η · λ_max < 2, with λ_max = x^{L−2}(Lx − (L−1)) and x^{L−1}(x − 1) = s_max² the sharpness
  at the minimum ZAS reaches (`zasjax._sharpness.zas_minimum_sharpness`). Above 2/λ_max no
  minimum of that family is linearly stable, and a run that still reports R ≤ ε has passed
  through the ε-ball of a chaotic orbit (the count takes the first t with R ≤ ε). Such hits
  are counted in `unstable_hits`, not used.

Local exponents. γ_loc(L₁, L₂) = log(N₂/N₁)/log(L₂/L₁) between consecutive depths and per
octave (L, 2L), N the median over seeds of the best count. The explanation, checked in
tests/test_reproduce_fig2_shamir.py and REPRODUCTION.md: along the flow a² − b² = 1, and a
mode with L s² ≫ 1 needs time T → √(π/2)/(s√L) plus a linear tail ≈ log(s/e_ε)/(L s²); GD
tracks the flow with η ≈ c/(L s_max²), c → 2/(1 + 1/log(L s_max²)), so N ≈ T/η ∝ √L s_max²/s_min
(γ → ½, approached from below; `flow_estimate`, and its ratio to each count in the
table); a mode with L s² ≲ 1 stays linear, T = O(log 1/ε), N ∝ L (γ ≈ 1) until
L ~ 1/s_min².

Outputs in `--out`: `summary.json` (per case: the table of (L, best η, η·L·s_max²,
η·λ_max, iterations), the local exponents per step and per octave, the cross-check),
`fig2.csv` (every run: case, engine, depth, seed, η, iterations, status, chosen),
`fig2.png` (iterations vs L and the local exponent vs L) and `sweeps/<case>-<engine>/`
(each main sweep's rows and in-flight checkpoints: the same command resumes it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from functools import cache, partial
from typing import Literal

import jax
import numpy as np

from .. import _store
from .._errors import InputError
from .._fits import fit_power_law
from .._plots import save, subplots
from .._sweep import Grid, best_per_config, sweep
from .._targets import make_target
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "ZAS iterations to 1e-10 vs depth to L = 2^20, η tuned per depth (Wu-Wang-Ma Fig. 2)"

#: case key -> (target, dim); the summary is keyed the same way.
CASES: dict[str, tuple[str, int]] = {
    "neg-identity_d1": ("neg-identity", 1),
    "gaussian_d2": ("gaussian", 2),
    "neg-identity_d100": ("neg-identity", 100),
    "gaussian_d100": ("gaussian", 100),
}
QUICK_CASES = ("neg-identity_d1", "gaussian_d2")
_QUICK_DEPTHS = (1, 2, 4, 8, 16, 32, 64)
#: The one-step η (module doc): the ceiling of every grid, never in it.
ONE_STEP_LR = 1.0
#: The η grid spans [2^LO, 2^HI] / (L ν) (module doc).
GRID_LO, GRID_HI = -4, 5
EPS = 1e-10
COLUMNS = ("case", "engine", "target", "dim", "depth", "seed", "lr", "iterations", "status",
           "final_loss", "chosen")


def _sweep_engine(name: str) -> Callable[..., list[dict]]:
    def run_grid(grid: Grid, out: str | os.PathLike | None = None) -> list[dict]:
        # prune: a rate still running past another rate's converged count cannot be the best.
        # With `out`, finished rows and in-flight states are kept there: a rerun resumes.
        resume = out is not None and os.path.exists(os.path.join(out, "runs.csv"))
        return sweep(grid, out, resume=resume, dtype="float64", engine=name, tune_lr=True,
                     max_batch=_batch(grid))
    return run_grid


def _sweep_folder(files, case: str, engine: str, grid: Grid):
    """`out/sweeps/<case>-<engine>`, where the main sweep of a case keeps its rows, so an
    interrupted study resumes (hours at d = 100). A folder left by other options is an
    error, never reused: its rows belong to another grid."""
    if files is None:
        return None
    folder = files.path("sweeps", f"{case}-{engine}")
    identity = _store.json_safe(grid.identity())
    path = folder / "grid.json"
    if path.exists():
        if _store.read_json(path) != identity:
            raise InputError(f"{folder} holds a sweep of other options (depths, seeds, η grid "
                             "or iteration cap); rerun with those options or another --out")
    else:
        os.makedirs(folder, exist_ok=True)
        _store.write_json(path, identity)
    return folder


def _batch(grid: Grid) -> int:
    # Slices of about one depth each: a slice runs until its slowest member ends, so deep,
    # slow depths must not hold the shallow ones' rows in the batch.
    return max(sum(max(len(grid.lrs_at(L, s)) for L in grid.depths) for s in grid.seeds), 1)


#: engine name -> rows of one case's `Grid` (every depth, seed and η; the sweep's rows).
ENGINES: dict[str, Callable[[Grid], list[dict]]] = {
    "modes": _sweep_engine("modes"), "full": _sweep_engine("full")}

_OCTAVES = lambda top, per: tuple(sorted({round(2 ** (k / per)) for k in range(top * per + 1)}))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    cases: tuple[str, ...] = option(tuple(CASES), f"comma list from {list(CASES)}")
    depths: tuple[int, ...] = option(
        _OCTAVES(20, 2), "depths for d <= 2 (two per octave to 2^20); --depths alone sets "
                         "--depths-wide too")
    depths_wide: tuple[int, ...] = option(_OCTAVES(20, 1), "depths for d = 100")
    seeds: int = option(8, "seeds per Gaussian case; −I is deterministic under ZAS, so it "
                           "runs one")
    lr_top: float = option(0.5, "largest η of the fitted grid (η = 1 is the one-step "
                                "shortcut)")
    per_octave: int = option(4, "η grid points per factor of two")
    grid_lo: int = option(GRID_LO, "each grid starts at 2^k/(L ν) with this k (a best η "
                                   "on the floor is flagged in the summary)")
    max_iters: int = option(3_000_000, "iteration cap")
    engine: Literal["modes", "full"] = option(
        "modes", f"what runs every depth ({'/'.join(ENGINES)}); 'full' only for small depths")
    full_max_depth: int = option(64, "d <= 2: depths up to this are rerun by the full "
                                     "network engine and must agree (0: no check)")
    full_max_depth_wide: int = option(2, "the same for d = 100")

    QUICK = dict(cases=QUICK_CASES, depths=_QUICK_DEPTHS, depths_wide=_QUICK_DEPTHS, seeds=3,
                 per_octave=2, max_iters=20_000, full_max_depth=16, full_max_depth_wide=2)

    def check(self):
        _runner.check_known(self, "cases", CASES)
        _runner.check_depths(self, "depths", "depths_wide")
        _runner.check_at_least(self, 1, "seeds", "per_octave", "max_iters")
        _runner.check_at_least(self, 0, "full_max_depth", "full_max_depth_wide")
        if not GRID_LO <= self.grid_lo <= 0:
            raise ValueError(f"grid_lo must lie in [{GRID_LO}, 0], got {self.grid_lo}")
        if not 0 < self.lr_top <= ONE_STEP_LR:
            raise ValueError(f"lr_top must lie in (0, 1], got {self.lr_top}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {list(ENGINES)}")

    @classmethod
    def from_options(cls, base, options):
        # One --depths serves every case unless --depths-wide says otherwise.
        if "depths" in options and "depths_wide" not in options:
            options = {**options, "depths_wide": options["depths"]}
        return super().from_options(base, options)


def _nu(target: str, dim: int) -> float:
    """ν ≈ s_max²: 1 for −I, 4d for a Gaussian Φ (its largest singular value ≈ 2√d)."""
    return 1.0 if target == "neg-identity" else 4.0 * dim


def lr_floor(depth: int, target: str, dim: int, lo: int = GRID_LO) -> float:
    """Smallest η tried at `depth`: 2^lo (default 2⁻⁴) times the stability scale 1/(L ν)."""
    return 2.0**lo / (depth * _nu(target, dim))


def lrs_for(depth: int, target: str, dim: int, per_octave: int,
            top: float = ONE_STEP_LR, lo: int = GRID_LO) -> tuple[float, ...]:
    """The η grid at one depth: 2^{k/per_octave}/(L ν) for k/per_octave in [lo, 5], below
    `top`. Anchored at 1/(L ν), so every depth sees the same multiples of its own scale."""
    scale = 1.0 / (depth * _nu(target, dim))
    ks = range(lo * per_octave, GRID_HI * per_octave + 1)
    return tuple(x for x in (scale * 2.0 ** (k / per_octave) for k in ks) if x <= top * 1.0001)


def stable_top(target: str, dim: int, seed: int, depth: int) -> float:
    """2/λ_max at depth L for this seed's Φ: above it no η converges stably. The sweep
    prunes every η slower than a converged one, so a chaotic hit of the ε-ball above the
    bound (module doc) must not be in the seed's grid, or it would prune the real optimum:
    each seed gets its own cap (a shared cap lets a sharper seed's unstable hit win)."""
    return 2.0 / lambda_max(s_range(target, dim, seed)[0], depth) * (1 - 1e-9)


def _case_depths(cfg: Config, dim: int) -> tuple[int, ...]:
    return cfg.depths if dim <= 2 else cfg.depths_wide


def _case_seeds(cfg: Config, target: str) -> tuple[int, ...]:
    return (0,) if target == "neg-identity" else tuple(range(cfg.seeds))


def case_grid(cfg: Config, case: str, top: float | None = None) -> Grid:
    """One case's sweep as a `Grid`, each (seed, depth) with its own η grid (`lrs_for`) up to
    min(`top` (default `cfg.lr_top`), that seed's `stable_top`). η = 1, which solves any
    target in one step from ZAS, is left out: it would prune every other rate."""
    top = cfg.lr_top if top is None else top
    target, dim = CASES[case]
    depths, seeds = _case_depths(cfg, dim), _case_seeds(cfg, target)
    lrs = {(seed, L): lrs_for(L, target, dim, cfg.per_octave,
                              min(top, stable_top(target, dim, seed, L)), cfg.grid_lo)
           for seed in seeds for L in depths}
    return Grid(inits=("zas",), targets=(target,), dims=(dim,), depths=depths, seeds=seeds,
                lrs=lrs, eps=EPS, max_iters=cfg.max_iters)


def grids(cfg: Config, top: float | None = None) -> list[Grid]:
    """Every case's `case_grid`, in order. The `fig2-quick` preset of `zasjax sweep` is
    `grids(Config.quick(), top=Config.quick().lr_top)`."""
    return [case_grid(cfg, case, top) for case in cfg.cases]


@cache
def s_range(target: str, dim: int, seed: int) -> tuple[float, float]:
    """(s_max, s_min) of Φ as the sweep draws it (key fold_in(key(seed), 1)), float64."""
    with jax.enable_x64(True):
        phi = np.asarray(_draw_target(np.int64(seed), target=target, dim=dim))
    s = np.linalg.svd(phi, compute_uv=False)  # LAPACK's, as jnp's on CPU, without lowering it
    return float(s[0]), float(s[-1])


@partial(jax.jit, static_argnames=("target", "dim"))
def _draw_target(seed, target: str, dim: int):
    key = jax.random.fold_in(jax.random.key(seed), 1)
    return make_target(target, key, (dim, dim), dtype="float64")



@cache
def lambda_max(s_max: float, depth: int) -> float:
    """Sharpness at the minimum reached from ZAS (`zas_minimum_sharpness`, c = 1)."""
    from .._sharpness import zas_minimum_sharpness

    return float(zas_minimum_sharpness(np.float64(s_max), int(depth)))


def _eligible(rows: list[dict], lr_top: float) -> tuple[list[dict], list[dict]]:
    """Rows whose η may be chosen (η ≤ lr_top and η·λ_max < 2, module doc) and the rest
    below lr_top (η·λ_max ≥ 2)."""
    ok, unstable = [], []
    for r in rows:
        if r["lr"] > lr_top * 1.0001:
            continue
        s_max, _ = s_range(r["target"], r["dim"], r["seed"])
        (ok if r["lr"] * lambda_max(s_max, r["depth"]) < 2 else unstable).append(r)
    return ok, unstable


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def flow_estimate(depth: int, lr: float, s_max: float, s_min: float, eps: float = EPS
                  ) -> float:
    """Iterations the flow predicts for GD at η = `lr` once s_min√L ≫ 1 (module doc):
    N ≈ (s_max²/c)(√(π/2)√L/s_min + τ/s_min²), c = η L s_max², τ = log(s_min/√(2ε)).

    The first term is the flow's time √(π/2)/(s_min√L) of the slowest mode over η, the
    second its linear ε-tail log(s_min/e_ε)/(L s_min²) over η; local exponent ½·A/(A + B)."""
    c = lr * depth * s_max**2
    tau = math.log(s_min / math.sqrt(2 * eps))
    return s_max**2 / c * (math.sqrt(math.pi / 2 * depth) / s_min + tau / s_min**2)


def _table(best: list[dict]) -> list[dict]:
    """Per depth, medians over seeds of the best η, of η·L·s_max² and η·λ_max (what sets
    the best η), of the count N (NaN unless most seeds converged), of the time η·N and of
    N / `flow_estimate` (→ 1 once s_min√L ≫ 1)."""
    out = []
    for L in sorted({r["depth"] for r in best}):
        rs = [r for r in best if r["depth"] == L]
        its = [r["iterations"] if r["status"] == "converged" else math.inf for r in rs]
        med = _median(its)
        smax = [s_range(r["target"], r["dim"], r["seed"])[0] for r in rs]
        out.append(dict(
            depth=L, lr=_median([r["lr"] for r in rs]),
            eta_L_smax2=_median([r["lr"] * L * s * s for r, s in zip(rs, smax)]),
            eta_lambda=_median([r["lr"] * lambda_max(s, L) for r, s in zip(rs, smax)]),
            iterations=med if math.isfinite(med) else math.nan,
            time=_median([r["lr"] * i for r, i in zip(rs, its)]),
            s_min=_median([s_range(r["target"], r["dim"], r["seed"])[1] for r in rs]),
            over_flow_estimate=_median([
                i / flow_estimate(L, r["lr"], *s_range(r["target"], r["dim"], r["seed"]))
                for r, i in zip(rs, its)]),
            converged=sum(math.isfinite(i) for i in its), seeds=len(rs),
            lr_max=max(r["lr"] for r in rs), lr_min=min(r["lr"] for r in rs)))
    return out


def local_exponents(depths, its) -> tuple[list[dict], list[dict]]:
    """γ_loc between consecutive depths, and per octave (L, 2L) where both were run."""
    at = dict(zip(depths, its))
    step = [dict(depths=[a, b], gamma=fit_power_law([a, b], [at[a], at[b]]))
            for a, b in zip(depths, depths[1:])]
    octave = [dict(depths=[a, 2 * a], gamma=fit_power_law([a, 2 * a], [at[a], at[2 * a]]))
              for a in depths if 2 * a in at]
    return step, octave


def analyse(rows: list[dict], lr_top: float, lrs: dict[tuple[int, int], tuple[float, ...]]
            ) -> dict:
    """Summary of one case from its sweep rows (every η, every seed, every depth); `lrs`
    maps (seed, depth) to the η grid that seed ran at that depth."""
    ok, unstable = _eligible(rows, lr_top)
    best = best_per_config(ok)
    fastest = {(r["depth"], r["seed"]): r for r in best}
    hits = sorted({(r["depth"], r["seed"]) for r in unstable if r["status"] == "converged"
                   and (fastest[r["depth"], r["seed"]]["status"] != "converged"
                        or r["iterations"] < fastest[r["depth"], r["seed"]]["iterations"])})
    table = _table(best)
    depths = [t["depth"] for t in table]
    its = [t["iterations"] for t in table]
    step, octave = local_exponents(depths, its)
    # The fit skips depths where a seed's best η is the η = `lr_top` cap (L = 1, 2), where
    # the count measures the cap rather than the depth. (The other top, 2/λ_max, is where
    # the optimum lies: the fastest stable rate.)
    at_top = {r["depth"] for r in best if r["lr"] >= lr_top * 0.9999}
    inner = [t for t in table if t["depth"] not in at_top and math.isfinite(t["iterations"])]
    fit_depths = [t["depth"] for t in inner]
    last = [o["gamma"] for o in octave[-2:]]
    return dict(
        gamma=fit_power_law(fit_depths, [t["iterations"] for t in inner]),
        fit_depths=fit_depths,
        gamma_all_depths=fit_power_law(depths, its),
        gamma_last_two_octaves=float(np.mean(last)) if last else math.nan,
        local_gamma=step, local_gamma_per_octave=octave,
        table=[{k: t[k] for k in ("depth", "lr", "eta_L_smax2", "eta_lambda", "iterations",
                                  "time", "s_min", "over_flow_estimate", "converged", "seeds")}
               for t in table],
        best_lr_on_floor=any(r["lr"] <= min(lrs[r["seed"], r["depth"]]) * 1.0001
                             for r in best),
        unstable_hits=[list(h) for h in hits])


def _neighbours(lrs: tuple[float, ...], chosen: set[float]) -> tuple[float, ...]:
    idx = {i + k for i, x in enumerate(lrs) if x in chosen for k in (-1, 0, 1)}
    return tuple(lrs[i] for i in sorted(idx) if 0 <= i < len(lrs))


def cross_check(grid: Grid, rows: list[dict], chosen: list[dict], max_depth: int,
                engine: str) -> dict:
    """Rerun the chosen η and its grid neighbours at depths ≤ `max_depth` through `engine`
    and compare status and count row by row (rows pruned by either sweep are skipped)."""
    depths = tuple(L for L in grid.depths if L <= max_depth)
    if not depths:
        return dict(engine=engine, depths=[], compared=0, agree=0, mismatches=[])
    # (a seed with no eligible rate at a depth reruns its top rate, to keep the grid whole)
    lrs = {(s, L): _neighbours(grid.lrs_at(L, s), {r["lr"] for r in chosen
                                                   if (r["depth"], r["seed"]) == (L, s)})
           or grid.lrs_at(L, s)[-1:] for s in grid.seeds for L in depths}
    sub = dataclasses.replace(grid, depths=depths, lrs=lrs)
    other = {(r["depth"], r["seed"], r["lr"]): r for r in ENGINES[engine](sub)}
    compared, mismatches = 0, []
    for r in rows:
        o = other.get((r["depth"], r["seed"], r["lr"]))
        if o is None or "pruned" in (r["status"], o["status"]):
            continue
        compared += 1
        if (r["status"], r["iterations"]) != (o["status"], o["iterations"]):
            mismatches.append(dict(depth=r["depth"], seed=r["seed"], lr=r["lr"],
                                   main=[r["status"], r["iterations"]],
                                   other=[o["status"], o["iterations"]]))
    return dict(engine=engine, depths=list(depths), compared=compared,
                agree=compared - len(mismatches), mismatches=mismatches[:10])


def run(cfg: Config, files=None) -> Outcome:
    summary: dict = {}
    csv_rows: list[dict] = []
    plot = []
    other = "full" if cfg.engine == "modes" else "modes"
    for case in cfg.cases:
        target, dim = CASES[case]
        grid = case_grid(cfg, case)
        t0 = time.perf_counter()
        rows = ENGINES[cfg.engine](grid, _sweep_folder(files, case, cfg.engine, grid))
        seconds = time.perf_counter() - t0
        lrs = {(s, L): grid.lrs_at(L, s) for s in grid.seeds for L in grid.depths}
        entry = analyse(rows, cfg.lr_top, lrs)
        chosen = best_per_config(_eligible(rows, cfg.lr_top)[0])
        t1 = time.perf_counter()
        fmax = cfg.full_max_depth if dim <= 2 else cfg.full_max_depth_wide
        check = cross_check(grid, rows, chosen, fmax, other)
        check["seconds"] = round(time.perf_counter() - t1, 2)
        print(f"[fig2] {case}: {len(rows)} runs ({cfg.engine}) in {seconds:.1f} s; "
              f"{other} engine agrees on {check['agree']}/{check['compared']} at L <= "
              f"{fmax} ({check['seconds']} s)", file=sys.stderr, flush=True)
        entry.update(target=target, dim=dim, seeds=list(grid.seeds), engine=cfg.engine,
                     seconds=round(seconds, 2), cross_check=check)
        summary[case] = entry
        picked = {(r["depth"], r["seed"], r["lr"]) for r in chosen}
        csv_rows += [dict(r, case=case, engine=cfg.engine,
                          chosen=(r["depth"], r["seed"], r["lr"]) in picked) for r in rows]
        plot.append(dict(case=case, gamma=entry["gamma"],
                         x=[t["depth"] for t in entry["table"]],
                         y=[t["iterations"] for t in entry["table"]],
                         octave=entry["local_gamma_per_octave"]))
    summary["lr_grid"] = dict(
        fitted_top=cfg.lr_top, per_octave=cfg.per_octave,
        grid=(f"2^k/(L ν), k in [{cfg.grid_lo}, {GRID_HI}], ν = 1 for −I and 4d for a Gaussian "
              f"Φ, up to min({cfg.lr_top:g}, 2/λ_max(L) of each seed's Φ)"),
        why=("η = 1 solves any target in one step from ZAS (W_L ← Φ), so η ≤ "
             f"{cfg.lr_top:g}; only η·λ_max < 2 (stable at the solution) is chosen; "
             f"γ is fitted on the depths where no seed's best η is the {cfg.lr_top:g} cap"))
    summary["settings"] = dict(eps=EPS, max_iters=cfg.max_iters, dtype="float64",
                               depths=list(cfg.depths), depths_wide=list(cfg.depths_wide),
                               cases=list(cfg.cases), engine=cfg.engine, grid_lo=cfg.grid_lo,
                               full_max_depth=cfg.full_max_depth,
                               full_max_depth_wide=cfg.full_max_depth_wide)
    return Outcome(summary, csv_rows, COLUMNS, plot=plot)


def figure(outcome: Outcome, folder) -> None:
    """`fig2.png`: iterations vs L (log-log) and the local exponent per octave vs L, with
    the large-L limits ½ (and 1, the linear regime L s_min² ≲ 1) marked."""
    fig, (ax, bx) = subplots(1, 2, figsize=(11, 4.5))
    for s in outcome.plot:
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        ok = np.isfinite(y) & (y > 0)
        line, = ax.plot(x[ok], y[ok], "o-", ms=3, label=f"{s['case']}: γ fit {s['gamma']:.2f}")
        oc = [(math.sqrt(o["depths"][0] * o["depths"][1]), o["gamma"]) for o in s["octave"]
              if math.isfinite(o["gamma"])]
        if oc:
            bx.plot(*zip(*oc), "o-", ms=3, color=line.get_color(), label=s["case"])
    for a in (ax, bx):
        a.set_xscale("log", base=2)
        a.set_xlabel("depth L")
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:  # no exponent yet with fewer than two octaves
            a.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("iterations to R ≤ 1e-10 (median over seeds)")
    ax.set_title("ZAS, η tuned per depth")
    for g in (0.5, 1.0):
        bx.axhline(g, color="k", lw=0.8, ls="--")
    bx.set_ylabel("local exponent γ(L, 2L)")
    bx.set_title("local exponent per octave")
    save(fig, f"{folder}/fig2.png")
