"""How a grid becomes compiled programs: capacity classes of depth, fixed batch sizes, and
slices that fit in memory, planned from the grid's index (`GridIndex`) without listing it.

A program's shapes are (batch, capacity, D, D). Depth is data: a configuration of depth L
runs in any class of capacity C ≥ L, its layers L+1..C fixed identities (mask 0), which
change neither the function nor any gradient. The layer loops stop at the deepest layer of
the slice at hand (`active`, also data); the padding costs memory, and the elementwise
updates that touch every layer. By default each width is one class, of capacity the power
of two at or above its deepest configuration, so a width compiles two programs (initial
state, chunk) whether a sweep lists 10 depths or 512; a width that would run more than
`SPLIT_SLICES` slices that way is split along ratio 2, and `ratio` splits along
ceil(ratio^k). Batch sizes come from a ladder (1, 2, 3, 4, 6, 8, 12, … times the device
count).

A class runs in slices (`parts`): position ranges of the grid taken by depth, then init and
target, `SLICES` of them (or fewer when a slice would hold under `MIN_BATCH`
configurations), each cut at the edge of a configuration's learning rates, so each slice's
`active` is close to its members' depths and tuning prunes within a slice. The host holds
one slice's positions at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .._optimizers import OPTIMIZERS

#: From this width on, XLA:CPU runs one configuration's D × D products faster than a batch
#: of them (batched dots of D ≥ 64 lose 20-45% against plain ones on the 2-core machine), so
#: on CPU the configurations of a device are looped over inside the compiled program, and
#: `devices="auto"` splits them over one device per core.
LOOP_MIN_DIM = 48

#: Default ratio of the capacity ladder (`bucket_ratio`): None, one class per width.
DEFAULT_RATIO = None

#: Slices per class, unless that would make them smaller than MIN_BATCH per device.
SLICES = 16
MIN_BATCH = 256
#: A width whose one class would run more than this many full slices is split into
#: classes of ratio 2 (`bucket_ratio` unset only).
SPLIT_SLICES = 64
#: The host builds a slice's rows as Python objects: at most this many per slice (unless
#: `max_batch` says otherwise).
HOST_BATCH = 1 << 15


def check_ratio(ratio: float | None) -> float | None:
    if ratio is None:
        return None
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1):
        raise ValueError(f"--bucket-ratio (bucket_ratio) must be a finite number >= 1, got {ratio}")
    return float(ratio)


def capacity(depth: int, ratio: float = 2.0) -> int:
    """The smallest rung ceil(ratio^k) ≥ `depth` of the capacity ladder (`depth` if ratio = 1)."""
    if ratio == 1 or depth <= 1:
        return int(depth)
    k = math.floor(math.log(depth, ratio))
    while math.ceil(ratio**k) < depth:
        k += 1
    while k > 0 and math.ceil(ratio ** (k - 1)) >= depth:
        k -= 1
    return int(math.ceil(ratio**k))


def depth_classes(depths: Sequence[int], ratio: float | None = DEFAULT_RATIO
                  ) -> dict[int, list[int]]:
    """capacity → the sorted depths it holds (one class, a power of two, if `ratio` is None)."""
    depths = sorted(set(int(d) for d in depths))
    if check_ratio(ratio) is None:
        return {capacity(depths[-1], 2.0): depths}
    out: dict[int, list[int]] = {}
    for L in depths:
        out.setdefault(capacity(L, ratio), []).append(L)
    return out


def _ladder(upto: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, … (2^k and 3·2^(k-1)), up to the first rung ≥ `upto`."""
    rungs = [1]
    while rungs[-1] < upto:
        r = rungs[-1]
        rungs.append(2 if r == 1 else r * 3 // 2 if r & (r - 1) == 0 else 1 << r.bit_length())
    return rungs


def batch_size(n: int, n_dev: int, cap: int) -> int:
    """The smallest fixed batch size ≥ n, a multiple of `n_dev`, at most `cap`.

    Sizes are n_dev × {1, 2, 3, 4, 6, 8, 12, 16, …} (two per octave), so slices of any
    length share a few programs and waste at most a third of a batch.
    """
    return min(_ladder(-(-n // n_dev))[-1] * n_dev, cap)


def batch_cap(per_config_bytes: int, budget: int, n_dev: int, max_batch: int | None) -> int:
    """The largest batch size on the ladder that fits `budget` bytes per device, or
    `max_batch` configurations, and at most `HOST_BATCH` in all."""
    per_device = (max_batch // n_dev if max_batch else
                  min(budget // max(per_config_bytes, 1), HOST_BATCH // n_dev))
    per_device = max(per_device, 1)
    return max(r for r in _ladder(per_device) if r <= per_device) * n_dev


def bytes_per_config(depth: int, dim: int, itemsize: int, optimizer: str) -> int:
    """Rough working set of one configuration: W, mask, prefixes, gradients, optimiser state."""
    copies = 5 + OPTIMIZERS[optimizer].state_copies
    return copies * (depth + 1) * dim * dim * itemsize


#: On CPU, the slices of all devices together hold at most this much: batches past a few
#: thousand configurations run no faster there, and the host keeps room for the rest.
CPU_SLICE_BYTES = 1 << 30


def device_memory(devices) -> tuple[int, bool]:
    """(bytes of one device's memory, whether that is the host's RAM shared by `devices`)."""
    try:
        stats = devices[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
    except Exception:  # noqa: BLE001 - not every backend reports memory
        limit = None
    if limit:
        return int(limit), False
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // max(len(devices), 1), True


def memory_budget(devices) -> int:
    """Bytes one slice may use per device: a quarter of its memory (on CPU: of the host's
    RAM, and at most `CPU_SLICE_BYTES` over all devices)."""
    memory, host = device_memory(devices)
    if host:
        return min(memory // 4, CPU_SLICE_BYTES // max(len(devices), 1))
    return memory // 4


def check_fits(dims, depths, itemsize: int, optimizer: str, memory: int) -> None:
    """ValueError if one configuration of the deepest class would not fit a device of
    `memory` bytes."""
    for d in dims:
        C = capacity(max(depths), 2.0)
        need = bytes_per_config(C, d, itemsize, optimizer)
        if need > memory:
            raise ValueError(f"width {d} at depth {max(depths)} needs about {need / 2**30:,.1f} "
                             f"GiB per configuration, more than the {memory / 2**30:,.1f} "
                             "GiB a device has")


@dataclass(frozen=True)
class Slice:
    """Configurations run by one call of one program: `rows` padded to `batch`, their layer
    loops stopping at `active` (the deepest of them)."""

    dim: int
    capacity: int
    batch: int
    active: int
    rows: tuple

    @property
    def tag(self) -> str:
        return f"d{self.dim}-C{self.capacity}-B{self.batch}"


@dataclass(frozen=True)
class Part:
    """One planned slice, before its rows exist: `pieces`, (start, count) ranges of grid
    positions (`GridIndex`), at most `batch` configurations in all."""

    dim: int
    capacity: int
    batch: int
    active: int
    pieces: tuple

    @property
    def size(self) -> int:
        return sum(n for _, n in self.pieces)


@dataclass(frozen=True)
class Class:
    """The configurations of one width and capacity class: one program of batch `batch`."""

    dim: int
    capacity: int
    depths: tuple          # positions into the grid's depths, ascending depth
    size: int              # configurations
    batch: int


def classes(index, ratio: float | None, n_dev: int, budget: int, itemsize: int,
            optimizer: str, max_batch: int | None = None, modes: bool = False) -> list[Class]:
    """Every width's capacity classes with their batch sizes (`modes`: one class per width,
    its state O(d) per configuration)."""
    grid, out = index.grid, []
    per_depth = index.depth_count * len(grid.inits) * len(grid.targets)
    order = sorted(range(len(grid.depths)), key=lambda i: grid.depths[i])
    for dim in sorted(grid.dims):
        if modes:
            groups = {0: [grid.depths[i] for i in order]}
        else:
            groups = depth_classes(grid.depths, ratio)
            if ratio is None and _many_slices(per_depth, dim, groups, n_dev, budget, itemsize,
                                              optimizer, max_batch):
                groups = depth_classes(grid.depths, 2.0)
        for C, depths in sorted(groups.items()):
            members = set(depths)
            pos = tuple(i for i in order if grid.depths[i] in members)
            n = int(sum(int(per_depth[i]) for i in pos))
            per_config = 8 * dim * itemsize if modes else bytes_per_config(C, dim, itemsize,
                                                                           optimizer)
            cap = batch_cap(per_config, budget, n_dev, max_batch)
            want = n if modes else max(-(-n // SLICES), min(MIN_BATCH * n_dev, n))
            out.append(Class(dim, C, pos, n, batch_size(want, n_dev, cap)))
    return out


def _many_slices(per_depth, dim, groups, n_dev, budget, itemsize, optimizer, max_batch
                 ) -> bool:
    """Whether one class per width would run more than `SPLIT_SLICES` slices: then its
    shallow slices would pay for the deep layers' padding (updates touch every layer) many
    times over, and classes of ratio 2 cost a few more programs instead."""
    ((C, _),) = groups.items()
    cap = batch_cap(bytes_per_config(C, dim, itemsize, optimizer), budget, n_dev, max_batch)
    return int(per_depth.sum()) > SPLIT_SLICES * cap


def parts(index, cls: Class):
    """The slices of one class, lazily, in run order: by depth (so a slice's members need
    similar layer counts), then init and target; each cut at a learning-rate group's edge
    (a configuration's rates run in one slice, so tuning prunes within it), unless one
    group alone outgrows the batch."""
    grid = index.grid
    d = grid.dims.index(cls.dim)
    pieces, room, deepest = [], cls.batch, 0
    for L in cls.depths:
        for i in range(len(grid.inits)):
            for t in range(len(grid.targets)):
                start, count = index.block(i, t, d, L)
                offset = 0
                while offset < count:
                    take = min(room, count - offset)
                    if take < count - offset:  # cut at a group's edge
                        edge = index.group_start(L, offset + take)
                        if edge > offset:
                            take = edge - offset
                        elif pieces:
                            take = 0
                    if take:
                        pieces.append((start + offset, take))
                        offset += take
                        room -= take
                        deepest = grid.depths[L]
                    if room == 0 or take == 0:
                        yield Part(cls.dim, cls.capacity, cls.batch, deepest, tuple(pieces))
                        pieces, room = [], cls.batch
    if pieces:
        yield Part(cls.dim, cls.capacity, cls.batch, deepest, tuple(pieces))
