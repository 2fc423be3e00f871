"""Atomic, resumable result files.

Every write goes to a temporary file in the destination folder and is moved into place
with `os.replace`, so a reader (or a resumed run) only ever sees a complete old file or a
complete new one, never a torn one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import InputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder + `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (non-finite floats become null)."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def json_safe(obj: Any) -> Any:
    # JSON has no NaN/inf; a diverged run's loss is written as null rather than invalid JSON.
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / jax scalar
        return json_safe(obj.item())
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    return obj


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
              columns: Sequence[str]) -> None:
    """Atomically write `rows` (dicts) as CSV with the given column order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, so a resumed table equals an uninterrupted one
    return value


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV written by `write_csv` / `append_csv`; a missing file reads as no rows, and
    a torn last line (a process killed while appending) is left out."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        text = f.read()
    return list(csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1])))


def append_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
               columns: Sequence[str]) -> None:
    """Append rows in one write, synced. A write that fails (a full disk) is cut back, and a
    torn tail left by a killed process is cut off first, so the file only ever holds whole
    rows. A file with other columns (an earlier version's) is rewritten whole."""
    header = ",".join(columns) + "\n"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return write_csv(path, rows, columns)
    with open(path, "rb") as f:
        if f.readline().decode(errors="replace") != header:
            f.close()
            return write_csv(path, [*read_csv(path), *rows], columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    data = memoryview(buf.getvalue().encode())
    with open(path, "r+b", buffering=0) as f:
        end = _whole_lines(f)
        f.truncate(end)
        f.seek(end)
        try:
            while data:
                data = data[f.write(data):]
            os.fsync(f.fileno())
        except BaseException:
            f.truncate(end)
            raise


def _whole_lines(f) -> int:
    """The size of `f` up to its last newline."""
    size = f.seek(0, os.SEEK_END)
    pos = size
    while pos > 0:
        step = min(4096, pos)
        f.seek(pos - step)
        block = f.read(step)
        i = block.rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def prepare_folder(folder: str, option: str = "--out") -> None:
    """Create `folder` for writing; ValueError (one line) if that is impossible."""
    check_folder(folder, option)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"cannot write into {option} {str(folder)!r}: {e.strerror or e}"
                         ) from None


def check_folder(folder: str, option: str = "--out") -> None:
    """ValueError if `folder` could not become an output folder; creates nothing."""
    if not str(folder).strip():
        raise InputError(f"{option} must name a folder, got an empty string")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {str(folder)!r} exists and is not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{option} {str(folder)!r} lies under {str(parent)!r}, which is a file")
    if parent is not None and not os.access(parent, os.W_OK):
        raise InputError(f"cannot write into {option} {str(folder)!r}: {str(parent)!r} is not "
                         "writable")


class OutputLock:
    """An exclusive lock on an output folder, held while one process writes into it.

    `flock` on `<folder>/.lock`, released by the kernel when the process ends (even by
    SIGKILL), so a stale lock never blocks a resume. The file names its holder, so a second
    writer is refused with a line that says who holds the folder.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / ".lock"
        self.fd = None

    def __enter__(self) -> OutputLock:
        import fcntl
        import socket
        import time

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(f"{str(self.path.parent)!r} is in use by {holder}; wait for it "
                             "to finish or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%FT%T%z')}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None
