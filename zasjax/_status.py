"""The one status of every result: runs, sweeps, flows and ResNet training.

Inside compiled code a status is an `int32` array of codes (so a batch of runs carries one
code per configuration and `jnp.where` selects between them); on disk and in summaries it
is written by name (`NAMES`). `STATUS` is the same list as an `eqx.Enumeration` (diffrax's
`RESULTS` is the model): its messages explain each outcome, and `error_if` raises with
them, at run time, for callers who opt in with `throw=True`.

    code  name        meaning
    0     running     neither converged, diverged nor capped yet
    1     converged   the loss reached ε (iterations-to-ε is recorded)
    2     diverged    the loss became non-finite or exceeded its blow-up threshold
    3     max-iters   the iteration budget (or an ODE solver's step budget) ran out first
    4     pruned      a sweep stopped it: another η of its configuration converged sooner
    5     finished    reached the end of a fixed horizon that has no ε (a flow at its
                      last time)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    import diffrax


class STATUS(eqx.Enumeration):
    """How a run, flow or training run ended (or that it has not yet)."""

    running = "still running: neither converged, diverged nor capped yet"
    converged = "converged: the loss reached eps"
    diverged = "diverged: the loss became non-finite or exceeded its blow-up threshold"
    max_iters = ("stopped at the iteration budget (or the solver's step budget) before "
                 "reaching eps; raise the budget")
    pruned = "pruned: another learning rate of the same configuration converged sooner"
    finished = "finished: reached the end of its horizon"


# The codes are the enumeration's order; the sweep's arrays and files rely on 0..4.
RUNNING, CONVERGED, DIVERGED, MAX_ITERS, PRUNED, FINISHED = range(6)
_MEMBERS = (STATUS.running, STATUS.converged, STATUS.diverged, STATUS.max_iters,
            STATUS.pruned, STATUS.finished)
#: The names written to CSV and JSON, by code.
NAMES = ("running", "converged", "diverged", "max-iters", "pruned", "finished")
STATUS_NAMES: dict[int, str] = dict(enumerate(NAMES))
STATUS_CODES: dict[str, int] = {name: code for code, name in STATUS_NAMES.items()}
MESSAGES = tuple(STATUS[m] for m in _MEMBERS)
assert len(STATUS) == len(NAMES) == len(_MEMBERS)


# The two questions asked of every result with a `status` field (`RunResult`, `ModeResult`):
# class attributes there, elementwise over a batch.
converged = property(lambda self: self.status == CONVERGED,
                     doc="Whether (per configuration) the loss reached ε.")
diverged = property(lambda self: self.status == DIVERGED,
                    doc="Whether (per configuration) the run diverged.")


def name(code) -> str:
    """The written name of one status code (a Python int or a 0-d array)."""
    return STATUS_NAMES[int(code)]


def names(codes) -> list[str]:
    """Names of a 1-d array (or sequence) of codes, in order."""
    return [STATUS_NAMES[int(c)] for c in np.asarray(codes).reshape(-1)]


def code(name_: str) -> int:
    """The code of a written name; ValueError for a name that is not a status."""
    try:
        return STATUS_CODES[name_]
    except KeyError:
        raise ValueError(f"unknown status {name_!r}; expected one of {list(NAMES)}") from None


def as_enum(code_):
    """The `STATUS` item of one 0-d code (`jax.vmap` it for a batch), via `STATUS.where`."""
    code_ = jnp.asarray(code_)
    item = STATUS.running
    for c, member in enumerate(_MEMBERS[1:], start=1):
        item = STATUS.where(code_ == c, member, item)
    return item


def flow_status(result: diffrax.RESULTS):
    """Our code for one diffrax result (vmap it for a batch): FINISHED when the solver
    reached the last time, MAX_ITERS when its step budget ran out, DIVERGED otherwise."""
    import diffrax  # here, not at the top: `import zasjax` stays fast

    return jnp.where(result == diffrax.RESULTS.successful, FINISHED,
                     jnp.where(result == diffrax.RESULTS.max_steps_reached, MAX_ITERS,
                               DIVERGED)).astype(jnp.int32)


def error_if(x, codes, failures=(DIVERGED, MAX_ITERS)):
    """`x` unchanged; raises at run time (`eqx.branched_error_if`) if any of `codes` is one
    of `failures`, with that status's message. Works eagerly, under `jit` and `vmap`."""
    codes = jnp.asarray(codes)
    bad = jnp.isin(codes, jnp.asarray(failures, codes.dtype))
    index = jnp.max(jnp.where(bad, codes, RUNNING))
    return eqx.branched_error_if(x, jnp.any(bad), index, MESSAGES)


__all__ = ["STATUS", "RUNNING", "CONVERGED", "DIVERGED", "MAX_ITERS", "PRUNED", "FINISHED",
           "NAMES", "STATUS_NAMES", "STATUS_CODES", "MESSAGES", "name", "names", "code",
           "as_enum", "flow_status", "error_if"]
