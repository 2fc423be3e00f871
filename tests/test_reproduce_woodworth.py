"""Woodworth et al. (COLT 2020), kernel and rich regimes of diagonal networks: the step rule's
sharpness estimate against the true Hessian, the transition's interpolation, the config's
checks, then the `--quick` study end to end (one run, shared by a module-scoped fixture)."""

import csv
import json

import numpy as np
import pytest

import zasjax as zj
from zasjax import cli
from zasjax.reproduce import woodworth

# ---------------------------------------------------------------------------------------------
# The step rule: its sharpness is at least the Hessian's largest eigenvalue where it claims so
# ---------------------------------------------------------------------------------------------


def _problem(seed=0, n=6, d=12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = np.zeros(d)
    beta[[1, 7]] = [1.0, -1.0]
    y = X @ beta
    return woodworth.Problem(X, y, beta, float(y @ y) / (2 * n), zj.min_l1_interpolant(X, y),
                             zj.min_l2_interpolant(X, y), X.T @ y / n)


def _hessian_top(p, w):
    """λ_max of the Hessian of R = (1/2n)‖Xβ(w) − y‖² at the layers `w: (L, 2, d)`, written
    out: JᵀAJ (A = XᵀX/n, J = ∂β/∂w) plus Σ_i g_i ∇²β_i (g = ∂R/∂β), where ∇²β_i couples
    two layers l ≠ m of one branch b by ±Π_{k≠l,m} w[k, b, i]."""
    L, _, d = w.shape
    n = p.X.shape[0]
    sign = (1.0, -1.0)
    beta = w[:, 0].prod(0) - w[:, 1].prod(0)
    g = p.X.T @ (p.X @ beta - p.y) / n
    J = np.zeros((d, L, 2, d))
    for l in range(L):
        for b in range(2):
            J[:, l, b, :] = np.diag(sign[b] * np.delete(w[:, b], l, 0).prod(0))
    J = J.reshape(d, -1)
    H = (J.T @ (p.X.T @ p.X / n) @ J).reshape(L, 2, d, L, 2, d)
    for l in range(L):
        for m in range(L):
            if l != m:
                for b in range(2):
                    rest = np.delete(w[:, b], [l, m], 0).prod(0)
                    H[l, b, np.arange(d), m, b, np.arange(d)] += g * sign[b] * rest
    return float(np.linalg.eigvalsh(H.reshape(2 * L * d, 2 * L * d))[-1])


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 3.0])
def test_the_sharpness_bounds_the_hessian_at_the_start(depth, alpha):
    p = _problem()
    params = np.full((depth, 2, p.X.shape[1]), alpha)
    top = _hessian_top(p, params)
    assert woodworth.sharpness(p, depth, alpha) >= top * (1 - 1e-12), (depth, alpha)
    if alpha >= 1:  # the Gauss-Newton part dominates there: the estimate is close
        assert woodworth.sharpness(p, depth, alpha) <= 3 * top


@pytest.mark.parametrize("alpha", [0.01, 0.3, 3.0])
def test_the_sharpness_bounds_the_hessian_at_both_depth_2_ends(alpha):
    # On the depth-2 flow the layers of a branch stay equal and w₊w₋ = α², so an
    # interpolant β is reached at branch products P± = (√(β² + 4α⁴) ± β)/2; the residual
    # is 0 there and the Hessian is JᵀAJ.
    p = _problem(1)
    for beta in (p.l1, p.l2):
        root = np.sqrt(beta**2 + 4 * alpha**4)
        w = np.sqrt(np.stack([(root + beta) / 2, (root - beta) / 2]))
        top = _hessian_top(p, np.stack([w, w]))
        assert woodworth.sharpness(p, 2, alpha) >= top * (1 - 1e-12), alpha


def test_the_crossing_interpolates_in_log_alpha():
    alphas, errors = [0.01, 0.1, 1.0, 10.0], [0.0, 0.2, 1.0, 1.0]
    assert woodworth.crossing(alphas, errors, 0.6) == pytest.approx(10**-0.5, rel=1e-12)
    assert woodworth.crossing(alphas, errors, 0.2) == pytest.approx(0.1, rel=1e-12)
    assert woodworth.crossing(alphas, [0.0, None, 1.0, 1.0], 0.5) == pytest.approx(0.1)
    assert woodworth.crossing(alphas, errors, 2.0) is None


