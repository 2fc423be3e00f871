"""Least-squares rates read off measured curves (host-side numpy, NaN when under-determined)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> float:
    """Exponent γ of y ∝ x^γ: the least-squares slope of log y against log x over the
    finite pairs with x, y > 0 (NaN with fewer than 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def fit_log_linear(x: Sequence[float], y: Sequence[float]) -> float:
    """Rate c of y ∝ e^{c x}: the least-squares slope of log y against x over the finite
    pairs with y > 0 (NaN with fewer than 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[ok], np.log(y[ok]), 1)[0])
