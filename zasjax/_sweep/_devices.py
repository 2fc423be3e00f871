"""The configuration axis on devices: one mesh axis "cfg" over every (global) device, and
what the processes of a multi-process sweep must agree on.

Arrays are placed with `jax.make_array_from_callback`, so each process builds only its own
shards (multi-host), and brought back with `process_allgather` when there are several
processes. Process 0 alone reads and writes the output folder; what it reads (finished
rows, checkpoints, the plan) and what it refuses (a held lock, another sweep's folder)
reaches the others through `from_writer`, so every process enters the same collectives in
the same order and none waits for a partner that has given up.
"""

from __future__ import annotations

import pickle

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def make_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(list(devices or jax.devices())), ("cfg",))


def sharding(mesh: Mesh, ndim: int, axis: int) -> NamedSharding:
    spec = [None] * ndim
    spec[axis] = "cfg"
    return NamedSharding(mesh, PartitionSpec(*spec))


def put(x, mesh: Mesh, axis: int) -> jax.Array:
    """Place a host array (configurations first) on the mesh, split along `axis`."""
    x = np.moveaxis(np.asarray(x), 0, axis)
    return jax.make_array_from_callback(x.shape, sharding(mesh, x.ndim, axis),
                                        lambda idx: x[idx])


def to_host(x, axis: int = 0) -> np.ndarray:
    """The whole array on this host, configurations first (a collective with several
    processes: every process must call it, in the same order)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.moveaxis(np.asarray(x), axis, 0)


def is_writer() -> bool:
    """Process 0 reads and writes the output folder; the others write nothing."""
    return jax.process_index() == 0


class WriterRefused(Exception):
    """Raised on processes other than 0 when process 0 refused to go on (it says why)."""


def from_writer(obj):
    """`obj` as process 0 holds it, on every process (a collective: all must call it).

    Any picklable object: its bytes travel as a uint8 array through JAX's own broadcast,
    the same runtime (gloo on CPU, NCCL on GPU) as the sweep's collectives.
    """
    if jax.process_count() == 1:
        return obj
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(obj), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = np.zeros(n, np.uint8)
    buf[: data.size] = data
    return pickle.loads(np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes())


def on_writer(fn):
    """`fn()` run by process 0 alone, its result on every process.

    If it raises, process 0 re-raises the error and every other process raises
    `WriterRefused` with its message, instead of waiting in a collective process 0 never
    enters.
    """
    if jax.process_count() == 1:
        return fn()
    if is_writer():
        try:
            value = fn()
        except Exception as e:
            from_writer((False, str(e)))
            raise
        from_writer((True, value))
        return value
    ok, value = from_writer(None)
    if not ok:
        raise WriterRefused(value)
    return value
