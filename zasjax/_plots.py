"""Matplotlib figures. matplotlib is imported lazily, with the Agg backend (no display)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def iterations_vs_depth(rows: Sequence[dict], path: str | os.PathLike,
                        title: str = "Iterations to ε vs depth") -> None:
    """Log-log plot of iterations-to-ε against depth, one line per (init, target, dim[, lr]).

    Each point is the median over seeds of the converged runs; depths where no seed
    converged are left out (and say so in the legend count).
    """
    import numpy as np

    plt = _pyplot()
    lrs_per_group: dict[tuple, set] = {}
    for r in rows:
        lrs_per_group.setdefault((r["init"], r["target"], r["dim"]), set()).add(r["lr"])
    lines: dict[tuple, dict[int, list[int]]] = {}
    for r in rows:
        group = (r["init"], r["target"], r["dim"])
        if len(lrs_per_group[group]) > 1 and not r.get("tuned"):
            group = (*group, r["lr"])
        pts = lines.setdefault(group, {})
        if r["status"] == "converged":
            pts.setdefault(r["depth"], []).append(r["iterations"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for group, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
        depths = sorted(pts)
        label = f"{group[0]}, Φ={group[1]}, d={group[2]}" + (f", η={group[3]:g}"
                                                            if len(group) > 3 else "")
        if not depths:
            ax.plot([], [], label=label + " (none converged)")
            continue
        ax.plot(depths, [max(float(np.median(pts[L])), 0.5) for L in depths], "o-",
                label=label)
    if any(lines.values()):  # log axes need at least one point
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no configuration converged", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("depth L")
    ax.set_ylabel("iterations to ε (median over seeds)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def training_accuracy_curves(rows: Sequence[dict], path: str | os.PathLike,
                             title: str = "Training accuracy, nonlinear ResNet") -> None:
    """Figure 4 of Wu, Wang & Ma (2019): training accuracy vs iteration.

    `rows` are dicts with keys init, depth, lr, iteration, train_accuracy (one learning
    rate per (init, depth), the chosen one); one line per (init, depth), solid for mZAS
    and dashed for the other initialisations.
    """
    plt = _pyplot()
    curves: dict[tuple, list] = {}
    for r in rows:
        curves.setdefault((r["init"], int(r["depth"]), float(r["lr"])), []).append(
            (int(r["iteration"]), float(r["train_accuracy"])))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    depths = sorted({d for _, d, _ in curves})
    colours = {d: plt.cm.viridis(i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
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
    _save(fig, path)


def flow_vs_gd(path: str | os.PathLike, ts, loss_flow, bound, gd_curves: dict,
               title: str = "Gradient flow vs gradient descent") -> None:
    """R(t) of the gradient flow against the Theorem 4.1 bound e^{−2t}R(0), with gradient
    descent on top (log-y).

    `ts`, `loss_flow`, `bound`: equal-length sequences; `gd_curves` maps a label (e.g.
    "η=0.1") to `(t, losses)` with t = η·k. Non-positive or non-finite values are not drawn.
    """
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def positive(y):
        y = np.asarray(y, float)
        return np.where(np.isfinite(y) & (y > 0), y, np.nan)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(ts, positive(bound), "k--", lw=1.2, label="e^{−2t} R(0) (Thm 4.1)")
    ax.plot(ts, positive(loss_flow), "k-", lw=2.2, label="gradient flow")
    for label, (t, losses) in gd_curves.items():
        ax.plot(t, positive(losses), lw=1.0, alpha=0.85, label=f"GD, {label}")
    ax.set_yscale("log")
    ax.set_xlabel("t  (= η · step for GD)")
    ax.set_ylabel("R = ½‖W_{L:1} − Φ‖²_F")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def arora_success_and_rate(entries: Sequence[dict], path: str | os.PathLike,
                           exact: float | None = None) -> None:
    """Arora et al. study: (left) success probability and margin-positive fraction vs depth,
    one colour per init, with the closed-form P(margin > 0) of the balanced init; (right)
    median measured linear rate −d log ℓ/dt against the Theorem 1 bound η c^{2(N−1)/N}."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    inits = sorted({e["init"] for e in entries})
    for i, name in enumerate(inits):
        es = sorted((e for e in entries if e["init"] == name), key=lambda e: e["depth"])
        depths = [e["depth"] for e in es]
        colour = f"C{i}"
        ax.plot(depths, [e["success_probability"] for e in es], "o-", color=colour,
                label=f"{name}: success (c > 0 and converged)")
        ax.plot(depths, [e["margin_positive_fraction"] for e in es], "s--", color=colour,
                alpha=0.6, label=f"{name}: margin c > 0 at init")
        pts = [(e["depth"], e["median_measured_rate"], e["median_bound_rate"]) for e in es
               if e.get("median_measured_rate") is not None]
        if pts:
            d, m, b = zip(*pts)
            bx.plot(d, m, "o-", color=colour, label=f"{name}: measured")
            held = any(e.get("conditions_hold_fraction", 1.0) > 0 for e in es)
            bx.plot(d, b, "v:", color=colour, label=f"{name}: bound η c^(2(N−1)/N)"
                    + ("" if held else " (δ too large: formula only)"))
    if exact is not None:
        ax.axhline(exact, color="k", lw=0.8, ls=":",
                   label=f"exact P(c > 0), balanced = {exact:.3f}")
    ax.set_xlabel("depth N")
    ax.set_ylabel("fraction of seeds")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Scalar regression: success probability")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    bx.set_xlabel("depth N")
    bx.set_ylabel("linear rate per step (median over successes)")
    bx.set_yscale("log")
    bx.set_title("Measured rate vs Theorem 1 bound (same η)")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend(fontsize=7)
    _save(fig, path)


