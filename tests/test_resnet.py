import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax._checkpoint import CheckpointError
from zasjax._optimizers import OPTIMIZERS
from zasjax._resnet import RESNET_INITS, ResNet, init_resnet, resnet_loss
from zasjax._status import DIVERGED, MAX_ITERS
from zasjax._train import train_resnet

SMALL = dict(depth=5, width=6, hidden=4, d_in=7, d_out=3)


def _loop_logits(model: ResNet, x):
    """Plain Python-loop reference for eq. (6.1) on a batch `x: (n, d)`."""
    z = x @ model.V0.T
    for u, v in zip(model.U, model.V):
        z = z + jnp.maximum(z @ v.T, 0.0) @ u.T
    return z @ model.U_out.T


def _loop_loss(model, x, y):
    logp = jax.nn.log_softmax(_loop_logits(model, x))
    return -jnp.mean(logp[jnp.arange(len(y)), y])


def _data(key, n, d, classes):
    kx, ky = jax.random.split(key)
    return jax.random.uniform(kx, (n, d)), jax.random.randint(ky, (n,), 0, classes)


def _perturbed(key, model, scale=0.3):
    # mZAS has U = 0, which would hide the blocks; move every entry off its init.
    leaves, treedef = jax.tree.flatten(model)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [
        a + scale * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_shapes_and_dtype(key, dtype):
    for name in RESNET_INITS:
        m = init_resnet(key, name, dtype=dtype, **SMALL)
        assert m.V0.shape == (6, 7) and m.U.shape == (5, 6, 4)
        assert m.V.shape == (5, 4, 6) and m.U_out.shape == (3, 6)
        assert all(a.dtype == dtype for a in jax.tree.leaves(m))
        assert m.depth == 5
        assert m(jnp.ones(7, dtype)).dtype == dtype


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_mzas_blocks_are_identity_and_loss_is_log10(key, dtype):
    # eq. (6.2): U_l = 0 makes every block the identity, so z_L = z_0 = V_0 x bit for
    # bit, and U_{L+1} = 0 makes every logit 0: the loss is log(10).
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 20, 784, 10)
    x = x.astype(dtype)
    m = init_resnet(ki, "mzas", depth=50, width=16, dtype=dtype)
    z0 = jax.vmap(lambda v: m.V0 @ v)(x)
    np.testing.assert_array_equal(jax.vmap(m.features)(x), z0)
    loss, acc = resnet_loss(m, x, y)
    # log(10) up to the rounding of one log-sum-exp.
    np.testing.assert_allclose(loss, math.log(10), rtol=4 * jnp.finfo(dtype).eps)
    assert loss.dtype == dtype and acc.dtype == dtype
    assert np.all(np.asarray(m.U) == 0) and np.all(np.asarray(m.U_out) == 0)


def test_init_statistics(key):
    # mZAS: (V_l)_ij ~ N(0, 1/D); Xavier: std sqrt(2 / (fan_in + fan_out)).
    m = init_resnet(key, "mzas", depth=200, width=40, hidden=30)
    assert abs(float(np.std(m.V)) * math.sqrt(40) - 1) < 0.02
    assert abs(float(np.mean(m.V))) < 0.01
    x = init_resnet(key, "xavier", depth=200, width=40, hidden=30)
    assert abs(float(np.std(x.U)) / math.sqrt(2 / 70) - 1) < 0.02
    assert abs(float(np.std(x.V)) / math.sqrt(2 / 70) - 1) < 0.02
    # Blocks get independent keys: no two are equal.
    assert not np.allclose(m.V[0], m.V[1])
    # Seeded: the same key gives the same network.
    np.testing.assert_array_equal(init_resnet(key, "mzas", depth=200, width=40, hidden=30).V, m.V)


@pytest.mark.parametrize("name", sorted(RESNET_INITS))
def test_scan_equals_loop(key, name):
    kx, ki, kp = jax.random.split(key, 3)
    x, _ = _data(kx, 9, 7, 3)
    m = _perturbed(kp, init_resnet(ki, name, dtype=jnp.float64, **SMALL))
    np.testing.assert_allclose(jax.vmap(m)(x), _loop_logits(m, x), rtol=1e-13, atol=1e-13)


def test_gradient_matches_loop_reference_and_finite_differences(key):
    kx, ki, kp, kd = jax.random.split(key, 4)
    x, y = _data(kx, 9, 7, 3)
    m = _perturbed(kp, init_resnet(ki, "mzas", dtype=jnp.float64, **SMALL))
    # Jitted: eagerly, each op of the scan and of its transpose would compile on its own.
    g = jax.jit(jax.grad(lambda m: resnet_loss(m, x, y)[0]))(m)
    g_ref = jax.jit(jax.grad(_loop_loss))(m, x, y)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    # Directional derivative by central differences, error O(h^2).
    direction = _perturbed(kd, jax.tree.map(jnp.zeros_like, m), scale=1.0)
    h = 1e-5
    plus = jax.tree.map(lambda a, d: a + h * d, m, direction)
    minus = jax.tree.map(lambda a, d: a - h * d, m, direction)
    loss = jax.jit(lambda m: resnet_loss(m, x, y)[0])
    fd = (loss(plus) - loss(minus)) / (2 * h)
    exact = sum(jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction)))
    np.testing.assert_allclose(fd, exact, rtol=1e-7)


