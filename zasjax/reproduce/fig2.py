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

import argparse
import math
import sys
import time

import numpy as np

from .._plots import scaling_lines
from .._sweep import Grid, best_per_config, lr_grid, sweep
from ._common import fit_power_law, prepare_out, write_outputs

DESCRIPTION = "ZAS iterations to 1e-10 vs depth, η tuned per depth (Wu-Wang-Ma Fig. 2)"

#: case key -> (target, dim); the summary is keyed the same way.
CASES: dict[str, tuple[str, int]] = {
    "neg-identity_d1": ("neg-identity", 1),
    "gaussian_d2": ("gaussian", 2),
    "neg-identity_d100": ("neg-identity", 100),
    "gaussian_d100": ("gaussian", 100),
}
QUICK_CASES = ("neg-identity_d1", "gaussian_d2")

_LOG_DEPTHS = tuple(sorted({round(2 ** (k / 2)) for k in range(25)}))  # 1 .. 4096
_FULL = dict(depths=_LOG_DEPTHS, depths_wide=tuple(2**k for k in range(11)), seeds=5,
             per_octave=4, max_iters=100_000)
_QUICK = dict(depths=(1, 2, 4, 8, 16, 32, 64), depths_wide=(1, 2, 4, 8, 16, 32, 64), seeds=3,
              per_octave=2, max_iters=20_000)
#: The one-step η: included in every sweep, left out of the fitted grid (see module doc).
ONE_STEP_LR = 1.0
#: Grid tops the summary compares (γ as a function of the largest η allowed).
TOPS = (1.0, 0.5, 0.25, 0.125)
COLUMNS = ("case", "target", "dim", "depth", "seed", "lr", "iterations", "status",
           "final_loss", "chosen")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", type=_names, default=None,
                        help=f"comma list from {list(CASES)} (default all; quick: d = 1, 2)")
    parser.add_argument("--depths", type=_ints, default=None,
                        help="depths for d <= 2 (default 1..4096 at two per octave; quick "
                             "1..64); d = 100 uses powers of two up to 1024 (quick: to 64)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per Gaussian case (default 5, quick 3); −I is "
                             "deterministic under ZAS, so it runs one")
    parser.add_argument("--lr-top", type=float, default=0.5,
                        help="largest η of the fitted grid (default 1/2; η = 1 is the "
                             "one-step shortcut)")
    parser.add_argument("--per-octave", type=int, default=None,
                        help="η grid points per factor of two (default 4, quick 2)")
    parser.add_argument("--max-iters", type=int, default=None)


def _config(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    base = _QUICK if quick else _FULL
    cfg = dict(base)
    for name in ("depths", "seeds", "per_octave", "max_iters"):
        if getattr(args, name, None) is not None:
            cfg[name] = getattr(args, name)
    if getattr(args, "depths", None) is not None:
        cfg["depths_wide"] = tuple(args.depths)
    cfg["cases"] = tuple(getattr(args, "cases", None) or (QUICK_CASES if quick else CASES))
    cfg["lr_top"] = float(getattr(args, "lr_top", 0.5))
    cfg["quick"] = quick
    unknown = [c for c in cfg["cases"] if c not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; expected some of {list(CASES)}")
    if not cfg["depths"] or min(cfg["depths"]) < 1:
        raise ValueError(f"depths must be positive integers, got {cfg['depths']}")
    if cfg["seeds"] < 1 or cfg["per_octave"] < 1 or cfg["max_iters"] < 1:
        raise ValueError("--seeds, --per-octave and --max-iters must be >= 1")
    if not 0 < cfg["lr_top"] <= ONE_STEP_LR:
        raise ValueError(f"--lr-top must lie in (0, 1], got {cfg['lr_top']}")
    return cfg


def lr_floor(depth: int, target: str, dim: int) -> float:
    """Smallest η tried at `depth`: 2⁻⁴ below the stability scale 1/(L‖Φ‖₂²)."""
    norm2 = 1.0 if target == "neg-identity" else 4.0 * dim
    return 2.0**-4 / (depth * norm2)


def lrs_for(depth: int, target: str, dim: int, per_octave: int) -> tuple[float, ...]:
    """The η grid at one depth: powers of 2^{1/per_octave} from the floor up to η = 1."""
    floor = lr_floor(depth, target, dim)
    return tuple(x for x in lr_grid(2.0**-40, ONE_STEP_LR, per_octave) if x >= floor * 0.9999)


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


def main(args) -> dict:
    cfg = _config(args)
    out = prepare_out(args.out)
    import jax

    jax.config.update("jax_enable_x64", True)
    started = time.perf_counter()
    summary: dict = {}
    csv_rows: list[dict] = []
    series = []
    for case in cfg["cases"]:
        target, dim = CASES[case]
        depths = cfg["depths"] if dim <= 2 else cfg["depths_wide"]
        seeds = (0,) if target == "neg-identity" else tuple(range(cfg["seeds"]))
        rows, floors = [], {}
        for L in depths:
            floors[L] = lr_floor(L, target, dim)
            t0 = time.perf_counter()
            grid = Grid(inits=("zas",), targets=(target,), dims=(dim,), depths=(L,),
                        seeds=seeds, lrs=lrs_for(L, target, dim, cfg["per_octave"]),
                        eps=1e-10, max_iters=cfg["max_iters"])
            rows += sweep(grid, dtype="float64")
            print(f"[fig2] {case} L={L}: {len(grid.lrs)} η × {len(seeds)} seeds in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        entry = analyse(rows, cfg["lr_top"], floors)
        entry.update(target=target, dim=dim, seeds=list(seeds))
        summary[case] = entry
        chosen = {(r["depth"], r["seed"], r["lr"]) for r in
                  best_per_config([r for r in rows if r["lr"] <= cfg["lr_top"] * 1.0001])}
        csv_rows += [dict(r, case=case, chosen=(r["depth"], r["seed"], r["lr"]) in chosen)
                     for r in rows]
        series.append(dict(label=f"Φ={target}, d={dim}: γ={entry['gamma']:.2f} "
                                 f"(L≥{min(entry['fit_depths'], default=0)})",
                           x=[t["depth"] for t in entry["table"]],
                           y=[t["iterations"] for t in entry["table"]]))
    summary["lr_grid"] = dict(
        fitted_top=cfg["lr_top"], sweep_top=ONE_STEP_LR, per_octave=cfg["per_octave"],
        floor="2^-4 / (L * s), s = 1 for −I and 4d for a Gaussian Φ (≈ ‖Φ‖₂²)",
        why=("η = 1 solves any target in one step from ZAS (W_L ← Φ), so the fit uses "
             f"η ≤ {cfg['lr_top']:g}; γ is fitted on the depths whose best η lies strictly "
             "below that top, where the count measures depth rather than the grid's cap"))
    summary["settings"] = dict(eps=1e-10, max_iters=cfg["max_iters"], dtype="float64",
                               depths=list(cfg["depths"]), cases=list(cfg["cases"]))
    scaling_lines(series, f"{out}/fig2.png",
                  title=f"ZAS, iterations to 1e-10 (η ≤ {cfg['lr_top']:g} tuned per depth)",
                  ylabel="iterations to 1e-10 (median over seeds)")
    return write_outputs(out, "fig2", summary, csv_rows, COLUMNS, cfg["quick"], started)