def landscape_paths(path: str | os.PathLike, X, Y, Z, paths: dict, minima=None,
                    saddle=(0.0, 0.0), title: str = "Loss landscape and GD paths") -> None:
    """Figure 1 of Wu, Wang & Ma (2019): contours of a two-parameter loss with GD paths.

    `X, Y, Z`: meshgrid arrays (w₁ on x, w₂ on y, R on z; contours are drawn on log R);
    `paths` maps a label to `(w1s, w2s)`; `minima`: optional w₁ ↦ w₂ curve of global
    minima (drawn dashed on each branch, e.g. w₂ = Φ/w₁); `saddle` is marked with a cross.
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
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
    _save(fig, path)


def saddle_escape_curves(path: str | os.PathLike, curves: dict, saddles=(), eps=None,
                         title: str = "Escaping saddles") -> None:
    """Figure 3 of Wu, Wang & Ma (2019): loss against iteration (log-y), one line per run.

    `curves` maps a label to `(iterations, losses)`; a label starting with "ZAS" is drawn
    thick and black, the others thin. `saddles`: loss values of saddle plateaus (dotted
    lines, e.g. k/2 for Φ = −I); `eps`: the convergence threshold (dashed line).
    Non-positive or non-finite losses are not drawn.
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    for i, s in enumerate(saddles):
        ax.axhline(s, color="grey", lw=0.7, ls=":",
                   label=("saddle values " + ", ".join(f"{v:g}" for v in saddles)
                          if i == 0 else None))
    if eps is not None:
        ax.axhline(eps, color="grey", lw=0.7, ls="--", label=f"ε = {eps:g}")
    others = 0
    for label, (t, losses) in curves.items():
        y = np.asarray(losses, float)
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        if label.startswith("ZAS"):
            ax.plot(t, y, color="k", lw=2.2, label=label, zorder=3)
        else:
            ax.plot(t, y, color=f"C{others}", lw=1.0, alpha=0.9, label=label)
            others += 1
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("R = ½‖W_{L:1} − Φ‖²_F")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="center")
    _save(fig, path)


def zou_final_loss(entries: Sequence[dict], path: str | os.PathLike) -> None:
    """Zou-Long-Gu study: relative training loss (final / initial) against width m, one panel
    per depth L, one line per (model, transform, optimizer); the modified identity has a
    single width m = d + k and shows as a star."""
    plt = _pyplot()
    depths = sorted({e["depth"] for e in entries})
    fig, axes = plt.subplots(1, len(depths), figsize=(4.6 * len(depths), 4.2), squeeze=False)
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
    _save(fig, path)


def scaling_lines(series: Sequence[dict], path: str | os.PathLike, *, title: str,
                  xlabel: str = "depth L", ylabel: str = "iterations to ε",
                  logx: bool = True, logy: bool = True) -> None:
    """One line per entry of `series` (dicts with `label`, `x`, `y`; the label carries the
    fitted exponent or rate). Points with a non-finite or (on a log axis) non-positive y are
    not drawn, so a depth where no run converged leaves a gap rather than a fake value.
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.5))
    for s in series:
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        ax.plot(x[ok], y[ok], "o-", ms=4, label=s["label"])
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
