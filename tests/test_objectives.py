"""Completion and sensing: analytic gradients, GD iterates, closed forms, and their draws.

Compiling is what costs here, so programs are module-level and shared: every depth and
product setting runs through one program per objective, the runs share theirs, and the data
and checks on the host are numpy (an eager JAX op compiles too).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax._inits import uniform_init
from zasjax._network import end_to_end_loss_and_grad_unrolled, unrolled_matmul

F64 = jnp.float64
CAP = 6  # every depth 1..CAP
#: Square nets and rectangular ones padded to the same D = 5, so both share one program
#: (widths d_0..d_CAP; depth L uses the first L + 1 of them).
D = 5
LAYOUTS = {"square": (D,) * (CAP + 1), "rectangular": (3, 4, 2, 5, 3, 4, 2)}


# ---------------------------------------------------------------------------------------------
# The plain formulas, differentiated by jax.grad; data and host-side helpers
# ---------------------------------------------------------------------------------------------


def completion_loss(W, p):
    M = p.observed.astype(W.dtype)
    return 0.5 * jnp.sum((M * (zj.end_to_end(W) - p.phi)) ** 2)


def sensing_loss(W, p):
    X = zj.end_to_end(W)
    r = jnp.sum(p.A * X[None], axis=(1, 2)) - p.y
    return 0.5 * jnp.sum(r**2)


FORMULA = {zj.Completion: completion_loss, zj.Sensing: sensing_loss}


def plain(W, p):
    return jax.value_and_grad(FORMULA[type(p)])(W, p)


reference = jax.jit(plain)


def with_active(p, L):
    if isinstance(p, zj.Completion):
        return zj.Completion(p.phi, p.observed, L)
    return zj.Sensing(p.A, p.y, p.phi, L)


def problem(kind, rng, rows, cols, dtype=np.float64):
    """Arbitrary data of one objective on a rows × cols block, zero-padded to D × D."""
    pad = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, D - rows), (0, D - cols)])
    phi = pad(rng.standard_normal((rows, cols))).astype(dtype)
    if kind == "completion":
        return zj.Completion(phi, pad(rng.random((rows, cols)) < 0.5))
    A = pad(rng.standard_normal((4, rows, cols)) / np.sqrt(rows * cols)).astype(dtype)
    return zj.Sensing(A, rng.standard_normal(4).astype(dtype))


def stacked(modules):
    return jax.tree.map(lambda *a: np.stack(a), *modules)


def network(rng, widths, depth):
    """Random layers of widths d_0..d_depth (entries N(0, 1/d_{l-1}) on each true block), then
    identities up to CAP layers (`pad_depth`: the same W_{L:1})."""
    W = np.tile(np.eye(D), (CAP, 1, 1))
    for l in range(depth):
        W[l] = 0
        W[l, : widths[l + 1], : widths[l]] = rng.standard_normal((widths[l + 1], widths[l]))
        W[l] /= np.sqrt(widths[l])
    return W


def support(widths):
    """`zj.support_mask(widths, D)` in numpy."""
    idx = np.arange(D)
    return np.stack([np.outer(idx < r, idx < c) for r, c in zip(widths[1:], widths[:-1])]
                    ).astype(np.float64)


def product(W):
    X = np.eye(D)
    for Wl in np.asarray(W):
        X = Wl @ X
    return X


@pytest.fixture
def rng(key):
    # Data for identities that hold for any data: numpy's, so no draw is compiled.
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


@pytest.fixture
def fast_key(key):
    # The draws under test take any key; rbg keys compile theirs several times faster on
    # XLA:CPU than threefry's (seconds per call site on a loaded machine).
    return jax.random.key(int(np.asarray(jax.random.key_data(key))[-1]), impl="rbg")


def host(tree):
    return jax.tree.map(np.asarray, tree)


# ---------------------------------------------------------------------------------------------
# Analytic gradients equal jax.grad
# ---------------------------------------------------------------------------------------------


SETTINGS = {"dot": (jnp.matmul, "sequential"), "associative": (jnp.matmul, "associative"),
            "unrolled": (unrolled_matmul, "sequential")}


@partial(jax.jit, static_argnames="settings")
def _every_depth(Ws, problems, depths, settings):
    """For each depth L: the plain formula's value and gradient, the analytic ones with depth
    L as data (`active`: the loops stop at L), and the analytic ones over all CAP layers by
    each of `settings` (names in `SETTINGS`: `_network.MATMULS` × `PREFIXES`) and batch-last
    (`end_to_end_loss_and_grad_unrolled` on every depth at once)."""

    def one(W, p, L):
        full = {name: p.value_and_grad(W, None, *SETTINGS[name]) for name in settings}
        return plain(W, p), with_active(p, L).value_and_grad(W, None, jnp.matmul), full

    # The sweep's batch-last layout: the whole batch on trailing axes through the head.
    last = lambda a: jnp.moveaxis(a, 0, -1)
    loss, grad = end_to_end_loss_and_grad_unrolled(last(Ws), jax.tree.map(last, problems).head)
    return (*jax.vmap(one)(Ws, problems, depths), (loss, jnp.moveaxis(grad, -1, 0)))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_gradient_equals_autodiff_at_every_depth_and_setting(rng, kind, layout):
    # Depth L's network is padded with identities to CAP layers (the same W_{L:1}), so the
    # plain formula's gradient on its first L layers is the depth-L gradient.
    widths = LAYOUTS[layout]
    depths = np.arange(1, CAP + 1, dtype=np.int32)
    Ws = np.stack([network(rng, widths, L) for L in depths])
    probs = stacked([problem(kind, rng, widths[L], widths[0]) for L in depths])
    # The product settings only change the chain rule every objective shares
    # (`end_to_end_loss_and_grad`), which hands the head the same W_{L:1} whatever they are:
    # all of them on completion; sensing's head on the default one (and `active`).
    settings = tuple(SETTINGS) if kind == "completion" else ("dot",)
    (ref_loss, ref_grad), (loss, grad), full, last = host(
        _every_depth(Ws, probs, depths, settings))
    full["batch-last"] = last
    assert np.all(ref_loss > 0)
    for i, L in enumerate(depths):
        tol = dict(rtol=1e-10, atol=1e-10 * np.abs(ref_grad[i]).max())
        np.testing.assert_allclose(loss[i], ref_loss[i], rtol=1e-10)
        np.testing.assert_allclose(grad[i, :L], ref_grad[i, :L], **tol)
        np.testing.assert_array_equal(grad[i, L:], 0.0)  # the identities above L never train
        for name, (full_loss, full_grad) in full.items():
            np.testing.assert_allclose(full_loss[i], ref_loss[i], rtol=1e-10, err_msg=name)
            np.testing.assert_allclose(full_grad[i], ref_grad[i], **tol, err_msg=name)
        # Rectangular: the padding has zero gradient, so masked GD never moves it.
        np.testing.assert_array_equal(grad[i, :L] * (1 - support(widths[: L + 1])), 0.0)


@jax.jit
def _float32(W, completion, sensing):
    return [p.value_and_grad(W, None, jnp.matmul) for p in (completion, sensing)]


def test_gradient_in_float32(rng):
    widths = LAYOUTS["rectangular"]
    W64 = network(rng, widths, 4)
    p64 = [problem(kind, rng, widths[4], widths[0]) for kind in ("completion", "sensing")]
    cast = lambda p: jax.tree.map(lambda a: a.astype(np.float32) if a.dtype == F64 else a, p)
    out = host(_float32(W64.astype(np.float32), *map(cast, p64)))
    for p, (loss, grad) in zip(p64, out):
        ref_loss, ref_grad = host(reference(W64, p))
        assert loss.dtype == grad.dtype == np.float32
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())


# ---------------------------------------------------------------------------------------------
# zj.run takes the objective: its iterates are plain gradient descent
# ---------------------------------------------------------------------------------------------

RUN_WIDTHS = (4, 5, 5, 3)  # depth 3, d_0 = 4, d_L = 3, padded to D = 5
RUN_STEPS, RUN_LR = 5, 0.05


def _run_setup(kind, rng):
    W0 = network(rng, RUN_WIDTHS, 3)[:3]
    return W0, problem(kind, rng, RUN_WIDTHS[-1], RUN_WIDTHS[0]), support(RUN_WIDTHS)


def _run(W0, p, mask, **kw):
    return zj.run(W0, p, lr=RUN_LR, mask=mask, eps=1e-300, max_iters=RUN_STEPS, **kw)


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_run_iterates_are_plain_gradient_descent(rng, kind):
    W0, p, mask = _run_setup(kind, rng)
    res = host(_run(jnp.asarray(W0), p, mask))
    W, losses = W0, []
    for _ in range(RUN_STEPS):
        loss, grad = host(reference(W, p))
        losses.append(loss)
        W = W - RUN_LR * grad * mask
    assert res.steps == RUN_STEPS
    np.testing.assert_allclose(res.W, W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.losses[:RUN_STEPS], losses, rtol=1e-12)


def test_run_with_momentum_is_heavy_ball(rng):
    # optax's sgd with momentum μ: v ← g + μ v, W ← W − η v (masked gradient, masked step).
    (W0, p, mask), mu = _run_setup("completion", rng), 0.9
    res = host(_run(jnp.asarray(W0), p, mask, optimizer="momentum", momentum=mu))
    W, v = W0, np.zeros_like(W0)
    for _ in range(RUN_STEPS):
        v = np.asarray(reference(W, p)[1]) * mask + mu * v
        W = W - RUN_LR * v * mask
    np.testing.assert_allclose(res.W, W, rtol=1e-12, atol=1e-14)


def test_trajectory_on_completion_records_the_measures_of_the_run(rng):
    W0, p, mask = _run_setup("completion", rng)
    W0 = jnp.asarray(W0)
    out = host(jax.jit(zj.trajectory, static_argnames=("n_steps", "every", "widths"))(
        W0, p, RUN_LR, n_steps=RUN_STEPS, every=RUN_STEPS, mask=mask, widths=RUN_WIDTHS))
    res = host(_run(W0, p, mask))
    np.testing.assert_allclose(out["loss"], res.losses[::RUN_STEPS], rtol=1e-12)
    phi, off = p.phi, ~p.observed
    for t, W in ((0, W0), (1, res.W)):
        X = product(W)
        err = np.linalg.norm((X - phi)[off]) / np.linalg.norm(phi[off])
        np.testing.assert_allclose(out["unobserved_error"][t], err, rtol=1e-10)
        np.testing.assert_allclose(out["reconstruction_error"][t],
                                   np.linalg.norm(X - phi) / np.linalg.norm(phi), rtol=1e-10)
        s = np.linalg.svd(X[:3, :4], compute_uv=False)
        np.testing.assert_allclose(out["end_to_end_sv"][t], s, rtol=1e-10)
        np.testing.assert_allclose(out["nuclear_norm"][t], s.sum(), rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# Depth 1: closed forms
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("lr", "steps"))
def _drawn_batch_at_depth_one(key, counts, ranks, W0, mask, lr, steps):
    keys = jax.random.split(key, counts.shape[0])
    probs = jax.vmap(lambda k, n, r: zj.completion_problem(k, (3, 4), r, n, size=D))(
        keys, counts, ranks)
    run = lambda p: zj.run(W0, p, lr=lr, mask=mask, eps=1e-300, max_iters=steps)
    return probs, jax.vmap(run)(probs)


def test_depth_one_completion_in_a_vmapped_batch_of_drawn_problems(fast_key, rng):
    # A batch of completion problems drawn from (key, N, r) as data, run as one program.
    # L = 1: W_{t+1} = W_t − η M ⊙ (W_t − Φ): observed entries contract to Φ by (1 − η) per
    # step, so R_t = (1 − η)^{2t} R_0, and unobserved entries never move.
    lr, counts = 0.3, np.asarray([3, 6, 12])
    mask = support((4, 3))
    W0 = rng.standard_normal((1, D, D)) * mask
    probs, res = host(_drawn_batch_at_depth_one(fast_key, counts, np.asarray([1, 2, 3]), W0,
                                                mask, lr=lr, steps=120))
    for i in range(3):
        seen, phi, W = probs.observed[i], probs.phi[i], res.W[i, 0]
        assert seen.sum() == counts[i]
        np.testing.assert_array_equal(W[~seen], W0[0][~seen])
        np.testing.assert_allclose(W[seen], phi[seen], atol=1e-12)
        R0 = 0.5 * np.sum((W0[0] - phi)[seen] ** 2)
        np.testing.assert_allclose(res.losses[i, :30], (1 - lr) ** (2 * np.arange(30)) * R0,
                                   rtol=1e-9)  # R_30 ≈ 1e-9 R_0, far above rounding


def test_depth_one_sensing_from_zero_finds_the_minimum_norm_solution(rng):
    # L = 1 from W = 0: every step adds a combination of the A_k, so GD ends at the solution of
    # ⟨A_k, X⟩ = y_k in span{A_k}: the least-Frobenius-norm one, A⁺y.
    d, m = 4, 4
    A, y = rng.standard_normal((m, d, d)) / d, rng.standard_normal(m)
    res = host(zj.run(np.zeros((1, d, d)), zj.Sensing(A, y), lr=0.5, eps=1e-28,
                      max_iters=3000))
    assert res.status == zj.CONVERGED
    X = np.linalg.lstsq(A.reshape(m, d * d), y, rcond=None)[0].reshape(d, d)
    np.testing.assert_allclose(res.W[0], X, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Draws: observed sets, targets, measurement matrices, small inits
# ---------------------------------------------------------------------------------------------


@jax.jit
def _observed(key, counts):
    keys = jax.random.split(key, counts.shape[0])
    return jax.vmap(lambda k, n: zj.observed_entries(k, (3, 4), n, size=5))(keys, counts)


def test_observed_entries_exactly_n_in_the_block_uniformly(fast_key):
    counts = np.tile(np.arange(0, 13, 4), 1000)  # N = 0, 4, 8, 12 of the 12 entries
    M = np.asarray(_observed(fast_key, counts))
    assert M.dtype == bool and M.shape == (4000, 5, 5)
    np.testing.assert_array_equal(M.sum(axis=(1, 2)), counts)
    assert not M[:, 3:].any() and not M[:, :, 4:].any()  # padding never observed
    # Uniform: each entry is observed with probability N/12 (1000 draws each: 4 sigma).
    for n in (4, 8):
        freq = M[counts == n].mean(axis=0)[:3, :4]
        q = n / 12
        assert np.all(np.abs(freq - q) < 4 * np.sqrt(q * (1 - q) / 1000))
    np.testing.assert_array_equal(M, np.asarray(_observed(fast_key, counts)))  # same keys
    assert len({m.tobytes() for m in M[counts == 4]}) > 400  # of the 495 sets of 4


@jax.jit
def _targets(key, ranks):
    # Keys 0-3 are one key (ranks 1..4 of it), keys 4-7 four others.
    keys = jnp.concatenate([jnp.stack([key] * 4), jax.random.split(key, 4)])
    return jax.vmap(lambda k, r: zj.low_rank_target(k, (4, 6), r, size=6))(keys, ranks)


def test_low_rank_target_has_rank_r_and_the_peers_norm(fast_key):
    ranks = np.asarray([1, 2, 3, 4, 1, 2, 3, 4])
    phi = np.asarray(_targets(fast_key, ranks))
    assert not phi[:, 4:].any()
    for r, P in zip(ranks, phi):
        s = np.linalg.svd(P, compute_uv=False)
        assert s[r - 1] > 1e-6 * s[0] and np.all(s[r:] < 1e-12 * s[0])
        np.testing.assert_allclose(np.linalg.norm(P), np.sqrt(24), rtol=1e-12)  # RMS entry 1
    np.testing.assert_array_equal(phi, np.asarray(_targets(fast_key, ranks)))  # same key
    assert not np.allclose(phi[0], phi[4])  # another key, another Φ
    with pytest.raises(ValueError, match="rank must be in"):
        zj.low_rank_target(fast_key, (4, 6), 5)


@jax.jit
def _sensing(key):
    A = zj.sensing_matrices(key, 200, (4, 5), n=150, size=6)
    return A, zj.sensing_problem(key, (4, 4), 2, 8), zj.completion_problem(key, (4, 4), 2, 8)


def test_sensing_draws(fast_key):
    A, p, q = host(_sensing(fast_key))
    assert A.shape == (200, 6, 6) and not A[:, 4:].any() and not A[:, :, 5:].any()
    assert not A[150:].any() and np.all(np.abs(A[:150, :4, :5]) > 0)
    # Default entries N(0, 1/(d_L d_0)): 3,000 samples, the variance within 10%.
    assert abs(A[:150, :4, :5].var() * 20 - 1) < 0.1
    np.testing.assert_allclose(p.y, np.einsum("kij,ij->k", p.A, p.phi), rtol=1e-12)
    np.testing.assert_array_equal(p.phi, q.phi)  # one key, one target for both problems


@partial(jax.jit, static_argnames=("name", "static"))
def _small(key, scales, name, static):
    norm = lambda W: jnp.linalg.norm(zj.end_to_end(W))
    # Depth and scale as data: depth L in a stack of 4 layers (identities above L); the
    # sweep's host-side coefficient `depth_coef` is 1/L for these inits.
    stacks = jax.vmap(jax.vmap(
        lambda L, s: uniform_init(name, key, 4, L, 4, 1.0 / L.astype(F64), s, F64),
        (None, 0)), (0, None))(jnp.arange(1, 5), scales)
    out = {"norms": jax.vmap(jax.vmap(norm))(stacks), "depth3": stacks[2, 1]}
    if static:  # the static draws: depth 3, and rectangular widths
        out["static"] = zj.make_init(name, key, (4,) * 4, scale=0.1, dtype=F64)
        out["rect"] = jax.vmap(
            lambda s: norm(zj.make_init(name, key, (3, 5, 2), scale=s, dtype=F64)))(scales)
    return out


@pytest.mark.parametrize("name", ["small-gaussian", "small-orthogonal"])
def test_small_inits_have_the_end_to_end_norm_given_as_data(fast_key, name):
    # Both share the normalisation (`_inits._to_norm`); the static draws are compared on one.
    scales = np.asarray([1e-3, 0.1, 2.0])
    out = host(_small(fast_key, scales, name, name == "small-gaussian"))
    for n in out["norms"]:  # every depth 1..4
        np.testing.assert_allclose(n, scales, rtol=1e-12)
    np.testing.assert_array_equal(out["depth3"][3], np.eye(4))
    if "static" in out:
        np.testing.assert_allclose(out["rect"], scales, rtol=1e-12)
        # Depth as data gives the static draw, padded with identities.
        np.testing.assert_allclose(out["depth3"][:3], out["static"], rtol=1e-12)