def test_first_mzas_step_moves_only_the_readout(key):
    # At mZAS, dL/dz_l = U_{L+1}^T(...) = 0, so only U_{L+1} has a gradient.
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 12, 784, 10)
    m = init_resnet(ki, "mzas", depth=7, width=8)
    g = jax.jit(jax.grad(lambda m: resnet_loss(m, x, y)[0]))(m)
    for leaf in (g.V0, g.U, g.V):
        np.testing.assert_array_equal(leaf, 0.0)
    assert float(jnp.abs(g.U_out).max()) > 0


def test_depth_10000_one_step(key):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 4, 784, 10)
    m = init_resnet(ki, "mzas", depth=10_000, width=8, dtype=jnp.float32)
    r = train_resnet(m, x, y, [1e-4], steps=1)
    assert r.loss.shape == (2, 1) and np.all(np.isfinite(r.loss))
    assert r.loss[0, 0] == pytest.approx(math.log(10), rel=1e-6)
    assert r.loss[1, 0] < r.loss[0, 0]
    assert not r.diverged[0] and r.model.U.shape == (1, 10_000, 8, 8)


@pytest.mark.slow
def test_lr_grid_equals_separate_runs(key):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 30, 7, 3)
    m = init_resnet(ki, "mzas", dtype=jnp.float64, **SMALL)
    lrs = [0.05, 0.2]
    grid = train_resnet(m, x, y, lrs, steps=25, chunk=10)
    for i, lr in enumerate(lrs):
        one = train_resnet(m, x, y, [lr], steps=25, chunk=10)
        np.testing.assert_allclose(grid.loss[:, i], one.loss[:, 0], rtol=1e-12)
        np.testing.assert_allclose(grid.model.U[i], one.model.U[0], rtol=1e-12, atol=1e-15)
    assert grid.loss.shape == (26, 2) and grid.steps == 25
    # Gradient descent with a small step decreases the loss.
    assert np.all(np.diff(grid.loss[:, 0]) < 0)


def test_plain_gd_is_the_update_rule(key):
    # One step of "sgd" is theta - lr * grad.
    kx, ki, kp = jax.random.split(key, 3)
    x, y = _data(kx, 10, 7, 3)
    m = _perturbed(kp, init_resnet(ki, "xavier", dtype=jnp.float64, **SMALL))
    r = train_resnet(m, x, y, [0.1], steps=1)
    g = jax.jit(jax.grad(lambda m: resnet_loss(m, x, y)[0]))(m)
    expect = jax.tree.map(lambda a, b: a - 0.1 * b, m, g)
    for a, b in zip(jax.tree.leaves(r.model), jax.tree.leaves(expect)):
        np.testing.assert_allclose(a[0], b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("optimizer", [
    pytest.param(name, marks=pytest.mark.loose_promotion) if name == "adam" else name
    for name in sorted(OPTIMIZERS)])  # optax's adam raises a float to an int32 power
@pytest.mark.slow
def test_every_optimizer_reduces_the_loss(key, optimizer):
    lr = {"gd": 0.5, "sgd": 0.5, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01}[optimizer]
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 30, 7, 3)
    m = init_resnet(ki, "mzas", dtype=jnp.float64, **SMALL)
    r = train_resnet(m, x, y, [lr], steps=40, optimizer=optimizer)
    assert not r.diverged[0] and r.status[0] == MAX_ITERS  # no ε: it ran its whole budget
    assert r.loss[-1, 0] < 0.95 * r.loss[0, 0]


@pytest.mark.slow
def test_divergence_is_a_flag_not_a_crash(key):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 30, 784, 10)
    m = init_resnet(ki, "xavier", depth=30, width=16, dtype=jnp.float32)
    r = train_resnet(m, x, y, [1e-9, 1.0], steps=40, chunk=10)
    assert r.diverged.tolist() == [False, True]
    assert r.status.tolist() == [MAX_ITERS, DIVERGED]
    assert r.diverged_at[0] == -1 and 0 < r.diverged_at[1] < 40
    # Frozen at divergence: the grid's other run is untouched and finite.
    assert np.all(np.isfinite(r.loss[:, 0]))
    lost = ~np.isfinite(r.loss[:, 1]) | (r.loss[:, 1] > 1e3 * r.loss[0, 1])
    assert lost[r.diverged_at[1]]


