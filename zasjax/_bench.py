"""The side-by-side benchmark, `zasjax bench` (its options: `BenchSpec`).

zasjax sweeps against PyTorch, the machine's matmul rate, and the padding cost of depth
buckets.

    zasjax bench [--quick] [--json OUT.json]

Cases (depth L = 100): d = 2 with B = 1024 configurations, d = 10 with B = 64, d = 100 with
B = 4; the d = 100 case also on one CPU device beside one device per core (the per-core
rate measured in a subprocess started with that many devices), in the same run. A
configuration-step is one GD iteration of one configuration; GFLOP/s counts the 3L products
of d × d matrices per step (2d³ flops each). PyTorch is optional (`pip install
torch`); without it the ratios are null.

A completion case (deep matrix factorization, Arora, Cohen, Hu & Luo 2019): n = 100, depth
3, a rank-5 target, 2,000 observed entries, small Gaussian init, GD on B seeds as a sweep
runs them, beside the peers' PyTorch loop (roosephu/deep_matrix_factorization, main.py: a
stack of bias-free `nn.Linear`, the end-to-end product, the mean squared error on the
observed entries, `loss.backward()`, `optim.SGD`), one configuration after another and
batched by `torch.bmm`; each at PyTorch's default thread count and on one thread.

A diagonal-network case (issue 29): β = Πw₊ − Πw₋ at d = 1000, depth 2, linear regression on
n = 100 samples of a 5-sparse β*, 64 configurations (8 init scales α × 8 seeds), GD as a
sweep runs it, beside PyTorch one configuration at a time (autograd, as the papers' scripts,
and the gradient by hand) and all 64 stacked; GFLOP/s counts Xβ and Xᵀr (4nd flops a step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import _sweep
from ._compilation import Timer, use_cache_dir
from ._inits import make_init
from ._objectives import Completion, observed_entries
from ._options import option
from ._run import RUNNING, run as gd_run
from ._sweep._distributed import cores
from ._sweep._driver import slice_program
from ._targets import low_rank_target

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
                prefix: str = "sequential", loop: bool = False, devices=None) -> float:
    """Configuration-steps per second of the sweep's compiled chunk (nothing finishes).

    `loop=True` runs each device's configurations one after another (`batching="loop"`);
    `devices`: the devices the B configurations are split over (default: one).
    """
    grid = _sweep.Grid(inits=("near-identity",), targets=("gaussian",), dims=(d,), depths=(L,),
                       seeds=tuple(range(B)), lrs=(1e-4,), max_iters=10**9 - 1, eps=1e-30)
    state, advance = slice_program(grid, grid.configs(), L, dtype=jnp.float32, chunk=steps,
                                   matmul=matmul, prefix=prefix,
                                   batching="loop" if loop else "vmap",
                                   devices=devices or jax.devices()[:1])
    state = [state]

    def chunk():
        state[0] = advance(state[0])
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
# Matrix completion: zasjax's sweep programs against the peers' PyTorch loop
# ---------------------------------------------------------------------------------------------

#: n, depth, rank of the target, observed entries, configurations (seeds).
COMPLETION = dict(d=100, L=3, rank=5, observations=2000, B=8)
#: The peers' SGD learning rate (configs/opt/SGD.toml) and init scale s (main.py: std
#: s^{1/L}/√n per layer, ‖W_{L:1}‖_F ≈ s√n), roosephu/deep_matrix_factorization.
PEER_LR, PEER_INIT_SCALE = 0.01, 1e-3


def completion_lr() -> float:
    """Our learning rate giving the peers' iterates: their loss, the mean squared error over
    N observed entries, is 2/N times `Completion`'s ½ Σ, so η = 2 · PEER_LR / N."""
    return 2 * PEER_LR / COMPLETION["observations"]


def completion_grid(B: int) -> _sweep.Grid:
    c = COMPLETION
    return _sweep.Grid(objective="completion", observations=(c["observations"],),
                       targets=("low-rank",), rank=c["rank"], inits=("small-gaussian",),
                       init_scale=(PEER_INIT_SCALE * c["d"] ** 0.5,), dims=(c["d"],),
                       depths=(c["L"],), seeds=tuple(range(B)), lrs=(completion_lr(),),
                       max_iters=10**9 - 1, eps=1e-30)


