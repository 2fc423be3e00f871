"""The diagonal linear network β = Πw₊ − Πw₋ on linear regression (issue 29): its
pullback against `jax.grad`, its GD against a plain numpy loop, its sweeps (rows equal
`zj.run`, depth as data, a kill and resume), and its bad input."""

import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import wait_until

import zasjax as zj
from zasjax.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(key, depth, capacity, d, alpha, shape):
    """A diagonal network of `depth` layers near its init, padded with ones to `capacity`."""
    p = zj.Diagonal(shape=shape).init("constant", None, d, depth, capacity, 0.0, alpha,
                                      jnp.float64)
    noise = 1 + 0.2 * jax.random.normal(key, p.shape, jnp.float64)
    return jnp.where(jnp.arange(capacity)[:, None, None] < depth, p * noise, 1.0)


def _problem(key, n=12, d=8):
    kx, kb = jax.random.split(key)
    X = jax.random.normal(kx, (n, d), jnp.float64)
    beta = jnp.zeros(d, jnp.float64).at[:3].set(jnp.asarray([1.0, -2.0, 0.5]))
    return zj.LinearRegression(X, X @ beta, beta_star=beta,
                               noise=jnp.zeros((), jnp.float64))


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_the_pullback_is_jax_grad(depth):
    # Padded to capacity 7: the padding's ones are parameters of β too, so the gradient of
    # every entry must match; at any α and shape (one compiled pair serves them all).
    objective = _problem(jax.random.key(100 + depth))
    for i, (alpha, shape) in enumerate([(0.01, 1.0), (0.5, 0.3), (1.5, 2.0)]):
        params = _params(jax.random.key(10 * depth + i), depth, 7, 8, alpha, shape)
        model = zj.Diagonal(shape=shape)
        f, g = jax.jit(lambda p: model.value_and_grad(p, objective.head))(params)
        f_ref, g_ref = jax.jit(jax.value_and_grad(
            lambda p: objective.head(model.end_to_end(p))[0]))(params)
        np.testing.assert_allclose(f, f_ref, rtol=1e-12)
        scale = float(jnp.max(jnp.abs(g_ref)))
        np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-10 * scale)


def test_the_objective_head_is_its_gradient():
    objective = _problem(jax.random.key(3))
    beta = jax.random.normal(jax.random.key(4), (8,), jnp.float64)
    f, g = objective.head(beta)
    np.testing.assert_allclose(g, jax.grad(lambda b: objective.head(b)[0])(beta), rtol=1e-12)
    n = objective.X.shape[0]
    np.testing.assert_allclose(f, 0.5 / n * np.sum((objective.X @ beta - objective.y) ** 2),
                               rtol=1e-12)


def test_gd_equals_a_numpy_loop_step_for_step():
    # The numpy loop writes the product rule out by hand; no zasjax code in it.
    depth, alpha, shape, lr, steps = 3, 0.4, 0.8, 0.05, 40
    objective = _problem(jax.random.key(5))
    X, y = np.asarray(objective.X), np.asarray(objective.y)
    n, d = X.shape
    wp = np.full((depth, d), alpha)
    wm = np.full((depth, d), shape * alpha)
    losses = []
    for t in range(steps + 1):
        beta = wp.prod(0) - wm.prod(0)
        r = X @ beta - y
        losses.append(0.5 / n * r @ r)
        if t == steps:  # `steps` updates, `steps + 1` evaluations
            break
        g = X.T @ r / n
        gp = np.stack([g * np.prod(np.delete(wp, l, 0), 0) for l in range(depth)])
        gm = np.stack([-g * np.prod(np.delete(wm, l, 0), 0) for l in range(depth)])
        wp, wm = wp - lr * gp, wm - lr * gm
    model = zj.Diagonal(shape=shape)
    W0 = model.init("constant", None, d, depth, depth, 0.0, alpha, jnp.float64)
    res = zj.run(W0, objective, lr=lr, eps=1e-30, max_iters=steps, model=model)
    np.testing.assert_allclose(res.losses, losses, rtol=1e-12)
    np.testing.assert_allclose(res.W[:, 0], wp, rtol=1e-12)
    np.testing.assert_allclose(res.W[:, 1], wm, rtol=1e-12)


GRID = dict(model="diagonal", objective="linear-regression", dims=(12,), depths=(1, 2, 3),
            seeds=(0, 1), lrs=(0.02, 0.05), init_scale=(0.1, 0.5), samples=(6, 9),
            sparsity=2, noise=0.1, eps=1e-12, max_iters=4000)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("diagonal") / "sw")
    grid = zj.Grid(**GRID)
    rows = zj.sweep(grid, out, dtype="float64", chunk=100, cache=False,
                    save=("learning-times", "end-to-end"))
    return grid, out, rows


