"""Side-by-side benchmark: zasjax sweeps against PyTorch, the machine's matmul rate, and
the padding cost of depth buckets.

    python -m zasjax._bench [--quick] [--json OUT.json]

Cases (depth L = 100): d = 2 with B = 1024 configurations, d = 10 with B = 64, d = 100 with
B = 4. A configuration-step is one GD iteration of one configuration; GFLOP/s counts the 3L
products of d × d matrices per step (2d³ flops each). PyTorch is optional (`pip install
torch`); without it the ratios are null.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import _sweep
from ._run import Settings

L = 100
CASES = {"d2": (2, 1024), "d10": (10, 64), "d100": (100, 4)}


def _best(fn, repeats: int) -> float:
    """Best wall time of `fn()` over `repeats` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _flops_per_step(d: int) -> float:
    return 3 * L * 2 * d**3


# ---------------------------------------------------------------------------------------------
# zasjax: the compiled chunk a sweep runs, timed directly
# ---------------------------------------------------------------------------------------------


def zasjax_rate(d: int, B: int, matmul: str, steps: int, repeats: int,
                prefix: str = "sequential", loop: bool = False) -> float:
    """Configuration-steps per second of the sweep's compiled chunk (nothing finishes).

    `loop=True` runs each device's configurations one after another (`batching="loop"`).
    """
    grid = _sweep.Grid(inits=("near-identity",), targets=("gaussian",), dims=(d,), depths=(L,),
                       seeds=tuple(range(B)), lrs=(1e-4,), max_iters=10**9, eps=1e-30)
    rows = grid.configs()
    host = _sweep.build_inputs(grid, rows, L, jnp.float32)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("cfg",))
    axis = _sweep.batch_axis(matmul)
    W, phi, mask, lr = (_sweep._put(host[k], mesh, axis) for k in ("W", "phi", "mask", "lr"))
    settings = Settings("gd", (), matmul, prefix, steps)
    state = [_sweep._init_states(W, phi, lr, settings, axis)]
    eps, max_iters = jnp.float32(1e-30), jnp.int32(10**9)

    def chunk():
        state[0] = _sweep._advance_chunk(state[0], phi, mask, lr, eps, max_iters, settings, axis,
                                         mesh if loop else None)
        state[0].W.block_until_ready()

    return B * steps / _best(chunk, repeats)


# ---------------------------------------------------------------------------------------------
# PyTorch, as a user would write it
# ---------------------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_loop_rate(d: int, configs: int, steps: int) -> float | None:
    """Per-configuration loop: a list of L nn.Parameters, autograd, torch.optim.SGD."""
    torch = _torch()
    if torch is None:
        return None
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(configs):
        layers = [torch.nn.Parameter(torch.eye(d) + 0.01 * torch.randn(d, d, generator=gen))
                  for _ in range(L)]
        phi = torch.randn(d, d, generator=gen)
        opt = torch.optim.SGD(layers, lr=1e-4)
        for _ in range(steps):
            opt.zero_grad()
            P = layers[0]
            for W in layers[1:]:
                P = W @ P
            loss = 0.5 * ((P - phi) ** 2).sum()
            loss.backward()
            opt.step()
    return configs * steps / (time.perf_counter() - t0)


def torch_bmm_rate(d: int, B: int, steps: int) -> float | None:
    """Batched: one (B, L, d, d) parameter, products by torch.bmm, autograd, SGD."""
    torch = _torch()
    if torch is None:
        return None
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(torch.eye(d) + 0.01 * torch.randn(B, L, d, d, generator=gen))
    phi = torch.randn(B, d, d, generator=gen)
    opt = torch.optim.SGD([W], lr=1e-4)

    def run(n):
        for _ in range(n):
            opt.zero_grad()
            P = W[:, 0]
            for layer in range(1, L):
                P = torch.bmm(W[:, layer], P)
            loss = 0.5 * ((P - phi) ** 2).sum()
            loss.backward()
            opt.step()

    run(1)
    t0 = time.perf_counter()
    run(steps)
    return B * steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# Machine rate and depth sweep
# ---------------------------------------------------------------------------------------------


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(jnp.matmul)
    return 2 * n**3 / _best(lambda: f(a, a).block_until_ready(), repeats) / 1e9