def test_all_diverged_stops_early(key):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 30, 784, 10)
    m = init_resnet(ki, "xavier", depth=30, width=16, dtype=jnp.float32)
    r = train_resnet(m, x, y, [1.0, 10.0], steps=1000, chunk=10)
    assert r.diverged.all() and r.steps < 1000
    assert r.loss.shape == (r.steps + 1, 2)


def test_interrupted_run_resumes_to_the_same_result(key, tmp_path):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 30, 7, 3)
    m = init_resnet(ki, "mzas", dtype=jnp.float64, **SMALL)
    lrs = [0.05, 0.3]
    whole = train_resnet(m, x, y, lrs, steps=50, chunk=7, optimizer="momentum")

    class Interrupt(Exception):
        pass

    def stop_at_21(step, partial):
        if step == 21:
            raise Interrupt

    ckpt = tmp_path / "run.npz"
    with pytest.raises(Interrupt):
        train_resnet(m, x, y, lrs, steps=50, chunk=7, optimizer="momentum",
                     checkpoint=ckpt, checkpoint_seconds=0, callback=stop_at_21)
    seen = []
    resumed = train_resnet(m, x, y, lrs, steps=50, chunk=7, optimizer="momentum",
                           checkpoint=ckpt, checkpoint_seconds=0,
                           callback=lambda step, r: seen.append(step))
    assert seen[0] == 28  # continued after the checkpoint at 21, not from 0
    np.testing.assert_array_equal(resumed.loss, whole.loss)
    np.testing.assert_array_equal(resumed.accuracy, whole.accuracy)
    for a, b in zip(jax.tree.leaves(resumed.model), jax.tree.leaves(whole.model)):
        np.testing.assert_array_equal(a, b)
    # A finished checkpoint returns at once with the same answer.
    again = train_resnet(m, x, y, lrs, steps=50, chunk=7, optimizer="momentum", checkpoint=ckpt)
    np.testing.assert_array_equal(again.loss, whole.loss)
    # A checkpoint from another grid is refused, not silently mixed in.
    with pytest.raises(ValueError, match="different run"):
        train_resnet(m, x, y, [0.1, 0.3], steps=50, chunk=7, optimizer="momentum",
                     checkpoint=ckpt)
    # ... and so is one trained on other data (here: the inputs centred).
    with pytest.raises(ValueError, match="different run"):
        train_resnet(m, x - x.mean(0, keepdims=True), y, lrs, steps=50, chunk=7,
                     optimizer="momentum", checkpoint=ckpt)


def test_no_recompilation_for_a_new_grid(key, caplog):
    kx, ki = jax.random.split(key)
    x, y = _data(kx, 10, 7, 3)
    m = init_resnet(ki, "mzas", dtype=jnp.float64, **SMALL)
    train_resnet(m, x, y, [0.1, 0.2], steps=6, chunk=3)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        train_resnet(m, x, y, [0.3, 0.4], steps=6, chunk=3)
    assert not [r for r in caplog.records if "_advance" in r.getMessage()]


def test_bad_input(key):
    x, y = _data(key, 5, 7, 3)
    with pytest.raises(ValueError, match=r"unknown ResNet initialisation 'he'.*mzas.*xavier"):
        init_resnet(key, "he", **SMALL)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        init_resnet(key, "mzas", **{**SMALL, "depth": 0})
    with pytest.raises(ValueError, match="width must be a positive integer"):
        init_resnet(key, "mzas", **{**SMALL, "width": -3})
    m = init_resnet(key, "mzas", **SMALL)
    for bad in ([0.0], [-0.1], [0.1, float("nan")], []):
        with pytest.raises(ValueError, match="learning rate|lrs"):
            train_resnet(m, x, y, bad, steps=1)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train_resnet(m, x, y, [0.1], steps=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"expected x: \(n, 7\)"):
        train_resnet(m, x[:, :5], y, [0.1], steps=1)


def test_old_spelling_optimiser_still_works_with_a_warning(key):
    x, y = _data(key, 10, 7, 3)
    m = init_resnet(key, "mzas", dtype=jnp.float64, **SMALL)
    with pytest.warns(DeprecationWarning, match="optimizer"):
        old = train_resnet(m, x, y, [0.1], steps=3, optimiser="momentum")
    new = train_resnet(m, x, y, [0.1], steps=3, optimizer="momentum")
    np.testing.assert_array_equal(old.loss, new.loss)


def test_corrupt_checkpoint_is_one_clear_error_naming_the_file(key, tmp_path):
    x, y = _data(key, 10, 7, 3)
    m = init_resnet(key, "mzas", dtype=jnp.float64, **SMALL)
    ckpt = tmp_path / "run.npz"
    train_resnet(m, x, y, [0.1], steps=4, chunk=2, checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match=str(ckpt)) as e:
        train_resnet(m, x, y, [0.1], steps=4, chunk=2, checkpoint=ckpt)
    assert isinstance(e.value, ValueError) and len(str(e.value).splitlines()) == 1
