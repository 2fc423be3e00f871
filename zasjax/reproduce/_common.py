"""What every reproduction shares: the output folder, the summary, the tidy CSV, fits.

A study module declares its grid and its summary and calls these; none re-implements a
loop, a writer or a plot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _store


def prepare_out(out: str | os.PathLike) -> str:
    """Create the output folder (after the study validated its inputs) and return it."""
    os.makedirs(out, exist_ok=True)
    return str(out)


def use_dtype(name: str):
    """The array dtype for `name` ("float32" or "float64"), switching x64 on for float64."""
    import jax
    import jax.numpy as jnp

    if name == "float64":
        jax.config.update("jax_enable_x64", True)
        return jnp.float64
    return jnp.float32


def write_outputs(out: str, name: str, summary: Mapping[str, Any], rows: Sequence[Mapping],
                  columns: Sequence[str], quick: bool, started: float) -> dict:
    """Atomically write `out/summary.json` (with run metadata) and `out/<name>.csv`."""
    import jax

    from .. import __version__

    full = {"study": name, "quick": bool(quick), **summary,
            "meta": {"seconds": round(time.perf_counter() - started, 2),
                     "zasjax": __version__, "jax": jax.__version__,
                     "device": str(jax.devices()[0].device_kind),
                     "x64": bool(jax.config.jax_enable_x64)}}
    _store.write_csv(os.path.join(out, f"{name}.csv"), rows, columns)
    _store.write_json(os.path.join(out, "summary.json"), full)
    return full


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> float:
    """Exponent γ of y ∝ x^γ by least squares on log-log (NaN with fewer than 2 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def fit_log_linear(x: Sequence[float], y: Sequence[float]) -> float:
    """Rate c of y ∝ e^{c x}: slope of log y against x (NaN with fewer than 2 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[ok], np.log(y[ok]), 1)[0])