@pytest.mark.slow
def test_each_row_equals_zj_run_on_its_problem(swept):
    grid, _, rows = swept
    assert len(rows) == 3 * 2 * 2 * 2 * 2
    assert {r["target"] for r in rows} == {"planted"} and {r["init"] for r in rows} == \
        {"constant"}
    for r in rows[::3]:
        W0, objective = zj.sweep_problem(grid, depth=r["depth"], seed=r["seed"],
                                         init_scale=r["init_scale"],
                                         observations=r["observations"])
        assert W0.shape == (r["depth"], 2, 12)
        # the problem: n samples, a 2-sparse β* of magnitude 1
        n = r["observations"]
        assert int(jnp.sum(jnp.any(objective.X != 0, axis=1))) == n
        assert sorted(np.abs(np.asarray(objective.beta_star))[-2:].tolist()) == [0.0, 0.0] \
            or int(jnp.sum(objective.beta_star != 0)) == 2
        res = zj.run(W0, objective, lr=r["lr"], eps=grid.eps, max_iters=grid.max_iters,
                     model=grid.parametrization)
        assert zj.STATUS_NAMES[int(res.status)] == r["status"]
        assert (int(res.iterations) if res.iterations >= 0 else None) == r["iterations"]
        # (losses of 1e-12 differ in their last digits: the batch rounds otherwise)
        np.testing.assert_allclose(float(res.final_loss), r["final_loss"], rtol=1e-10,
                                   atol=1e-20)
        measured = objective.measure(zj.Diagonal.end_to_end(res.W))
        for name in zj.LinearRegression.measures:  # a NaN measure is an empty cell
            value = np.nan if r[name] is None else r[name]
            np.testing.assert_allclose(float(measured[name]), value, rtol=1e-10)


@pytest.mark.slow
def test_the_measures_mean_what_they_say(swept):
    grid, _, rows = swept
    W0, objective = zj.sweep_problem(grid, depth=2, seed=1, init_scale=0.1, observations=9)
    beta = objective.beta_star
    m = objective.measure(beta)
    assert float(m["beta_error"]) == 0 and float(m["support_found"]) == 1
    np.testing.assert_allclose(float(m["test_error"]), 0.1**2, rtol=1e-12)  # σ² at β = β*
    np.testing.assert_allclose(float(m["l1_norm"]), 2.0, rtol=1e-12)
    # Q at tiny β is ‖β‖²/(4a2) to leading order; at huge |β| it is ~ |β| log|β|/a2 ≫ ‖β‖₁
    a2 = float(objective.scale)
    small = 1e-6 * beta
    np.testing.assert_allclose(float(zj.LinearRegression.measure(
        objective, small)["q_alpha"]), float(jnp.sum(small**2)) / (4 * a2), rtol=1e-6)


@pytest.mark.slow
def test_a_small_init_finds_the_sparse_truth_a_large_one_does_not(swept):
    # Woodworth et al.'s two regimes in the sweep's own measures: with n < d, from α = 0.1
    # at depth 2 and 3 (where 4,000 steps leave a loss of 1e-4..1e-8) β is nearer β* than
    # the interpolant from α = 0.5, seed by seed.
    _, _, rows = swept
    for L in (2, 3):
        for seed in (0, 1):
            err = {r["init_scale"]: r["beta_error"] for r in rows if r["depth"] == L and
                   r["seed"] == seed and r["lr"] == 0.05 and r["observations"] == 9}
            assert err[0.1] < 0.75 * err[0.5], (L, seed, err)


