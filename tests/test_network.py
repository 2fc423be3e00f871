"""The analytic gradients and products of `_network` against autodiff, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax import _network as net


def _random_net(key, widths, scale=0.6):
    D = max(widths)
    W = zj.make_init("gaussian", key, widths, scale=scale, dtype=jnp.float64)
    return W, zj.support_mask(widths, D, jnp.float64)


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


@pytest.mark.parametrize("depth", [1, 2, 3, 7, *(pytest.param(L, marks=pytest.mark.slow)
                                                 for L in (16, 64))])
def test_whitened_gradient_equals_autodiff(key, depth):
    rng = np.random.default_rng(depth)
    widths = tuple(rng.integers(1, 6, size=depth + 1))
    kw, kp = jax.random.split(key)
    W, _ = _random_net(kw, widths, scale=1.0 / np.sqrt(max(widths)) + 0.3)
    D = W.shape[-1]
    phi = zj.pad_square(jax.random.normal(kp, (widths[-1], widths[0]), jnp.float64), D)
    loss, grad = jax.jit(zj.loss_and_grad)(W, phi)
    ref_loss, ref_grad = jax.jit(jax.value_and_grad(zj.whitened_loss))(W, phi)
    assert jnp.allclose(loss, ref_loss, rtol=1e-13)
    assert _rel(grad, ref_grad) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 2, 5, 32, 64])
def test_data_gradient_equals_autodiff(key, depth):
    rng = np.random.default_rng(100 + depth)
    widths = tuple(rng.integers(1, 6, size=depth + 1))
    kw, kx, ky = jax.random.split(key, 3)
    W, _ = _random_net(kw, widths, scale=1.0 / np.sqrt(max(widths)) + 0.3)
    D, n = W.shape[-1], 7
    X = jnp.pad(jax.random.normal(kx, (widths[0], n), jnp.float64), ((0, D - widths[0]), (0, 0)))
    Y = jnp.pad(jax.random.normal(ky, (widths[-1], n), jnp.float64),
                ((0, D - widths[-1]), (0, 0)))
    loss, grad = jax.jit(zj.data_loss_and_grad)(W, X, Y)
    ref_loss, ref_grad = jax.jit(jax.value_and_grad(zj.data_loss))(W, X, Y)
    assert jnp.allclose(loss, ref_loss, rtol=1e-13)
    assert _rel(grad, ref_grad) < 1e-10


def test_gradient_vanishes_on_padding(key):
    widths = (3, 5, 2, 4)
    W, mask = _random_net(key, widths)
    phi = zj.pad_square(jnp.ones((4, 3)), 5)
    _, grad = zj.loss_and_grad(W, phi)
    # The analytic gradient is already zero off the support: padding can never move.
    assert jnp.all(grad * (1 - mask) == 0)


def test_products_agree(key):
    W = zj.make_init("gaussian", key, (4,) * 9, dtype=jnp.float64)
    P, S = zj.prefix_products(W), zj.suffix_products(W)
    end = zj.end_to_end(W)
    assert jnp.allclose(P[-1], end, rtol=1e-13) and jnp.allclose(S[0], end, rtol=1e-13)
    for l in range(W.shape[0] + 1):
        assert jnp.allclose(S[l] @ P[l], end, rtol=1e-12, atol=1e-14)
    assert jnp.allclose(net.prefix_products_associative(W), P, rtol=1e-12, atol=1e-14)


def test_unrolled_matmul_equals_dot(key):
    a, b = jax.random.normal(key, (2, 3, 3), jnp.float64)
    assert jnp.allclose(net.unrolled_matmul(a, b), a @ b, rtol=1e-14)
    W = zj.make_init("gaussian", key, (3,) * 6, dtype=jnp.float64)
    phi = -jnp.eye(3)
    l1, g1 = zj.loss_and_grad(W, phi)
    l2, g2 = zj.loss_and_grad(W, phi, net.unrolled_matmul)
    assert jnp.allclose(l1, l2, rtol=1e-13) and _rel(g2, g1) < 1e-12


def test_pad_depth_keeps_function_and_gradients(key):
    W = zj.make_init("gaussian", key, (3,) * 5, dtype=jnp.float64)
    mask = jnp.ones_like(W)
    Wp, mp = zj.pad_depth(W, mask, 9)
    phi = jax.random.normal(key, (3, 3), jnp.float64)
    assert Wp.shape == (9, 3, 3) and jnp.all(mp[4:] == 0)
    assert jnp.array_equal(zj.end_to_end(Wp), zj.end_to_end(W))
    (l1, g1), (l2, g2) = zj.loss_and_grad(W, phi), zj.loss_and_grad(Wp, phi)
    assert l1 == l2 and jnp.array_equal(g2[:4], g1)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="depth L >= 1"):
        zj.support_mask((3,))
    with pytest.raises(ValueError, match=">= 1"):
        zj.support_mask((3, 0, 2))
    with pytest.raises(ValueError, match="smaller than the widest"):
        zj.support_mask((3, 4), 2)
    with pytest.raises(ValueError, match="cannot pad a depth-5"):
        zj.pad_depth(jnp.zeros((5, 2, 2)), jnp.zeros((5, 2, 2)), 3)
