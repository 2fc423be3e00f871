"""Zou, Long & Gu (ICLR 2020, arXiv:2003.01094): deep linear ResNets with fixed transforms.

The network is f(x) = B (I + W_L) ⋯ (I + W_1) A x with a FIXED input transform A: (m, d) and
output transform B: (k, m); only the hidden layers V_l = I + W_l train, from W_l = 0. In the
stacked layout this is `W: (L + 2, m, m)` = [A, V_1, …, V_L, B] (zero-padded) with a per-layer
mask that is 0 on the first and last layer, so A and B never move and f = BAx at t = 0.

Data: X: (d, n) with iid N(0, 1) entries and Y = Φ X with Φ: (k, d) iid N(0, 1/d), so the
global minimum of the training loss ½‖f(X) − Y‖²_F is 0 for every architecture here.

Transforms:

* `gaussian`: A_ij ~ N(0, 1/m), B_ij ~ N(0, 1/m), so AᵀA → I_d and BBᵀ → I_k as m grows;
  width only changes how well-conditioned they are (σ_max/σ_min → 1);
* `identity` (the paper's "modified identity", width m = d + k): A = [I_d; 0], B = [0, I_k],
  which write the input into the first d coordinates and read the output from the last k,
  so BA = 0 and f ≡ 0 at t = 0; all their singular values are 1.

Baseline: a plain linear network of the same widths (d, m, …, m, k) and L + 2 layers, every
layer trainable, Xavier init.

Step size. Near the zero init the loss is a quadratic in (W_1, …, W_L) through
Σ_l B W_l A X, whose Gauss-Newton curvature is at most L σ_max(A)² σ_max(B)² ‖X‖²; the
paper's step sizes scale the same way, η ∝ 1/(L σ_max²(A) σ_max²(B) ‖X‖²). We use
η = c · that, for c on a small grid (`--lr-factors`), one vmapped run per grid, and report
the best final loss (the choice is in the summary); we also report the first iteration
(to within RECORD_EVERY) at which ℓ(t)/ℓ(0) ≤ TOL = 1e-10, since in float64 many runs reach
the rounding floor (~1e-32) inside the budget. The plain net uses η = c / ((L+2)‖X‖²).
SGD samples `--batch-size` columns without replacement per step (the runner scales the
minibatch gradient by n/b, so it is unbiased for the full-loss gradient).

Outputs in `--out`: `summary.json` (tables of final and relative training loss for GD and
SGD against width and depth, for each transform and the plain net), `zou.csv`
(one row per configuration and learning rate), `zou.png`.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._inits import make_init
from .._network import pad_square, support_mask
from .._plots import save, subplots
from .._run import run as gd_run
from .._status import DIVERGED, name as status_name
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = ("Zou-Long-Gu (ICLR 2020): deep linear ResNets with fixed Gaussian / modified-"
               "identity transforms, GD and SGD from zero init, vs a plain linear net")

METHODS = ("resnet-gd", "resnet-sgd", "plain-gd")
COLUMNS = ("model", "transform", "optimizer", "width", "depth", "lr_factor", "lr",
           "initial_loss", "final_loss", "relative_loss", "iterations_to_tol", "status",
           "chosen")
LR_FACTORS = (0.5, 1.0, 1.5)
RECORD_EVERY = 10
#: relative loss ℓ(t)/ℓ(0) whose first crossing is reported as `iterations_to_tol`
TOL = 1e-10


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    widths: tuple[int, ...] = option((12, 16, 32, 64), "comma list of widths m >= d + k for "
                                     "the Gaussian transforms; the modified identity always "
                                     "uses m = d + k")
    depths: tuple[int, ...] = option((2, 8, 32), "comma list of hidden depths L")
    steps: int = option(1000, "GD/SGD iterations")
    d: int = option(8, "input dimension")
    k: int = option(4, "output dimension")
    n: int = option(64, "training samples")
    batch_size: int = option(16, "SGD minibatch size b")
    lr_factors: tuple[float, ...] = option(
        LR_FACTORS, "grid of c in η = c / (L σ²_max(A) σ²_max(B) ‖X‖²)")
    seed: int = option(0, "PRNG seed")

    QUICK = dict(widths=(12, 48), depths=(4, 16), steps=300)

    def check(self):
        _runner.check_at_least(self, 1, "d", "k", "n", "batch_size", "steps")
        if self.batch_size > self.n:
            raise ValueError(f"batch_size must be <= n = {self.n}, got {self.batch_size}")
        _runner.check_depths(self, "depths")
        if not self.widths or min(self.widths) < self.d + self.k:
            raise ValueError(f"widths must be >= d + k = {self.d + self.k}, got {self.widths}")
        _runner.check_positive(self, "lr_factors")


# ---------------------------------------------------------------------------------------------
# Transforms, networks, data
# ---------------------------------------------------------------------------------------------


def gaussian_transforms(key: jax.Array, d: int, k: int, m: int, dtype=None):
    """A: (m, d), B: (k, m) with iid N(0, 1/m) entries."""
    ka, kb = jax.random.split(key)
    return (jax.random.normal(ka, (m, d), dtype) / jnp.sqrt(m),
            jax.random.normal(kb, (k, m), dtype) / jnp.sqrt(m))


def identity_transforms(d: int, k: int, m: int | None = None, dtype=None):
    """The modified identity: A = [I_d; 0]: (m, d), B = [0, I_k]: (k, m), m ≥ d + k (default
    d + k). Input and output use disjoint coordinates, so BA = 0."""
    m = d + k if m is None else m
    if m < d + k:
        raise ValueError(f"the modified identity needs m >= d + k = {d + k}, got {m}")
    return jnp.eye(m, d, dtype=dtype), jnp.eye(k, m, m - k, dtype=dtype)


def resnet(A: jax.Array, B: jax.Array, depth: int) -> tuple[jax.Array, jax.Array]:
    """`W0: (L + 2, m, m)` = [A, I, …, I, B] zero-padded (hidden W_l = 0, i.e. V_l = I) and
    its mask: 0 on the fixed A and B, 1 on the hidden layers."""
    m = A.shape[0]
    eye = jnp.broadcast_to(jnp.eye(m, dtype=A.dtype), (depth, m, m))
    W0 = jnp.concatenate([pad_square(A, m)[None], eye, pad_square(B, m)[None]])
    mask = jnp.concatenate([jnp.zeros((1, m, m)), jnp.ones((depth, m, m)),
                            jnp.zeros((1, m, m))]).astype(A.dtype)
    return W0, mask


def plain_net(key: jax.Array, d: int, k: int, m: int, depth: int, dtype=None):
    """Xavier-initialised linear net of widths (d, m, …, m, k), L + 2 layers, all trainable."""
    widths = (d,) + (m,) * (depth + 1) + (k,)
    return make_init("xavier", key, widths, dtype=dtype), support_mask(widths, m, dtype)


def make_data(key: jax.Array, d: int, k: int, n: int, dtype=None):
    """X: (d, n) iid N(0, 1); Y = Φ X with Φ: (k, d) iid N(0, 1/d)."""
    kx, kp = jax.random.split(key)
    X = jax.random.normal(kx, (d, n), dtype)
    phi = jax.random.normal(kp, (k, d), dtype) / jnp.sqrt(d)
    return X, phi @ X


def _spec(a) -> float:
    return float(jnp.linalg.norm(a, 2))


def resnet_lr_unit(A, B, X, depth: int) -> float:
    """1 / (L σ²_max(A) σ²_max(B) ‖X‖²): the inverse curvature bound at the zero init."""
    return 1.0 / (depth * _spec(A) ** 2 * _spec(B) ** 2 * _spec(X) ** 2)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("steps", "optimizer", "batch_size"))
def _grid_run(W0, mask, X, Y, lrs, key, steps, optimizer, batch_size):
    """One run per learning rate in `lrs: (g,)`: final W, status, final loss, and the loss
    every RECORD_EVERY iterations `(g, records)` (NaN once a run stopped)."""
    res = jax.vmap(lambda lr: gd_run(W0, X=X, Y=Y, lr=lr, mask=mask, optimizer=optimizer,
                                  batch_size=batch_size, key=key, eps=1e-300,
                                  max_iters=steps, record_every=RECORD_EVERY))(lrs)
    return res.W, res.status, res.final_loss, res.losses


def train_grid(W0, mask, X, Y, lrs, steps: int, optimizer: str = "gd",
               batch_size: int | None = None, key=None):
    """Train from `W0` for each learning rate; returns (W, status, final, losses) arrays."""
    D = W0.shape[-1]
    Xp, Yp = (jnp.pad(a, ((0, D - a.shape[0]), (0, 0))) for a in (X, Y))
    key = jax.random.key(0) if key is None else key
    lrs = jnp.asarray(lrs, W0.dtype)
    opt = "gd" if optimizer == "gd" else "sgd"
    return _grid_run(W0, mask, Xp, Yp, lrs, key, int(steps), opt,
                     None if optimizer == "gd" else int(batch_size))


def study_one(model: str, transform: str, optimizer: str, m: int, depth: int, cfg: Config,
              X, Y, key) -> tuple[list[dict], dict]:
    d, k = cfg.d, cfg.k
    if model == "resnet":
        A, B = (identity_transforms(d, k, m) if transform == "identity"
                else gaussian_transforms(jax.random.fold_in(key, m), d, k, m))
        W0, mask = resnet(A, B, depth)
        unit = resnet_lr_unit(A, B, X, depth)
    else:
        W0, mask = plain_net(jax.random.fold_in(key, 1000 * m + depth), d, k, m, depth)
        unit = 1.0 / ((depth + 2) * _spec(X) ** 2)
    lrs = [c * unit for c in cfg.lr_factors]
    _, status, final, losses = train_grid(W0, mask, X, Y, lrs, cfg.steps, optimizer,
                                          cfg.batch_size, jax.random.fold_in(key, 7))
    status, final, losses = np.asarray(status), np.asarray(final, float), np.asarray(losses,
                                                                                      float)
    initial = losses[:, 0]
    with np.errstate(invalid="ignore"):
        below = losses <= TOL * initial[:, None]
    hit = [int(np.argmax(b)) * RECORD_EVERY if b.any() else None for b in below]
    ok = (status != DIVERGED) & np.isfinite(final)
    best = int(np.argmin(np.where(ok, final, np.inf))) if ok.any() else 0
    rows = [dict(model=model, transform=transform, optimizer=optimizer, width=m, depth=depth,
                 lr_factor=c, lr=lrs[i], initial_loss=float(initial[i]),
                 final_loss=float(final[i]), relative_loss=float(final[i] / initial[i]),
                 iterations_to_tol=hit[i], status=status_name(status[i]), chosen=i == best)
            for i, c in enumerate(cfg.lr_factors)]
    entry = dict(model=model, transform=transform, optimizer=optimizer, width=m, depth=depth,
                 lr=lrs[best], lr_factor=cfg.lr_factors[best],
                 initial_loss=float(initial[best]), final_loss=float(final[best]),
                 relative_loss=float(final[best] / initial[best]),
                 iterations_to_tol=hit[best], diverged_lrs=int((~ok).sum()))
    return rows, entry


def configurations(cfg: dict) -> list[tuple[str, str, str, int]]:
    """(model, transform, optimizer, width) for every line of the study."""
    d, k = cfg.d, cfg.k
    out = [("resnet", "identity", opt, d + k) for opt in ("gd", "sgd")]
    out += [("resnet", "gaussian", opt, m) for m in cfg.widths for opt in ("gd", "sgd")]
    out += [("plain", "xavier", "gd", m) for m in cfg.widths]
    return out


def _tables(entries: list[dict]) -> dict:
    """{'resnet-gaussian-gd': {'final_loss': {m: {L: v}}, 'relative_loss': …}, …}."""
    tables: dict = {}
    for e in entries:
        name = f"{e['model']}-{e['transform']}-{e['optimizer']}"
        fields = ("final_loss", "relative_loss", "iterations_to_tol", "lr")
        t = tables.setdefault(name, {f: {} for f in fields})
        for field in fields:
            t[field].setdefault(str(e["width"]), {})[str(e["depth"])] = e[field]
    return tables


def run(cfg: Config, files=None) -> Outcome:
    # float64 (the runner's default, and the default float of every array below): relative
    # losses down to ~1e-20 need it.
    key = jax.random.key(cfg.seed)
    X, Y = make_data(jax.random.fold_in(key, 1), cfg.d, cfg.k, cfg.n)
    rows, entries = [], []
    for depth in cfg.depths:
        for model, transform, optimizer, m in configurations(cfg):
            r, e = study_one(model, transform, optimizer, m, depth, cfg, X, Y,
                             jax.random.fold_in(key, 2))
            rows += r
            entries.append(e)
            print(f"[zou] {model}-{transform}-{optimizer} m={m} L={depth}: relative loss "
                  f"{e['relative_loss']:.3g}, iterations to {TOL:g}: {e['iterations_to_tol']} "
                  f"(c={e['lr_factor']})", flush=True)
    svals = np.linalg.svd(np.asarray(X), compute_uv=False)
    summary = dict(
        paper="Zou, Long & Gu, ICLR 2020 (arXiv:2003.01094)",
        setting=dict(d=cfg.d, k=cfg.k, n=cfg.n, steps=cfg.steps,
                     batch_size=cfg.batch_size, widths=cfg.widths, depths=cfg.depths,
                     lr_factors=cfg.lr_factors, tol=TOL,
                     x_condition_number=float(svals[0] / svals[-1]),
                     lr_rule="resnet: c / (L σ²_max(A) σ²_max(B) ‖X‖²); "
                             "plain: c / ((L + 2) ‖X‖²); best c per configuration"),
        tables=_tables(entries), results=entries)
    return Outcome(summary, rows, COLUMNS, plot=entries)


def figure(outcome: Outcome, folder) -> None:
    """Relative training loss (final / initial) against width m, one panel per depth L, one
    line per (model, transform, optimizer); the modified identity has a single width
    m = d + k and shows as a star (`zou.png`)."""
    entries = outcome.plot
    depths = sorted({e["depth"] for e in entries})
    fig, axes = subplots(1, len(depths), figsize=(4.6 * len(depths), 4.2), squeeze=False)
    names = sorted({(e["model"], e["transform"], e["optimizer"]) for e in entries})
    for ax, L in zip(axes[0], depths):
        for i, name in enumerate(names):
            es = sorted((e for e in entries if (e["model"], e["transform"], e["optimizer"])
                         == name and e["depth"] == L), key=lambda e: e["width"])
            if not es:
                continue
            style = "*" if len(es) == 1 else ("o-" if name[2] == "gd" else "s--")
            ax.plot([e["width"] for e in es],
                    [max(e["relative_loss"], 1e-32) for e in es], style, color=f"C{i}",
                    ms=10 if len(es) == 1 else 5, label="-".join(name))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width m")
        ax.set_ylabel("final / initial training loss")
        ax.set_title(f"L = {L} hidden layers")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save(fig, f"{folder}/zou.png")


__all__ = ["gaussian_transforms", "identity_transforms", "resnet", "plain_net", "make_data",
           "resnet_lr_unit", "train_grid"]
