"""Learning-rate tuning: the grid of rates, the best per configuration, and pruning."""

from __future__ import annotations

import math

from ._grid import KEY_COLUMNS, config_key, depth_lrs, lr_grid  # noqa: F401 (re-exported)


def best_per_config(rows: list[dict]) -> list[dict]:
    """For each (init, target, dim, depth, seed, optimizer): the fastest converging learning
    rate (ties: the larger η); if none converged, the lowest final loss among the rest."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        k = tuple(r[c] for c in KEY_COLUMNS if c != "lr")
        groups.setdefault(k, []).append(r)

    def rank(r):
        if r["status"] == "converged":
            return (0, r["iterations"], -r["lr"])
        loss = r["final_loss"]
        return (1, loss if math.isfinite(loss) and r["status"] != "diverged" else math.inf,
                -r["lr"])

    return [min(g, key=rank) for g in groups.values()]


def tuning_group(row: dict) -> tuple:
    key = config_key(row)
    return key[:5] + key[6:]  # everything but the learning rate


def fastest(finished: dict) -> dict[tuple, int]:
    """Tuning group → fewest iterations among its converged learning rates so far."""
    best: dict[tuple, int] = {}
    for r in finished.values():
        if r["status"] == "converged":
            g, n = tuning_group(r), int(r["iterations"])
            best[g] = min(best.get(g, n), n)
    return best
