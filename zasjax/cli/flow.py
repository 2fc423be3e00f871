"""`zasjax flow`: the gradient flow (diffrax) beside gradient descent at several step sizes.

Writes, into `--out DIR`:

* `flow.csv`: `t, loss_flow, loss_gd_<lr>…` at `--n-save` equally spaced t ∈ [0, t_max]
  (GD at step round(t/η));
* `flow_summary.json`: Theorem 4.1's ratio max_t R(t)/(e^{−2t}R(0)), the flow's invariant
  drift, the GD-to-flow gaps and their log-log slope in η, and the run's settings;
* `flow.png`: R(t) against e^{−2t}R(0), with the GD curves on top (log-y).

Every input is checked before anything is computed or written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from .._flow import compare_gd_flow
from .._inits import INITS, make_init
from .._modes import compare_gd_flow_modes
from .._run import STATUS_NAMES
from .._sharpness import zas_minimum_sharpness
from .._store import check_folder, write_csv, write_json
from .._targets import TARGETS, load_target, make_target
from .._theory import flow_rate_ratios, zas_lr_bound

#: Most rows of flow.csv: each row holds every learning rate's loss.
MAX_SAVES = 1_000_000

#: ODE tolerances when none are given: tight in float64, what float32 can resolve otherwise.
DEFAULT_TOLERANCES = {"float64": (1e-8, 1e-10), "float32": (1e-5, 1e-7)}


HELP = "gradient flow via diffrax, beside GD"
DESCRIPTION = "Solve dW/dt = -∇R(W) with diffrax and compare GD at t = ηk."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `flow` options to `parser`."""
    parser.add_argument("--init", default="zas",
                        help=f"initialisation, one of {', '.join(sorted(INITS))} (default zas)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target", help=f"named target: {', '.join(sorted(TARGETS))}")
    target.add_argument("--target-file", help="a .npy file holding a dim × dim target Φ")
    parser.add_argument("--dim", type=int, default=4, help="width d (default 4)")
    parser.add_argument("--depth", type=int, default=8, help="depth L (default 8)")
    parser.add_argument("--t-max", type=float, default=10.0, help="flow horizon (default 10)")
    parser.add_argument("--n-save", type=int, default=101,
                        help="rows of flow.csv: equally spaced times in [0, t-max] (default 101)")
    parser.add_argument("--lrs", default="0.1,0.05,0.02,0.01",
                        help="GD learning rates, comma separated (>= 4 for a slope fit)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed for init and target")
    parser.add_argument("--rtol", type=float, default=None,
                        help="ODE relative tolerance (default 1e-8 in float64, 1e-5 in float32)")
    parser.add_argument("--atol", type=float, default=None,
                        help="ODE absolute tolerance (default 1e-10 in float64, 1e-7 in float32)")
    parser.add_argument("--engine", default="full", choices=("full", "modes"),
                        help="full: every layer; modes: the exact mode reduction from ZAS "
                             "(--init zas only), at any depth")
    parser.add_argument("--x64", action="store_true", help="float64 (recommended)")
    parser.add_argument("--out", default="runs/flow", help="output folder (default runs/flow)")


def _parse_lrs(text) -> list[float]:
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        lrs = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--lrs expects numbers separated by commas, got {text!r}") from None
    if not lrs:
        raise ValueError(f"--lrs expects at least one learning rate, got {text!r}")
    bad = [lr for lr in lrs if not (math.isfinite(lr) and lr > 0)]
    if bad:
        raise ValueError(f"--lrs: every learning rate must be a finite number > 0, got {bad}")
    names = [f"{lr:g}" for lr in lrs]
    if len(set(names)) != len(names):
        raise ValueError(f"--lrs: learning rates must be distinct, got {text!r}")
    return lrs


def _validate(args) -> dict:
    """Every check that can fail, as one-line ValueErrors, before any work or any file."""
    if args.depth < 1:
        raise ValueError(f"--depth must be >= 1, got {args.depth}")
    if args.dim < 1:
        raise ValueError(f"--dim must be >= 1, got {args.dim}")
    if not (math.isfinite(args.t_max) and args.t_max > 0):
        raise ValueError(f"--t-max must be a finite number > 0, got {args.t_max}")
    if not 2 <= args.n_save <= MAX_SAVES:
        raise ValueError(f"--n-save must be in [2, {MAX_SAVES:,}] (the rows include t = 0 and "
                         f"t = t-max), got {args.n_save}")
    if args.init not in INITS:
        raise ValueError(f"--init must be one of {sorted(INITS)}, got {args.init!r}")
    if (args.target is None) == (args.target_file is None):
        raise ValueError("give exactly one of --target NAME and --target-file PHI.npy")
    if args.target is not None and args.target not in TARGETS:
        raise ValueError(f"--target must be one of {sorted(TARGETS)}, got {args.target!r}")
    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name} must be a finite number > 0, got {value}")
    if args.engine == "modes" and args.init != "zas":
        raise ValueError(f"--engine modes is exact only from ZAS, got --init {args.init}")
    lrs = _parse_lrs(args.lrs)
    too_big = [lr for lr in lrs if lr >= args.t_max]
    if too_big:
        raise ValueError(f"--lrs {too_big} are not below --t-max {args.t_max}: GD would take "
                         "no step within the horizon")
    check_folder(args.out)
    phi_file = None
    if args.target_file is not None:
        phi_file = load_target(args.target_file, (args.dim, args.dim))
    return {"lrs": lrs, "phi_file": phi_file}


