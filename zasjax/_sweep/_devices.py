"""The configuration axis on devices: one mesh axis "cfg" over every (global) device.

Arrays are placed with `jax.make_array_from_callback`, so each process builds only its own
shards (multi-host), and brought back with `process_allgather` when there are several
processes. Which process writes results is decided by the driver (process 0).
"""

from __future__ import annotations

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
    """The whole array on this host, configurations first."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.moveaxis(np.asarray(x), axis, 0)
