"""`plan_sweep`: what a sweep will do, before it runs (`zasjax sweep --plan`).

Everything here is counted from the grid's index, never by listing configurations, so a
plan of 10⁹ configurations takes seconds. The time is an estimate from a short measured
calibration (one call of each class's program on this machine), scaled by each slice's
deepest layer count and by `max_iters`: an upper bound, as if no configuration converged
or diverged early.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import _size
from ._distributed import make_mesh
from ._engines import FullEngine, ModesEngine  # noqa: F401
from ._grid import Grid
from ._plan import Slice, bytes_per_config, device_memory, memory_budget, parts
from ._results import ROW_BYTES, choose_format, existing_format
from ._spec import SweepSpec, as_spec

#: Slices counted one by one up to this many per class; beyond, ceil(size / batch).
COUNT_SLICES = 100_000
#: Iterations of a calibration call.
CALIBRATION_ITERS = 20


@dataclass
class ClassPlan:
    dim: int
    capacity: int          # 0: the mode engine (no layers)
    depths: tuple          # (shallowest, deepest)
    configs: int
    batch: int
    slices: int
    exact: bool            # slices counted, not estimated
    bytes_per_device: int
    seconds: float | None = None   # estimated, all slices
    calibration: str = ""


@dataclass
class SweepPlan:
    """What `sweep(spec, out)` would do. `str(plan)` is the report `--plan` prints."""

    configs: int
    classes: list[ClassPlan]
    devices: int
    device_kind: str
    device_bytes: int
    results_format: str
    result_rows: int
    result_bytes: int
    free_bytes: int | None
    seconds: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def programs(self) -> int:
        return 2 * len({(c.dim, c.capacity, c.batch) for c in self.classes})

    @property
    def slices(self) -> int:
        return sum(c.slices for c in self.classes)

    def __str__(self) -> str:
        out = [f"{self.configs:,} configurations in {len(self.classes)} capacity classes: "
               f"{self.programs} programs (initial state + chunk per class), "
               f"{'' if all(c.exact for c in self.classes) else '≈ '}{self.slices:,} slices "
               f"on {self.devices} {self.device_kind} device(s) of "
               f"{_size(self.device_bytes)}"]
        for c in self.classes:
            cap = f"capacity {c.capacity}" if c.capacity else "modes"
            out.append(f"  d={c.dim} depths {c.depths[0]}..{c.depths[1]} ({cap}): "
                       f"{c.configs:,} configurations, batch {c.batch:,}, "
                       f"{'' if c.exact else '≈ '}{c.slices:,} slices, "
                       f"{_size(c.bytes_per_device)} per device"
                       + (f", ≤ {_duration(c.seconds)}" if c.seconds is not None else ""))
        free = f" ({_size(self.free_bytes)} free)" if self.free_bytes is not None else ""
        out.append(f"results: {self.result_rows:,} rows as {self.results_format}, about "
                   f"{_size(self.result_bytes)}{free}")
        if self.seconds is not None:
            out.append(f"time (estimate from a calibration, at most: as if every "
                       f"configuration ran max_iters): {_duration(self.seconds)} here; "
                       + ", ".join(f"{_duration(self.seconds / n)} on {n} devices like these"
                                   for n in (8, 64) if n > self.devices))
            out += [f"  calibration: {c.calibration}" for c in self.classes if c.calibration]
            out += ["  other classes: per configuration, linear in capacity between the "
                    "calibrated ones"] if any(not c.calibration for c in self.classes) else []
        out += self.notes
        return "\n".join(out)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def plan_sweep(spec: SweepSpec | Grid, out: str | None = None, *, calibrate: bool = True,
               **changes) -> SweepPlan:
    """What `sweep(spec, out)` would do, without running it: configurations, capacity
    classes and their programs, slices, memory per device, the results' format and size,
    and (`calibrate`) an estimated time measured on this machine.

    ValueError, in one line, for what cannot be run: one configuration beyond a device's
    memory, or results beyond the free space of `out`'s file system.
    """
    spec = as_spec(spec, **changes)
    default = jnp.dtype(jax.dtypes.canonicalize_dtype(float)).name
    spec = spec.replace(dtype=spec.dtype or default)
    devices = jax.devices() if spec.devices in (None, "auto") else jax.devices()[:spec.devices]
    spec.check_fits(devices)
    mesh = make_mesh(devices)
    dtype = jnp.dtype(spec.dtype)
    budget = memory_budget(devices)
    memory, _ = device_memory(devices)
    size = sum(g.index.size for g in spec.grids)
    fmt = (existing_format(out) if out else None) or choose_format(size, spec.results)
    classes = []
    for grid in spec.grids:
        eng = spec.engine_for(grid)
        for cls in eng.plan(grid, spec.bucket_ratio, len(devices), budget, dtype,
                            spec.max_batch):
            depths = [grid.depths[i] for i in cls.depths]
            exact = cls.size <= COUNT_SLICES * cls.batch
            n = sum(1 for _ in parts(grid.index, cls)) if exact else -(-cls.size // cls.batch)
            per = 8 * cls.dim * dtype.itemsize if not cls.capacity else \
                bytes_per_config(cls.capacity, cls.dim, dtype.itemsize, grid.optimizer)
            classes.append((ClassPlan(cls.dim, cls.capacity, (depths[0], depths[-1]),
                                      cls.size, cls.batch, n, exact,
                                      per * cls.batch // len(devices)), grid, cls, eng))
    notes = []
    if calibrate:
        notes = _calibrate_all(classes, spec, dtype, mesh)
    classes = [c for c, *_ in classes]
    rows = size if not spec.tune_lr else sum(
        g.index.size // max(1, _mean_rates(g)) for g in spec.grids)
    result_bytes = (size + rows) * ROW_BYTES[fmt]
    free = _free(out)
    seconds = sum(c.seconds for c in classes) if calibrate else None
    plan = SweepPlan(size, classes, len(devices), str(devices[0].device_kind), memory, fmt,
                     rows, result_bytes, free, seconds, notes)
    if free is not None and result_bytes > free:
        raise ValueError(f"the results need about {_size(result_bytes)}, more than the "
                         f"{_size(free)} free where {out!r} lies")
    return plan


def _mean_rates(grid: Grid) -> int:
    return max(1, round(np.mean([grid.index.largest_group(i)
                                 for i in range(len(grid.depths))])))


def _free(out: str | None) -> int | None:
    if not out:
        return None
    path = os.path.abspath(out)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _calibrate_all(classes, spec, dtype, mesh) -> list[str]:
    """Calibrate the classes of least and most capacity; the others by a line in capacity
    through the two (per configuration: a slice's start, and an iteration)."""
    by_cap = sorted(classes, key=lambda c: c[0].capacity)
    points = {}
    for plan, grid, cls, eng in {id(c): c for c in (by_cap[0], by_cap[-1])}.values():
        points[plan.capacity] = _calibrate(plan, grid, cls, eng, dtype, mesh, spec.chunk)
    (c0, p0), (c1, p1) = min(points.items()), max(points.items())
    for plan, grid, *_ in classes:
        f = 0.0 if c1 == c0 else (plan.capacity - c0) / (c1 - c0)
        start, iteration = (a + f * (b - a) for a, b in zip(p0, p1))
        plan.seconds = plan.slices * plan.batch * (start + grid.max_iters * iteration)
    return []


def _calibrate(plan: ClassPlan, grid: Grid, cls, eng, dtype, mesh, chunk: int):
    """(seconds per configuration to start a slice, seconds per configuration-iteration),
    timed on one slice of the class at its deepest depth (the second call of each program;
    the first compiles)."""
    import dataclasses

    k = min(CALIBRATION_ITERS, grid.max_iters)
    timing = dataclasses.replace(grid, max_iters=10**9, eps=1e-300)  # nothing stops early
    start, count = grid.index.block(0, 0, grid.dims.index(cls.dim), cls.depths[-1])
    rows = grid.index.rows(np.arange(start, start + min(count, cls.batch)))
    rows += [rows[-1]] * (cls.batch - len(rows))
    L = rows[0]["depth"]
    sl = Slice(cls.dim, cls.capacity, cls.batch, L, tuple(rows))
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        prepared = eng.start(timing, sl, rows, dtype, mesh, k)
        state = jax.block_until_ready(prepared.state)
        t1 = time.perf_counter()
        jax.block_until_ready(prepared.advance(state))
        times.append((t1 - t0, time.perf_counter() - t1))
    (start_s, run_s) = times[-1]
    plan.calibration = (f"d={cls.dim}, depth {L}, batch {cls.batch:,}: start {start_s:.2f} s, "
                        f"{run_s / k * 1e3:,.2f} ms per iteration of the batch (measured "
                        f"{k} iterations)")
    return start_s / cls.batch, run_s / k / cls.batch
