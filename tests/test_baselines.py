"""The convex baseline: minimum-nuclear-norm completion and sensing recover low-rank matrices
where exact recovery holds, fail where it cannot, and never hand back an uncertified answer.

Exact recovery: Candès & Recht (2009) for completion from uniformly sampled entries of an
incoherent low-rank Φ; Chandrasekaran, Recht, Parrilo & Willsky (2012) for sensing, where
m ≥ 3r(d_out + d_in − r) Gaussian measurements suffice. The cases below sit well above both
thresholds (the completion sizes recover in 39/40, 38/40 random draws; the sensing ones in
40/40); the seeds are fixed.
"""

import sys

import numpy as np
import pytest

from zasjax._baselines import (
    MISSING_CVXPY,
    MissingExtraError,
    nuclear_norm_completion,
    nuclear_norm_sensing,
)
from zasjax._errors import InputError


@pytest.fixture
def cvxpy():
    return pytest.importorskip("cvxpy")  # the `baselines` extra; CI installs it


def low_rank(rng, d_out, d_in, r):
    """Φ = U Vᵀ with Gaussian factors U: (d_out, r), V: (d_in, r): incoherent w.h.p."""
    return rng.standard_normal((d_out, r)) @ rng.standard_normal((r, d_in))


def relative_error(x, phi):
    return np.linalg.norm(x - phi) / np.linalg.norm(phi)


def nuclear_norm(x):
    return np.linalg.svd(x, compute_uv=False).sum()


def completion_case(d_out, d_in, r, fraction, seed):
    rng = np.random.default_rng(seed)
    phi = low_rank(rng, d_out, d_in, r)
    return phi, rng.random(phi.shape) < fraction


def sensing_case(d_out, d_in, r, m, seed):
    rng = np.random.default_rng(seed)
    phi = low_rank(rng, d_out, d_in, r)
    A = rng.standard_normal((m, d_out, d_in))
    return phi, A, np.einsum("kij,ij->k", A, phi)


# ---------------------------------------------------------------------------------------------
# Recovery where it is known to hold, failure where it cannot
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_out,d_in,r,fraction", [(12, 12, 1, 0.8), (12, 15, 2, 0.9)])
def test_completion_recovers_exactly(cvxpy, d_out, d_in, r, fraction):
    phi, observed = completion_case(d_out, d_in, r, fraction, seed=0)
    assert observed.any(axis=0).all() and observed.any(axis=1).all()
    x = nuclear_norm_completion(np.where(observed, phi, np.nan), observed)  # NaN: unseen
    assert x.shape == phi.shape and x.dtype == np.float64
    assert relative_error(x, phi) <= 1e-6


@pytest.mark.parametrize("d_out,d_in,r", [(12, 12, 1), (12, 16, 2)])
def test_sensing_recovers_exactly(cvxpy, d_out, d_in, r):
    m = 3 * r * (d_out + d_in - r)  # below d_out·d_in: the equations alone do not fix X
    assert m < d_out * d_in
    phi, A, y = sensing_case(d_out, d_in, r, m, seed=0)
    x = nuclear_norm_sensing(A, y)
    assert x.shape == phi.shape and relative_error(x, phi) <= 1e-6
    flat = nuclear_norm_sensing(A.reshape(m, -1), y, (d_out, d_in))  # A_k flattened row-major
    np.testing.assert_allclose(flat, x, atol=1e-9)


def test_completion_fails_with_a_row_unobserved(cvxpy):
    phi, observed = completion_case(12, 12, 1, 0.8, seed=0)
    row = np.argmax(np.linalg.norm(phi, axis=1))
    observed[row] = False  # nothing ties this row to Φ: no method can recover it
    x = nuclear_norm_completion(phi, observed)
    np.testing.assert_allclose(x[observed], phi[observed], atol=1e-7)  # it fits the data...
    assert nuclear_norm(x) <= nuclear_norm(phi) * (1 + 1e-7)  # ...with no larger norm...
    assert relative_error(x, phi) > 0.2  # ...and is not Φ: the unseen row is set to ~0
    assert np.abs(x[row]).max() < 1e-3 * np.abs(phi[row]).max()


