"""The convex baseline: minimum-nuclear-norm completion and sensing (host-side, numpy in and
out; needs the `baselines` extra, cvxpy: `pip install -e ".[baselines]"`).

    completion:  min ‖X‖_*  s.t.  X_ij = Φ_ij, every observed (i, j)  (Candès & Recht 2009)
    sensing:     min ‖X‖_*  s.t.  ⟨A_k, X⟩ = y_k, k = 1..m   (Recht, Fazel & Parrilo 2010)

Arora, Cohen, Hu & Luo (NeurIPS 2019, arXiv:1905.13655) set the matrix gradient descent finds
on a deep factorization beside this minimiser. Both programs are min ‖X‖_* s.t. 𝒜(X) = y for
a linear 𝒜 (completion: 𝒜(X) = the observed entries of X), solved as a semidefinite program
by cvxpy, by default with Clarabel: an interior-point method, which reaches relative accuracy
1e-8 in a dozen iterations where a first-order solver (SCS at its defaults) stops near 1e-5.

No answer is taken on the solver's word. The operator norm is the nuclear norm's dual, so
for any ν, with ‖𝒜*ν‖_op ≤ 1, every feasible X has ‖X‖_* ≥ ⟨𝒜*ν, X⟩ = ⟨ν, y⟩ (weak
duality). The solver's multipliers ν, scaled into that ball, certify the bound
lower = |⟨ν, y⟩| / max(1, ‖𝒜*ν‖_op), and an answer X is returned only when its relative
residual ‖𝒜(X) − y‖₂/‖y‖₂ and relative duality gap (‖X‖_* − lower)/‖X‖_* are both at most
ACCEPT·tol. (The gap bounds the objective; how far X is from the minimiser also depends on
the problem's conditioning.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from numbers import Real

import numpy as np

from ._errors import InputError

#: The one-line message when cvxpy is missing.
MISSING_CVXPY = 'the nuclear-norm baseline needs cvxpy: pip install -e ".[baselines]"'

#: The solver used when none is named.
DEFAULT_SOLVER = "CLARABEL"

#: solver -> its options for relative tolerance `tol`; other solvers run at their own
#: defaults (the certificate checks their answers all the same).
TOLERANCES: dict[str, Callable[[float], dict]] = {
    "CLARABEL": lambda tol: {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol},
    "SCS": lambda tol: {"eps_abs": tol, "eps_rel": tol, "max_iters": 100_000},
}

#: An answer is accepted when its certified relative residual and gap are ≤ ACCEPT·tol: the
#: solvers measure their stopping tests on rescaled data (Clarabel's answers at tol = 1e-8
#: certify at 1e-9..3e-8, including those it reports as "almost solved").
ACCEPT = 10.0


class MissingExtraError(InputError, ImportError):
    """An optional dependency (a pip "extra") is not installed. An `InputError`, so the
    command line prints its one-line message and exits with status 2; an `ImportError` for
    callers that catch that."""


def nuclear_norm_completion(phi, observed, *, solver: str | None = None, tol: float = 1e-8,
                            options: Mapping | None = None) -> np.ndarray:
    """argmin ‖X‖_* subject to X_ij = Φ_ij for every observed (i, j) (Candès & Recht 2009).

    phi: (d_out, d_in), real; the entries off the mask are ignored (NaN is fine there).
    observed: (d_out, d_in), boolean (or 0/1): True where Φ_ij is observed.
    solver: a cvxpy solver name (default `DEFAULT_SOLVER`); tol: its relative tolerance
    (`TOLERANCES`), the answer certified to ACCEPT·tol; options: further keyword arguments
    for the solver, over those set from tol.

    Returns X: (d_out, d_in), float64. Raises ValueError on bad input (before any solve),
    `MissingExtraError` without cvxpy, RuntimeError when the solver fails or its answer fails
    the certificate (see the module's docstring).
    """
    phi = _real("phi", phi, (2,), "(d_out, d_in)")
    mask = _mask(observed, phi.shape)
    if not np.isfinite(phi[mask]).all():
        raise ValueError("phi must be finite on the observed entries")
    _check_options(solver, tol, options)

    def adjoint(nu):  # 𝒜*ν: the multipliers put back in their places
        z = np.zeros(phi.shape)
        z[mask] = nu
        return z

    return _minimise(phi.shape, lambda x: x[mask], adjoint, phi[mask], solver, tol, options)


def nuclear_norm_sensing(A, y, shape=None, *, solver: str | None = None, tol: float = 1e-8,
                         options: Mapping | None = None) -> np.ndarray:
    """argmin ‖X‖_* subject to ⟨A_k, X⟩ = Σ_ij (A_k)_ij X_ij = y_k for k = 1..m (Recht,
    Fazel & Parrilo 2010).

    A: (m, d_out, d_in), or (m, d_out·d_in) each A_k flattened row-major with
    shape=(d_out, d_in) (checked against A's when A is 3-D); y: (m,).
    solver, tol, options: as for `nuclear_norm_completion`.

    Returns X: (d_out, d_in), float64. Raises as `nuclear_norm_completion` does; a RuntimeError
    that says "infeasible" when no X satisfies the m equations (y outside the range of 𝒜).
    """
    A = _real("A", A, (2, 3), "(m, d_out, d_in)")
    y = _real("y", y, (1,), "(m,)")
    if A.ndim == 3:
        if shape is not None and tuple(shape) != A.shape[1:]:
            raise ValueError(f"shape {tuple(shape)} does not match A's (m, d_out, d_in) = "
                             f"{A.shape}")
        shape = A.shape[1:]
    else:
        if shape is None:
            raise ValueError(f"A of shape {A.shape} is flattened: give shape=(d_out, d_in)")
        shape = tuple(shape)
        if (len(shape) != 2 or any(isinstance(d, bool) or int(d) != d or d < 1 for d in shape)
                or shape[0] * shape[1] != A.shape[1]):
            raise ValueError(f"shape must be (d_out, d_in) with d_out·d_in = A.shape[1] = "
                             f"{A.shape[1]}, got {shape}")
        shape = (int(shape[0]), int(shape[1]))
    if A.shape[0] != y.shape[0]:
        raise ValueError(f"A holds {A.shape[0]} measurements and y {y.shape[0]}: A must be "
                         "(m, d_out, d_in) and y (m,)")
    if not (np.isfinite(A).all() and np.isfinite(y).all()):
        raise ValueError("A and y must be finite")
    _check_options(solver, tol, options)
    flat = A.reshape(A.shape[0], -1)  # ⟨A_k, X⟩ = flat[k] · X.ravel() (row-major)

    def measure(x):  # numpy or cvxpy
        return flat @ (x.ravel() if isinstance(x, np.ndarray) else _vec_c(x))

    return _minimise(shape, measure, lambda nu: (nu @ flat).reshape(shape), y, solver, tol,
                     options)


# ---------------------------------------------------------------------------------------------
# The solve and its certificate
# ---------------------------------------------------------------------------------------------


def _cvxpy():
    """cvxpy, imported on first use; `MissingExtraError` (one line) when it cannot be."""
    try:
        import cvxpy
    except ImportError as e:
        cause = "" if e.name == "cvxpy" else f" (importing it failed: {' '.join(str(e).split())})"
        raise MissingExtraError(MISSING_CVXPY + cause) from e
    return cvxpy


def _vec_c(x):
    return _cvxpy().vec(x, order="C")


def _minimise(shape, measure, adjoint, y, solver, tol, options) -> np.ndarray:
    """argmin ‖X‖_* s.t. measure(X) = y, X: shape; `adjoint(ν)` = 𝒜*ν for the certificate."""
    cp = _cvxpy()
    name = DEFAULT_SOLVER if solver is None else solver.upper()
    if name not in cp.installed_solvers():
        raise ValueError(f"solver {solver!r} is not installed for cvxpy; installed: "
                         f"{', '.join(cp.installed_solvers())}")
    if not y.any():  # nothing observed, or all zero: X = 0, no solver needed
        return np.zeros(shape)
    x = cp.Variable(shape)
    constraint = measure(x) == y
    problem = cp.Problem(cp.Minimize(cp.normNuc(x)), [constraint])
    kwargs = {**TOLERANCES.get(name, lambda tol: {})(tol), **(options or {})}
    with warnings.catch_warnings():  # "may be inaccurate": the certificate decides below
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        try:
            problem.solve(solver=name, **kwargs)
        except cp.error.SolverError as e:
            raise RuntimeError(f"{name} failed on the nuclear-norm problem: {e}") from e
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        hint = ""
        if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            hint = ": infeasible, no matrix satisfies the constraints (y outside A's range)"
        raise RuntimeError(f"{name} did not solve the nuclear-norm problem (status "
                           f"{problem.status!r}){hint}")
    answer = np.asarray(x.value, dtype=float)
    _certify(answer, measure, adjoint, y, constraint.dual_value, name, tol)
    return answer


def _certify(x, measure, adjoint, y, nu, name, tol) -> None:
    """Raise unless x's relative residual and certified relative gap are ≤ ACCEPT·tol."""
    if nu is None:
        raise RuntimeError(f"{name} returned no multipliers: its answer cannot be certified")
    nu = np.asarray(nu, dtype=float).reshape(y.shape)
    residual = np.linalg.norm(measure(x) - y) / np.linalg.norm(y)
    norm = np.linalg.svd(x, compute_uv=False).sum()
    lower = abs(nu @ y) / max(1.0, np.linalg.norm(adjoint(nu), 2))
    gap = (norm - lower) / max(norm, lower)
    if not (residual <= ACCEPT * tol and gap <= ACCEPT * tol):
        raise RuntimeError(f"{name}'s answer fails its certificate: relative residual "
                           f"{residual:.1e}, relative duality gap {gap:.1e} (both must be <= "
                           f"{ACCEPT * tol:.0e}); try another solver or tol")


# ---------------------------------------------------------------------------------------------
# Validation (before any solve)
# ---------------------------------------------------------------------------------------------


def _real(name, value, ndims, expected) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.ndim not in ndims:
        raise ValueError(f"{name} must be a real array of shape {expected}, got dtype "
                         f"{a.dtype} and shape {a.shape}")
    return a.astype(float)


def _mask(observed, shape) -> np.ndarray:
    m = np.asarray(observed)
    if m.shape != shape:
        raise ValueError(f"observed must be a boolean mask of phi's shape {shape}, got shape "
                         f"{m.shape}")
    if m.dtype != bool:
        if m.dtype.kind not in "iuf" or not np.isin(m, (0, 1)).all():
            raise ValueError("observed must be boolean (True where Φ_ij is observed) or 0/1, "
                             f"got dtype {m.dtype} with values other than 0 and 1")
        m = m.astype(bool)
    return m


def _check_options(solver, tol, options) -> None:
    if solver is not None and not isinstance(solver, str):
        raise ValueError(f"solver must be a cvxpy solver name (a str) or None, got {solver!r}")
    if isinstance(tol, bool) or not isinstance(tol, Real) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"options must be a mapping of solver options, got {options!r}")
