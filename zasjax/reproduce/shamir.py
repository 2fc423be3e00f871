"""Shamir (COLT 2019), "Exponential convergence time of gradient descent for one-dimensional
deep linear neural networks": with Xavier or near-identity initialisation, gradient descent
on a scalar deep linear network w_L ⋯ w_1 → Φ = −1 needs exp(Ω(L)) iterations; the
zero-asymmetric initialisation (Wu, Wang & Ma 2019) does not.

Inits (d = 1): Xavier w_l ~ N(0, 1); near-identity w_l = 1 + N(0, 1/L); ZAS w_L = 0,
w_l = 1. Every (init, depth, seed, η) runs in one vmapped sweep. η is chosen per
(init, depth) by one rule for every init: the grid point with the lowest median
iterations over seeds (a run that did not converge within the cap counts as ∞, so the
median is finite only when at least half converged), ties broken by the higher success
rate, then the larger η. The summary also reports the growth under the alternative
"success first" rule (most converged, then lowest median); at L ≤ 16 it is
noisier. The grid stops at η = 1/2 for every init (η = 1 would solve ZAS in one step, see
`fig2`). The summary also gives the per-seed oracle
(`best_per_config`: each seed's own fastest η), which can only favour Xavier and
near-identity.

Growth per init, over the depths where at least half the seeds converged (the median is
then a number, not "> cap"): the log-linear rate c of iterations ∝ e^{cL}
(`fit_log_linear`), the power-law exponent γ of iterations ∝ L^γ (`fit_power_law`) and the
local exponents on the lower and upper half of those depths. A power law has a constant
local exponent; exponential growth has one that grows ∝ L. `superpolynomial` is true when
the upper-half exponent exceeds 2 and 1.5 × the lower-half one.

Outputs in `--out`: `summary.json`, `shamir.csv` (every run), `shamir.png` (median
iterations vs L, log-y, one line per init) and `shamir_success.png` (success rate vs L).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._fits import fit_log_linear, fit_power_law
from .._plots import scaling_lines
from .._sweep import Grid, best_per_config, lr_grid, sweep
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "1-D deep linear net, Φ = −1: Xavier/near-identity need exp(L) iterations, ZAS not"

INITS = ("zas", "near-identity", "xavier")
LR_TOP = 0.5
COLUMNS = ("init", "depth", "seed", "lr", "iterations", "status", "final_loss", "chosen")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    depths: tuple[int, ...] = option((1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32),
                                     "comma list of depths")
    seeds: int = option(256, "seeds per (init, depth, η)")
    lr_lo: float = option(2.0**-14, f"smallest η of the grid; the top is {LR_TOP:g}")
    per_octave: int = option(2, "η grid points per factor of two")
    max_iters: int = option(200_000, "iteration cap")

    QUICK = dict(depths=(1, 2, 4, 6, 8, 10, 12, 14, 16), seeds=64, lr_lo=2.0**-10,
                 max_iters=20_000)

    def check(self):
        _runner.check_depths(self, "depths")
        _runner.check_at_least(self, 1, "seeds", "per_octave", "max_iters")
        if not 0 < self.lr_lo < LR_TOP:
            raise ValueError(f"lr_lo must lie in (0, {LR_TOP}), got {self.lr_lo}")


def _median(its: list[float]) -> float:
    m = float(np.median(its))
    return m if math.isfinite(m) else math.nan


def _rank_median(lr, its):
    return (float(np.median(its)), -sum(math.isfinite(i) for i in its), -lr)


def _rank_success(lr, its):
    return (-sum(math.isfinite(i) for i in its), float(np.median(its)), -lr)


#: η selection rules, applied identically to every init; "median" is the reported one.
RULES = {"median": _rank_median, "success": _rank_success}


def choose_lr(rows: list[dict], rule: str = "median") -> float:
    """The η of one (init, depth) from its rows (every seed, every η) under `rule`."""
    by_lr: dict[float, list[float]] = {}
    for r in rows:
        by_lr.setdefault(r["lr"], []).append(
            r["iterations"] if r["status"] == "converged" else math.inf)
    return min(by_lr, key=lambda lr: RULES[rule](lr, by_lr[lr]))


def growth(depths: list[int], its: list[float]) -> dict:
    """Fits of median iterations against depth (depths with a finite median only)."""
    pts = [(L, i) for L, i in zip(depths, its) if math.isfinite(i) and L > 1]
    ds, ys = [p[0] for p in pts], [p[1] for p in pts]
    half = len(ds) // 2
    lower = fit_power_law(ds[: half + 1], ys[: half + 1]) if half else math.nan
    upper = fit_power_law(ds[half:], ys[half:]) if half else math.nan
    return dict(fit_depths=ds, log_linear_rate=fit_log_linear(ds, ys),
                power_law_gamma=fit_power_law(ds, ys), local_gamma_lower=lower,
                local_gamma_upper=upper,
                superpolynomial=bool(upper > 2 and upper > 1.5 * lower))


def run(cfg: Config, files=None) -> Outcome:
    lrs = tuple(lr_grid(cfg.lr_lo, LR_TOP, cfg.per_octave))
    grid = Grid(inits=INITS, targets=("neg-identity",), dims=(1,), depths=tuple(cfg.depths),
                seeds=tuple(range(cfg.seeds)), lrs=lrs, eps=1e-10,
                max_iters=cfg.max_iters)
    rows = sweep(grid, dtype="float64", progress=True)
    oracle = best_per_config(rows)
    summary: dict = {}
    chosen: set = set()
    series, success = [], []
    for init in INITS:
        table = []
        for L in grid.depths:
            at = [r for r in rows if r["init"] == init and r["depth"] == L]
            lr = choose_lr(at)
            chosen.add((init, L, lr))
            runs = [r for r in at if r["lr"] == lr]
            its = [r["iterations"] if r["status"] == "converged" else math.inf for r in runs]
            orc = [r["iterations"] if r["status"] == "converged" else math.inf
                   for r in oracle if r["init"] == init and r["depth"] == L]
            table.append(dict(
                depth=L, lr=lr, success_rate=float(np.mean([math.isfinite(i) for i in its])),
                median_iterations=_median(its),
                quartile_iterations=[float(np.percentile(its, 25, method="lower")),
                                     float(np.percentile(its, 75, method="lower"))],
                oracle_success_rate=float(np.mean([math.isfinite(i) for i in orc])),
                oracle_median_iterations=_median(orc)))
        depths = [t["depth"] for t in table]
        fit = growth(depths, [t["median_iterations"] for t in table])
        alt = []
        for L in grid.depths:
            at = [r for r in rows if r["init"] == init and r["depth"] == L]
            lr = choose_lr(at, "success")
            alt.append(_median([r["iterations"] if r["status"] == "converged" else math.inf
                                for r in at if r["lr"] == lr]))
        summary[init] = dict(table=table, **fit, oracle=growth(
            depths, [t["oracle_median_iterations"] for t in table]),
            success_first_rule=dict(growth(depths, alt), median_iterations=alt))
        series.append(dict(label=f"{init}: rate {fit['log_linear_rate']:.2f}/layer, "
                                 f"γ {fit['local_gamma_lower']:.1f}→{fit['local_gamma_upper']:.1f}",
                           x=[t["depth"] for t in table],
                           y=[t["median_iterations"] for t in table]))
        success.append(dict(label=init, x=[t["depth"] for t in table],
                            y=[t["success_rate"] for t in table]))
    summary["lr_grid"] = dict(lo=cfg.lr_lo, top=LR_TOP, per_octave=cfg.per_octave,
                              rule="per (init, depth): lowest median iterations over seeds "
                                   "(not converged = ∞), then most converged, then larger η")
    summary["settings"] = dict(target=-1.0, dim=1, eps=1e-10, max_iters=cfg.max_iters,
                               seeds=cfg.seeds, depths=list(cfg.depths),
                               dtype="float64")
    csv_rows = [dict(r, chosen=(r["init"], r["depth"], r["lr"]) in chosen) for r in rows]
    return Outcome(summary, csv_rows, COLUMNS, plot=(series, success, cfg.max_iters))


def figure(outcome: Outcome, folder) -> None:
    """Median iterations vs L, log-y (`shamir.png`), and success vs L (`shamir_success.png`)."""
    series, success, max_iters = outcome.plot
    scaling_lines(series, f"{folder}/shamir.png", logx=False,
                  title="1-D deep linear net, Φ = −1: iterations to 1e-10",
                  ylabel="median iterations at the chosen η")
    scaling_lines(success, f"{folder}/shamir_success.png", logx=False, logy=False,
                  title=f"Success within {max_iters:,} iterations",
                  ylabel="fraction of seeds converged")

