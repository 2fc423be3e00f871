"""Measures of the end-to-end matrix against their definitions and closed forms.

Two compiled programs serve every test (a batch of 5 × 5 matrices; a batch of padded
networks); matrices are built and checked in numpy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj

D, B = 5, 6
PS = np.asarray([0.5, 1.0, 2.0, 3.0])  # Schatten exponents, as data


@jax.jit
def _matrices(X, phi, observed):
    """Every measure of each of `X: (B, D, D)` (targets `phi`, masks `observed` alike)."""

    def one(X, phi, observed):
        return {"sv": zj.singular_values(X), "erank": zj.effective_rank(X),
                "erank_of_sv": zj.effective_rank(zj.singular_values(X)),
                "nuclear": zj.nuclear_norm(X),
                "schatten": jax.vmap(lambda p: zj.schatten_norm(X, p))(jnp.asarray(PS)),
                "reconstruction": zj.reconstruction_error(X, phi),
                "unobserved": zj.unobserved_error(X, phi, observed)}

    return jax.vmap(one)(X, phi, observed)


def measured(X, phi=None, observed=None):
    X = np.asarray(X, np.float64)
    phi = np.ones_like(X) if phi is None else np.asarray(phi, np.float64)
    observed = np.zeros(X.shape, bool) if observed is None else observed
    return jax.tree.map(np.asarray, _matrices(X, phi, observed))


@pytest.fixture
def rng(key):
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def haar(rng, n):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def with_spectrum(rng, s):
    """U diag(s) Vᵀ, U and V Haar-random D × D, `s` padded with zeros to D."""
    return haar(rng, D) @ np.diag(np.pad(s, (0, D - len(s)))) @ haar(rng, D).T


def test_effective_rank_of_r_equal_singular_values_is_r(rng):
    # p_i = 1/r on r values: H = log r, erank = r (Roy & Vetterli, Sec. 2), whatever the scale.
    X = np.stack([with_spectrum(rng, np.full(r, c)) for r, c in
                  zip(range(1, D + 1), (1e-3, 1.0, 7.0, 0.2, 3.0))] + [np.zeros((D, D))])
    out = measured(X)
    np.testing.assert_allclose(out["erank"][:D], np.arange(1, D + 1), rtol=1e-10)
    np.testing.assert_allclose(out["erank_of_sv"][:D], np.arange(1, D + 1), rtol=1e-10)
    assert out["erank"][D] == 0  # the zero matrix: rank 0


def test_effective_rank_is_the_entropy_formula_and_between_1_and_the_rank(rng):
    ranks = [1, 2, 3, 4, 5, 5]
    X = np.stack([rng.standard_normal((D, r)) @ rng.standard_normal((r, D)) for r in ranks])
    out = measured(X)
    for x, r, e in zip(X, ranks, out["erank"]):
        s = np.linalg.svd(x, compute_uv=False)[:r]
        p = s / s.sum()
        np.testing.assert_allclose(e, np.exp(-np.sum(p * np.log(p))), rtol=1e-10)
        assert 1 - 1e-12 <= e <= r + 1e-12
    # Uneven spectra have erank below the rank: (1, ε) is nearly rank 1.
    e = float(zj.effective_rank(jnp.asarray([1.0, 1e-9, 0.0])))
    assert 1 < e < 1 + 1e-7


def test_schatten_norms(rng):
    X = np.stack([rng.standard_normal((D, D)) for _ in range(B)])
    out = measured(X)
    for x, sch, nuc, s in zip(X, out["schatten"], out["nuclear"], out["sv"]):
        np.testing.assert_allclose(s, np.linalg.svd(x, compute_uv=False), rtol=1e-12)
        np.testing.assert_allclose(nuc, np.linalg.norm(x, "nuc"), rtol=1e-12)
        np.testing.assert_allclose(sch[PS == 1], nuc, rtol=1e-12)        # S_1 = nuclear
        np.testing.assert_allclose(sch[PS == 2], np.linalg.norm(x), rtol=1e-12)  # S_2 = F
        np.testing.assert_allclose(sch[PS == 0.5], np.sum(np.sqrt(s)) ** 2, rtol=1e-12)
        assert np.all(np.diff(sch) < 0)  # ‖X‖_{S_p} decreases in p


def test_reconstruction_and_unobserved_errors(rng):
    phi = np.stack([with_spectrum(rng, rng.random(2) + 0.5) for _ in range(B)])
    M = rng.random((B, D, D)) < 0.4
    noise = rng.standard_normal((B, D, D))
    c = np.linspace(-1.0, 2.0, B)
    # X = cΦ: ‖X − Φ‖/‖Φ‖ = |c − 1|, the same off Ω.
    out = measured(c[:, None, None] * phi, phi, M)
    np.testing.assert_allclose(out["reconstruction"], np.abs(c - 1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out["unobserved"], np.abs(c - 1), rtol=1e-12, atol=1e-15)
    # Errors only on observed entries: none off Ω; X = M ⊙ Φ learned nothing off Ω: 1.
    out = measured(phi + M * noise, phi, M)
    np.testing.assert_allclose(out["unobserved"], 0.0, atol=1e-15)
    np.testing.assert_allclose(out["reconstruction"],
                               np.linalg.norm(M * noise, axis=(1, 2)) /
                               np.linalg.norm(phi, axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(measured(M * phi, phi, M)["unobserved"], 1.0, rtol=1e-12)


WIDTHS = (3, 4, 5, 2)  # d_0 = 3, d_L = 2, padded to D = 5


@jax.jit
def _networks(W, phi, observed):
    # A network measured through `widths`: its true layers and d_L × d_0 block only.
    one = lambda W, phi, observed: (
        zj.measures(W, phi, observed, widths=WIDTHS),
        {"sv_padded": zj.singular_values(W), "unobserved_padded":
         zj.unobserved_error(W, phi, observed)})
    return jax.vmap(one)(W, phi, observed)


def test_padded_networks_are_measured_on_their_true_block(rng):
    L = len(WIDTHS) - 1
    W = rng.standard_normal((B, L + 1, D, D))
    for l in range(L):  # true layers on their blocks; the extra layer is a depth-padding one
        W[:, l] *= np.outer(np.arange(D) < WIDTHS[l + 1], np.arange(D) < WIDTHS[l])
    W[:, L] = np.eye(D)
    X = np.stack([w[2] @ w[1] @ w[0] for w in W])
    phi = np.zeros((B, D, D))
    phi[:, :2, :3] = rng.standard_normal((B, 2, 3))
    M = rng.random((B, D, D)) < 0.5
    M[:, 0, 0] = False  # at least one true entry off Ω
    junk = M.copy()
    junk[:, 2:, :] = True  # observed marks in the padding must not count
    (out, padded) = jax.tree.map(np.asarray, _networks(W, phi, junk))
    for b in range(B):
        s = np.linalg.svd(X[b, :2, :3], compute_uv=False)
        np.testing.assert_allclose(out["singular_values"][b], s, rtol=1e-12)  # (2,), not (5,)
        np.testing.assert_allclose(padded["sv_padded"][b], np.pad(s, (0, 3)), atol=1e-12)
        p = s / s.sum()
        np.testing.assert_allclose(out["effective_rank"][b], np.exp(-np.sum(p * np.log(p))),
                                   rtol=1e-10)
        np.testing.assert_allclose(out["nuclear_norm"][b], s.sum(), rtol=1e-12)
        E, off = X[b] - phi[b], ~M[b, :2, :3]
        np.testing.assert_allclose(out["reconstruction_error"][b],
                                   np.linalg.norm(E) / np.linalg.norm(phi[b]), rtol=1e-12)
        np.testing.assert_allclose(out["unobserved_error"][b],
                                   np.linalg.norm(E[:2, :3][off]) /
                                   np.linalg.norm(phi[b, :2, :3][off]), rtol=1e-12)
        # The padding is zero in X and Φ, so the whole matrix gives the same error.
        np.testing.assert_allclose(padded["unobserved_padded"][b], out["unobserved_error"][b],
                                   rtol=1e-12)


def test_bad_input_raises_before_tracing():
    with pytest.raises(ValueError, match="matrix"):
        zj.singular_values(jnp.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="layers"):
        zj.singular_values(jnp.zeros((2, 3, 3)), widths=(3, 3, 3, 3))
