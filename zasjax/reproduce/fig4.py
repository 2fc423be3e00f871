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

import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._data import fashion_mnist_files, load_fashion_mnist
from .._plots import save, subplots
from .._resnet import RESNET_INITS, init_resnet
from .._status import name as status_name
from .._train import train_resnet
from . import _runner
from ._runner import Outcome, option

DESCRIPTION = "Nonlinear ResNets on Fashion-MNIST: mZAS vs Xavier, depth up to 10,000 (Fig. 4)"

COLUMNS = ("init", "depth", "lr", "iteration", "train_accuracy", "loss")
_ENV = "ZASJAX_FASHION_MNIST"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_runner.Config):
    data_dir: str | None = option(None, f"folder with the Fashion-MNIST IDX files (none: ${_ENV})")
    depths: tuple[int, ...] = option((100, 200, 2000, 10_000), "comma list of depths L")
    inits: tuple[str, ...] = option(("mzas", "xavier"), "comma list of initialisations from "
                                    f"{sorted(RESNET_INITS)}", flag="--init")
    lr: tuple[float, ...] | None = option(
        None, "comma list of learning rates, the grid for every depth (none: η*(L) = "
              "min(0.03, 0.75/L) times 0.5, 1, 1.4; quick: fewer)")
    train_size: int = option(1000, "number of training images (paper: 1000)")
    width: int = option(32, "D = m")
    steps: int = option(3000, "full-batch GD steps")
    record_every: int = option(25, "record training accuracy every k iterations")
    center: bool = option(True, "subtract the mean training image from the [0, 1] pixels; "
                                "--no-center trains on the raw [0, 1] pixels")
    seed: int = option(0, "PRNG seed")
    resume: bool = option(True, "continue from checkpoints in the output folder; "
                                "--no-resume starts afresh")

    QUICK = dict(depths=(10, 100), steps=1000)

    def check(self):
        # Static input only; the data folder is checked by `preflight`, before any output.
        _runner.check_depths(self, "depths")
        unknown = [n for n in self.inits if n not in RESNET_INITS]
        if unknown or not self.inits:
            raise ValueError(f"unknown initialisation(s) {unknown}; expected "
                             f"{sorted(RESNET_INITS)}")
        if self.lr is not None and not all(0 < v < float("inf") for v in self.lr):
            raise ValueError(f"learning rates must be finite and > 0, got {list(self.lr)}")
        _runner.check_at_least(self, 1, "width", "train_size", "record_every")
        _runner.check_at_least(self, 0, "steps")

    @property
    def dtype(self) -> str:
        return "float32"


def data_dir(cfg: Config) -> str:
    """The Fashion-MNIST folder: `cfg.data_dir`, else $ZASJAX_FASHION_MNIST."""
    folder = cfg.data_dir or os.environ.get(_ENV)
    if not folder:
        raise ValueError(
            f"no Fashion-MNIST folder: pass --data-dir or set ${_ENV} to a folder holding "
            "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
    return folder


def preflight(cfg: Config) -> None:
    """The data folder and its training files exist (checked before `--out` is created)."""
    try:
        fashion_mnist_files(data_dir(cfg), "train")
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None


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
                         best_train_accuracy=max(acc), status=status_name(result.status[i]),
                         diverged=bool(result.diverged[i]),
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


def run(cfg: Config, files=None) -> Outcome:
    folder = data_dir(cfg)
    x, y = load_fashion_mnist(folder, "train", size=cfg.train_size, dtype=np.float32)
    if cfg.center:
        x = x - x.mean(axis=0)
    runs = [(init, depth) for depth in cfg.depths for init in cfg.inits]
    rows, entries = [], []
    start = time.monotonic()
    settings = dict(depths=list(cfg.depths), width=cfg.width, train_size=cfg.train_size,
                    steps=cfg.steps, record_every=cfg.record_every, inits=list(cfg.inits),
                    lr=None if cfg.lr is None else list(cfg.lr), seed=cfg.seed,
                    center=cfg.center, quick=cfg.size == "quick")
    for n, (init, depth) in enumerate(runs, 1):
        lrs = list(cfg.lr) if cfg.lr is not None else default_lrs(depth, cfg.size == "quick")
        ckpt = None if files is None else files.path("checkpoints", f"{init}_L{depth}.npz")
        if ckpt is not None:
            ckpt.parent.mkdir(exist_ok=True)
            if not cfg.resume and ckpt.exists():
                ckpt.unlink()
        key = jax.random.fold_in(jax.random.key(cfg.seed), depth)
        model = init_resnet(key, init, depth=depth, width=cfg.width, dtype=jnp.float32)
        label = f"{init} L={depth} ({n}/{len(runs)})"
        result = train_resnet(model, x, y, lrs, steps=cfg.steps, chunk=cfg.record_every,
                              checkpoint=ckpt, callback=_progress(label, cfg.steps, len(lrs)))
        new_rows, entry = _summarise(init, depth, result, cfg.record_every)
        rows += new_rows
        entries.append(entry)
        print(f"[fig4] {label}: lr {entry['lr']:.3g}  final acc "
              f"{entry['final_train_accuracy']:.3f}  diverged {entry['diverged']}  "
              f"({n / (time.monotonic() - start):.3f} configs/s)", file=sys.stderr, flush=True)
        summary = dict(paper="Wu, Wang & Ma (NeurIPS 2019), Section 6, Figure 4",
                       metric="training accuracy", optimizer="full-batch gradient descent",
                       inputs="pixels / 255" + (" minus the mean training image"
                                                if cfg.center else ""),
                       dtype="float32", data_dir=str(folder), config=settings,
                       runs=entries, seconds=time.monotonic() - start)
        if files is not None:  # after every configuration: a long run shows results as it goes
            files.write(summary, rows, COLUMNS, "accuracy.csv")
    chosen = [r for r in rows
              for e in entries
              if (r["init"], r["depth"], r["lr"]) == (e["init"], e["depth"], e["lr"])]
    return Outcome(summary, rows, COLUMNS, plot=(chosen, cfg), csv="accuracy.csv")


def figure(outcome: Outcome, folder) -> None:
    """Training accuracy vs iteration, one line per (init, depth) at its chosen lr
    (`fig4.png`)."""
    chosen, cfg = outcome.plot
    training_accuracy_curves(chosen, f"{folder}/fig4.png",
                             title=f"Fashion-MNIST, {cfg.train_size} images, D = m = "
                                   f"{cfg.width}")


def training_accuracy_curves(rows, path, title: str = "Training accuracy, nonlinear ResNet"):
    """Training accuracy vs iteration; `rows` are dicts with keys init, depth, lr, iteration,
    train_accuracy (one learning rate per (init, depth), the chosen one); one line per
    (init, depth), solid for mZAS and dashed for the other initialisations."""
    curves: dict[tuple, list] = {}
    for r in rows:
        curves.setdefault((r["init"], int(r["depth"]), float(r["lr"])), []).append(
            (int(r["iteration"]), float(r["train_accuracy"])))
    from matplotlib import colormaps

    fig, ax = subplots(figsize=(6.4, 4.2))
    depths = sorted({d for _, d, _ in curves})
    colours = {d: colormaps["viridis"](i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    for (init, depth, lr), pts in sorted(curves.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colours[depth],
                linestyle="-" if init == "mzas" else "--",
                label=f"{init}, L={depth}, η={lr:.2g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    save(fig, path)
