"""Diagnostics: closed forms at t = 0, padding, the plateau detector, trajectories."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import end_to_end, make_init, make_target, pad_square, run
from zasjax._diagnostics import (
    diagnostics,
    end_to_end_singular_values,
    plateau as _plateau,
    saddle_loss,
    sigma_min_lower,
    trajectory,
    zas_lambda_min,
)
from zasjax._measures import balancedness, deficiency_margin, invariant_drift, invariants

F64 = jnp.float64


@pytest.mark.slow
@pytest.mark.parametrize("L,d", [(1, 3), (2, 1), (4, 3)])
def test_zas_invariants_at_init(key, L, d):
    W = make_init("zas", key, (d,) * (L + 1), dtype=F64)
    D = invariants(W)
    assert D.shape == (L - 1, d, d)
    if L >= 2:
        np.testing.assert_array_equal(D[:-1], 0.0)       # D_l = 0 for l < L−1
        np.testing.assert_array_equal(D[-1], -jnp.eye(d))  # D_{L−1} = −I
    phi = make_target("gaussian", key, (d, d), F64)
    diag = jax.jit(diagnostics)(W, phi, W)
    assert diag["zas_gap"] == 0.0 and diag["invariant_drift"] == 0.0
    assert diag["sigma_min_lower"] == 1.0 and diag["zas_lambda_min"] == 1.0
    np.testing.assert_array_equal(diag["end_to_end_sv"], 0.0)  # W_{L:1} = 0: the saddle
    np.testing.assert_allclose(diag["loss"], saddle_loss(phi), rtol=1e-12)
    # At ZAS only W_L has a gradient, and ∇_L R = −Φ: ‖∇_L R‖² / R = 2 (eq. 4.8 with equality).
    np.testing.assert_allclose(diag["grad_ratio_last"], 2.0, rtol=1e-12)
    np.testing.assert_allclose(diag["grad_norms"][-1], jnp.linalg.norm(phi), rtol=1e-12)
    np.testing.assert_array_equal(diag["grad_norms"][:-1], 0.0)


def test_invariants_match_definition(key):
    W = jax.random.normal(key, (4, 3, 3), F64)
    expect = [W[l + 1].T @ W[l + 1] - W[l] @ W[l].T for l in range(3)]
    np.testing.assert_allclose(invariants(W), jnp.stack(expect), atol=1e-12)
    assert invariant_drift(W, W) == 0.0
    np.testing.assert_allclose(balancedness(W), max(jnp.linalg.norm(e) for e in expect))


@pytest.mark.slow
@pytest.mark.parametrize("widths", [(3, 3, 3, 3), (3, 5, 4, 3)])
def test_balanced_init_is_balanced(key, widths):
    W = make_init("balanced", key, widths, dtype=F64)
    assert balancedness(W, widths) < 1e-12
    assert balancedness(W) < 1e-12  # zero padding adds nothing to the invariants


def test_deficiency_margin_closed_forms(key):
    phi = make_target("gaussian", key, (3, 3), F64)
    s = jnp.linalg.svd(phi, compute_uv=False)
    W0 = jnp.zeros((4, 3, 3), F64)
    np.testing.assert_allclose(deficiency_margin(W0, phi), s[-1] - jnp.linalg.norm(phi),
                               rtol=1e-12)
    # W_{L:1} = Φ exactly (depth 1): the margin is σ_min(Φ).
    np.testing.assert_allclose(deficiency_margin(phi[None], phi), s[-1], rtol=1e-12)


def test_padding_does_not_fake_small_singular_values(key):
    widths = (2, 3, 3, 2)
    W = make_init("near-identity", key, widths, dtype=F64)      # D = 3, blocks 3×2, 3×3, 2×3
    blocks = [W[0][:3, :2], W[1], W[2][:2, :3]]
    lower = blocks[1] @ blocks[0]                                   # 3 × 2
    np.testing.assert_allclose(sigma_min_lower(W, widths),
                               jnp.linalg.svd(lower, compute_uv=False)[-1], rtol=1e-12)
    assert sigma_min_lower(W) < 1e-12  # the padded 3×3 product is singular, as documented
    sv = end_to_end_singular_values(W, widths)
    assert sv.shape == (2,)
    np.testing.assert_allclose(sv, jnp.linalg.svd(blocks[2] @ lower, compute_uv=False))
    # A padding layer of depth (identity, mask 0) changes nothing.
    Wpad = jnp.concatenate([W, jnp.eye(3, dtype=F64)[None]])
    np.testing.assert_allclose(sigma_min_lower(Wpad, widths), sigma_min_lower(W, widths))
    np.testing.assert_allclose(zas_lambda_min(Wpad, widths), zas_lambda_min(W, widths))


def test_plateau_detector():
    plateau = jax.jit(_plateau, static_argnames=("rtol", "record_every"))
    saddle = 2.0
    losses = jnp.concatenate([jnp.full(5, 3.0), jnp.full(40, 2.0) + 1e-3 * jnp.arange(40.0) / 40,
                              2.0 * 0.5 ** jnp.arange(1.0, 21.0), jnp.full(5, jnp.nan)])
    p = plateau(losses, saddle, rtol=0.01)
    assert (int(p.length), int(p.start), int(p.escape)) == (40, 5, 45)
    p = plateau(losses, saddle, rtol=0.01, record_every=10)
    assert (int(p.length), int(p.start), int(p.escape)) == (400, 50, 450)
    grads = jnp.where(jnp.arange(losses.shape[0]) < 25, 1e-3, 1.0)
    p = plateau(losses, saddle, grad_norms=grads, rtol=0.01)
    assert (int(p.length), int(p.start), int(p.escape)) == (20, 5, 25)
    never = _plateau(jnp.ones(10), saddle)
    assert (int(never.length), int(never.start), int(never.escape)) == (0, -1, -1)
    np.testing.assert_allclose(saddle_loss(jnp.eye(2)), 1.0)


def test_trajectory_matches_runner_and_vmaps(key):
    L, d = 4, 3
    W0 = make_init("zas", key, (d,) * (L + 1), dtype=F64)
    phi = make_target("gaussian", key, (d, d), F64)
    traj = jax.jit(partial(trajectory, n_steps=60, every=10))
    lrs = jnp.array([0.02, 0.01], F64)
    out = jax.vmap(lambda lr: traj(W0, phi, lr))(lrs)
    assert out["loss"].shape == (2, 7) and out["grad_norms"].shape == (2, 7, L)
    np.testing.assert_array_equal(out["step"][0], np.arange(0, 61, 10))
    res = run(W0, phi, lr=0.02, eps=1e-300, max_iters=60)
    np.testing.assert_allclose(out["loss"][0], res.losses[::10], rtol=1e-12)
    # GD drifts the invariants, O(η) over a fixed number of steps times η... smaller η, less.
    assert 0 < out["invariant_drift"][1, -1] < out["invariant_drift"][0, -1]
    d0 = diagnostics(W0, phi, W0)
    assert d0["invariant_drift"] == 0 and d0["zas_gap"] == 0


def test_trajectory_on_padded_widths(key):
    widths = (2, 3, 2)
    W0 = make_init("near-identity", key, widths, dtype=F64)
    mask = jnp.asarray(W0 != 0, F64)  # near-identity fills every entry of each true block
    phi = pad_square(make_target("gaussian", key, (2, 2), F64), 3)
    traj = jax.jit(trajectory, static_argnames=("n_steps", "every", "widths"))
    out = traj(W0, phi, 0.05, n_steps=20, every=5, mask=mask, widths=widths)
    assert out["end_to_end_sv"].shape == (5, 2)
    assert np.all(np.asarray(out["sigma_min_lower"]) > 0.1)
    np.testing.assert_allclose(out["loss"][0], 0.5 * jnp.sum((end_to_end(W0) - phi) ** 2))
