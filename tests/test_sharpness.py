"""Sharpness: Lanczos against the dense Hessian, the closed forms, vmap, flags, trajectories."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import make_init, make_target, pad_depth, pad_square, run, support_mask
from zasjax._diagnostics import EdgeOfStability, trajectory
from zasjax._measures import invariants
from zasjax._network import data_loss, whitened_loss
from zasjax._objectives import Regression, Whitened
from zasjax._sharpness import (
    sharpness,
    zas_minimum,
    zas_minimum_eigenvalues,
    zas_minimum_sharpness,
)
from zasjax._status import DIVERGED

F64 = jnp.float64
sharp = jax.jit(sharpness, static_argnames=("k", "max_iters", "rtol"))


def dense_top(loss, W, mask, k):
    """Top-k eigenvalues of the dense Hessian restricted to the entries where mask ≠ 0."""
    n = W.size
    H = jax.jit(jax.hessian(loss))(W).reshape(n, n)  # eagerly: op by op, each compiled
    keep = np.flatnonzero(np.broadcast_to(np.asarray(mask), W.shape).reshape(-1))
    return np.sort(np.linalg.eigvalsh(np.asarray(H)[np.ix_(keep, keep)]))[::-1][:k]


def _case(name, key):
    """(W, mask, objective, loss) for one test network."""
    k1, k2, k3 = jax.random.split(key, 3)
    if name == "random-L3-d2":
        W = 0.7 * jax.random.normal(k1, (3, 2, 2), F64)
        phi = make_target("gaussian", k2, (2, 2), F64)
        mask = jnp.ones_like(W)
    elif name == "near-identity-L6-d4":
        W = make_init("near-identity", k1, (4,) * 7, dtype=F64)
        phi = -jnp.eye(4, dtype=F64)
        mask = jnp.ones_like(W)
    elif name == "zas-saddle-L4-d3":        # indefinite: ZAS is a saddle
        W = make_init("zas", k1, (3,) * 5, dtype=F64)
        phi = make_target("gaussian", k2, (3, 3), F64)
        mask = jnp.ones_like(W)
    elif name == "rectangular-padded-layer":  # widths 2→3→4→2 in D = 4, plus a fixed layer
        widths = (2, 3, 4, 2)
        W, mask = pad_depth(make_init("near-identity", k1, widths, dtype=F64) +
                            0.3 * support_mask(widths, dtype=F64) *
                            jax.random.normal(k3, (3, 4, 4), F64),
                            support_mask(widths, dtype=F64), 4)
        phi = pad_square(make_target("gaussian", k2, (2, 2), F64), 4)
    elif name == "frozen-first-layer":       # broadcastable mask (L, 1, 1)
        W = 0.8 * jax.random.normal(k1, (4, 3, 3), F64)
        phi = make_target("gaussian", k2, (3, 3), F64)
        mask = jnp.array([0.0, 1.0, 1.0, 1.0], F64)[:, None, None]
    elif name == "regression-L3-d3":
        W = 0.8 * jax.random.normal(k1, (3, 3, 3), F64)
        X = jax.random.normal(k2, (3, 7), F64)
        Y = jax.random.normal(k3, (3, 7), F64)
        return W, jnp.ones_like(W), Regression(X, Y), lambda W: data_loss(W, X, Y)
    else:
        raise AssertionError(name)
    return W, mask, Whitened(phi), lambda W: whitened_loss(W, phi)


CASES = ["random-L3-d2", "near-identity-L6-d4", "zas-saddle-L4-d3", "rectangular-padded-layer",
         "frozen-first-layer", "regression-L3-d3"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_matches_dense_hessian(key, name):
    W, mask, objective, loss = _case(name, key)
    k = 3  # ZAS's saddle has a top eigenvalue of multiplicity d = 3: the block finds them all
    res = sharp(W, objective, k=k, mask=mask, rtol=1e-10)
    expect = dense_top(loss, W, mask, k)
    assert bool(res.converged), (res.residuals, res.iterations)
    np.testing.assert_allclose(res.eigenvalues, expect, rtol=1e-8, atol=1e-8 * abs(expect[0]))
    # Ritz vectors are unit eigenvectors that live on the mask.
    V = res.vectors.reshape(k, -1)
    np.testing.assert_allclose(V @ V.T, np.eye(k), atol=1e-8)
    off = np.broadcast_to(np.asarray(mask), W.shape) == 0
    assert np.all(np.asarray(res.vectors)[:, off] == 0)


@pytest.mark.slow
def test_depth_one_is_exactly_one(key):
    phi = make_target("gaussian", key, (3, 3), F64)
    W = jax.random.normal(key, (1, 3, 3), F64)
    res = sharp(W, Whitened(phi), k=2)
    np.testing.assert_allclose(res.eigenvalues, 1.0, rtol=1e-13)
    assert bool(res.converged)
    assert zas_minimum_sharpness(2.7, 1) == 1.0
    np.testing.assert_array_equal(zas_minimum_eigenvalues(jnp.ones(3, F64), 1), 1.0)
    # Regression at depth 1: ∇²R = XXᵀ ⊗ I, so λ_max = λ_max(XXᵀ).
    X = jax.random.normal(key, (3, 5), F64)
    res = sharp(W, Regression(X, X), k=1)
    np.testing.assert_allclose(res.max, np.linalg.eigvalsh(X @ X.T)[-1], rtol=1e-12)


def test_depth_two_golden_ratio():
    # Φ = −1, L = 2 (Wu-Wang-Ma Fig. 1): x = a² = golden ratio, λ_max = a² + b² = 2x − 1 = √5.
    W = zas_minimum(-jnp.ones((1, 1), F64), 2)
    g = (1 + 5**0.5) / 2
    np.testing.assert_allclose(W[:, 0, 0], [g**0.5, -(g - 1) ** 0.5], rtol=1e-13)
    np.testing.assert_allclose(sharp(W, Whitened(-jnp.ones((1, 1), F64))).max, 5**0.5,
                               rtol=1e-12)


@pytest.mark.parametrize("L,target,d", [(2, "neg-identity", 2), (3, "gaussian", 3),
                                         (6, "gaussian", 3)])
@pytest.mark.slow
def test_zas_minimum_closed_form(key, L, target, d):
    phi = make_target(target, key, (d, d), F64)
    W = zas_minimum(phi, L)
    assert whitened_loss(W, phi) < 1e-24
    np.testing.assert_allclose(invariants(W)[-1], -jnp.eye(d), atol=1e-12)  # D_{L−1} = −I
    s = jnp.linalg.svd(phi, compute_uv=False)
    k = 4
    res = sharp(W, Whitened(phi), k=k, rtol=1e-10)
    expect = zas_minimum_eigenvalues(s, L)[:k]
    assert bool(res.converged)
    np.testing.assert_allclose(res.eigenvalues, expect, rtol=1e-9)
    np.testing.assert_allclose(zas_minimum_sharpness(s[0], L), expect[0], rtol=1e-12)
    np.testing.assert_allclose(expect[0], dense_top(lambda W: whitened_loss(W, phi), W, 1, 1)[0],
                               rtol=1e-9)


@pytest.mark.slow
def test_minimum_reached_by_gd_from_zas(key):
    # GD keeps the mode form but shrinks each mode's invariant c = a² − b² below 1 by the
    # factors 1 − η²r²a^{2L−4}; with the measured c the closed form is exact again.
    L, d, lr = 4, 3, 0.02
    phi = make_target("gaussian", key, (d, d), F64)
    W0 = make_init("zas", key, (d,) * (L + 1), dtype=F64)
    res = run(W0, phi, lr=lr, eps=1e-20, max_iters=20_000)
    assert bool(res.converged)
    _, s, Vt = jnp.linalg.svd(phi)
    c = -jnp.diag(Vt @ invariants(res.W)[-1] @ Vt.T)
    assert np.all(c < 1) and np.all(c > 0.9)
    lam = sharp(res.W, Whitened(phi), k=3, rtol=1e-10)
    np.testing.assert_allclose(lam.eigenvalues, zas_minimum_eigenvalues(s, L, c)[:3], rtol=1e-8)
    # ... and within O(η²)-sized drift of the gradient-flow value (c = 1).
    np.testing.assert_allclose(lam.max, zas_minimum_sharpness(s[0], L), rtol=0.05)


@pytest.mark.slow
def test_vmap_over_configurations(key):
    keys = jax.random.split(key, 4)
    Ws = jax.vmap(lambda k: 0.7 * jax.random.normal(k, (3, 3, 3), F64))(keys)
    phis = jax.vmap(lambda k: make_target("gaussian", k, (3, 3), F64))(keys)
    masks = jnp.ones_like(Ws).at[1, 0].set(0.0)  # one configuration with a frozen layer
    batched = jax.jit(jax.vmap(lambda W, p, m: sharpness(W, Whitened(p), k=2, mask=m)))(
        Ws, phis, masks)
    assert batched.eigenvalues.shape == (4, 2) and batched.vectors.shape == (4, 2, 3, 3, 3)
    for i in range(4):
        one = sharp(Ws[i], Whitened(phis[i]), k=2, mask=masks[i])
        np.testing.assert_allclose(batched.eigenvalues[i], one.eigenvalues, rtol=1e-10)
        assert int(batched.iterations[i]) == int(one.iterations)
    assert bool(jnp.all(batched.converged))


@pytest.mark.slow
def test_too_few_iterations_is_flagged(key):
    W, mask, objective, loss = _case("near-identity-L6-d4", key)
    res = sharp(W, objective, k=2, max_iters=3, rtol=1e-10)
    assert not bool(res.converged) and int(res.iterations) == 3
    assert np.all(np.asarray(res.residuals) > 1e-10 * abs(float(res.max)))
    # A Ritz value is a Rayleigh quotient: never above the true λ_max.
    assert float(res.max) <= dense_top(loss, W, mask, 1)[0] * (1 + 1e-12)


def test_bad_input():
    W = jnp.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="k must be"):
        sharpness(W, Whitened(jnp.eye(3)), k=19)
    with pytest.raises(ValueError, match="broadcast"):
        sharpness(W, Whitened(jnp.eye(3)), mask=jnp.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="objective"):
        sharpness(W, object())
    with pytest.raises(ValueError, match="multiple"):
        trajectory(W, jnp.eye(3), 0.1, 10, every=2, sharpness=EdgeOfStability(every=3))


# ---------------------------------------------------------------------------------------------
# Along a run
# ---------------------------------------------------------------------------------------------

traj = jax.jit(trajectory, static_argnames=("n_steps", "every", "widths", "settings",
                                            "sharpness"))


@pytest.mark.slow
def test_trajectory_records_edge_of_stability():
    # L = 4 from ZAS on Φ = −3 (d = 1): the flow's minimum has λ_max = x²(4x − 3) ≈ 21 with
    # x³(x − 1) = 9, above 2/η = 20 at η = 0.1; at η = 0.05 (2/η = 40) it stays below.
    L = 4
    W0 = make_init("zas", None, (1,) * (L + 1), dtype=F64)
    phi = -3.0 * jnp.ones((1, 1), F64)
    lam_star = float(zas_minimum_sharpness(3.0, L))
    assert 20 < lam_star < 22
    opts = EdgeOfStability(every=2)
    run_ = partial(traj, W0, phi, n_steps=300, every=1, sharpness=opts)
    out = jax.vmap(run_)(jnp.array([0.05, 0.1, 0.3], F64))
    assert out["sharpness"].shape == (3, 151) and out["loss"].shape == (3, 301)
    np.testing.assert_array_equal(out["sharpness_step"][0], 2 * np.arange(151))
    np.testing.assert_allclose(out["two_over_lr"], [40.0, 20.0, 2 / 0.3])
    np.testing.assert_allclose(out["sharpness"][:, 0], sharp(W0, Whitened(phi)).max, rtol=1e-10)
    # η = 0.05: progressive sharpening up to the minimum's λ_max, never reaching 2/η.
    assert int(out["eos_first_step"][0]) == -1 and int(out["eos_band_records"][0]) == 0
    assert out["sharpness"][0, 0] < 6 and abs(out["sharpness"][0, -1] - lam_star) < 0.05 * lam_star
    assert out["loss"][0, -1] < 1e-20
    # η = 0.1: the sharpness jumps past 20 within a few steps (a catapult, not slow
    # sharpening) and GD settles into a 2-cycle around 2/η instead of converging.
    first = int(out["eos_first_step"][1])
    assert 0 < first <= 50 and out["sharpness"][1, first // 2] > 20
    assert not out["sharpness"][1, first // 2 - 1] > 20
    assert out["loss"][1, -1] > 1e-3 and int(out["status"][1, -1]) != DIVERGED
    assert not bool(out["sharpness_exceeded_before_divergence"][1])
    # η = 0.3: diverges, after the sharpness had passed 2/η ≈ 6.7.
    assert int(out["status"][2, -1]) == DIVERGED
    assert bool(out["sharpness_exceeded_before_divergence"][2])
    assert np.isnan(out["sharpness"][2, -1])  # no curvature reported for the frozen W
    assert bool(jnp.all(out["sharpness_converged"][:2]))


@pytest.mark.slow
def test_trajectory_band_and_unchanged_without_sharpness(key):
    L, d = 4, 2
    W0 = make_init("zas", key, (d,) * (L + 1), dtype=F64)
    phi = 2.0 * make_target("gaussian", key, (d, d), F64)
    lam_star = float(zas_minimum_sharpness(jnp.linalg.svd(phi, compute_uv=False)[0], L))
    lr = 3.0 / lam_star  # 2/η = 2λ*/3: no minimum of the mode family is stable
    plain = traj(W0, phi, lr, n_steps=200, every=2)
    with_s = traj(W0, phi, lr, n_steps=200, every=2, sharpness=EdgeOfStability(every=4))
    assert "sharpness" not in plain and "eos_first_step" not in plain
    for name, value in plain.items():  # the same run (up to fusion-order rounding)
        np.testing.assert_allclose(with_s[name], value, rtol=1e-12, atol=1e-12)
    edge = 2 / lr
    lam = np.asarray(with_s["sharpness"])
    band = np.abs(lam - edge) <= 0.1 * edge
    assert int(with_s["eos_band_records"]) == band.sum() > 0
    assert int(with_s["eos_first_step"]) == 4 * np.argmax(lam > edge)