def depth_sweep(max_depth: int, seeds: int, iters: int, bucket_ratio: float) -> dict:
    """One bucketed sweep of depths 1..max_depth vs one program per depth (ratio 1).

    Each is run twice in this process: the first (cold) call compiles, the second (warm)
    reuses the compiled programs, so cold − warm is the compile time. JAX's caches are
    cleared before each cold call, so neither side reuses the other's programs (a bucket
    of one depth compiles the same programs as that depth on its own).
    """
    grid = _sweep.Grid(inits=("near-identity",), targets=("gaussian",), dims=(2,),
                       depths=tuple(range(1, max_depth + 1)), seeds=tuple(range(seeds)),
                       lrs=(1e-4,), max_iters=iters, eps=1e-30)
    # Warm-up on a depth outside the grid, so that neither measurement pays JAX's one-off
    # tracing and kernel-cache costs (the first sweep of a process otherwise looks slower).
    warm = dataclasses.replace(grid, depths=(max_depth + 3,))
    _sweep.sweep(warm, chunk=iters + 1, dtype=jnp.float32)
    out = {}
    for name, ratio in (("bucketed", bucket_ratio), ("per_depth", 1.0)):
        times = []
        jax.clear_caches()
        for _ in range(2):
            t = time.perf_counter()
            _sweep.sweep(grid, chunk=iters + 1, bucket_ratio=ratio, dtype=jnp.float32)
            times.append(time.perf_counter() - t)
        out[name] = {"cold_s": times[0], "warm_s": times[1],
                     "compile_s": max(times[0] - times[1], 0.0),
                     "programs": len(_sweep.depth_buckets(grid.depths, ratio))}
    out["run_overhead"] = out["bucketed"]["warm_s"] / out["per_depth"]["warm_s"]
    out["compile_ratio"] = out["bucketed"]["compile_s"] / max(out["per_depth"]["compile_s"], 1e-9)
    out["total_ratio"] = out["bucketed"]["cold_s"] / out["per_depth"]["cold_s"]
    return out


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zasjax bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes for CI (< 2 minutes)")
    p.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    p.add_argument("--sweep-depth", type=int, default=None,
                   help="largest depth of the depth-sweep comparison (default 512, quick 16); "
                        "the per-depth side compiles one program per depth")
    return p


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    quick = args.quick
    repeats = 2 if quick else 5
    peak = matmul_peak_gflops(repeats=repeats)
    torch = _torch()
    if torch is None:
        print("PyTorch is not installed: torch columns are null (pip install torch)")
    cases = {}
    # Steps per timed call, chosen so one call takes ~0.1-0.5 s.
    steps = {"d2": 100 if quick else 400, "d10": 10 if quick else 40, "d100": 1 if quick else 3}
    for name, (d, B) in CASES.items():
        strategies = ["unrolled", "dot"] if d <= 10 else ["dot"]
        rates = {mm: zasjax_rate(d, B, mm, steps[name], repeats) for mm in strategies}
        if d >= 10:
            rates["dot-loop"] = zasjax_rate(d, B, "dot", steps[name], repeats, loop=True)
        if not quick and d >= 10:
            rates["dot+associative"] = zasjax_rate(d, B, "dot", steps[name], repeats,
                                                   prefix="associative")
        best = max(rates, key=rates.get)
        rate = rates[best]
        loop = torch_loop_rate(d, configs=2, steps={2: 20, 10: 10, 100: 2}[d])
        bmm = torch_bmm_rate(d, B, steps={2: 10, 10: 10, 100: 2}[d])
        gflops = rate * _flops_per_step(d) / 1e9
        cases[name] = dict(d=d, L=L, B=B, strategy=best, rates_by_strategy=rates,
                           cfg_steps_per_s=rate, torch_loop_cfg_steps_per_s=loop,
                           torch_bmm_cfg_steps_per_s=bmm,
                           ratio_vs_torch_loop=_ratio(rate, loop),
                           ratio_vs_torch_bmm=_ratio(rate, bmm), gflops=gflops,
                           fraction_of_matmul_peak=gflops / peak)
        print(f"measured {name}: {rate:,.0f} config-steps/s ({best})", flush=True)
    max_depth = args.sweep_depth or (16 if quick else 512)
    if max_depth < 1:
        raise ValueError(f"--sweep-depth must be >= 1, got {max_depth}")
    print(f"depth sweep 1..{max_depth}: bucketed vs one program per depth ...", flush=True)
    sweep = {"max_depth": max_depth, **depth_sweep(max_depth, 4 if quick else 8,
                                                   10 if quick else 50, 1.2)}
    result = {
        "matmul_peak_gflops": peak,
        "depth_sweep_overhead": sweep["run_overhead"],
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()}, "
                  f"jax {jax.__version__})",
        "cases": cases,
        "depth_sweep": sweep,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "quick": quick,
    }
    _print(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def _fmt(x, spec=",.0f"):
    return "null" if x is None else format(x, spec)


def _print(r: dict) -> None:
    print(f"device: {r['device']}   dense f32 matmul (n=1024): {r['matmul_peak_gflops']:.1f} "
          f"GFLOP/s   peak RSS: {r['peak_rss_mib']:.0f} MiB")
    print(f"{'case':5} {'strategy':16} {'cfg-steps/s':>13} {'torch loop':>11} {'torch bmm':>11} "
          f"{'x loop':>9} {'x bmm':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for name, c in r["cases"].items():
        print(f"{name:5} {c['strategy']:16} {_fmt(c['cfg_steps_per_s']):>13} "
              f"{_fmt(c['torch_loop_cfg_steps_per_s']):>11} "
              f"{_fmt(c['torch_bmm_cfg_steps_per_s']):>11} "
              f"{_fmt(c['ratio_vs_torch_loop']):>9} {_fmt(c['ratio_vs_torch_bmm'], ',.1f'):>8} "
              f"{c['gflops']:8.2f} {c['fraction_of_matmul_peak']:8.1%}")
        others = ", ".join(f"{k} {v:,.0f}" for k, v in c["rates_by_strategy"].items())
        print(f"      strategies: {others}")
    s = r["depth_sweep"]
    b, p = s["bucketed"], s["per_depth"]
    print(f"depth sweep: bucketed ({b['programs']} programs) run {b['warm_s']:.2f} s, compile "
          f"{b['compile_s']:.2f} s; per depth ({p['programs']} programs) run {p['warm_s']:.2f} s, "
          f"compile {p['compile_s']:.2f} s; run overhead {s['run_overhead']:.2f}x, compile "
          f"ratio {s['compile_ratio']:.2f}x, total {s['total_ratio']:.2f}x")


if __name__ == "__main__":
    main()