def test_sensing_fails_below_the_degrees_of_freedom(cvxpy):
    d, r = 12, 1
    m = r * (2 * d - r) - 8  # fewer equations than the rank-r matrices' dimension
    phi, A, y = sensing_case(d, d, r, m, seed=0)
    x = nuclear_norm_sensing(A, y)
    np.testing.assert_allclose(np.einsum("kij,ij->k", A, x), y, rtol=1e-6, atol=1e-7)
    assert nuclear_norm(x) <= nuclear_norm(phi) * (1 + 1e-7)
    assert relative_error(x, phi) > 0.05


def test_nothing_observed_gives_zero(cvxpy):
    phi = np.ones((3, 4))
    assert not nuclear_norm_completion(phi, np.zeros(phi.shape, bool)).any()


# ---------------------------------------------------------------------------------------------
# No silent wrong answers
# ---------------------------------------------------------------------------------------------


def test_an_unconverged_answer_fails_its_certificate(cvxpy):
    phi, observed = completion_case(12, 12, 1, 0.8, seed=0)
    with pytest.raises(RuntimeError, match="fails its certificate"):
        nuclear_norm_completion(phi, observed, solver="SCS", options={"max_iters": 20})


def test_an_iteration_limit_is_reported(cvxpy):
    phi, observed = completion_case(12, 12, 1, 0.8, seed=0)
    with pytest.raises(RuntimeError, match="did not solve.*user_limit"):
        nuclear_norm_completion(phi, observed, options={"max_iter": 3})


def test_inconsistent_measurements_are_reported_infeasible(cvxpy):
    rng = np.random.default_rng(0)  # 12 generic equations in 9 unknowns
    with pytest.raises(RuntimeError, match="infeasible"):
        nuclear_norm_sensing(rng.standard_normal((12, 3, 3)), rng.standard_normal(12))


def test_unknown_solver(cvxpy):
    with pytest.raises(ValueError, match="not installed"):
        nuclear_norm_completion(np.eye(2), np.eye(2, dtype=bool), solver="NO_SUCH_SOLVER")


# ---------------------------------------------------------------------------------------------
# Without the extra; bad input
# ---------------------------------------------------------------------------------------------


def test_missing_cvxpy_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # `import cvxpy` now fails
    with pytest.raises(MissingExtraError) as info:
        nuclear_norm_sensing(np.ones((1, 2, 2)), np.ones(1))
    assert str(info.value) == MISSING_CVXPY
    assert str(info.value) == 'the nuclear-norm baseline needs cvxpy: pip install -e ".[baselines]"'
    assert isinstance(info.value, InputError) and isinstance(info.value, ImportError)


@pytest.mark.parametrize("phi,observed,match", [
    (np.ones((2, 3)), np.ones((3, 2), bool), "shape"),
    (np.ones(3), np.ones(3, bool), "phi must be a real array of shape"),
    (np.ones((2, 2)), np.full((2, 2), 0.5), "boolean"),
    (np.ones((2, 2)), np.array([["a", "b"], ["c", "d"]]), "boolean"),
    (np.full((2, 2), np.nan), np.eye(2, dtype=bool), "finite"),
])
def test_bad_completion_input(phi, observed, match):
    with pytest.raises(ValueError, match=match):
        nuclear_norm_completion(phi, observed)


@pytest.mark.parametrize("A,y,shape,match", [
    (np.ones((3, 2, 2)), np.ones(4), None, "3 measurements and y 4"),
    (np.ones((3, 2, 2)), np.ones((3, 1)), None, r"y must be a real array of shape \(m,\)"),
    (np.ones((3, 4)), np.ones(3), None, "give shape"),
    (np.ones((3, 4)), np.ones(3), (3, 2), "d_out·d_in"),
    (np.ones((3, 2, 2)), np.ones(3), (2, 3), "does not match"),
    (np.ones((3, 2, 2)), np.full(3, np.inf), None, "finite"),
])
def test_bad_sensing_input(A, y, shape, match):
    with pytest.raises(ValueError, match=match):
        nuclear_norm_sensing(A, y, shape)


@pytest.mark.parametrize("kwargs,match", [
    ({"tol": 0.0}, "tol"), ({"tol": True}, "tol"), ({"solver": 3}, "solver"),
    ({"options": [1]}, "options"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nuclear_norm_completion(np.eye(2), np.eye(2, dtype=bool), **kwargs)
