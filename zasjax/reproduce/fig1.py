"""Figure 1 of Wu, Wang & Ma (NeurIPS 2019): the two-parameter landscape and two GD paths.

Depth L = 2, width d = 1, target Φ = −1, so R(w₁, w₂) = ½(w₂w₁ + 1)² (w₁ the first layer,
w₂ the last). The origin is a saddle (∇R = 0, Hessian [[0, 1], [1, 0]]: eigenvalues ±1)
and the global minima are the hyperbola w₂w₁ = −1. Gradient descent starts

* from near-identity (w₁, w₂) = (0.999, 1.001): the invariant w₁² − w₂² = −0.004 pins the
  path to a thin hyperbola through the saddle's neighbourhood, so the product w₂w₁ must
  shrink to 0 and change sign there; the path crawls past the saddle before it converges
  to (≈ −1, ≈ 1);
* from ZAS (w₁, w₂) = (1, 0): on w₁² − w₂² = 1, which never comes near the saddle, ending
  at w₁² = (1 + √5)/2 under gradient flow.

For gradient descent the invariant is not exact but changes by an explicit factor per
step: w₁'² − w₂'² = (1 − η²r²)(w₁² − w₂²), r = w₂w₁ + 1. The study records both paths,
their iterations to R ≤ ε, the saddle plateau of the near-identity path (the detector of
`_diagnostics.plateau` at R_s = ½ with the exact gradient norm), and writes
`summary.json`, `fig1.csv` (one row per init and iteration) and `fig1.png` (contours of R
with both paths).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._diagnostics import layer_grad_norms, plateau
from .._network import whitened_loss
from .._plots import save, subplots
from .._run import Settings, Whitened, init_state, step
from .._status import name as status_name
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "Loss landscape of L = 2, d = 1, Φ = −1 with GD from near-identity and ZAS (Fig. 1)"

COLUMNS = ("init", "iteration", "w1", "w2", "loss", "grad_norm")
#: (w₁, w₂) starts of the paper's Figure 1, first layer first.
STARTS = {"near-identity": (0.999, 1.001), "zas": (1.0, 0.0)}
PHI = -1.0
SADDLE_LOSS = 0.5 * PHI**2  # R at the saddle w₁ = w₂ = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    lr: float = option(0.1, "step size η (paper: 0.1)")
    eps: float = option(1e-10, "convergence threshold on R")
    max_iters: int = option(10_000, "update budget per path")
    dtype: Literal["float64", "float32"] = option(
        "float64", "float64 (needed to resolve R ≤ 1e-10) or float32")
    rtol: float = option(0.05, "plateau band |R − ½| ≤ rtol·½ around the saddle value")

    QUICK = dict(max_iters=2_000)

    def check(self):
        _runner.check_positive(self, "lr", "eps")
        _runner.check_at_least(self, 1, "max_iters")
        if not 0 < self.rtol < 1:
            raise ValueError(f"rtol must be in (0, 1), got {self.rtol}")


def start_weights(w1: float, w2: float, dtype=None) -> jax.Array:
    """The depth-2, width-1 network `W: (2, 1, 1)` with first layer w₁ and last layer w₂."""
    return jnp.asarray([[[w1]], [[w2]]], dtype)


def landscape(w1, w2, phi: float = PHI):
    """R(w₁, w₂) = ½(w₂w₁ − Φ)², elementwise over arrays."""
    return 0.5 * (w2 * w1 - phi) ** 2


def minimum_on_hyperbola(c: float, phi: float = PHI) -> tuple[float, float]:
    """The global minimum w₂w₁ = Φ on the hyperbola w₁² − w₂² = c (w₁ > 0 branch if c > 0,
    w₂ > 0 branch if c < 0): w₁² = (c + √(c² + 4Φ²)) / 2. Gradient flow conserves c."""
    a = 0.5 * (c + math.sqrt(c * c + 4 * phi * phi))  # w₁²
    if c >= 0:
        w1 = math.sqrt(a)
        return w1, phi / w1
    w2 = math.sqrt(a - c)
    return phi / w2, w2


def path(W0: jax.Array, phi: jax.Array, lr, eps, n_steps: int) -> dict[str, jax.Array]:
    """Gradient descent from `W0: (L, D, D)` with the core runner's `step`, keeping every
    iterate: `W: (n_steps + 1, L, D, D)`, `loss`, `grad_norm` (at each W_t), and the final
    `status` and `iterations` (first t with R ≤ eps, −1 if none). Once R ≤ eps the runner
    freezes W, so the tail of the path repeats its end point. Pure; vmappable over W0, lr.
    """
    objective = Whitened(phi)
    mask = jnp.ones_like(W0)
    lr = jnp.asarray(lr, W0.dtype)
    eps = jnp.asarray(eps, W0.dtype)
    max_iters = jnp.asarray(n_steps, jnp.int32)

    def body(state, _):
        new = step(state, objective, mask, lr, eps, max_iters, Settings())
        return new, new.W

    state = init_state(W0, objective, lr)
    state, Ws = lax.scan(body, state, None, length=n_steps)
    Ws = jnp.concatenate([W0[None], Ws])
    losses = jax.vmap(whitened_loss, in_axes=(0, None))(Ws, phi)
    grads = jax.vmap(lambda W: jnp.linalg.norm(layer_grad_norms(W, phi)))(Ws)
    return dict(W=Ws, loss=losses, grad_norm=grads, status=state.status,
                iterations=state.iterations)


def run(cfg: Config, files=None) -> Outcome:
    dtype = jnp.dtype(cfg.dtype)
    names = list(STARTS)
    W0 = jnp.stack([start_weights(*STARTS[n], dtype=dtype) for n in names])
    phi = jnp.full((1, 1), PHI, dtype)
    n = cfg.max_iters
    paths = jax.jit(jax.vmap(path, in_axes=(0, None, None, None, None)),
                    static_argnums=4)(W0, phi, cfg.lr, cfg.eps, n)
    paths = jax.tree.map(np.asarray, paths)

    rows, entries = [], {}
    for i, name in enumerate(names):
        its = int(paths["iterations"][i])
        stop = its if its >= 0 else n  # the frozen tail after convergence is not written
        w1, w2 = paths["W"][i, : stop + 1, 0, 0, 0], paths["W"][i, : stop + 1, 1, 0, 0]
        loss, gn = paths["loss"][i, : stop + 1], paths["grad_norm"][i, : stop + 1]
        rows += [dict(init=name, iteration=t, w1=float(a), w2=float(b), loss=float(r),
                      grad_norm=float(g))
                 for t, (a, b, r, g) in enumerate(zip(w1, w2, loss, gn))]
        p = plateau(jnp.asarray(loss), SADDLE_LOSS, jnp.asarray(gn), rtol=cfg.rtol)
        invariant = w1**2 - w2**2
        # Exact GD identity: w₁'² − w₂'² = (1 − η²r²)(w₁² − w₂²), r = w₂w₁ − Φ.
        r = w1[:-1] * w2[:-1] - PHI
        predicted = invariant[0] * np.prod(1 - cfg.lr ** 2 * r**2)
        entries[name] = dict(
            start=list(STARTS[name]), iterations=its if its >= 0 else None,
            status=status_name(paths["status"][i]),
            end=[float(w1[-1]), float(w2[-1])], final_loss=float(loss[-1]),
            invariant_start=float(invariant[0]), invariant_end=float(invariant[-1]),
            invariant_end_predicted=float(predicted),
            flow_end=list(minimum_on_hyperbola(float(invariant[0]))),
            closest_to_saddle=float(np.min(np.hypot(w1, w2))),
            plateau_length=int(p.length), plateau_start=int(p.start),
            plateau_escape=int(p.escape))
    ni, zas = entries["near-identity"], entries["zas"]
    summary = dict(
        paper="Wu, Wang & Ma (NeurIPS 2019), Section 3, Figure 1",
        lr=cfg.lr, eps=cfg.eps, dtype=cfg.dtype, max_iters=n,
        iterations_near_identity=ni["iterations"], iterations_zas=zas["iterations"],
        near_identity_stalled_at_saddle=ni["plateau_length"] > 0,
        plateau_saddle_loss=SADDLE_LOSS, plateau_rtol=cfg.rtol,
        plateau_grad_tol=0.1 * math.sqrt(2 * SADDLE_LOSS),
        paths=entries,
    )
    return Outcome(summary, rows, COLUMNS, plot=(cfg.lr, entries))


def figure(outcome: Outcome, folder) -> None:
    """Contours of R with both paths (`fig1.png`)."""
    lr, entries = outcome.plot
    span = 1.8
    grid = np.linspace(-span, span, 301)
    G1, G2 = np.meshgrid(grid, grid)

    def label(name, entry):
        done = entry["iterations"]
        return f"{name} ({done} its)" if done is not None else f"{name} ({entry['status']})"

    rows = outcome.rows
    curves = {label(name, e): ([r["w1"] for r in rows if r["init"] == name],
                               [r["w2"] for r in rows if r["init"] == name])
              for name, e in entries.items()}
    landscape_paths(f"{folder}/fig1.png", G1, G2, landscape(G1, G2), curves,
                    minima=lambda w1: PHI / w1,
                    title=f"R(w₁, w₂) = ½(w₂w₁ + 1)², GD with η = {lr:g}")


def landscape_paths(path, X, Y, Z, paths: dict, minima=None, saddle=(0.0, 0.0),
                    title: str = "Loss landscape and GD paths") -> None:
    """Contours of a two-parameter loss with GD paths.

    `X, Y, Z`: meshgrid arrays (w₁ on x, w₂ on y, R on z; contours are drawn on log R);
    `paths` maps a label to `(w1s, w2s)`; `minima`: optional w₁ ↦ w₂ curve of global
    minima (drawn dashed on each branch, e.g. w₂ = Φ/w₁); `saddle` is marked with a cross.
    """
    fig, ax = subplots(figsize=(5.6, 5.2))
    logZ = np.log10(np.maximum(np.asarray(Z, float), 1e-6))
    cs = ax.contourf(X, Y, logZ, levels=24, cmap="Greys_r", alpha=0.75)
    fig.colorbar(cs, ax=ax, label="log₁₀ R")
    if minima is not None:
        xs = np.asarray(X, float)[0]
        for branch in (xs[xs > 0], xs[xs < 0]):
            ys = minima(branch)
            keep = np.abs(ys) <= np.abs(np.asarray(Y, float)).max()
            ax.plot(branch[keep], ys[keep], "k--", lw=1.0)
        ax.plot([], [], "k--", lw=1.0, label="global minima")
    ax.plot(*saddle, "x", color="crimson", ms=9, mew=2, label="saddle")
    for (label, (w1, w2)), colour in zip(paths.items(), ("tab:orange", "tab:blue", "tab:green")):
        ax.plot(w1, w2, ".-", color=colour, ms=2.5, lw=0.8, label=label)
        ax.plot(w1[0], w2[0], "o", color=colour, ms=6)
        ax.plot(w1[-1], w2[-1], "*", color=colour, ms=11)
    ax.set_xlabel("w₁ (first layer)")
    ax.set_ylabel("w₂ (last layer)")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    save(fig, path)
