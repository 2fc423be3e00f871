"""Checkpoints of configurations in flight, keyed and restored per configuration.

A slice saves the state of its running configurations after every chunk to
`inflight/<tag>.npz`: weights batch-first with the slice's capacity, counters, keys and
optimiser state, and the configuration keys and depths. A resumed sweep may group and pad
configurations differently (another capacity ratio, or a class that lost its deepest
members): a configuration's saved state is restored into whatever slice it lands in, layers
1..L from the checkpoint and identities above (padding layers never train, so that is
exactly its state), all fields together or none. A checkpoint that cannot be used (another
run, a shape that does not fit, an unreadable file) restarts its configurations from scratch
with a warning, and every checkpoint left when the sweep ends is removed.
"""

from __future__ import annotations

import glob
import os
import warnings

import jax
import numpy as np

from .. import _checkpoint
from .._run import RunState
from ._devices import put, sharding, to_host
from ._grid import config_key

_FIELDS = ("step", "loss", "status", "iterations", "blowup")


def _key_text(row: dict) -> str:
    return repr(config_key(row))


def host_state(state: RunState, axis: int) -> dict[str, np.ndarray]:
    """Every field of a batched state on the host, configurations first."""
    out = {"W": to_host(state.W, axis), "key": to_host(jax.random.key_data(state.key), 0)}
    for name in _FIELDS:
        out[name] = to_host(getattr(state, name), 0)
    for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
        out[f"opt{i}"] = to_host(leaf, axis if np.ndim(leaf) > 1 else 0)
    return out


def save(path: str, rows: list[dict], state: RunState, axis: int, keep, run_id: str) -> None:
    """Checkpoint the configurations `rows[i]` with `keep[i]` true."""
    idx = np.flatnonzero(keep)
    arrays = {k: v[idx] for k, v in host_state(state, axis).items()}
    arrays["config_keys"] = np.asarray([_key_text(rows[i]) for i in idx], dtype=str)
    arrays["depths"] = np.asarray([rows[i]["depth"] for i in idx], np.int64)
    _checkpoint.save(path, arrays, {"run": run_id, "capacity": int(state.W.shape[1 if axis == 0
                                                                                   else 0])})


def load_all(folder: str, run_id: str) -> dict[str, dict[str, np.ndarray]]:
    """config-key text → its saved fields, from every checkpoint of run `run_id` in `folder`.

    Leftover temporary files of an interrupted write are removed; an unreadable checkpoint is
    skipped with a warning (its configurations restart). A configuration saved twice (an
    earlier resume wrote under another name) is taken at its latest step.
    """
    saved: dict[str, dict[str, np.ndarray]] = {}
    for tmp in glob.glob(os.path.join(folder, ".*.tmp")):
        os.unlink(tmp)
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        try:
            arrays, meta = _checkpoint.load(path)
            keys = arrays.pop("config_keys")
        except (_checkpoint.CheckpointError, KeyError) as e:
            warnings.warn(f"ignoring checkpoint {path}: {e}; its configurations restart",
                          stacklevel=2)
            os.unlink(path)
            continue
        if meta.get("run") != run_id:
            continue  # another grid of the same output folder
        for i, k in enumerate(keys):
            old = saved.get(str(k))
            if old is None or int(arrays["step"][i]) > int(old["step"]):
                saved[str(k)] = {n: a[i] for n, a in arrays.items()}
    return saved


def remove_run(folder: str, run_id: str) -> None:
    """Delete the checkpoints of run `run_id` (all its configurations have finished)."""
    for tmp in glob.glob(os.path.join(folder, ".*.tmp")):
        os.unlink(tmp)  # torn writes of a killed process
    for path in glob.glob(os.path.join(folder, "*.npz")):
        try:
            _, meta = _checkpoint.load(path)
        except _checkpoint.CheckpointError:
            meta = {"run": run_id}  # unreadable: of no use to anyone
        if meta.get("run") == run_id:
            os.unlink(path)
    try:
        os.rmdir(folder)
    except OSError:
        pass  # another grid's checkpoints remain


def restore(state: RunState, rows: list[dict], saved: dict, axis: int, mesh) -> RunState:
    """`state` with every configuration of `rows` that has a usable checkpoint restored."""
    hits = [(i, saved[_key_text(r)]) for i, r in enumerate(rows) if _key_text(r) in saved]
    if not hits:
        return state
    host = {k: np.array(v) for k, v in host_state(state, axis).items()}  # writable copies
    for i, old in hits:
        L = int(old["depths"])
        if int(rows[i]["depth"]) != L or not _fits(host, i, old, L):
            continue  # a fresh start, counters and all
        host["W"][i, :L] = old["W"][:L]
        for name in ("key", *_FIELDS):
            host[name][i] = old[name]
        for name in host:
            if name.startswith("opt"):
                _copy_leaf(host[name], i, old[name], L)
    leaves = [put(host[f"opt{i}"], mesh, axis if host[f"opt{i}"].ndim > 1 else 0)
              for i in range(len(jax.tree.leaves(state.opt_state)))]
    opt_state = jax.tree.unflatten(jax.tree.structure(state.opt_state), leaves)
    key = jax.device_put(jax.random.wrap_key_data(host["key"]), sharding(mesh, 1, 0))
    return RunState(put(host["W"], mesh, axis), opt_state,
                    *(put(host[n], mesh, 0) for n in _FIELDS), key)


def _fits(host, i, old, L) -> bool:
    if host["W"].shape[2:] != old["W"].shape[1:] or host["W"].shape[1] < L:
        return False
    opt = [n for n in host if n.startswith("opt")]
    return all(n in old and (host[n][i].shape == old[n].shape or
                             host[n].ndim > 1 and host[n].shape[2:] == old[n].shape[1:])
               for n in opt)


def _copy_leaf(dst, i, src, L) -> None:
    # W-shaped optimiser state (momenta): layers 1..L; the padding's stays 0, as it would.
    if dst[i].shape == src.shape:
        dst[i] = src
    else:
        dst[i, :L] = src[:L]
