"""Closed-form properties of every named initialisation and target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax._inits import INITS


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(INITS))
@pytest.mark.parametrize("widths", [(3,) * 5, (2, 4, 3, 2)])
def test_every_init_fills_only_its_support(key, name, widths):
    W = zj.make_init(name, key, widths, dtype=jnp.float64)
    D = max(widths)
    assert W.shape == (len(widths) - 1, D, D) and W.dtype == jnp.float64
    assert jnp.all(W * (1 - zj.support_mask(widths, D, jnp.float64)) == 0)
    assert jnp.all(jnp.isfinite(W))


def test_zas_is_zero_asymmetric(key):
    W = zj.make_init("zas", key, (4,) * 7)
    assert jnp.all(W[-1] == 0)
    assert jnp.all(W[:-1] == jnp.eye(4)[None])
    assert jnp.all(zj.end_to_end(W) == 0)


def test_near_identity_has_the_variance_of_eq_5_1(key):
    d, L = 30, 40
    U = zj.make_init("near-identity", key, (d,) * (L + 1), dtype=jnp.float64) - jnp.eye(d)[None]
    # 36,000 samples: the sample variance is within a few percent of 1/(dL).
    assert abs(float(jnp.var(U)) * d * L - 1) < 0.05
    assert abs(float(jnp.mean(U))) < 3 / np.sqrt(d * d * L * d * L)


def test_xavier_variance(key):
    W = zj.make_init("xavier", key, (40,) * 21, dtype=jnp.float64)
    assert abs(float(jnp.var(W)) * 40 - 1) < 0.05


def test_orthogonal_layers(key):
    W = zj.make_init("orthogonal", key, (5,) * 4, dtype=jnp.float64)
    assert jnp.allclose(jnp.einsum("lji,ljk->lik", W, W), jnp.eye(5)[None], atol=1e-12)


@pytest.mark.parametrize("widths", [(3,) * 6, (4, 5, 6, 4), (3, 4, 4, 1)])
def test_balanced_init_is_balanced_with_gaussian_end_to_end(key, widths):
    W = zj.make_init("balanced", key, widths, dtype=jnp.float64)
    for l in range(W.shape[0] - 1):
        D_l = W[l + 1].T @ W[l + 1] - W[l] @ W[l].T
        assert jnp.allclose(D_l, 0, atol=1e-12)
    # W_{L:1} is the Gaussian matrix A drawn by the procedure; its entries have std 1/sqrt(d0).
    A = zj.end_to_end(W)[: widths[-1], : widths[0]]
    assert jnp.all(jnp.isfinite(A)) and 0 < float(jnp.std(A)) < 3 / np.sqrt(widths[0])


def test_balanced_needs_wide_enough_hidden_layers(key):
    with pytest.raises(ValueError, match="hidden widths"):
        zj.make_init("balanced", key, (4, 2, 4))


def test_unknown_init_and_bad_scale(key):
    with pytest.raises(ValueError, match="unknown init 'zass'; expected one of"):
        zj.make_init("zass", key, (2, 2))
    with pytest.raises(ValueError, match="scale must be > 0"):
        zj.make_init("gaussian", key, (2, 2), scale=-1.0)


@pytest.mark.parametrize("name", sorted(zj.TARGETS))
def test_targets(key, name):
    phi = zj.make_target(name, key, (4, 4), jnp.float64)
    assert phi.shape == (4, 4) and jnp.all(jnp.isfinite(phi))
    if name == "psd":
        assert jnp.allclose(phi, phi.T) and float(jnp.linalg.eigvalsh(phi).min()) > -1e-12
    if name == "orthogonal":
        assert jnp.allclose(phi.T @ phi, jnp.eye(4), atol=1e-12)
    if name in ("identity", "neg-identity"):
        assert jnp.array_equal(phi, jnp.eye(4) * (1 if name == "identity" else -1))


def test_target_files(tmp_path):
    good = tmp_path / "phi.npy"
    np.save(good, np.arange(4.0).reshape(2, 2))
    assert zj.load_target(good, (2, 2)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"has shape \(2, 2\), expected \(3, 3\)"):
        zj.load_target(good, (3, 3))
    with pytest.raises(ValueError, match="does not exist"):
        zj.load_target(tmp_path / "missing.npy")
    bad = tmp_path / "nan.npy"
    np.save(bad, np.array([[np.nan]]))
    with pytest.raises(ValueError, match="non-finite"):
        zj.load_target(bad)
    with pytest.raises(ValueError, match="unknown target"):
        zj.make_target("minus-identity", jax.random.key(0), (2, 2))