def prepare(args: argparse.Namespace):
    """Every check, before any work or file (ValueError: a usage error)."""
    return args, _validate(args)


def execute(job) -> int:
    run(*job)
    return 0


def _warn_unstable(args, phi, lrs, cmp) -> None:
    """Learning rates GD cannot follow the flow with: they diverged, or (from ZAS) exceed
    2/λ_max at the solution the flow reaches, so their gaps say nothing about O(η)."""
    bad = {f"{lr:g}" for lr, v in zip(lrs, cmp.gd_status) if STATUS_NAMES[int(v)] == "diverged"}
    if args.init == "zas":
        s_max = float(np.linalg.svd(np.asarray(phi, float), compute_uv=False)[0])
        limit = 2.0 / float(zas_minimum_sharpness(s_max, args.depth))
        bad |= {f"{lr:g}" for lr in lrs if lr > limit}
    if bad:
        where = f" (2/λ_max at the solution is {limit:.3g})" if args.init == "zas" else ""
        print(f"zasjax flow: warning: GD at η = {', '.join(sorted(bad))} is beyond its "
              f"stability limit{where}; those gaps to the flow say nothing about O(η)",
              file=sys.stderr)


def main(args: argparse.Namespace) -> dict:
    """Run `zasjax flow`; returns the summary that is also written to flow_summary.json."""
    return run(args, _validate(args))


def run(args: argparse.Namespace, checked: dict) -> dict:
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    dname = jnp.dtype(dtype).name
    rtol = args.rtol if args.rtol is not None else DEFAULT_TOLERANCES[dname][0]
    atol = args.atol if args.atol is not None else DEFAULT_TOLERANCES[dname][1]
    lrs = checked["lrs"]

    k_init, k_target = jax.random.split(jax.random.key(args.seed))
    d, L = args.dim, args.depth
    if checked["phi_file"] is not None:
        phi = jnp.asarray(checked["phi_file"], dtype)
        target_name = os.fspath(args.target_file)
    else:
        phi = make_target(args.target, k_target, (d, d), dtype)
        target_name = args.target
    ts = np.linspace(0.0, args.t_max, args.n_save)
    if args.engine == "modes":
        cmp = compare_gd_flow_modes(phi, L, lrs, args.t_max, ts=ts, rtol=rtol, atol=atol)
    else:
        W0 = make_init(args.init, k_init, (d,) * (L + 1), dtype=dtype)
        cmp = compare_gd_flow(W0, phi, lrs, args.t_max, ts=ts, rtol=rtol, atol=atol)
    _warn_unstable(args, phi, lrs, cmp)
    flow = cmp.flow
    loss_flow = np.asarray(flow.losses, float)
    ratios = np.asarray(flow_rate_ratios(jnp.asarray(ts, dtype), flow.losses), float)
    bound = loss_flow[0] * np.exp(-2.0 * ts)

    labels = [f"{lr:g}" for lr in lrs]
    steps = [np.rint(ts / lr).astype(int) for lr in lrs]
    gd_at_ts = [cmp.gd_losses[i][steps[i]] for i in range(len(lrs))]
    columns = ["t", "loss_flow"] + [f"loss_gd_{s}" for s in labels]
    rows = [{"t": float(t), "loss_flow": float(loss_flow[j]),
             **{f"loss_gd_{s}": float(gd_at_ts[i][j]) for i, s in enumerate(labels)}}
            for j, t in enumerate(ts)]

    out = args.out
    files = {name: os.path.join(out, name) for name in ("flow.csv", "flow_summary.json",
                                                        "flow.png")}
    summary = {
        "max_ratio_to_exp_bound": float(np.nanmax(ratios)),
        "max_invariant_drift_flow": float(np.max(np.asarray(flow.invariant_drift))),
        "gd_gap_slope": cmp.slope,
        "gd_gaps": dict(zip(labels, map(float, cmp.gaps))),
        "gd_invariant_drift": dict(zip(labels, map(float, cmp.gd_drifts))),
        "gd_drift_slope": cmp.drift_slope,
        "gd_status": {s: STATUS_NAMES[int(v)] for s, v in zip(labels, cmp.gd_status)},
        "flow_ok": bool(flow.ok),
        "flow_solver_steps": int(flow.n_steps),
        "loss0": float(loss_flow[0]),
        "final_loss_flow": float(loss_flow[-1]),
        "theorem_4_1_applies": args.init == "zas",
        "theorem_4_3_lr_bound": float(zas_lr_bound(L, phi)),
        "engine": args.engine,
        "config": {"init": args.init, "target": target_name, "dim": d, "depth": L,
                   "t_max": args.t_max, "n_save": args.n_save, "lrs": lrs, "seed": args.seed,
                   "rtol": rtol, "atol": atol, "dtype": dname, "solver": "Tsit5+PID"},
        "files": files,
    }
    write_csv(files["flow.csv"], rows, columns)
    from .._plots import flow_vs_gd

    flow_vs_gd(files["flow.png"], ts, loss_flow, bound,
               {f"η={s}": (lr * np.arange(len(cmp.gd_losses[i])), cmp.gd_losses[i])
                for i, (s, lr) in enumerate(zip(labels, lrs))},
               title=f"{args.init}, Φ={os.path.basename(target_name)}, d={d}, L={L}")
    write_json(files["flow_summary.json"], summary)
    return summary


__all__ = ["add_arguments", "prepare", "execute", "main", "DEFAULT_TOLERANCES"]
