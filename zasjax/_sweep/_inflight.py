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

import numpy as np

from .. import _checkpoint
from ._grid import config_key


def _key_text(row: dict) -> str:
    return repr(config_key(row))


def save(path: str, rows: list[dict], host: dict[str, np.ndarray], keep, run_id: str) -> None:
    """Checkpoint the configurations `rows[i]` with `keep[i]` true; `host`: the state's
    fields, configurations first (the engine's `to_host`)."""
    idx = np.flatnonzero(keep)
    arrays = {k: v[idx] for k, v in host.items()}
    arrays["config_keys"] = np.asarray([_key_text(rows[i]) for i in idx], dtype=str)
    arrays["depths"] = np.asarray([rows[i]["depth"] for i in idx], np.int64)
    _checkpoint.save(path, arrays, {"run": run_id})


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


def restore(host: dict[str, np.ndarray], rows: list[dict], saved: dict, restore_row) -> bool:
    """Write into `host` (writable, configurations first) the saved state of every row that
    has a usable checkpoint, with the engine's `restore_row(host, i, old, depth)`, which
    copies all fields of a configuration or none. Returns whether anything was restored."""
    restored = False
    for i, r in enumerate(rows):
        old = saved.get(_key_text(r))
        if old is None or int(old["depths"]) != int(r["depth"]):
            continue  # a fresh start, counters and all
        fields = {k: v for k, v in old.items() if k != "depths"}
        restored |= bool(restore_row(host, i, fields, int(r["depth"])))
    return restored
