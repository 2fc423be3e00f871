"""The GD runner: iterations-to-ε, status flags, closed forms, optimisers, batching."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj


def _reference_iterations(W0, phi, lr, eps, max_iters):
    """Independent GD in numpy (gradients by jax.grad) counting updates until R <= eps."""
    W = np.array(W0, np.float64)
    grad = jax.jit(jax.grad(zj.whitened_loss))
    for t in range(max_iters + 1):
        if float(zj.whitened_loss(W, phi)) <= eps:
            return t
        W = W - lr * np.asarray(grad(W, phi))
    return None


@pytest.mark.slow
@pytest.mark.parametrize("depth,lr", [(1, 0.3), (4, 0.1), (16, 0.03), (32, 0.02)])
def test_zas_neg_identity_1d_reaches_eps_exactly_when_a_reference_does(key, depth, lr):
    W0 = zj.make_init("zas", key, (1,) * (depth + 1), dtype=jnp.float64)
    phi = -jnp.eye(1)
    res = zj.run(W0, phi, lr=lr, eps=1e-10, max_iters=5000)
    assert res.status == zj.CONVERGED and float(res.final_loss) <= 1e-10
    assert int(res.iterations) == _reference_iterations(W0, phi, lr, 1e-10, 5000)
    again = zj.run(W0, phi, lr=lr, eps=1e-10, max_iters=5000)
    assert int(again.iterations) == int(res.iterations)  # deterministic to the iteration


def test_zas_solves_in_one_step_at_lr_one(key):
    # W_L = 0 kills every other layer's gradient, and ∇_L R = −Φ, so η = 1 sets W_L = Φ.
    phi = zj.make_target("gaussian", key, (3, 3), jnp.float64)
    W0 = zj.make_init("zas", key, (3,) * 11, dtype=jnp.float64)
    res = zj.run(W0, phi, lr=1.0, eps=1e-20, max_iters=10)
    assert int(res.iterations) == 1 and jnp.allclose(res.W[-1], phi, atol=1e-15)


def test_iterations_zero_when_already_solved():
    W0 = jnp.eye(2)[None] * -1.0
    res = zj.run(W0, -jnp.eye(2), lr=0.1, eps=1e-10, max_iters=10)
    assert int(res.iterations) == 0 and res.status == zj.CONVERGED and int(res.steps) == 0


def test_depth_one_is_least_squares_closed_form(key):
    # L = 1: W_{t+1} − Φ = (1 − η)(W_t − Φ), so R_t = (1 − η)^{2t} R_0 exactly.
    kw, kp = jax.random.split(key)
    W0 = jax.random.normal(kw, (1, 3, 3), jnp.float64)
    phi = jax.random.normal(kp, (3, 3), jnp.float64)
    lr = 0.05
    res = zj.run(W0, phi, lr=lr, eps=1e-30, max_iters=200)
    t = np.arange(201)
    expected = (1 - lr) ** (2 * t) * float(zj.whitened_loss(W0, phi))
    assert np.allclose(np.asarray(res.losses), expected, rtol=1e-10)


def test_depth_one_data_objective_converges_to_least_squares(key):
    kx, ky = jax.random.split(key)
    X = jax.random.normal(kx, (3, 20), jnp.float64)
    Y = jax.random.normal(ky, (3, 20), jnp.float64)
    res = zj.run(jnp.zeros((1, 3, 3)), X=X, Y=Y, lr=0.01, eps=1e-30, max_iters=4000)
    W_ls = np.linalg.lstsq(np.asarray(X).T, np.asarray(Y).T, rcond=None)[0].T
    assert np.allclose(res.W[0], W_ls, atol=1e-8)


def test_diverging_lr_is_flagged_inside_a_vmapped_batch(key):
    W0 = zj.make_init("zas", key, (2,) * 9, dtype=jnp.float64)
    phi = jnp.array([[-1.0, 0.5], [0.2, -0.8]])
    lrs = jnp.array([0.01, 0.05, 50.0, 0.02])
    res = jax.vmap(lambda lr: zj.run(W0, phi, lr=lr, eps=1e-8, max_iters=3000))(lrs)
    status = np.asarray(res.status)
    assert status[2] == zj.DIVERGED
    assert np.all(status[[0, 1, 3]] == zj.CONVERGED)
    for i in (0, 1, 3):  # the batch does not disturb the others
        alone = zj.run(W0, phi, lr=float(lrs[i]), eps=1e-8, max_iters=3000)
        assert int(alone.iterations) == int(res.iterations[i])


def test_max_iters_status_and_nan_after_finish(key):
    W0 = zj.make_init("zas", key, (1,) * 5, dtype=jnp.float64)
    res = zj.run(W0, -jnp.eye(1), lr=1e-4, eps=1e-10, max_iters=50, record_every=10)
    assert res.status == zj.MAX_ITERS and int(res.iterations) == -1 and int(res.steps) == 50
    assert res.losses.shape == (6,) and np.all(np.isfinite(res.losses))
    res = zj.run(W0, -jnp.eye(1), lr=0.2, eps=1e-10, max_iters=1000, record_every=5)
    n = int(res.iterations) // 5 + 1
    assert np.all(np.isfinite(res.losses[:n])) and np.all(np.isnan(res.losses[n:]))


def test_sgd_optimizer_equals_plain_gd(key):
    W0 = zj.make_init("near-zas", key, (3,) * 5, dtype=jnp.float64)
    phi = -jnp.eye(3)
    a = zj.run(W0, phi, lr=0.05, max_iters=300, eps=1e-12)
    b = zj.run(W0, phi, lr=0.05, max_iters=300, eps=1e-12, optimizer="sgd")
    assert int(a.iterations) == int(b.iterations)
    assert jnp.allclose(a.W, b.W, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer,lr", [
    ("momentum", 0.02), ("nesterov", 0.02),
    pytest.param("adam", 0.01, marks=pytest.mark.loose_promotion)])  # optax: float ** int32
def test_optax_optimizers_converge_and_respect_the_mask(key, optimizer, lr):
    widths = (2, 3, 3, 2)
    W0 = zj.make_init("near-zas", key, widths, dtype=jnp.float64)
    mask = zj.support_mask(widths, 3, jnp.float64)
    phi = zj.pad_square(-jnp.eye(2), 3)
    res = zj.run(W0, phi, lr=lr, mask=mask, optimizer=optimizer, eps=1e-8, max_iters=20_000)
    assert res.status == zj.CONVERGED
    assert jnp.all(res.W * (1 - mask) == 0)


def test_fixed_layers_never_move(key):
    W0 = zj.make_init("near-zas", key, (3,) * 5, dtype=jnp.float64)
    mask = jnp.ones_like(W0).at[0].set(0).at[-1].set(0)
    res = zj.run(W0, -jnp.eye(3), lr=0.05, mask=mask, max_iters=100, eps=1e-30)
    assert jnp.array_equal(res.W[0], W0[0]) and jnp.array_equal(res.W[-1], W0[-1])
    assert not jnp.array_equal(res.W[1], W0[1])


def test_minibatch_sgd_on_data_converges(key):
    kx, kw = jax.random.split(key)
    X = jax.random.normal(kx, (3, 32), jnp.float64)
    Y = -X  # realisable: W_{L:1} = −I fits exactly
    W0 = zj.make_init("zas", kw, (3,) * 4, dtype=jnp.float64)
    res = zj.run(W0, X=X, Y=Y, lr=0.005, batch_size=8, eps=1e-8, max_iters=20_000,
                 key=jax.random.key(1))
    assert res.status == zj.CONVERGED


def _compiles_of_run(caplog, call) -> int:
    """How many times `call()` compiles the runner's jitted program (`jax.log_compiles`)."""
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        call()
    return sum(r.getMessage().startswith("Compiling jit(_run_jit)") for r in caplog.records)


