"""Incremental learning (Li et al. 2021; Gissin et al. 2020): the conventions that map their
steps onto ours, the isotropic-start prediction, the config's checks, and the `--quick`
study end to end."""

import csv
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import gamma

import zasjax as zj
from zasjax import cli
from zasjax.reproduce import incremental

# ---------------------------------------------------------------------------------------------
# Their steps in ours
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_their_shared_u_step_is_our_separate_layers_at_2N_eta(depth):
    # Li et al.: β = u^N − v^N with ONE vector u (and v), u = v = w0^{1/N} at the start, GD
    # with η on (1/n)‖Xβ − y‖² (no ½), written out by hand. Ours: N separate layers on
    # (1/2n)‖Xβ − y‖² at η' = 2Nη from every weight w0^{1/N}: every layer stays u.
    rng = np.random.default_rng(depth)
    n, p, eta, w0, steps = 20, 30, 5e-3, 1e-2, 60
    X = rng.choice([-1.0, 1.0], size=(n, p))
    beta_star = np.zeros(p)
    beta_star[:3] = [1.0, -2.0, 0.5]
    y = X @ beta_star + 0.1 * rng.standard_normal(n)
    u = np.full(p, w0 ** (1 / depth))
    v = u.copy()
    theirs = []
    for _ in range(steps):
        r = X @ (u**depth - v**depth) - y
        theirs.append(r @ r / n)
        g = 2 / n * X.T @ r
        u, v = u - eta * depth * u ** (depth - 1) * g, v + eta * depth * v ** (depth - 1) * g
    model = zj.Diagonal()
    W0 = model.init("constant", None, p, depth, depth, 0.0, incremental.alpha(w0, depth),
                    jnp.float64)
    objective = zj.LinearRegression(jnp.asarray(X), jnp.asarray(y))
    res = zj.run(W0, objective, lr=incremental.diagonal_lr(eta, depth), eps=1e-30,
                 max_iters=steps, model=model)
    np.testing.assert_allclose(2 * np.asarray(res.losses)[:steps], theirs, rtol=1e-10)
    for layer in np.asarray(res.W):  # every layer is their u (row 0) and v (row 1)
        np.testing.assert_allclose(layer[0], u, rtol=1e-10)
        np.testing.assert_allclose(layer[1], v, rtol=1e-10)
    # The same iterations: (1) with c = N at η' is their c = 2N² at η.
    for s in (1.0, 4.0):
        ours = zj.mode_half_time(w0, s, depth) / incremental.diagonal_lr(eta, depth)
        assert ours == pytest.approx(zj.mode_half_time(w0, s, depth, c=2 * depth**2) / eta,
                                     rel=1e-12)


