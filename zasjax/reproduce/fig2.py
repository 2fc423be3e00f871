"""Figure 2 of Wu, Wang & Ma (NeurIPS 2019): ZAS iterations to ε = 1e-10 against depth.

Gradient descent from the zero-asymmetric initialisation (W_L = 0, W_l = I) on the whitened
loss R = ½‖W_{L:1} − Φ‖²_F, float64, with η tuned per depth from a log grid that runs in one
vmapped batch (`best_per_config` keeps the fastest converging η of each seed). Cases: Φ = −I
(d = 1, d = 100) and Φ Gaussian (d = 2, d = 100). The paper reads iterations ∝ L^γ with
γ ≈ 1/2 for −I and γ ≈ 1 for the Gaussian target.

The η grid. At ZAS every gradient but the last layer's vanishes and ∇_{W_L}R = −Φ, so the
first step sets W_L = ηΦ: η = 1 solves any target in one step at every depth. The sweep
includes η = 1 (the summary records its one-step count), but the exponent uses η ≤ `--lr-top`
(default 1/2, as the `fig2-quick` preset). A capped grid still distorts the shallow end: where
the best η *is* the grid's top, the count measures the cap, not the depth. So γ is fitted on
the depths whose best η lies strictly inside the grid ("interior" depths), and the summary
shows how γ moves with the grid's top and with the depth range. At depth L the grid starts
at 2⁻⁴/(L·4d) (4d ≈ ‖Φ‖₂² for a Gaussian Φ; 1 for −I): the stable η shrinks like 1/L, and
a flag says if the best η ever sits on that floor.

Outputs in `--out`: `summary.json` (per case: `gamma`, the table of (L, best η, iterations),
the investigation), `fig2.csv` (every run: case, depth, seed, η, iterations, status, chosen)
and `fig2.png` (iterations vs depth, log-log, fitted slopes in the legend).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from .._fits import fit_power_law
from .._plots import scaling_lines
from .._sweep import Grid, best_per_config, lr_grid, sweep
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "ZAS iterations to 1e-10 vs depth, η tuned per depth (Wu-Wang-Ma Fig. 2)"

#: case key -> (target, dim); the summary is keyed the same way.
CASES: dict[str, tuple[str, int]] = {
    "neg-identity_d1": ("neg-identity", 1),
    "gaussian_d2": ("gaussian", 2),
    "neg-identity_d100": ("neg-identity", 100),
    "gaussian_d100": ("gaussian", 100),
}
QUICK_CASES = ("neg-identity_d1", "gaussian_d2")
_QUICK_DEPTHS = (1, 2, 4, 8, 16, 32, 64)
#: The one-step η: included in every sweep, left out of the fitted grid (see module doc).
ONE_STEP_LR = 1.0
#: Grid tops the summary compares (γ as a function of the largest η allowed).
TOPS = (1.0, 0.5, 0.25, 0.125)
EPS = 1e-10
COLUMNS = ("case", "target", "dim", "depth", "seed", "lr", "iterations", "status",
           "final_loss", "chosen")


def _sweep_engine(target: str, dim: int, depth: int, seeds: tuple[int, ...],
                  lrs: tuple[float, ...], max_iters: int) -> list[dict]:
    """Every (seed, η) at one depth through the full network engine (`_sweep.sweep`)."""
    grid = Grid(inits=("zas",), targets=(target,), dims=(dim,), depths=(depth,), seeds=seeds,
                lrs=lrs, eps=EPS, max_iters=max_iters)
    return sweep(grid, dtype="float64")


#: engine name -> rows of one (case, depth): the sweep's rows (init, target, dim, depth,
#: seed, lr, iterations, status, final_loss, …) for every seed and η.
ENGINES: dict[str, Callable[..., list[dict]]] = {"sweep": _sweep_engine}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    cases: tuple[str, ...] = option(tuple(CASES), f"comma list from {list(CASES)}")
    depths: tuple[int, ...] = option(
        tuple(sorted({round(2 ** (k / 2)) for k in range(25)})),  # 1 .. 4096
        "depths for d <= 2 (two per octave); --depths alone sets --depths-wide too")
    depths_wide: tuple[int, ...] = option(tuple(2**k for k in range(11)),
                                          "depths for d = 100")
    seeds: int = option(5, "seeds per Gaussian case; −I is deterministic under ZAS, so it "
                           "runs one")
    lr_top: float = option(0.5, "largest η of the fitted grid (η = 1 is the one-step "
                                "shortcut)")
    per_octave: int = option(4, "η grid points per factor of two")
    max_iters: int = option(100_000, "iteration cap")
    engine: Literal["sweep"] = option("sweep", "what runs each depth: the full network "
                                               f"({'/'.join(ENGINES)})")

    QUICK = dict(cases=QUICK_CASES, depths=_QUICK_DEPTHS, depths_wide=_QUICK_DEPTHS, seeds=3,
                 per_octave=2, max_iters=20_000)

    def check(self):
        _runner.check_known(self, "cases", CASES)
        _runner.check_depths(self, "depths", "depths_wide")
        _runner.check_at_least(self, 1, "seeds", "per_octave", "max_iters")
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


def lr_floor(depth: int, target: str, dim: int) -> float:
    """Smallest η tried at `depth`: 2⁻⁴ below the stability scale 1/(L‖Φ‖₂²)."""
    norm2 = 1.0 if target == "neg-identity" else 4.0 * dim
    return 2.0**-4 / (depth * norm2)


def lrs_for(depth: int, target: str, dim: int, per_octave: int) -> tuple[float, ...]:
    """The η grid at one depth: powers of 2^{1/per_octave} from the floor up to η = 1."""
    floor = lr_floor(depth, target, dim)
    return tuple(x for x in lr_grid(2.0**-40, ONE_STEP_LR, per_octave) if x >= floor * 0.9999)


def grids(cfg: Config, top: float | None = None) -> list[Grid]:
    """The study's sweeps as `Grid`s, one per case, each depth with its own η grid
    (`lrs_for`), capped at `top` if given. The `fig2-quick` preset of `zasjax sweep` is
    `grids(Config.quick(), top=Config.quick().lr_top)`."""
    out = []
    for case in cfg.cases:
        target, dim = CASES[case]
        depths = cfg.depths if dim <= 2 else cfg.depths_wide
        seeds = (0,) if target == "neg-identity" else tuple(range(cfg.seeds))
        lrs = {L: tuple(x for x in lrs_for(L, target, dim, cfg.per_octave)
                        if top is None or x <= top * 1.0001) for L in depths}
        out.append(Grid(inits=("zas",), targets=(target,), dims=(dim,), depths=depths,
                        seeds=seeds, lrs=lrs, eps=EPS, max_iters=cfg.max_iters))
    return out


def _table(best: list[dict]) -> list[dict]:
    """Per depth: median best η and median iterations over seeds (NaN unless most converged)."""
    out = []
    for L in sorted({r["depth"] for r in best}):
        rs = [r for r in best if r["depth"] == L]
        its = [r["iterations"] if r["status"] == "converged" else math.inf for r in rs]
        med = float(np.median(its))
        out.append(dict(depth=L, lr=float(np.median([r["lr"] for r in rs])),
                        iterations=med if math.isfinite(med) else math.nan,
                        converged=sum(math.isfinite(i) for i in its), seeds=len(rs),
                        lr_max=max(r["lr"] for r in rs), lr_min=min(r["lr"] for r in rs)))
    return out


def _gamma(table: list[dict], top: float) -> tuple[float, list[int]]:
    """γ over the depths whose best η (every seed's) is below the grid's top."""
    inner = [t for t in table if t["lr_max"] < top * 0.9999 and math.isfinite(t["iterations"])]
    return (fit_power_law([t["depth"] for t in inner], [t["iterations"] for t in inner]),
            [t["depth"] for t in inner])


def analyse(rows: list[dict], lr_top: float, floors: dict[int, float]) -> dict:
    """Summary of one case from its sweep rows (every η, every seed, every depth)."""
    best = best_per_config([r for r in rows if r["lr"] <= lr_top * 1.0001])
    table = _table(best)
    gamma, fit_depths = _gamma(table, lr_top)
    depths = [t["depth"] for t in table]
    its = [t["iterations"] for t in table]
    by_top = []
    for top in TOPS:
        tab = _table(best_per_config([r for r in rows if r["lr"] <= top * 1.0001]))
        g_in, d_in = _gamma(tab, top)
        by_top.append(dict(lr_top=top, gamma_all_depths=fit_power_law(
            [t["depth"] for t in tab], [t["iterations"] for t in tab]),
            gamma_interior=g_in, interior_depths=d_in,
            iterations_at_L1=tab[0]["iterations"] if tab[0]["depth"] == 1 else math.nan))
    local = [dict(depths=[a, b], gamma=fit_power_law([a, b], [ia, ib]))
             for (a, ia), (b, ib) in zip(zip(depths, its), zip(depths[1:], its[1:]))]
    half = len(fit_depths) // 2
    pick = lambda ds: fit_power_law(ds, [its[depths.index(d)] for d in ds])
    one_step = [r for r in rows if r["lr"] == ONE_STEP_LR]
    return dict(
        gamma=gamma, fit_depths=fit_depths,
        gamma_all_depths=fit_power_law(depths, its),
        table=[{k: t[k] for k in ("depth", "lr", "iterations", "converged", "seeds")}
               for t in table],
        best_lr_on_floor=any(r["lr"] <= floors[r["depth"]] * 1.0001 for r in best),
        investigation=dict(
            gamma_vs_lr_top=by_top,
            gamma_lower_half=pick(fit_depths[: half + 1]) if half else math.nan,
            gamma_upper_half=pick(fit_depths[half:]) if half else math.nan,
            local_gamma=local,
            one_step_eta1_iterations=sorted({r["iterations"] for r in one_step
                                             if r["status"] == "converged"}),
            one_step_eta1_all_converged=all(r["status"] == "converged" for r in one_step)),
    )


def run(cfg: Config, files=None) -> Outcome:
    engine = ENGINES[cfg.engine]
    summary: dict = {}
    csv_rows: list[dict] = []
    series = []
    for case in cfg.cases:
        target, dim = CASES[case]
        depths = cfg.depths if dim <= 2 else cfg.depths_wide
        seeds = (0,) if target == "neg-identity" else tuple(range(cfg.seeds))
        rows, floors = [], {}
        for L in depths:
            floors[L] = lr_floor(L, target, dim)
            t0 = time.perf_counter()
            lrs = lrs_for(L, target, dim, cfg.per_octave)
            rows += engine(target, dim, L, seeds, lrs, cfg.max_iters)
            print(f"[fig2] {case} L={L}: {len(lrs)} η × {len(seeds)} seeds in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        entry = analyse(rows, cfg.lr_top, floors)
        entry.update(target=target, dim=dim, seeds=list(seeds))
        summary[case] = entry
        chosen = {(r["depth"], r["seed"], r["lr"]) for r in
                  best_per_config([r for r in rows if r["lr"] <= cfg.lr_top * 1.0001])}
        csv_rows += [dict(r, case=case, chosen=(r["depth"], r["seed"], r["lr"]) in chosen)
                     for r in rows]
        series.append(dict(label=f"Φ={target}, d={dim}: γ={entry['gamma']:.2f} "
                                 f"(L≥{min(entry['fit_depths'], default=0)})",
                           x=[t["depth"] for t in entry["table"]],
                           y=[t["iterations"] for t in entry["table"]]))
    summary["lr_grid"] = dict(
        fitted_top=cfg.lr_top, sweep_top=ONE_STEP_LR, per_octave=cfg.per_octave,
        floor="2^-4 / (L * s), s = 1 for −I and 4d for a Gaussian Φ (≈ ‖Φ‖₂²)",
        why=("η = 1 solves any target in one step from ZAS (W_L ← Φ), so the fit uses "
             f"η ≤ {cfg.lr_top:g}; γ is fitted on the depths whose best η lies strictly "
             "below that top, where the count measures depth rather than the grid's cap"))
    summary["settings"] = dict(eps=EPS, max_iters=cfg.max_iters, dtype="float64",
                               depths=list(cfg.depths), cases=list(cfg.cases))
    return Outcome(summary, csv_rows, COLUMNS, plot=(series, cfg.lr_top))


def figure(outcome: Outcome, folder) -> None:
    """Iterations vs depth, log-log, fitted slopes in the legend (`fig2.png`)."""
    series, lr_top = outcome.plot
    scaling_lines(series, f"{folder}/fig2.png",
                  title=f"ZAS, iterations to 1e-10 (η ≤ {lr_top:g} tuned per depth)",
                  ylabel="iterations to 1e-10 (median over seeds)")
