"""The exact mode reduction of GD from ZAS: against the full engine, its flow, and at L = 2^20."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax import _modes
from zasjax._flow import gradient_flow_jit
from zasjax._modes import mode_loss_and_grad, mode_svd, mode_weights, modes_flow_jit, run_modes

F64 = jnp.float64
DEPTHS = (1, 2, 5, 16, 64)
LRS = 2.0 ** np.arange(-10.0, 0.0)  # lr_grid(2**-10, 0.5)[::2]: one learning rate per octave
MAX_ITERS = 3000
TARGETS = ("neg-identity", "gaussian", "psd", "orthogonal")

# Fixed matrices with a repeated and a zero singular value, read back as target files.
_H = np.eye(5) - 0.4 * np.ones((5, 5))  # Householder reflection (I − 2vvᵀ/‖v‖², v = 1)
FILE_TARGETS = {
    1: np.array([[-2.5]]),
    2: np.array([[1.0, 2.0], [2.0, 4.0]]),  # rank one: s = (5, 0)
    5: _H @ np.diag([2.0, 1.0, 1.0, 0.5, 0.0]) @ np.eye(5)[[2, 0, 4, 1, 3]],
}


def _targets(key, d, tmp_path):
    """(5, d, d): −I, Gaussian, PSD, orthogonal and a target file."""
    path = tmp_path / "phi.npy"
    np.save(path, FILE_TARGETS[d])
    phis = [zj.make_target(name, k, (d, d), F64)
            for name, k in zip(TARGETS, jax.random.split(key, len(TARGETS)))]
    return jnp.stack(phis + [jnp.asarray(zj.load_target(path, (d, d)))])


def _agree(x, y, phi_norm, blowup):
    """Per run: same status and iterations, and losses equal to 1e-10 relative.

    The residual E = W_{L:1} − Φ carries an absolute rounding error ∝ ε_mach‖Φ‖, so R = ½‖E‖²
    carries one ∝ ‖E‖‖Φ‖ that dominates 1e-10·R as R → ε: the tolerance has both terms.
    Recorded losses past the blowup threshold (inf in one engine, NaN in another) are equal.
    """
    fx, fy = np.asarray(x.losses), np.asarray(y.losses)
    R = np.where(np.isfinite(fx), np.abs(fx), 0.0)
    tol = 1e-10 * (R + phi_norm * np.sqrt(2 * R))
    with np.errstate(invalid="ignore"):
        close = np.abs(fx - fy) <= tol
        both_nan = np.isnan(fx) & np.isnan(fy)
        both_blown = ~(np.abs(fx) <= blowup) & ~(np.abs(fy) <= blowup) & ~both_nan
    losses = np.all(close | both_nan | both_blown, axis=-1)
    return ((np.asarray(x.status) == np.asarray(y.status))
            & (np.asarray(x.iterations) == np.asarray(y.iterations)) & losses)


def _grid(f):
    """`f(phi, lr)` over every (target, learning rate) pair: fields gain axes (T, n_lr)."""
    return jax.vmap(jax.vmap(f, (None, 0)), (0, None))


@pytest.mark.parametrize("d", [1, *(pytest.param(d, marks=pytest.mark.slow) for d in (2, 5))])
def test_modes_equal_the_full_engine_on_a_tuning_grid(key, tmp_path, d):
    phis = _targets(key, d, tmp_path)
    norms = np.asarray(jnp.linalg.norm(phis, axis=(1, 2)))[:, None, None]  # (T, 1, 1)
    blowup = 1e10 * np.maximum(0.5 * norms**2, 1.0)
    lrs, depths = jnp.asarray(LRS), jnp.asarray(DEPTHS, F64)
    modes = jax.vmap(lambda L: _grid(
        lambda phi, lr: run_modes(phi, L, lr=lr, max_iters=MAX_ITERS))(phis, lrs))(depths)
    modes = jax.tree.map(np.asarray, modes)
    robust_count = 0
    for i, L in enumerate(DEPTHS):
        # ZAS, and ZAS moved off the mode manifold by 1e-14: rounding-sized.
        zas = np.concatenate([np.tile(np.eye(d), (L - 1, 1, 1)), np.zeros((1, d, d))])
        nudge = 1e-14 * np.random.default_rng(L).standard_normal(zas.shape)
        full = jax.vmap(lambda W0: _grid(
            lambda phi, lr: zj.run(W0, phi, lr=lr, max_iters=MAX_ITERS))(phis, lrs))(
            jnp.asarray(np.stack([zas, zas + nudge])))
        full, nudged = (jax.tree.map(lambda x, j=j: np.asarray(x[j]), full) for j in (0, 1))
        mode = jax.tree.map(lambda x: x[i], modes)
        # Where a rounding-sized nudge changes the full engine's outcome, the outcome is
        # rounding noise (at large η the mode manifold is transversally unstable in the
        # full network); everywhere else the modes must reproduce it exactly.
        robust = _agree(full, nudged, norms, blowup)
        ok = _agree(full, mode, norms, blowup)
        assert np.all(ok[robust]), (L, np.argwhere(robust & ~ok))
        robust_count += robust.sum()
        # The tuned learning rate, and every smaller one, are outside that noise.
        converged = full.status == zj.CONVERGED
        assert converged[[0, 3, 4]].any(axis=1).all()  # −I, orthogonal, file: all tunable
        best = np.argmin(np.where(converged, full.iterations, MAX_ITERS + 1), axis=1)
        for t in np.flatnonzero(converged.any(axis=1)):
            assert robust[t, : best[t] + 1].all(), (L, t, robust[t])
        # Reconstructed weights W_l = V diag(a) Vᵀ, W_L = U diag(b) Vᵀ are the full engine's.
        W = jax.vmap(jax.vmap(lambda a, b, U, V: mode_weights(a, b, U, V, L)))(
            mode.a, mode.b, mode.U, mode.V)
        keep = robust & (full.status != zj.DIVERGED)
        np.testing.assert_allclose(np.asarray(W)[keep], full.W[keep], rtol=1e-9, atol=1e-10)
    assert robust_count >= 0.8 * len(DEPTHS) * phis.shape[0] * len(LRS)


def test_any_svd_gives_the_same_weights(key):
    # Repeated singular values (1, 1) and a zero one: rotate the repeated pair in both U and
    # V, flip a (u_i, v_i) pair, and replace u of the zero mode by its negative alone.
    Q = jnp.asarray(_H)
    phi = Q @ jnp.diag(jnp.array([1.0, 1.0, 3.0, 0.0, 0.5])) @ Q[::-1].T
    res = run_modes(phi, 6, lr=0.05, max_iters=40)
    U, s, V = res.U, res.s, res.V
    rep = np.flatnonzero(np.isclose(np.asarray(s), 1.0))
    zero = int(np.flatnonzero(np.asarray(s) < 1e-12)[0])
    c, sn = np.cos(0.7), np.sin(0.7)
    R = jnp.eye(5).at[np.ix_(rep, rep)].set(jnp.array([[c, -sn], [sn, c]]))
    flip = jnp.ones(5).at[0].set(-1.0)
    U2 = (U @ R * flip[None, :]).at[:, zero].multiply(-1.0)
    V2 = V @ R * flip[None, :]
    np.testing.assert_allclose(U2 * s[None, :] @ V2.T, phi, atol=1e-13)  # still an SVD of Φ
    W = mode_weights(res.a, res.b, U, V, 6)
    np.testing.assert_allclose(mode_weights(res.a, res.b, U2, V2, 6), W, atol=1e-13)
    # Φ = −I: U = −I, s = 1, V = I is an SVD, and the weights are W_l = aI, W_L = −bI.
    neg = run_modes(-jnp.eye(2), 4, lr=0.1, max_iters=20)
    W = neg.weights()
    np.testing.assert_allclose(W[0], neg.a[0] * jnp.eye(2), atol=1e-15)
    np.testing.assert_allclose(W[-1], -neg.b[0] * jnp.eye(2), atol=1e-15)


@pytest.mark.parametrize("L", [1, 2, 3, 7])
def test_mode_gradient_is_the_projected_full_gradient(key, L):
    kp, ka, kb = jax.random.split(key, 3)
    phi = jax.random.normal(kp, (3, 3), F64)
    U, s, V = mode_svd(phi)
    a = jnp.array([1.3, -0.7, 0.0]) if L > 2 else jax.random.normal(ka, (3,), F64)
    b = jax.random.normal(kb, (3,), F64)
    loss, g_a, g_b = mode_loss_and_grad(a, b, s, jnp.asarray(L, F64))
    full_loss, grad = zj.loss_and_grad(mode_weights(a, b, U, V, L), phi)
    assert float(loss) == pytest.approx(float(full_loss), rel=1e-12)
    for l in range(L - 1):  # every lower layer's gradient is V diag(b e a^{L−2}) Vᵀ
        np.testing.assert_allclose(V.T @ grad[l] @ V, jnp.diag(g_a), atol=1e-12)
    np.testing.assert_allclose(U.T @ grad[-1] @ V, jnp.diag(g_b), atol=1e-12)


def test_depth_one_is_the_closed_form(key):
    # L = 1: e ← (1 − η) e, so R_t = (1 − η)^{2t} R_0, and no lower layer exists to move.
    phi = jax.random.normal(key, (3, 3), F64)
    lr = 0.05
    res = run_modes(phi, 1, lr=lr, eps=1e-30, max_iters=200)
    t = np.arange(201)
    np.testing.assert_allclose(res.losses, (1 - lr) ** (2 * t) * 0.5 * float(jnp.sum(phi**2)),
                               rtol=1e-10)
    assert np.all(np.asarray(res.a) == 1.0)
    np.testing.assert_allclose(res.end_to_end(), phi - (1 - lr) ** 200 * phi, atol=1e-12)


def test_power_matches_python_floats_at_any_depth():
    # Python's float ** (C pow, < 1 ulp) is the reference.
    rng = np.random.default_rng(0)
    a = np.concatenate([1 + rng.uniform(-1, 1, 40) * 30 / 2**20, rng.uniform(-2, 2, 40)])
    n = np.concatenate([rng.integers(0, 2**20, 40), rng.integers(0, 60, 40)])
    got = np.asarray(_modes.power(jnp.asarray(a), jnp.asarray(n)))
    want = np.array([x**int(k) for x, k in zip(a, n)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    cases = [(0.0, 0, 1.0), (0.0, 3, 0.0), (-2.0, 3, -8.0), (-2.0, 4, 16.0), (0.5, 0, 1.0),
             (-1.0, 2**20 - 1, -1.0), (1.0, 2**31 - 1, 1.0)]
    for base, k, want in cases:
        got = float(_modes.power(jnp.asarray(base), jnp.asarray(k)))
        assert got == pytest.approx(want, rel=1e-14, abs=0), (base, k)
    assert float(_modes.power(jnp.asarray(1.001), jnp.asarray(2**20))) == np.inf


def test_large_depth_matches_an_independent_recursion():
    # Φ = −I, d = 1 at L = 2^20 with η = 1/L: the scalar recursion in plain Python floats
    # (a**n directly, no log space) gives the same losses and iteration count.
    L, lr = 2**20, 2.0**-20
    res = run_modes(-jnp.eye(1), L, lr=lr, max_iters=3000)
    assert res.status == zj.CONVERGED
    a, b, losses = 1.0, 0.0, []
    while True:
        e = a ** (L - 1) * b - 1.0
        losses.append(0.5 * e * e)
        if losses[-1] <= 1e-10:
            break
        a, b = a - lr * b * e * a ** (L - 2), b - lr * e * a ** (L - 1)
    assert int(res.iterations) == len(losses) - 1
    got = np.asarray(res.losses)[: len(losses)]
    np.testing.assert_allclose(got, losses, rtol=1e-8, atol=1e-16)


def test_huge_depths_stay_finite_and_one_compile_serves_all_depths(caplog):
    phi = jnp.asarray(FILE_TARGETS[5])
    depths = [3.0, 1000.0, 2.0**20, 2.0**24]
    caplog.set_level(logging.WARNING)
    with jax.log_compiles():
        results = [run_modes(phi, L, lr=0.5 / (4 * L), max_iters=777) for L in depths]
    compiles = [r for r in caplog.records if "Compiling jit(_run_modes_jit)" in r.getMessage()]
    assert len(compiles) == 1
    for res in results:
        n = int(res.steps) + 1  # evaluations recorded before the run stopped
        assert np.all(np.isfinite(np.asarray(res.losses)[:n]))
        assert np.all(np.isfinite(np.asarray(res.a))) and np.all(np.isfinite(np.asarray(res.b)))
    # A learning rate far above the 1/L scale diverges cleanly, with a status, not a crash.
    bad = run_modes(phi, 2.0**20, lr=1e-3, max_iters=777)
    assert bad.status == zj.DIVERGED and int(bad.steps) < 777
    # vmap over depths equals one run per depth.
    lrs = jnp.asarray([0.5 / (4 * L) for L in depths])
    batch = jax.vmap(lambda L, lr: run_modes(phi, L, lr=lr, max_iters=777))(
        jnp.asarray(depths), lrs)
    for j, res in enumerate(results):
        assert int(batch.iterations[j]) == int(res.iterations)
        np.testing.assert_array_equal(batch.losses[j], res.losses)


def test_trailing_batch_axes_step_each_configuration_alone(key):
    # The state machine broadcasts: a batch on trailing axes equals a loop over it (losses to
    # rounding: XLA:CPU may contract multiply-adds differently in vector and scalar code).
    s = jnp.abs(jax.random.normal(key, (3, 4), F64))
    depth = jnp.array([1.0, 2.0, 9.0, 64.0])
    lr = jnp.array([0.3, 0.1, 0.02, 0.004])
    eps, max_iters = jnp.asarray(1e-10), jnp.asarray(2000)
    state, losses = _modes.advance(_modes.init_state(s, depth), s, depth, lr, eps, max_iters,
                                   n_records=401, record_every=5)
    for j in range(4):
        one, one_losses = _modes.advance(_modes.init_state(s[:, j], depth[j]), s[:, j],
                                         depth[j], lr[j], eps, max_iters, 401, 5)
        np.testing.assert_allclose(losses[:, j], one_losses, rtol=1e-12, atol=0)
        assert int(state.iterations[j]) == int(one.iterations)
        assert int(state.status[j]) == int(one.status) == zj.CONVERGED


@pytest.mark.slow
def test_mode_flow_equals_the_full_flow(key):
    L, d = 4, 3
    phi = jnp.asarray(FILE_TARGETS[5][:d, :d]) + jax.random.normal(key, (d, d), F64)
    ts = jnp.linspace(0.0, 3.0, 31)
    full = gradient_flow_jit(zj.make_init("zas", key, (d,) * (L + 1), dtype=F64), phi, ts,
                             rtol=1e-10, atol=1e-12)
    mode = modes_flow_jit(phi, L, ts, rtol=1e-10, atol=1e-12)
    assert bool(full.ok) and bool(mode.ok)
    np.testing.assert_allclose(mode.losses, full.losses, rtol=1e-7, atol=1e-12)
    U, _, V = mode_svd(phi)
    W = jax.vmap(lambda a, b: mode_weights(a, b, U, V, L))(mode.a, mode.b)
    np.testing.assert_allclose(W, full.W, atol=1e-8)


def test_gd_approaches_the_flow_at_first_order_at_a_million_layers():
    # At L = 2^20 the flow finishes by t ≈ 0.01; GD at η, η/2, η/4 sampled at t = ηk.
    L, t_max = 2.0**20, 0.004
    lrs = 2.0 ** np.array([-22.0, -23.0, -24.0])
    ts = np.unique(np.concatenate([lr * np.arange(round(t_max / lr) + 1) for lr in lrs]))
    flow = modes_flow_jit(-jnp.eye(1), L, jnp.asarray(ts), rtol=1e-12, atol=1e-14)
    assert bool(flow.ok) and float(flow.losses[-1]) < 1e-3 * float(flow.losses[0])
    gaps = []
    for lr in lrs:
        n = round(t_max / lr)
        gd = run_modes(-jnp.eye(1), L, lr=lr, eps=1e-300, max_iters=n)
        at = np.searchsorted(ts, lr * np.arange(n + 1))
        gaps.append(np.max(np.abs(np.asarray(gd.losses) - np.asarray(flow.losses)[at])))
    slope = np.polyfit(np.log(lrs), np.log(gaps), 1)[0]
    assert abs(slope - 1.0) < 0.15, gaps


@pytest.mark.parametrize("args,kwargs,match", [
    ((jnp.zeros((2, 3)), 4), dict(lr=0.1), "square matrix"),
    ((jnp.zeros((2,)), 4), dict(lr=0.1), "square matrix"),
    ((jnp.zeros((2, 2)), 0), dict(lr=0.1), "integer >= 1"),
    ((jnp.zeros((2, 2)), 2.5), dict(lr=0.1), "integer >= 1"),
    ((jnp.zeros((2, 2)), jnp.array([2, 3])), dict(lr=0.1), "vmap to sweep depths"),
    ((jnp.zeros((2, 2)), 4), dict(lr=0.0), "lr must be > 0"),
    ((jnp.zeros((2, 2)), 4), dict(lr=0.1, eps=-1.0), "eps must be > 0"),
    ((jnp.zeros((2, 2)), 4), dict(lr=0.1, max_iters=-1), "max_iters must be >= 0"),
    ((jnp.zeros((2, 2)), 4), dict(lr=0.1, record_every=0), "record_every must be >= 1"),
])
def test_bad_input_raises_before_tracing(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_modes(*args, **kwargs)


def test_flow_bad_input_raises():
    with pytest.raises(ValueError, match="non-decreasing"):
        _modes.modes_flow(-jnp.eye(2), 3, jnp.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="integer >= 1"):
        _modes.modes_flow(-jnp.eye(2), 0, jnp.array([0.0, 1.0]))
