"""One status for runs, sweeps, flows and training: fixed codes, names, opt-in raising."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import _status, gradient_flow, make_init, run
from zasjax._status import CONVERGED, DIVERGED, FINISHED, MAX_ITERS, PRUNED, RUNNING, STATUS


def test_codes_and_names_are_fixed():
    # Sweeps store these integers in their checkpoints and CSVs: they must never move.
    assert (RUNNING, CONVERGED, DIVERGED, MAX_ITERS, PRUNED, FINISHED) == (0, 1, 2, 3, 4, 5)
    assert _status.NAMES[:5] == ("running", "converged", "diverged", "max-iters", "pruned")
    assert [_status.code(n) for n in _status.NAMES] == list(range(len(_status.NAMES)))
    assert _status.names(np.array([1, 3])) == ["converged", "max-iters"]
    with pytest.raises(ValueError, match="unknown status 'done'"):
        _status.code("done")


@pytest.mark.parametrize("code", range(6))
def test_enumeration_matches_the_codes(code):
    item = _status.as_enum(jnp.asarray(code, jnp.int32))
    members = (STATUS.running, STATUS.converged, STATUS.diverged, STATUS.max_iters,
               STATUS.pruned, STATUS.finished)
    assert bool(item == members[code])
    assert STATUS[item] == _status.MESSAGES[code]


def _zas(L=3, d=2):
    return make_init("zas", jax.random.key(0), (d,) * (L + 1), dtype=jnp.float64)


def test_run_throws_only_when_asked():
    W0, phi = _zas(), -jnp.eye(2)
    ok = run(W0, phi, lr=0.1, max_iters=2000, throw=True)
    assert int(ok.status) == CONVERGED
    bad = run(W0, phi, lr=50.0, max_iters=50)       # flagged, not raised
    assert int(bad.status) == DIVERGED
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        run(W0, phi, lr=50.0, max_iters=50, throw=True)
    with pytest.raises(eqx.EquinoxRuntimeError, match="iteration budget"):
        run(W0, phi, lr=0.1, max_iters=3, throw=True)


@pytest.mark.slow
def test_flow_status_replaces_ok():
    W0, phi = _zas(), -jnp.eye(2)
    ts = jnp.linspace(0.0, 2.0, 5)
    sol = gradient_flow(W0, phi, ts)
    assert int(sol.status) == FINISHED and bool(sol.ok)
    short = gradient_flow(W0, phi, ts, max_steps=2)
    assert int(short.status) == MAX_ITERS and not bool(short.ok)
    with pytest.raises(eqx.EquinoxRuntimeError, match="step budget"):
        gradient_flow(W0, phi, ts, max_steps=2, throw=True)