def _grid_rate(grid: _sweep.Grid, capacity: int, steps: int, repeats: int,
               batching: str = "auto") -> float:
    """Configuration-steps per second of the sweep's compiled chunk on every configuration
    of `grid` (float32, one device), checked to have stepped every configuration."""
    rows = grid.configs()
    state, advance = slice_program(grid, rows, capacity, dtype=jnp.float32, chunk=steps,
                                   matmul="dot", batching=batching, devices=jax.devices()[:1])
    state = [state]

    def chunk():
        state[0] = advance(state[0])
        state[0].W.block_until_ready()

    rate = len(rows) * steps / _best(chunk, repeats)
    if not np.all(np.asarray(state[0].status) == RUNNING):
        # A finished configuration stops stepping: the rate would count steps not taken.
        raise RuntimeError(f"a {grid.objective} configuration finished while being timed")
    return rate


def completion_rate(B: int, steps: int, repeats: int, batching: str) -> float:
    """Configuration-steps per second of the sweep's compiled chunk on the completion grid
    (`batching`: "loop", each configuration after another, or "vmap")."""
    return _grid_rate(completion_grid(B), COMPLETION["L"], steps, repeats, batching)


def completion_vmap_run_rate(B: int, steps: int, repeats: int) -> float:
    """The same problems through the plain API: `jax.jit(jax.vmap(run))` on B seeds, each
    drawing its init, rank-5 target and observed entries."""
    c = COMPLETION
    d, L = c["d"], c["L"]

    def problem(seed):
        key = jax.random.key(seed)
        W0 = make_init("small-gaussian", jax.random.fold_in(key, 0), (d,) * (L + 1),
                       scale=PEER_INIT_SCALE * d**0.5, dtype=jnp.float32)
        phi = low_rank_target(jax.random.fold_in(key, 1), (d, d), c["rank"],
                              dtype=jnp.float32)
        observed = observed_entries(jax.random.fold_in(key, 2), (d, d), c["observations"])
        return W0, Completion(phi, observed)

    W0, objective = jax.vmap(problem)(jnp.arange(B))
    f = jax.jit(jax.vmap(lambda W, o: gd_run(W, o, lr=completion_lr(), eps=1e-30,
                                              max_iters=steps, record_every=steps).W))
    return B * steps / _best(lambda: f(W0, objective).block_until_ready(), repeats)


@contextlib.contextmanager
def _threads(torch, n: int | None):
    """PyTorch's intra-op thread count set to `n` (None: left as it is) for a block."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _peer_problem(torch, gen, batch: int | None = None):
    """A rank-r target Φ (‖Φ‖_F = n, gen_gt.py), N observed entries drawn without
    replacement (gen_obs.py) as flat indices, and their values; with `batch`, one per
    configuration, stacked."""
    c = COMPLETION
    d, r, N = c["d"], c["rank"], c["observations"]

    def one():
        gt = torch.randn(d, r, generator=gen) @ torch.randn(r, d, generator=gen)
        gt = gt * (d / gt.norm())
        flat = torch.randperm(d * d, generator=gen)[:N]
        return flat, gt.reshape(-1)[flat]

    if batch is None:
        return one()
    flats, ys = zip(*(one() for _ in range(batch)))
    return torch.stack(flats), torch.stack(ys)


def _peer_std() -> float:
    d, L = COMPLETION["d"], COMPLETION["L"]
    return PEER_INIT_SCALE ** (1 / L) * d**-0.5


def peer_e2e(model):
    """The peers' end-to-end matrix (main.py, `get_e2e`): W_1ᵀ, then each layer applied."""
    e2e = None
    for fc in model.children():
        e2e = fc.weight.t() if e2e is None else fc(e2e)
    return e2e


def peer_step(model, us, vs, ys, opt):
    """One step of the peers' loop: their mean squared error on the observed entries,
    `backward`, the optimiser's step (their per-step logging and stopping test left out)."""
    loss = (peer_e2e(model)[us, vs] - ys).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def torch_completion_loop_rate(configs: int, steps: int, threads: int | None = None
                               ) -> float | None:
    """The peers' formulation, one configuration after another: `nn.Sequential` of bias-free
    `nn.Linear` layers (std s^{1/L}/√n), `optim.SGD(lr=0.01)`. The best configuration's
    rate (a first one, two steps untimed, warms up)."""
    torch = _torch()
    if torch is None:
        return None
    d, L = COMPLETION["d"], COMPLETION["L"]
    gen = torch.Generator().manual_seed(0)
    best = float("inf")
    with _threads(torch, threads):
        for i in range(configs + 1):
            model = torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(L)])
            for p in model.parameters():
                torch.nn.init.normal_(p, std=_peer_std(), generator=gen)
            flat, ys = _peer_problem(torch, gen)
            us, vs = flat // d, flat % d
            opt = torch.optim.SGD(model.parameters(), lr=PEER_LR)
            t0 = time.perf_counter()
            for _ in range(steps if i else 2):
                peer_step(model, us, vs, ys, opt)
            if i:
                best = min(best, time.perf_counter() - t0)
    return steps / best