def test_second_call_does_not_recompile(key, caplog):
    W0 = zj.make_init("zas", key, (2,) * 5)
    phi = -jnp.eye(2)
    assert _compiles_of_run(caplog, lambda: zj.run(W0, phi, lr=0.1, max_iters=137)) == 1
    # New target, step size and ε are array arguments: the same program runs them.
    assert _compiles_of_run(caplog, lambda: zj.run(W0, 2 * phi, lr=0.05, eps=1e-6,
                                                   max_iters=137)) == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr=0.1, eps=0.0), "eps must be > 0"),
    (dict(lr=0.1, max_iters=-1), "max_iters must be >= 0"),
    (dict(lr=0.1, optimizer="lbfgs"), "unknown optimizer"),
    (dict(lr=0.1, record_every=0), "record_every must be >= 1"),
    (dict(lr=0.1, prefix="parallel"), "unknown prefix"),
    (dict(lr=0.1, matmul="strassen"), "unknown matmul"),
])
def test_bad_arguments_raise_before_tracing(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zj.run(jnp.zeros((2, 2, 2)), jnp.zeros((2, 2)), **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="target must have shape"):
        zj.run(jnp.zeros((2, 2, 2)), jnp.zeros((3, 3)), lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(L, D, D\)"):
        zj.run(jnp.zeros((2, 2)), jnp.zeros((2, 2)), lr=0.1)
    with pytest.raises(ValueError, match="exactly one objective"):
        zj.run(jnp.zeros((2, 2, 2)), lr=0.1)
