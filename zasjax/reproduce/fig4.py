"""Figure 4 of Wu, Wang & Ma (NeurIPS 2019): nonlinear ResNets on Fashion-MNIST.

For every depth L and initialisation (mZAS, eq. (6.2), against Xavier) the network of
eq. (6.1) is trained by full-batch gradient descent on the softmax cross-entropy of the
first 1,000 training images, for a small grid of learning rates around η*(L) in one
vmapped call; the paper reports training accuracy, and so do we. Pixels are scaled to
[0, 1] and, by default, the mean training image is subtracted (`--no-center` keeps the raw
[0, 1] pixels): the mean image is the input covariance's largest direction by far, and
removing it lets the same step size train much further (at L = 100, η = 0.0075, 1,000
steps: 0.94 training accuracy centred against 0.88 uncentred). Outputs in `--out`:

- `summary.json`: per (init, depth) the chosen learning rate (best final training
  accuracy among the runs that did not diverge), its final and best accuracy, the
  iterations run and the diverged flag, plus every grid point's outcome;
- `accuracy.csv`: init, depth, lr, iteration, train_accuracy, loss every `--record-every`
  iterations for every grid point (a diverged run's rows stop where it diverged);
- `fig4.png`: training accuracy vs iteration, one line per (init, depth) at its chosen lr;
- `checkpoints/*.npz`: re-running with the same `--out` resumes where it stopped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._data import load_fashion_mnist
from .._plots import training_accuracy_curves
from .._resnet import RESNET_INITS, init_resnet
from .._store import write_csv, write_json
from .._train import train_resnet

DESCRIPTION = "Nonlinear ResNets on Fashion-MNIST: mZAS vs Xavier, depth up to 10,000 (Fig. 4)"

COLUMNS = ("init", "depth", "lr", "iteration", "train_accuracy", "loss")
_ENV = "ZASJAX_FASHION_MNIST"
_FULL = dict(depths=(100, 200, 2000, 10_000), width=32, train_size=1000, steps=3000,
             record_every=25)
_QUICK = dict(depths=(10, 100), width=32, train_size=1000, steps=1000, record_every=25)


def stable_lr(depth: int) -> float:
    """Centre η*(L) = min(0.03, 0.75 / L) of the learning-rate grid.

    Measured for mZAS at D = m = 32 on 1,000 images: the largest stable η is about 0.03
    at L = 10, 0.01 at L = 100 and 0.001 at L = 1000, i.e. it shrinks roughly like 1/L.
    At L = 100 (seed 0, 1,000 GD steps) η = 0.009 and 0.008 diverge near steps 970 and
    900, while 0.0075 stays stable and reaches 0.912 training accuracy (0.007: 0.889,
    0.006: 0.869): the fastest stable rate is just below the edge, so the centre is
    0.75/L, the largest of the 1/L family that survived the 1,000-step budget.
    """
    return min(0.03, 0.75 / depth)


def default_lrs(depth: int, quick: bool) -> list[float]:
    """The grid tried when `--lr` is not given: η*(L) times a few factors.

    Quick mode keeps it small (each extra grid point costs about a full run on CPU):
    two points for L < 100, one beyond.
    """
    if quick:
        factors = (0.5, 1.0) if depth < 100 else (1.0,)
    else:
        factors = (0.5, 1.0, 1.4)
    return [stable_lr(depth) * f for f in factors]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help=f"folder with the Fashion-MNIST IDX files (default: ${_ENV})")
    parser.add_argument("--depths", type=_ints, default=None,
                        help="comma list of depths L (default 100,200,2000,10000; quick 10,100)")
    parser.add_argument("--init", type=_names, default=("mzas", "xavier"),
                        help=f"comma list of initialisations from {sorted(RESNET_INITS)}")
    parser.add_argument("--lr", type=_floats, default=None,
                        help="comma list of learning rates, the grid for every depth "
                             "(default: η*(L) = min(0.03, 0.75/L) times 0.5, 1, 1.4)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="number of training images (paper: 1000)")
    parser.add_argument("--width", type=int, default=None, help="D = m (default 32)")
    parser.add_argument("--steps", type=int, default=None,
                        help="full-batch GD steps (default 3000; quick 1000)")
    parser.add_argument("--record-every", type=int, default=None,
                        help="record training accuracy every k iterations (default 25)")
    parser.add_argument("--center", action=argparse.BooleanOptionalAction, default=True,
                        help="subtract the mean training image from the [0, 1] pixels "
                             "(default); --no-center trains on the raw [0, 1] pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from checkpoints in --out (default); "
                             "--no-resume starts afresh")


def _config(args) -> dict:
    base = _QUICK if getattr(args, "quick", False) else _FULL
    pick = lambda name: base[name] if getattr(args, name, None) is None else getattr(args, name)
    cfg = {name: pick(name) for name in base}
    cfg["depths"] = tuple(int(d) for d in cfg["depths"])
    cfg["inits"] = tuple(getattr(args, "init", None) or ("mzas", "xavier"))
    cfg["lr"] = getattr(args, "lr", None)
    cfg["seed"] = int(getattr(args, "seed", 0) or 0)
    cfg["center"] = bool(getattr(args, "center", True))
    cfg["quick"] = bool(getattr(args, "quick", False))
    # Static input is checked here, before any data is read or anything traced.
    if not cfg["depths"] or min(cfg["depths"]) < 1:
        raise ValueError(f"depths must be positive integers, got {cfg['depths']}")
    unknown = [n for n in cfg["inits"] if n not in RESNET_INITS]
    if unknown or not cfg["inits"]:
        raise ValueError(f"unknown initialisation(s) {unknown}; expected {sorted(RESNET_INITS)}")
    if cfg["lr"] is not None and not all(math.isfinite(v) and v > 0 for v in cfg["lr"]):
        raise ValueError(f"learning rates must be finite and > 0, got {list(cfg['lr'])}")
    for name in ("width", "train_size", "record_every"):
        if cfg[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    if cfg["steps"] < 0:
        raise ValueError(f"--steps must be >= 0, got {cfg['steps']}")
    return cfg


def _data_dir(args) -> str:
    data_dir = getattr(args, "data_dir", None) or os.environ.get(_ENV)
    if not data_dir:
        raise ValueError(
            f"no Fashion-MNIST folder: pass --data-dir or set ${_ENV} to a folder holding "
            "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"
        )
    return data_dir


def _progress(label: str, steps: int, k: int):
    start = time.monotonic()

    def report(step, partial):
        rate = step / max(time.monotonic() - start, 1e-9)
        print(f"[fig4] {label}: step {step}/{steps}  {rate:.1f} it/s (incl. compile)  "
              f"best acc {np.nanmax(partial.accuracy[-1]):.3f}  "
              f"diverged {int(partial.diverged.sum())}/{k}", file=sys.stderr, flush=True)

    return report


def _summarise(init, depth, result, record_every):
    """Rows for the CSV and the summary entry of one (init, depth) grid."""
    rows, grid = [], []
    last = result.loss.shape[0] - 1
    keep = sorted(set(range(0, last + 1, record_every)) | {last})
    for i, lr in enumerate(result.lrs):
        stop = int(result.diverged_at[i]) if result.diverged[i] else last
        its = [t for t in keep if t <= stop] or [0]
        acc = [float(result.accuracy[t, i]) for t in its]
        rows += [dict(init=init, depth=depth, lr=float(lr), iteration=t,
                      train_accuracy=a, loss=float(result.loss[t, i]))
                 for t, a in zip(its, acc)]
        grid.append(dict(lr=float(lr), final_train_accuracy=acc[-1],
                         best_train_accuracy=max(acc), diverged=bool(result.diverged[i]),
                         diverged_at=int(result.diverged_at[i]) if result.diverged[i] else None,
                         iterations=its[-1]))
    ok = [g for g in grid if not g["diverged"]]
    chosen = (max(ok, key=lambda g: g["final_train_accuracy"]) if ok
              else max(grid, key=lambda g: g["best_train_accuracy"]))
    entry = dict(init=init, depth=depth, lr=chosen["lr"],
                 final_train_accuracy=chosen["final_train_accuracy"],
                 best_train_accuracy=chosen["best_train_accuracy"],
                 iterations=chosen["iterations"], diverged=chosen["diverged"], grid=grid)
    return rows, entry


def main(args) -> dict:
    cfg = _config(args)
    data_dir = _data_dir(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_fashion_mnist(data_dir, "train", size=cfg["train_size"], dtype=np.float32)
    if cfg["center"]:
        x = x - x.mean(axis=0)
    ckpt_dir = out / "checkpoints"
    runs = [(init, depth) for depth in cfg["depths"] for init in cfg["inits"]]
    rows, entries = [], []
    start = time.monotonic()
    for n, (init, depth) in enumerate(runs, 1):
        lrs = list(cfg["lr"]) if cfg["lr"] is not None else default_lrs(depth, cfg["quick"])
        ckpt = ckpt_dir / f"{init}_L{depth}.npz"
        if not getattr(args, "resume", True) and ckpt.exists():
            ckpt.unlink()
        key = jax.random.fold_in(jax.random.key(cfg["seed"]), depth)
        model = init_resnet(key, init, depth=depth, width=cfg["width"], dtype=jnp.float32)
        label = f"{init} L={depth} ({n}/{len(runs)})"
        result = train_resnet(model, x, y, lrs, steps=cfg["steps"], chunk=cfg["record_every"],
                              checkpoint=ckpt, callback=_progress(label, cfg["steps"], len(lrs)))
        new_rows, entry = _summarise(init, depth, result, cfg["record_every"])
        rows += new_rows
        entries.append(entry)
        print(f"[fig4] {label}: lr {entry['lr']:.3g}  final acc "
              f"{entry['final_train_accuracy']:.3f}  diverged {entry['diverged']}  "
              f"({n / (time.monotonic() - start):.3f} configs/s)", file=sys.stderr, flush=True)
        # Written after every configuration so a long run shows its results as it goes.
        summary = dict(paper="Wu, Wang & Ma (NeurIPS 2019), Section 6, Figure 4",
                       metric="training accuracy", optimiser="full-batch gradient descent",
                       inputs="pixels / 255" + (" minus the mean training image"
                                                if cfg["center"] else ""),
                       dtype="float32", data_dir=str(data_dir),
                       config={k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in cfg.items()},
                       runs=entries, seconds=time.monotonic() - start)
        write_json(out / "summary.json", summary)
        write_csv(out / "accuracy.csv", rows, COLUMNS)
    chosen = [r for r in rows
              for e in entries
              if (r["init"], r["depth"], r["lr"]) == (e["init"], e["depth"], e["lr"])]
    training_accuracy_curves(chosen, out / "fig4.png",
                             title=f"Fashion-MNIST, {cfg['train_size']} images, D = m = "
                                   f"{cfg['width']}")
    return summary