CLI = ["sweep", "--model", "diagonal", "--objective", "linear-regression", "--dim", "12",
       "--depths", "1:4", "--seeds", "0,1", "--lr", "0.02,0.05", "--init-scale", "0.1,0.5",
       "--samples", "6,9", "--sparsity", "2", "--noise", "0.1", "--eps", "1e-12",
       "--max-iters", "4000", "--x64", "--chunk", "100", "--save", "learning-times,end-to-end",
       "--no-cache", "--no-progress"]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_table(swept, tmp_path):
    _, reference, _ = swept
    out = tmp_path / "cli"
    proc = subprocess.Popen([sys.executable, "-m", "zasjax", *CLI, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    arrays = out / "arrays" / "grid-0" / "learning-times"
    reached = wait_until(lambda: any((out / "inflight").glob("*.npz"))
                         and any(arrays.glob("*.npz")), proc)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert reached, f"the sweep ended before the moment (exit {proc.returncode}): {err}"
    assert main([*CLI, "--out", str(out), "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == \
        open(f"{reference}/results.csv", "rb").read()
    # the learning times of configurations cut mid-run continue their own records
    a, b = zj.load_sweep(out, arrays=True), zj.load_sweep(reference, arrays=True)
    for name in ("learning_times", "end_to_end"):
        for x, y in zip(a[name], b[name]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_learning_times_are_those_of_the_run_alone(swept):
    # The sweep records each configuration's β after every chunk (100 iterations); the
    # same configuration run alone, read every 100 iterations, gives the same times.
    grid, out, _ = swept
    df = zj.load_sweep(out, arrays=True)
    for _, r in df[(df.depth == 2) & (df.init_scale == 0.1) & (df.lr == 0.05)].iterrows():
        W0, objective = zj.sweep_problem(grid, depth=2, seed=r.seed, init_scale=0.1,
                                         observations=r.observations)
        betas, W, its = [zj.Diagonal.end_to_end(W0)], W0, [0]
        while its[-1] < r.steps:
            W = zj.run(W, objective, lr=0.05, eps=grid.eps, max_iters=100,
                       model=grid.parametrization).W
            betas.append(zj.Diagonal.end_to_end(W))
            its.append(min(its[-1] + 100, int(r.steps)))
        times = zj.learning_times(np.stack(betas), np.asarray(its))
        np.testing.assert_array_equal(r.learning_times, times)
        np.testing.assert_allclose(r.end_to_end, betas[-1], rtol=1e-10, atol=1e-14)
        # the support's coordinates are learned; those β* leaves at 0 stay near it
        assert np.isfinite(times[np.asarray(objective.beta_star) != 0]).all()


@pytest.mark.parametrize("args,says", [
    (["--init-scale", "0"], "init scale must be finite numbers > 0"),
    (["--init-scale", "-0.1"], "init scale must be finite numbers > 0"),
    (["--sparsity", "13"], "sparsity must be an integer in [0, 12]"),
    (["--init-shape", "-1"], "init shape"),
    (["--covariates", "bernoulli"], "covariates must be one of"),
])
def test_bad_input_is_one_line_and_exit_2(args, says, capsys):
    base = ["sweep", "--model", "diagonal", "--objective", "linear-regression", "--dim", "12",
            "--samples", "6", "--init-scale", "0.1", "--no-progress"]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_bad_data_files_are_one_line_and_exit_2(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(6, 12))
    base = ["sweep", "--model", "diagonal", "--objective", "linear-regression", "--dim",
            "12", "--init-scale", "0.1", "--no-progress", "--data-file"]
    for name, data, says in [
            ("shape", dict(X=X, y=np.zeros(5)), "labels y must have shape (6,)"),
            ("nan", dict(X=X, y=np.full(6, np.nan)), "finite"),
            ("width", dict(X=X[:, :10], y=np.zeros(6)), "10")]:
        np.savez(tmp_path / f"{name}.npz", **data)
        assert main([*base, str(tmp_path / f"{name}.npz")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err


def test_a_dense_objective_on_the_diagonal_network_is_refused():
    with pytest.raises(ValueError, match="acts on a matrix; model diagonal makes a vector"):
        zj.Grid(model="diagonal", objective="whitened", init_scale=(0.1,))
    with pytest.raises(ValueError, match="acts on a vector; model dense makes a matrix"):
        zj.Grid(objective="linear-regression", samples=(5,))
    with pytest.raises(ValueError, match="needs its init scale"):
        zj.Grid(model="diagonal", objective="linear-regression", samples=(5,))


def test_data_from_a_file_sweeps_with_its_test_set(tmp_path):
    rng = np.random.default_rng(1)
    X, Xt = rng.normal(size=(5, 10)), rng.normal(size=(50, 10))
    beta = np.zeros(10)
    beta[[1, 4]] = [1.0, -1.0]
    data = dict(X=X, y=X @ beta, X_test=Xt, y_test=Xt @ beta)
    grid = zj.Grid(model="diagonal", objective="linear-regression", dims=(10,), depths=(2,),
                   lrs=(0.2,), init_scale=(0.1,), data=data, eps=1e-14, max_iters=20000)
    rows = zj.sweep(grid, str(tmp_path / "f"), dtype="float64", cache=False)
    (row,) = rows
    assert row["target"] == "file" and row["status"] == "converged"
    # From a small init (the rich regime) the 2-sparse truth comes out of 5 samples far
    # better than the minimum-ℓ2 interpolant (the kernel regime) gets it.
    l2 = np.linalg.pinv(X) @ data["y"]
    assert row["test_error"] < 0.1 * np.mean((Xt @ l2 - data["y_test"]) ** 2)
    assert row["beta_error"] is None  # no β* in the file: no such measure


@pytest.mark.parametrize("depth", [2, 3])
def test_one_runs_learning_times_follow_the_mode_ode(depth):
    # With XᵀX/n = I every coordinate of the diagonal network decouples: from w = α in every
    # layer, β_i = u^N follows β̇ = N β^{2−2/N}(β*_i − β) (separate layers, the ½-normalised
    # loss: c = N), so GD at a small step learns β*_i at mode_half_time(α^N, β*_i, N)/η.
    d, alpha, lr = 4, 0.05, 2e-3
    X = np.sqrt(d) * np.eye(d)
    target = np.asarray([8.0, 4.0, 2.0, 1.0])
    objective = zj.LinearRegression(jnp.asarray(X), jnp.asarray(X @ target))
    model = zj.Diagonal(shape=0.0 + 1e-9)  # w₋ ≈ 0: one branch, β ≈ u^N
    W0 = model.init("constant", None, d, depth, depth, 0.0, alpha, jnp.float64)
    predicted = np.asarray([zj.mode_half_time(alpha**depth, s, depth) for s in target]) / lr
    curve = zj.learning_curve(W0, objective, lr, int(1.5 * predicted.max()), every=5,
                              model=model)
    times = np.asarray(curve["learning_times"])
    np.testing.assert_allclose(times, predicted, rtol=0.03)
    assert np.all(np.diff(times) > 0)  # the largest coordinate first
    # the loss waits on a plateau between jumps: each level below the one before
    levels = np.asarray(curve["plateau_loss"])
    assert np.all(np.diff(levels) < 0)
    # the plateau after jump j lies between the saddle values with j and j + 1 coordinates
    # learned (the next jump starts inside it)
    saddles = [0.5 * np.sum(target[j:] ** 2) for j in range(d + 1)]
    for j in range(1, d):
        assert saddles[j + 1] < levels[j] <= saddles[j], (j, levels, saddles)


def test_trajectory_reports_the_learning_times_of_the_singular_values():
    # A balanced, aligned start W_l = σ₀^{1/N} diag-basis of Φ: the modes decouple exactly.
    N, lr, s0 = 3, 2e-3, 1e-3
    target = jnp.diag(jnp.asarray([6.0, 3.0, 1.5]))
    W0 = jnp.stack([s0 ** (1 / N) * jnp.eye(3)] * N)
    predicted = np.asarray([zj.mode_half_time(s0, s, N) for s in (6.0, 3.0, 1.5)]) / lr
    traj = zj.trajectory(W0, target, lr, int(1.3 * predicted.max()), every=5)
    np.testing.assert_allclose(traj["learning_times"], predicted, rtol=0.03)
    assert traj["plateau_loss"].shape == (4,)


@pytest.mark.slow
def test_each_depth_two_run_is_measured_against_its_limit(swept):
    # `limit_distance`: ‖β − diagonal_limit(X, y, α)‖ at depth 2, NaN elsewhere. The runs
    # that converged (loss 1e-12) lie within O(η) of Woodworth et al.'s limit.
    grid, _, rows = swept
    for r in rows:
        if r["depth"] != 2:
            assert r["limit_distance"] is None
        elif r["status"] == "converged":
            assert r["limit_distance"] < 0.05 * r["l1_norm"], r
    W0, objective = zj.sweep_problem(grid, depth=2, seed=0, init_scale=0.5, observations=9)
    n = 9
    limit = zj.diagonal_limit(np.asarray(objective.X)[:n], np.asarray(objective.y)[:n], 0.5)
    row = next(r for r in rows if (r["depth"], r["seed"], r["init_scale"], r["observations"],
                                   r["lr"]) == (2, 0, 0.5, 9, 0.05))
    beta = zj.Diagonal.end_to_end(zj.run(W0, objective, lr=0.05, eps=grid.eps,
                                         max_iters=grid.max_iters, model=grid.parametrization).W)
    np.testing.assert_allclose(row["limit_distance"], np.linalg.norm(beta - limit), rtol=1e-8)
