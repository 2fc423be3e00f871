"""Checkpoints: named arrays plus a JSON header in one `.npz`, written atomically.

Shared by sweeps (one checkpoint per configuration in flight) and ResNet training. A
checkpoint carries the identity of what wrote it (`meta`); a reader compares it with its
own before using the arrays, so a checkpoint from another run is never restored. Files are
read without pickles; a truncated or foreign file raises `CheckpointError` naming it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _store
from ._errors import InputError

_META = "__meta__"


class CheckpointError(InputError):
    """A checkpoint file that cannot be read, or that belongs to another run."""


def save(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write `arrays` (name → array) and the JSON-able `meta` to `path`, atomically."""
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved for the checkpoint header")
    header = np.frombuffer(json.dumps(_store.json_safe(dict(meta))).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{_META: header}, **{k: np.asarray(v) for k, v in arrays.items()})
    _store.atomic_write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`(arrays, meta)` from a checkpoint written by `save`; `CheckpointError` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META not in data.files:
                raise CheckpointError(f"checkpoint {os.fspath(path)!r} has no zasjax header; "
                                      "it was not written by zasjax")
            meta = json.loads(data[_META].tobytes().decode())
            arrays = {k: data[k] for k in data.files if k != _META}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is unreadable (truncated or "
                              f"not a zasjax checkpoint): {type(e).__name__}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} has a malformed header")
    return arrays, meta
