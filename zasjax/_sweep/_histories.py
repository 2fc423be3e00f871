"""Learning times in a sweep (`--save learning-times`): each running configuration's modes
(`Parametrization.modes`: singular values of the end-to-end matrix, or a diagonal network's
coordinates), recorded at its start and after every chunk, and turned into learning times
(`_learning_times.learning_times`: the first recorded iteration at which each mode reaches
half of its final value) when it finishes. The resolution is the chunk (`--chunk`).

The records of a configuration in flight travel in its checkpoint (`history_steps`,
`history_modes`, padded with -1 and NaN), so a resumed configuration continues its own
history; a checkpoint without one (written without `--save learning-times`) is not
restored: its configurations restart, which gives the same rows.
"""

from __future__ import annotations

import numpy as np

from .._learning_times import learning_times
from ._inflight import _key_text

FIELDS = ("history_steps", "history_modes")


def split_saved(saved: dict) -> dict:
    """Take the histories out of process 0's checkpoints (`_inflight.load_all`: key text →
    fields), in place; the entries without one are dropped (they restart). Returns key
    text → (steps, modes)."""
    out = {}
    for key in list(saved):
        fields = saved[key]
        if not all(f in fields for f in FIELDS):
            del saved[key]
            continue
        steps, modes = fields.pop(FIELDS[0]), fields.pop(FIELDS[1])
        keep = steps >= 0
        out[key] = (list(steps[keep]), list(modes[keep]))
    return out


class Histories:
    """The records of one slice's rows, by local row index."""

    def __init__(self, rows: list[dict], restored: dict, start_steps: np.ndarray):
        self.steps: list[list] = []
        self.modes: list[list] = []
        for r, step in zip(rows, start_steps):
            old = restored.get(_key_text(r))
            # a restored row continues its history only if it restarts where it stopped
            if old is not None and old[0] and int(old[0][-1]) == int(step):
                self.steps.append(list(old[0]))
                self.modes.append(list(old[1]))
            else:
                self.steps.append([])
                self.modes.append([])

    def record(self, which: np.ndarray, steps: np.ndarray, modes: np.ndarray) -> None:
        """Append `modes[i]` at `steps[i]` for each row i with `which[i]` (not twice at one
        step)."""
        for i in np.flatnonzero(which):
            if not self.steps[i] or int(self.steps[i][-1]) != int(steps[i]):
                self.steps[i].append(int(steps[i]))
                self.modes[i].append(np.asarray(modes[i]))

    def times(self, i: int) -> np.ndarray:
        """Row i's learning times, `(k,)`."""
        return np.asarray(learning_times(np.stack(self.modes[i]),
                                         np.asarray(self.steps[i], np.int64)))

    def arrays(self, n_padded: int) -> dict[str, np.ndarray]:
        """Every row's records, padded (to `n_padded` rows and the longest history), for a
        checkpoint."""
        T = max(1, max(map(len, self.steps)))
        k = next((m[0].shape[0] for m in self.modes if m), 0)
        dtype = next((m[0].dtype for m in self.modes if m), np.float64)
        steps = np.full((n_padded, T), -1, np.int64)
        modes = np.full((n_padded, T, k), np.nan, dtype)
        for i, (s, m) in enumerate(zip(self.steps, self.modes)):
            if s:
                steps[i, : len(s)] = s
                modes[i, : len(m)] = np.stack(m)
        return {FIELDS[0]: steps, FIELDS[1]: modes}