@pytest.mark.parametrize("changes,says", [
    (dict(depths=(1, 2)), "depths must be >= 2"),
    (dict(depths=(2, 2)), "depths must be distinct"),
    (dict(samples=100), "samples must be below dim"),
    (dict(sparsity=101), "sparsity must be at most dim"),
    (dict(alphas=(0.1, -1.0)), "alphas must be finite and > 0"),
    (dict(alphas=(0.1, 0.1)), "alphas must be at least two distinct values"),
    (dict(lr_scale=2.0), "lr_scale must be below 2"),
    (dict(loss_tol=1e-3, fit_tol=1e-4), "need loss_tol <= fit_tol < 1"),
    (dict(seeds=0), "seeds must be an integer >= 1"),
])
def test_bad_input_is_refused(changes, says):
    with pytest.raises(ValueError, match=says):
        woodworth.Config.quick(**changes)


# ---------------------------------------------------------------------------------------------
# The quick study, end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("woodworth")
    assert cli.main(["reproduce", "woodworth", "--quick", "--out", str(out)]) == 0
    with open(out / "woodworth.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, json.loads((out / "summary.json").read_text())


def _f(row, key):
    return None if row[key] == "" else float(row[key])


@pytest.mark.slow
def test_woodworth_quick(quick):
    out, rows, summary = quick
    cfg = woodworth.Config.quick()
    assert (out / "woodworth.png").exists()
    assert len(rows) == len(cfg.depths) * len(cfg.alphas) * cfg.seeds == summary["runs"]
    assert summary["diverged"] == 0
    # The study's β* and interpolants are the sweep's: its own measure of ‖β − β*‖ agrees.
    swept = zj.load_sweep(out / "sweep")
    ours = {(int(r["depth"]), float(r["alpha"]), int(r["seed"])): _f(r, "beta_error")
            for r in rows}
    for r in swept.itertuples():
        assert ours[(r.depth, r.init_scale, r.seed)] == pytest.approx(r.beta_error, rel=1e-9)
    l1, l2 = summary["ends"]["l1_error"], summary["ends"]["l2_error"]
    assert summary["ends"]["l1_error_max"] < 1e-8 < 1 < l2  # basis pursuit recovers β*
    gap = l2 - l1
    # Depth 2: every GD limit is within a few per cent of the ends' gap of the flow's limit.
    for r in rows:
        if r["depth"] == "2":
            assert r["status"] == "converged", r
            assert _f(r, "dist_to_limit") < 0.05 * gap, r
            assert abs(_f(r, "beta_error") - _f(r, "limit_error")) <= _f(r, "dist_to_limit")
    # The rich end at small α, the kernel end at the largest, at every depth. From the
    # smallest α depths 2 and 3 end near the min-ℓ1 interpolant; depth 4 cannot leave its
    # plateau there within the budget (below), so its first fitted α is larger.
    curve = {(c["depth"], c["alpha"]): c for c in summary["curves"]}
    small, large = min(cfg.alphas), max(cfg.alphas)
    for L in cfg.depths:
        fitted = [c for c in summary["curves"] if c["depth"] == L and c["fitted"] == cfg.seeds]
        first = min(fitted, key=lambda c: c["alpha"])
        assert first["median_error"] - l1 < 0.02 * gap, (L, first)
        assert abs(curve[(L, large)]["median_error"] - l2) < 1e-3 * gap, (L, curve[(L, large)])
    assert curve[(2, small)]["fitted"] == curve[(3, small)]["fitted"] == cfg.seeds
    # Every run that did not fit the data was predicted to wait on its plateau at least
    # about as long as the budget: ẇ = |g| w^{L−1} from α (depth 4 from 10⁻³: ~10⁶ steps).
    for r in rows:
        if r["fitted"] == "False":
            assert r["status"] == "max-iters" and _f(r, "loss_ratio") > 0.1, r
            assert _f(r, "plateau_iterations") > 0.3 * cfg.max_iters, r
    # Deeper networks leave the kernel regime later: the transition α grows with depth.
    mids = [summary["transition"][str(L)]["alpha_mid"] for L in cfg.depths]
    assert summary["deeper_transitions_later"] is True and all(m is not None for m in mids)
    assert small < mids[0] < mids[-1] < large
    # A run that did not converge is listed, with how far it got.
    listed = {(u["depth"], u["alpha"], u["seed"]) for u in summary["not_converged"]}
    assert listed == {(int(r["depth"]), float(r["alpha"]), int(r["seed"])) for r in rows
                      if r["status"] != "converged"}