def test_their_sensing_step_is_ours_at_2_eta():
    # Gissin et al.: x_k ~ N(0, I), GD with η on (1/m)Σ(⟨x_k, W⟩ − y_k)² over the layers,
    # by hand; ours: A_k = x_k/√m, y_k/√m, ½Σ r² at 2η.
    rng = np.random.default_rng(0)
    d, m, depth, eta, steps = 4, 30, 3, 5e-3, 25
    x = rng.standard_normal((m, d, d))
    phi = np.diag([3.0, 2.0, 0.0, 0.0])
    y = np.einsum("kij,ij->k", x, phi)
    W = 0.5 * rng.standard_normal((depth, d, d))

    def product(W):
        P = np.eye(d)
        for w in W:
            P = w @ P
        return P

    theirs, Wt = [], W.copy()
    for _ in range(steps):
        r = np.einsum("kij,ij->k", x, product(Wt)) - y
        theirs.append(r @ r / m)
        G = 2 / m * np.einsum("k,kij->ij", r, x)
        grads = []
        for l in range(depth):
            above, below = product(Wt[l + 1:]), product(Wt[:l])
            grads.append(above.T @ G @ below.T)
        Wt = Wt - eta * np.stack(grads)
    objective = zj.Sensing(jnp.asarray(x / m**0.5), jnp.asarray(y / m**0.5))
    res = zj.run(jnp.asarray(W), objective, lr=incremental.dense_lr(eta), eps=1e-30,
                 max_iters=steps)
    np.testing.assert_allclose(2 * np.asarray(res.losses)[:steps], theirs, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.W), Wt, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The isotropic-start prediction (2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("sigma0, s", [(1e-4, 12.0), (1e-3, 3.0), (0.2, 1.0)])
def test_isotropic_half_time_is_the_integral_of_its_ode(depth, sigma0, s):
    # t = ∫₀^{s/2} dx / (N (σ₀² + x²)^{1−1/N} (s − x)), here in x directly (split at σ₀).
    f = lambda x: 1 / (depth * (sigma0**2 + x**2) ** (1 - 1 / depth) * (s - x))
    edges = [0.0, *[e for e in (sigma0, 10 * sigma0, 100 * sigma0) if e < s / 2], s / 2]
    direct = sum(quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
                 for a, b in zip(edges, edges[1:]))
    assert incremental.isotropic_half_time(sigma0, s, depth) == pytest.approx(direct, rel=1e-8)


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_a_random_start_is_later_by_a_depth_dependent_factor(depth):
    # For σ₀ ≪ s, (2)'s time over (1)'s → (1 − 2/N)·∫₀^∞ (1 + u²)^{−(1−1/N)} du
    # = (1 − 2/N)·√π Γ(½ − 1/N) / (2 Γ(1 − 1/N)): 1.214 at N = 3, 1.311 at N = 4.
    limit = (1 - 2 / depth) * math.sqrt(math.pi) * gamma(0.5 - 1 / depth) / (
        2 * gamma(1 - 1 / depth))
    sigma0 = 1e-12
    ratio = incremental.isotropic_half_time(sigma0, 1.0, depth) / float(
        zj.mode_half_time(sigma0, 1.0, depth))
    assert ratio == pytest.approx(limit, rel=1e-3)
    if depth in (3, 4):  # the module docstring's +21 % and +31 %
        assert limit == pytest.approx({3: 1.214, 4: 1.311}[depth], abs=1e-3)


# ---------------------------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(problems=("fig2",)), "unknown problems"),
    (dict(problems=("regression", "regression")), "problems must be distinct"),
    (dict(depths=(0, 2)), "depths must be positive"),
    (dict(dense_depths=(2, 2)), "dense_depths must be distinct"),
    (dict(support=(1.0, 0.0)), "support must be finite nonzero"),
    (dict(features=3), "support has 4 entries, more than the 3 features"),
    (dict(noise=-0.1), "noise must be finite and >= 0"),
    (dict(w0=0.5), r"w0 \(0.5\) must be below half of the smallest"),
    (dict(lr=0.0), "lr must be finite and > 0"),
    (dict(targets=(12.0, -3.0)), "targets must be singular values"),
    (dict(dim=3), "W\\* has 4 singular values, more than d = 3"),
    (dict(sigma0=2.0), r"sigma0 \(2\) must be below half of the smallest target"),
    (dict(init="zas"), "unknown init 'zas'"),
    (dict(horizon=1.0), "horizon must be > 1"),
    (dict(resolution=1.0), r"resolution must be in \(0, 1\)"),
    (dict(seeds=0), "seeds must be an integer >= 1"),
])
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        incremental.Config.quick(**changes)


