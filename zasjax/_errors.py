"""The errors the command line reports in one line: input to fix, output that could not be
written."""

from __future__ import annotations


class InputError(ValueError):
    """Input the caller can fix (an option, a file, an output folder), found at any stage of
    a run. `zasjax` reports it as a usage error: one line, exit status 2. Checks made before
    any work raise plain `ValueError`, which the command line treats the same way."""


class OutputError(OSError):
    """A result could not be written: the disk is full, or the output folder stopped being
    writable. What was written before is intact; free space (or fix the folder) and resume.
    `zasjax` reports it as one line, exit status 74 (EX_IOERR)."""

    @classmethod
    def of(cls, e: OSError, path: str, need: int) -> OutputError:
        import os
        import shutil

        folder = os.path.dirname(path) or "."
        try:
            free = f", {_size(shutil.disk_usage(folder).free)} free now"
        except OSError:
            free = ""
        return cls(e.errno, f"cannot write {path!r}: {e.strerror or e}; the rest of the sweep "
                            f"needs about {_size(need)}{free}. Nothing written is damaged: "
                            "free space (or fix the folder) and run again with --resume")

    def __str__(self) -> str:
        return self.strerror


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