def torch_completion_bmm_rate(B: int, steps: int, repeats: int, threads: int | None = None
                              ) -> float | None:
    """Batched: one (B, L, n, n) parameter, the peers' product by `torch.bmm`, each
    configuration's mean squared error (summed over configurations, so each gradient is its
    own), SGD. Best of `repeats` after a warm-up."""
    torch = _torch()
    if torch is None:
        return None
    d, L = COMPLETION["d"], COMPLETION["L"]
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(_peer_std() * torch.randn(B, L, d, d, generator=gen))
    flat, ys = _peer_problem(torch, gen, B)
    opt = torch.optim.SGD([W], lr=PEER_LR)

    def run():
        for _ in range(steps):
            e2e = W[:, 0].transpose(1, 2)
            for layer in range(1, L):
                e2e = torch.bmm(e2e, W[:, layer].transpose(1, 2))
            loss = (e2e.reshape(B, -1).gather(1, flat) - ys).pow(2).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

    with _threads(torch, threads):
        return B * steps / _best(run, repeats)


def completion_case(quick: bool = False, repeats: int = 5) -> dict:
    """zasjax against the peers' PyTorch on the completion case, side by side in this run;
    prints and returns the figures. Ratios are against PyTorch's faster thread setting;
    `load_average` is the machine's 1-minute load before and after (on a shared machine the
    rates move with it: compare within one run).

        python -c "from zasjax import _bench; _bench.completion_case()"
    """
    c = COMPLETION
    B, steps = c["B"], 50 if quick else 200
    load = [os.getloadavg()[0]]
    rates = {"sweep loop": completion_rate(B, steps, repeats, "loop")}
    if not quick:
        rates["sweep vmap"] = completion_rate(B, steps, repeats, "vmap")
        rates["vmap(run)"] = completion_vmap_run_rate(B, steps, repeats)
    best = max(rates, key=rates.get)
    torch = _torch()
    default = None if torch is None else torch.get_num_threads()
    # Steps per timed run: PyTorch's default threads can be 30x slower under load.
    t_steps, configs = (5, 1) if quick else (40, 3)
    loop = {"default": torch_completion_loop_rate(configs, t_steps),
            "1 thread": torch_completion_loop_rate(configs, 10 * t_steps, threads=1)}
    bmm = {"default": torch_completion_bmm_rate(B, max(1, t_steps // 4), repeats),
           "1 thread": torch_completion_bmm_rate(B, t_steps, repeats, threads=1)}
    load.append(os.getloadavg()[0])
    best_loop = max((v for v in loop.values() if v is not None), default=None)
    best_bmm = max((v for v in bmm.values() if v is not None), default=None)
    rate = rates[best]
    out = dict(**c, dtype="float32", lr=completion_lr(), torch_lr=PEER_LR,
               init_scale=PEER_INIT_SCALE * c["d"] ** 0.5, steps_per_call=steps,
               strategy=best, rates_by_strategy=rates, cfg_steps_per_s=rate,
               torch_threads_default=default,
               torch_loop_cfg_steps_per_s=loop, torch_bmm_cfg_steps_per_s=bmm,
               ratio_vs_torch_loop=_ratio(rate, best_loop),
               ratio_vs_torch_bmm=_ratio(rate, best_bmm),
               ratio_vs_torch_loop_default_threads=_ratio(rate, loop["default"]),
               load_average=load)
    print(_completion_text(out), flush=True)
    return out


def _completion_text(c: dict) -> str:
    loop, bmm = c["torch_loop_cfg_steps_per_s"], c["torch_bmm_cfg_steps_per_s"]
    others = ", ".join(f"{k} {v:,.0f}" for k, v in c["rates_by_strategy"].items())
    return (f"completion (n={c['d']}, L={c['L']}, rank {c['rank']}, {c['observations']:,} "
            f"observed, B={c['B']}, float32): {_fmt(c['cfg_steps_per_s'])} config-steps/s "
            f"({c['strategy']}); torch loop {_fmt(loop['default'])} "
            f"({_fmt(c['torch_threads_default'], 'd')} threads), {_fmt(loop['1 thread'])} "
            f"(1 thread); torch bmm {_fmt(bmm['default'])}, {_fmt(bmm['1 thread'])} (1 "
            f"thread); x loop {_fmt(c['ratio_vs_torch_loop'], ',.1f')}, x bmm "
            f"{_fmt(c['ratio_vs_torch_bmm'], ',.1f')} (against the faster torch); load "
            + " -> ".join(f"{x:.1f}" for x in c["load_average"])
            + f"\n      strategies: {others}")


# ---------------------------------------------------------------------------------------------
# Diagonal linear networks: the sweep's programs against per-run and batched PyTorch
# ---------------------------------------------------------------------------------------------

#: d features, n samples, depth, nonzeros of the planted β*, configurations (8 init scales ×
#: 8 seeds: each seed its own X, β*, y).
DIAGONAL = dict(d=1000, n=100, L=2, sparsity=5, B=64)
#: The init scales α (every weight starts at α; Woodworth et al.'s kernel-to-rich range) and
#: the step on R = (1/2n)‖Xβ − y‖²: stable at every α over the timed steps.
DIAGONAL_SCALES = tuple(float(a) for a in np.logspace(-3, 0, DIAGONAL["B"]))
DIAGONAL_LR = 1e-3


def diagonal_data() -> dict[str, np.ndarray]:
    """The case's one problem (the init scales sweep it): Gaussian X (n, d), β* with k
    entries ±1 on a random support, y = Xβ*."""
    c = DIAGONAL
    rng = np.random.default_rng(0)
    X = rng.standard_normal((c["n"], c["d"]))
    beta = np.zeros(c["d"])
    beta[rng.permutation(c["d"])[:c["sparsity"]]] = rng.choice([-1.0, 1.0], c["sparsity"])
    return dict(X=X, y=X @ beta, beta_star=beta)


def diagonal_grid() -> _sweep.Grid:
    """64 init scales on one problem, given as data: the configurations share its X (one
    copy on the device, the products one GEMM with the stacked β)."""
    c = DIAGONAL
    return _sweep.Grid(model="diagonal", objective="linear-regression", dims=(c["d"],),
                       depths=(c["L"],), data=diagonal_data(), init_scale=DIAGONAL_SCALES,
                       lrs=(DIAGONAL_LR,), max_iters=10**9 - 1, eps=1e-30)


def diagonal_flops_per_step() -> float:
    """Xβ and Xᵀr, 2nd flops each; the O(L·d) elementwise products are not counted."""
    return 4 * DIAGONAL["n"] * DIAGONAL["d"]


def _diagonal_problem(torch, gen):
    """One problem as `LinearRegression.draw` draws it: Gaussian X (n, d), β* with k entries
    ±1 on a random support, y = Xβ*."""
    c = DIAGONAL
    X = torch.randn(c["n"], c["d"], generator=gen)
    beta = torch.zeros(c["d"])
    support = torch.randperm(c["d"], generator=gen)[:c["sparsity"]]
    beta[support] = 2.0 * torch.randint(0, 2, (c["sparsity"],), generator=gen) - 1
    return X, X @ beta


def _diagonal_beta(plus, minus):
    """β = w₊^(L) ⊙ ⋯ ⊙ w₊^(1) − w₋^(L) ⊙ ⋯ ⊙ w₋^(1) from sequences of layers."""
    p, m = plus[0], minus[0]
    for wp, wm in zip(plus[1:], minus[1:]):
        p, m = p * wp, m * wm
    return p - m


def torch_diagonal_loop_rate(configs: int, steps: int, by_hand: bool = False,
                             threads: int | None = None) -> float | None:
    """One configuration after another, as the papers' scripts run one α at a time: the 2L
    layers w₊^(l), w₋^(l) as `nn.Parameter`s (each α·1), β, R = (1/2n)‖Xβ − y‖² (our
    normalisation: the same iterates), `backward`, `optim.SGD`. With `by_hand`, no autograd:
    g = Xᵀr/n and ∂R/∂w_±^(l) = ±g ⊙ Π_{m≠l} w_±^(m) written out. The best configuration's
    rate (a first one, two steps untimed, warms up)."""
    torch = _torch()
    if torch is None:
        return None
    L, n, d = DIAGONAL["L"], DIAGONAL["n"], DIAGONAL["d"]
    gen = torch.Generator().manual_seed(0)
    sign = torch.tensor([[1.0], [-1.0]])
    best = float("inf")
    with _threads(torch, threads):
        for i in range(configs + 1):
            X, y = _diagonal_problem(torch, gen)
            alpha = DIAGONAL_SCALES[i % len(DIAGONAL_SCALES)]
            if by_hand:
                W = torch.full((L, 2, d), alpha)

                def step(W=W, X=X, y=y):
                    prod = W.prod(0)
                    g = X.T @ (X @ (prod[0] - prod[1]) - y) / n
                    # Π_{m≠l} w^(m) as Π/w^(l): no weight reaches 0 in the timed steps
                    W.sub_(DIAGONAL_LR * (prod / W) * (sign * g))
            else:
                plus = [torch.nn.Parameter(torch.full((d,), alpha)) for _ in range(L)]
                minus = [torch.nn.Parameter(torch.full((d,), alpha)) for _ in range(L)]
                opt = torch.optim.SGD(plus + minus, lr=DIAGONAL_LR)

                def step(plus=plus, minus=minus, opt=opt, X=X, y=y):
                    loss = 0.5 * (X @ _diagonal_beta(plus, minus) - y).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            t0 = time.perf_counter()
            for _ in range(steps if i else 2):
                step()
            if i:
                best = min(best, time.perf_counter() - t0)
    return steps / best


def torch_diagonal_batched_rate(steps: int, repeats: int, threads: int | None = None
                                ) -> float | None:
    """All B configurations stacked on their one problem: one (B, L, 2, d) parameter, β by
    the same products, the residuals of all by one product β·Xᵀ (X: (n, d) shared), the sum
    over configurations of each one's R (so each gradient is its own), `backward`, SGD. Best
    of `repeats` after a warm-up."""
    torch = _torch()
    if torch is None:
        return None
    B, L, d = DIAGONAL["B"], DIAGONAL["L"], DIAGONAL["d"]
    gen = torch.Generator().manual_seed(0)
    X, y = _diagonal_problem(torch, gen)
    alpha = torch.tensor(DIAGONAL_SCALES)
    W = torch.nn.Parameter(alpha[:, None, None, None].expand(B, L, 2, d).clone())
    opt = torch.optim.SGD([W], lr=DIAGONAL_LR)

    def run():
        for _ in range(steps):
            beta = _diagonal_beta(W[:, :, 0].unbind(1), W[:, :, 1].unbind(1))
            r = beta @ X.T - y
            loss = 0.5 * r.pow(2).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

    with _threads(torch, threads):
        return B * steps / _best(run, repeats)


def diagonal_case(quick: bool = False, repeats: int = 5, peak: float | None = None) -> dict:
    """The diagonal network (d = 1000, n = 100, depth 2, 64 configurations) as a sweep runs
    it, against PyTorch one configuration at a time (autograd, the papers' way, and the
    gradient by hand) and batched, each at PyTorch's default thread count and on one thread,
    side by side in this run; prints and returns the figures. The ratios are against the
    fastest PyTorch of each kind. The 64 configurations (init scales) share one problem:
    zasjax holds its X once and multiplies it with the stacked β. `x_read_gb_per_s`: X as if
    read twice per configuration-step (8nd bytes in float32): above the memory's bandwidth,
    X is read once for all.

        python -c "from zasjax import _bench; _bench.diagonal_case()"
    """
    c = DIAGONAL
    steps = 25 if quick else 100
    load = [os.getloadavg()[0]]
    rate = _grid_rate(diagonal_grid(), c["L"], steps, repeats)
    torch = _torch()
    default = None if torch is None else torch.get_num_threads()
    l_steps, configs = (50, 1) if quick else (300, 3)
    loop = {f"{how}{on}": torch_diagonal_loop_rate(configs, l_steps, by_hand=how == "by hand",
                                                   threads=threads)
            for how in ("autograd", "by hand") for on, threads in (("", None), (", 1 thread", 1))}
    b_steps = 2 if quick else 10
    batched = {"default": torch_diagonal_batched_rate(b_steps, repeats),
               "1 thread": torch_diagonal_batched_rate(b_steps, repeats, threads=1)}
    load.append(os.getloadavg()[0])

    def fastest(rates, prefix=""):
        return max((v for k, v in rates.items() if v is not None and k.startswith(prefix)),
                   default=None)

    gflops = rate * diagonal_flops_per_step() / 1e9
    out = dict(**c, dtype="float32", lr=DIAGONAL_LR, init_scales=list(DIAGONAL_SCALES),
               steps_per_call=steps, cfg_steps_per_s=rate, gflops=gflops,
               fraction_of_matmul_peak=None if peak is None else gflops / peak,
               x_read_gb_per_s=rate * 8 * c["n"] * c["d"] / 1e9,
               torch_threads_default=default, torch_loop_cfg_steps_per_s=loop,
               torch_batched_cfg_steps_per_s=batched,
               ratio_vs_torch_loop=_ratio(rate, fastest(loop)),
               ratio_vs_torch_loop_autograd=_ratio(rate, fastest(loop, "autograd")),
               ratio_vs_torch_batched=_ratio(rate, fastest(batched)), load_average=load)
    print(_diagonal_text(out), flush=True)
    return out


def _diagonal_text(c: dict) -> str:
    loop, bmm = c["torch_loop_cfg_steps_per_s"], c["torch_batched_cfg_steps_per_s"]
    return (f"diagonal (d={c['d']:,}, n={c['n']}, L={c['L']}, B={c['B']}, float32): "
            f"{_fmt(c['cfg_steps_per_s'])} config-steps/s, {c['gflops']:.2f} GFLOP/s, X read "
            f"at {c['x_read_gb_per_s']:.1f} GB/s; torch loop "
            + ", ".join(f"{_fmt(v)} ({k})" for k, v in loop.items())
            + "; torch batched " + ", ".join(f"{_fmt(v)} ({k})" for k, v in bmm.items())
            + f"; x loop {_fmt(c['ratio_vs_torch_loop'], ',.1f')} (autograd "
            f"{_fmt(c['ratio_vs_torch_loop_autograd'], ',.1f')}), x batched "
            f"{_fmt(c['ratio_vs_torch_batched'], ',.1f')} (against the faster torch); load "
            + " -> ".join(f"{x:.1f}" for x in c["load_average"]))


# ---------------------------------------------------------------------------------------------
# Machine rate and depth sweep
# ---------------------------------------------------------------------------------------------


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(jnp.matmul)
    return 2 * n**3 / _best(lambda: f(a, a).block_until_ready(), repeats) / 1e9


def _d100_rate(steps: int, repeats: int) -> float:
    """The d = 100 case as a sweep runs it on CPU (each device loops over its
    configurations), split over every device of this process."""
    d, B = CASES["d100"]
    return zasjax_rate(d, B, "dot", steps, repeats, loop=True, devices=jax.devices())


def devices_d100(steps: int, repeats: int, peak: float, timeout: float = 600) -> dict | None:
    """The d = 100 case on one CPU device beside one device per core (`zasjax sweep
    --devices auto`), measured now: the per-core rate in a subprocess started with that
    device count (it is fixed when JAX's CPU backend starts). None off CPU."""
    if jax.default_backend() != "cpu":
        return None
    n = cores()
    one = zasjax_rate(*CASES["d100"], "dot", steps, repeats, loop=True)
    code = (f"import json, jax; jax.config.update('jax_num_cpu_devices', {n}); "
            f"from zasjax import _bench; print(json.dumps(_bench._d100_rate({steps}, "
            f"{repeats})))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
        per_core = float(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        per_core = None
    flops = _flops_per_step(CASES["d100"][0]) / 1e9
    return {"devices": n, "one_device_cfg_steps_per_s": one,
            "per_core_cfg_steps_per_s": per_core,
            "speedup": _ratio(per_core, one),
            "one_device_fraction_of_matmul_peak": one * flops / peak,
            "per_core_fraction_of_matmul_peak": None if per_core is None
            else per_core * flops / peak}


def _timed_sweep(grid, iters: int, ratio: float, cache_dir: str) -> dict:
    """One sweep in a process whose in-memory caches were cleared: what a new run pays."""
    jax.clear_caches()
    use_cache_dir(cache_dir)
    timer = Timer()
    _sweep.sweep(grid, chunk=iters + 1, bucket_ratio=ratio, dtype=jnp.float32, cache=False)
    return timer.record()


def depth_sweep(max_depth: int, seeds: int, iters: int, samples: int | None = None) -> dict:
    """The depth sweep 1..max_depth as a new user runs it, twice (cold: empty compilation
    cache; warm: the cache the first run left), beside one program per depth.

    The per-depth baseline compiles and runs each depth on its own (capacity ratio 1, no
    persistent cache). With `samples`, it is measured on that many depths spread over
    1..max_depth and extrapolated: compile time × max_depth / samples, and run time from a
    straight-line fit of run time against depth, summed over every depth.
    """
    grid = _sweep.Grid(inits=("near-identity",), targets=("gaussian",), dims=(2,),
                       depths=tuple(range(1, max_depth + 1)), seeds=tuple(range(seeds)),
                       lrs=(1e-4,), max_iters=iters, eps=1e-30)
    # Warm-up outside the grid: JAX's one-off tracing costs land on neither measurement.
    with tempfile.TemporaryDirectory() as tmp:
        _timed_sweep(dataclasses.replace(grid, depths=(max_depth + 3,)), iters, 1.0, tmp)
    out: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        out["cold"] = _timed_sweep(grid, iters, _sweep.DEFAULT_RATIO, cache)
        out["warm"] = _timed_sweep(grid, iters, _sweep.DEFAULT_RATIO, cache)
    out["classes"] = len(_sweep.depth_classes(grid.depths))
    depths = list(grid.depths)
    if samples and samples < max_depth:
        depths = sorted({round(1 + i * (max_depth - 1) / (samples - 1)) for i in range(samples)})
    per = []
    for L in depths:
        with tempfile.TemporaryDirectory() as cache:
            per.append(_timed_sweep(dataclasses.replace(grid, depths=(L,)), iters, 1.0, cache))
    compile_s = sum(p["compile_s"] for p in per) * max_depth / len(depths)
    slope, icpt = np.polyfit(depths, [p["run_s"] for p in per], 1) if len(depths) > 1 \
        else (0.0, per[0]["run_s"])
    run_s = float(sum(icpt + slope * L for L in grid.depths)) if len(depths) < max_depth \
        else sum(p["run_s"] for p in per)
    out["per_depth"] = {"compile_s": compile_s, "run_s": run_s, "programs": max_depth,
                        "measured_depths": len(depths),
                        "extrapolated": len(depths) < max_depth}
    out["run_overhead"] = out["cold"]["run_s"] / max(run_s, 1e-9)
    out["cold_compile_over_run"] = out["cold"]["compile_s"] / max(out["cold"]["run_s"], 1e-9)
    out["warm_compile_over_cold"] = out["warm"]["compile_s"] / max(out["cold"]["compile_s"],
                                                                   1e-9)
    out["cold_total_vs_per_depth"] = out["cold"]["wall_s"] / (compile_s + run_s)
    return out


_LOOP_SWEEP = """
import json, sys, time
import zasjax
if sys.argv[1] == "on":
    zasjax.use_cpu_loop_kernels()
grid = zasjax.Grid(inits=("near-identity",), targets=("gaussian",), dims=(2,),
                   depths=tuple(range(1, 65)), seeds=tuple(range(4)), lrs=(1e-4,),
                   max_iters=2000, eps=1e-30)
zasjax.sweep(grid, dtype="float32", cache=False)  # compiled, then timed
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    zasjax.sweep(grid, dtype="float32", cache=False)
    best = min(best, time.perf_counter() - start)
print(json.dumps(best))
"""


def loop_kernel_speedup(pairs: int = 5) -> dict:
    """What `use_cpu_loop_kernels` buys: a d = 2 sweep over depths 1..64 (4 seeds, 2000
    iterations; best of 3 once compiled) in fresh processes with and without the option,
    alternating `pairs` times (it is fixed when JAX's CPU backend starts). Prints and returns
    the seconds of each and the median ratio.

        python -c "from zasjax import _bench; _bench.loop_kernel_speedup()"
    """
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "ZASJAX_KEEP_XLA_FLAGS")}
    env["ZASJAX_CACHE"] = "0"  # compile time is not what is measured
    seconds: dict = {"on": [], "off": []}
    for _ in range(pairs):
        for flag in ("off", "on"):
            proc = subprocess.run([sys.executable, "-c", _LOOP_SWEEP, flag], env=env,
                                  capture_output=True, text=True, check=True)
            seconds[flag].append(float(proc.stdout.strip().splitlines()[-1]))
    ratios = sorted(off / on for off, on in zip(seconds["off"], seconds["on"]))
    out = {**seconds, "median_ratio": float(np.median(ratios))}
    print(f"loop kernels on  {' '.join(f'{t:.2f}' for t in seconds['on'])} s\n"
          f"loop kernels off {' '.join(f'{t:.2f}' for t in seconds['off'])} s\n"
          f"ratio off/on {min(ratios):.1f}-{max(ratios):.1f}x, median {out['median_ratio']:.1f}x")
    return out


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """One `zasjax bench` run (the arguments of `run`), checked on construction
    (`ValueError`); the command's options are these fields."""

    quick: bool = option(False, "small sizes for CI (< 2 minutes)", const=True)
    json_path: str | None = option(None, "also write the results as JSON", flag="--json",
                                   metavar="OUT.json")
    sweep_depth: int | None = option(None, "largest depth of the depth-sweep comparison "
                                           "(default 512, quick 16)")
    per_depth_samples: int | None = option(
        None, "depths on which the one-program-per-depth baseline is measured and "
              "extrapolated from (default 24; quick: every depth)")

    def __post_init__(self):
        if self.sweep_depth is not None and self.sweep_depth < 1:
            raise ValueError(f"--sweep-depth must be >= 1, got {self.sweep_depth}")
        if self.per_depth_samples is not None and self.per_depth_samples < 2:
            raise ValueError(f"--per-depth-samples must be >= 2, got {self.per_depth_samples}")
        if self.json_path:
            folder = os.path.dirname(os.path.abspath(self.json_path))
            if not os.path.isdir(folder):
                raise ValueError(f"--json {self.json_path!r}: folder {folder!r} does not exist")


def run(quick: bool = False, json_path: str | None = None, sweep_depth: int | None = None,
        per_depth_samples: int | None = None) -> dict:
    """Measure everything, print it, write it to `json_path` if given; return the figures."""
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
    completion = completion_case(quick, repeats)
    diagonal = diagonal_case(quick, repeats, peak)
    devices = devices_d100(steps["d100"], repeats, peak)
    max_depth = sweep_depth or (16 if quick else 512)
    if max_depth < 1:
        raise ValueError(f"--sweep-depth must be >= 1, got {max_depth}")
    print(f"depth sweep 1..{max_depth}: cold, warm, and one program per depth ...", flush=True)
    samples = per_depth_samples or (None if quick else 24)
    sweep = {"max_depth": max_depth, **depth_sweep(max_depth, 4 if quick else 8,
                                                   10 if quick else 50, samples)}
    result = {
        "matmul_peak_gflops": peak,
        "depth_sweep_run_overhead": sweep["run_overhead"],
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()}, "
                  f"jax {jax.__version__})",
        "cases": cases,
        "completion": completion,
        "diagonal": diagonal,
        "d100_devices": devices,
        "depth_sweep": sweep,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "quick": quick,
    }
    _print(result)
    if json_path:
        with open(json_path, "w") as f:
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
    if r.get("completion"):
        print(_completion_text(r["completion"]))
    if r.get("diagonal"):
        print(_diagonal_text(r["diagonal"]))
    v = r.get("d100_devices")
    if v:
        print(f"d100 on CPU devices (one run): 1 device {_fmt(v['one_device_cfg_steps_per_s'])} "
              f"config-steps/s ({v['one_device_fraction_of_matmul_peak']:.1%} of peak), "
              f"{v['devices']} (one per core) {_fmt(v['per_core_cfg_steps_per_s'])} ("
              + ("null" if v["per_core_fraction_of_matmul_peak"] is None else
                 f"{v['per_core_fraction_of_matmul_peak']:.1%} of peak") +
              f"), speedup {_fmt(v['speedup'], '.2f')}x")
    s = r["depth_sweep"]
    c, w, p = s["cold"], s["warm"], s["per_depth"]
    how = (f"extrapolated from {p['measured_depths']} depths" if p["extrapolated"]
           else "measured")
    print(f"depth sweep 1..{s['max_depth']} ({s['classes']} capacity classes):\n"
          f"  cold  compile {c['compile_s']:.2f} s ({c['programs']} programs), run "
          f"{c['run_s']:.2f} s, total {c['wall_s']:.2f} s; compile/run "
          f"{s['cold_compile_over_run']:.2f}\n"
          f"  warm  compile {w['compile_s']:.2f} s ({w['cache_hits']} from the cache), run "
          f"{w['run_s']:.2f} s, total {w['wall_s']:.2f} s; compile "
          f"{s['warm_compile_over_cold']:.1%} of cold\n"
          f"  one program per depth ({how}): compile {p['compile_s']:.1f} s, run "
          f"{p['run_s']:.2f} s; run overhead of the classes {s['run_overhead']:.2f}x, cold total "
          f"{s['cold_total_vs_per_depth']:.3g}x of it")