def test_a_bad_option_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "inc"
    assert cli.main(["reproduce", "incremental", "--quick", "--w0", "0.9", "--out",
                     str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "w0 (0.9) must be below half" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# The quick study, end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("incremental")
    assert cli.main(["reproduce", "incremental", "--quick", "--out", str(out)]) == 0
    with open(out / "incremental.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, json.loads((out / "summary.json").read_text())


def _runs(rows, problem):
    """(depth, seed) → that run's rows, in mode order."""
    runs = {}
    for r in rows:
        if r["problem"] == problem:
            runs.setdefault((int(r["depth"]), int(r["seed"])), []).append(r)
    return {k: sorted(v, key=lambda r: int(r["mode"])) for k, v in runs.items()}


@pytest.mark.slow
def test_quick_support_coordinates_come_largest_first_when_the_ode_says(quick):
    out, rows, summary = quick
    assert (out / "incremental.png").exists()
    cfg = incremental.Config.quick()
    runs = _runs(rows, "regression")
    assert sorted(runs) == [(N, 0) for N in cfg.depths]
    for (N, _), rs in runs.items():
        target = np.array([float(r["target"]) for r in rs])
        times = np.array([float(r["learning_time"]) for r in rs])
        assert np.array_equal(target, np.abs(cfg.support))
        # learned in decreasing order of |β*_i|: the largest first
        order = np.argsort(-target)
        assert np.all(np.diff(times[order]) > 0), times
        # (1) in iterations, in their units: c = 2N² at their η
        lr = float(rs[0]["lr"])
        assert lr == pytest.approx(2 * N * cfg.lr)
        predicted = np.array([float(r["predicted"]) for r in rs])
        np.testing.assert_allclose(
            predicted, [zj.mode_half_time(cfg.w0, s, N, c=2 * N**2) / cfg.lr for s in target],
            rtol=1e-10)
        # p = 2n: the cross terms (XᵀX/n − I)β* move each coordinate's drive by ~‖β*‖/√n ≈
        # 0.25, a quarter of the smallest |β*_i| (the full study's p = 6n, n = 500: 10 %)
        assert np.all(np.abs(times / predicted - 1) < 0.25), times / predicted - 1
        assert np.all(np.abs(times[-2:] / predicted[-2:] - 1) < 0.08)  # the first learned
        chunk = int(rs[0]["chunk"])  # times are chunk ends, at most a chunk after the crossing
        assert np.all(times % chunk == 0) and chunk <= cfg.resolution * predicted.min()
    claim = summary["claims"]["regression"]
    assert claim["in_order"] and claim["every_mode_learned"] and claim["max_abs_error"] < 0.25


@pytest.mark.slow
def test_quick_whitened_singular_values_come_one_after_another(quick):
    _, rows, summary = quick
    cfg = incremental.Config.quick()
    runs = _runs(rows, "whitened")
    assert sorted(runs) == [(N, s) for N in cfg.dense_depths for s in range(cfg.seeds)]
    for (N, _), rs in runs.items():
        target = np.array([float(r["target"]) for r in rs])
        times = np.array([float(r["learning_time"]) for r in rs])
        assert np.array_equal(target, [12.0, 6.0, 4.0, 3.0])
        assert np.all(np.diff(times) > 0), times  # 12, then 6, then 4, then 3
        predicted = np.array([float(r["predicted"]) for r in rs])
        lr = 2 * cfg.dense_lr
        np.testing.assert_allclose(
            predicted, [zj.mode_half_time(cfg.sigma0, s, N) / lr for s in target], rtol=1e-10)
        # A random orientation starts each mode at ~0, not σ₀, along W*'s pair: later than
        # (1) (N = 2: by ~ln 2 / ln(s/σ₀), +6-8 %, plus up to a chunk of 5 %), and near (2).
        err = times / predicted - 1
        refined = times / np.array([float(r["predicted_refined"]) for r in rs]) - 1
        assert np.all((err > 0) & (err < 0.25)), err
        assert np.all(np.abs(refined) < 0.12), refined
        # stopped at their R ≤ 5·10⁻³: every mode within a few % of W*'s
        finals = np.array([float(r["final"]) for r in rs])
        np.testing.assert_allclose(finals, target, rtol=0.05)
        assert all(r["status"] == "converged" for r in rs)
    claim = summary["claims"]["whitened"]
    assert claim["in_order"] and claim["recovered"] and claim["max_abs_error_refined"] < 0.12
