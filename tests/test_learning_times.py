"""Learning times and the mode ODE: first half-crossings on known curves, the ODE's half-time
against its closed forms and a numerical integration, and gradient descent on aligned modes
against the prediction, with an error that shrinks with the step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from zasjax._learning_times import (
    learning_times,
    mode_half_time,
    mode_trajectory,
    plateaus,
)

S = np.array([12.0, 6.0, 4.0, 3.0])  # Gissin et al.'s diag(12, 6, 4, 3)


# ---------------------------------------------------------------------------------------------
# Measured: learning times and plateaus on curves with known crossings
# ---------------------------------------------------------------------------------------------


def _steps(T, centres, finals, width):
    """(T, k): final·(1 + tanh((t − τ)/w))/2, equal to `final` at the last record to rounding
    (τ + 20w < T) and crossing half of it between records ⌊τ⌋ and ⌈τ⌉."""
    t = np.arange(T, dtype=float)[:, None]
    return np.asarray(finals) * (1 + np.tanh((t - np.asarray(centres)) / width)) / 2


CENTRES = [100.3, 250.7, 180.2, 400.5]
FINALS = [5.0, 2.0, -3.0, 0.5]


def test_first_half_crossing_on_known_curves():
    v = _steps(1000, CENTRES, FINALS, 5.0)
    flat = 1e-6 * np.sin(np.arange(1000.0))[:, None] + 2e-4  # stays ~0: 4e-5 of the largest
    v = np.concatenate([v, flat], axis=1)
    times = learning_times(v)
    assert isinstance(times, np.ndarray) and times.dtype == np.float64
    np.testing.assert_array_equal(times, [101.0, 251.0, 181.0, 401.0, np.nan])
    # records every 10 iterations, and NaN padding after the run stopped: the same crossings
    pad = np.full((3, 5), np.nan)
    times = learning_times(np.concatenate([v[::10], pad]), 10 * np.arange(103))
    np.testing.assert_array_equal(times, [110.0, 260.0, 190.0, 410.0, np.nan])
    # a looser zero test counts the flat mode as learned (it starts above half its final)
    assert learning_times(v, rtol=0.0)[-1] == 0.0


def test_the_first_crossing_counts_and_a_large_start_is_at_once():
    t = np.arange(500.0)
    overshoot = 4 * (1 + np.tanh((t - 50.5) / 3)) / 2 - 3 * np.exp(-((t - 200) / 20) ** 2)
    overshoot[-1] = 4.0
    dips_below_half = np.where((t > 100) & (t < 150), 1.0, 4.0)  # starts above, dips, returns
    times = learning_times(np.stack([overshoot, dips_below_half], axis=1))
    np.testing.assert_array_equal(times, [51.0, 0.0])


def test_learning_times_in_jax_match_numpy_and_trace():
    v = _steps(600, CENTRES, FINALS, 5.0)
    expected = learning_times(v, 3 * np.arange(600))
    got = jax.jit(learning_times)(jnp.asarray(v), 3 * jnp.arange(600))
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), expected)
    nan = learning_times(np.full((4, 2), np.nan))
    assert np.all(np.isnan(nan))


def test_plateaus_between_sharp_jumps_are_the_exact_levels():
    T, centres, finals = 2000, [300.5, 900.5, 1500.5], np.array([4.0, -2.0, 1.0])
    v = _steps(T, centres, finals, 2.0)
    losses = 0.5 * np.sum((v - finals) ** 2, axis=1)
    times = learning_times(v)
    np.testing.assert_array_equal(times, [301.0, 901.0, 1501.0])
    shuffled = np.array([times[2], np.nan, times[0], times[1]])  # any order, NaN dropped
    p = plateaus(losses, shuffled)
    np.testing.assert_array_equal(p.start, [0.0, 301.0, 901.0, 1501.0, np.nan])
    np.testing.assert_array_equal(p.end, [301.0, 901.0, 1501.0, 1999.0, np.nan])
    levels = [0.5 * np.sum(finals[i:] ** 2) for i in range(4)]
    np.testing.assert_allclose(p.loss[:4], levels, rtol=0, atol=1e-12)
    assert np.isnan(p.loss[4])
    jp = jax.jit(plateaus)(jnp.asarray(losses), jnp.asarray(shuffled))
    for a, b in zip(jp, p):
        np.testing.assert_array_equal(np.asarray(a), b)
    # two jumps at the same record leave an empty interval between them: NaN level
    tied = plateaus(losses, np.array([301.0, 301.0]))
    assert np.isnan(tied.loss[1]) and np.isfinite(tied.loss[[0, 2]]).all()


@pytest.mark.parametrize("call, message", [
    (lambda: learning_times(np.zeros(5)), "values must be"),
    (lambda: learning_times(np.zeros((5, 2)), np.arange(4)), "iterations must have shape"),
    (lambda: plateaus(np.zeros((5, 1)), np.zeros(2)), "losses must be"),
    (lambda: mode_half_time(1e-3, 1.0, 0.5), "depth must be"),
    (lambda: mode_half_time(0.0, 1.0, 2), "sigma0 must be"),
    (lambda: mode_half_time(1e-3, -1.0, 2), "s must be"),
    (lambda: mode_half_time(1e-3, 1.0, 2, c=0.0), "c must be"),
    (lambda: mode_trajectory(1e-3, 1.0, 2, -1.0), "t must be"),
    (lambda: mode_trajectory(2.0, 1.0, 2, 1.0), "sigma0 < s"),
])
def test_bad_input_is_one_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Predicted: the mode ODE σ̇ = c σ^{2−2/N} (s − σ)
# ---------------------------------------------------------------------------------------------

SIGMA0 = np.array([1e-12, 1e-6, 1e-2, 0.3])


@pytest.mark.parametrize("s", [0.5, 3.0, 12.0])
def test_half_time_closed_forms_at_depths_one_and_two(s):
    s0 = SIGMA0 * s
    np.testing.assert_allclose(mode_half_time(s0, s, 1), np.log(2 * (1 - s0 / s)), rtol=1e-10)
    np.testing.assert_allclose(mode_half_time(s0, s, 2), np.log(s / s0 - 1) / (2 * s),
                               rtol=1e-10)
    # Li et al.'s c = 2N² at N = 2
    np.testing.assert_allclose(mode_half_time(s0, s, 2, c=8.0), np.log(s / s0 - 1) / (8 * s),
                               rtol=1e-10)
    # continuous through N = 2, where the series' first term changes form
    for N in (2 - 1e-9, 2 + 1e-9):
        np.testing.assert_allclose(mode_half_time(s0, s, N), mode_half_time(s0, s, 2),
                                   rtol=1e-7)
    np.testing.assert_array_equal(mode_half_time([0.5 * s, 0.9 * s, 2 * s], s, 3), 0.0)


def _ode_half_time(sigma0, s, N, c, horizon):
    """The ODE integrated in z = ln σ (DOP853) up to `horizon`: the time of the event σ = s/2
    and the dense solution."""
    p = 2 - 2 / N

    def f(t, z):
        return c * np.exp((p - 1) * z) * (s - np.exp(z))

    event = lambda t, z: z[0] - np.log(s / 2)
    sol = solve_ivp(f, (0, horizon), [np.log(sigma0)], method="DOP853", events=event,
                    rtol=1e-13, atol=1e-13, dense_output=True)
    return sol.t_events[0][0], sol.sol


@pytest.mark.parametrize("N", [1.5, 3, 5])
def test_half_time_and_trajectory_against_the_integrated_ode(N):
    for sigma0, s, c in [(1e-6, 3.0, N), (1e-3, 12.0, N), (0.05, 0.5, 2 * N ** 2)]:
        t = mode_half_time(sigma0, s, N, c=c)
        t_ode, path = _ode_half_time(sigma0, s, N, c, horizon=2 * t)
        assert abs(t / t_ode - 1) < 1e-11  # measured ≤ 1e-13
        ts = t * np.array([0.0, 0.3, 0.9, 1.0, 1.1, 1.5])
        sigma = mode_trajectory(sigma0, s, N, ts, c=c)
        np.testing.assert_allclose(sigma, np.exp(path(ts)[0]), rtol=1e-9)  # measured ≤ 1e-10
        np.testing.assert_allclose(mode_trajectory(sigma0, s, N, t, c=c), s / 2, rtol=1e-12)


def test_smaller_start_is_later_and_depth_one_to_ten_is_finite():
    s0 = np.geomspace(1e-12, 0.4, 40)
    for N in (1, 1.5, 2, 3, 5, 10):
        t = mode_half_time(s0, 2.0, N)
        assert np.all(np.isfinite(t)) and np.all(np.diff(t) < 0)


def test_the_ode_in_jax_matches_numpy():
    s0, N = np.array([1e-9, 1e-4, 0.2, -1.0]), np.array([1.5, 3.0, 7.0, 2.0])
    expected = mode_half_time(s0[:3, None], S, N[:3, None])
    got = jax.jit(jax.vmap(mode_half_time, (0, None, 0)))(jnp.asarray(s0), jnp.asarray(S),
                                                          jnp.asarray(N))
    assert isinstance(got, jax.Array)
    np.testing.assert_allclose(np.asarray(got[:3]), expected, rtol=1e-13)
    assert np.all(np.isnan(got[3]))  # σ₀ ≤ 0 inside a trace: NaN, not an error
    sigma = jax.jit(mode_trajectory)(jnp.asarray(s0[:3]), 3.0, jnp.asarray(N[:3]), 0.4)
    np.testing.assert_allclose(np.asarray(sigma), mode_trajectory(s0[:3], 3.0, N[:3], 0.4),
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Gradient descent on a whitened deep linear network with aligned modes
# ---------------------------------------------------------------------------------------------


def _aligned_start(key, depth, sigma0):
    """Layers W_l = σ₀^{1/N} Q_l Q_{l−1}ᵀ with Q_0 = V, Q_N = U and random orthogonal hidden
    bases: balanced (W_{l+1}ᵀW_{l+1} = W_lW_lᵀ) and W_{N:1} = σ₀UVᵀ, aligned with Φ = U S Vᵀ.
    Drawn with numpy (seeded by the key): eager JAX would compile each small op."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    Q = []
    for _ in range(depth + 1):  # V, the hidden bases, U
        q, r = np.linalg.qr(rng.standard_normal((4, 4)))
        Q.append(q * np.sign(np.diag(r)))
    W = np.stack([sigma0 ** (1.0 / depth) * Q[l + 1] @ Q[l].T for l in range(depth)])
    return jnp.asarray(W), jnp.asarray(Q[-1] @ np.diag(S) @ Q[0].T)


def _end_to_end(W):
    P = W[0]
    for l in range(1, W.shape[0]):
        P = W[l] @ P
    return P


def _gd(W, phi, lr, steps):
    """Plain GD on ½‖W_{N:1} − Φ‖²_F, every layer updated; W_{N:1} and R at every record."""
    loss = lambda W: 0.5 * jnp.sum((_end_to_end(W) - phi) ** 2)

    def step(W, _):
        W = W - lr * jax.grad(loss)(W)
        return W, (_end_to_end(W), loss(W))

    _, (P, R) = jax.lax.scan(step, W, None, length=steps)
    return (jnp.concatenate([_end_to_end(W)[None], P]),
            jnp.concatenate([loss(W)[None], R]))


_gd_jit = jax.jit(_gd, static_argnames="steps")


@pytest.mark.parametrize("depth, sigma0", [(2, 1e-6), (3, 1e-3)])
def test_gradient_descent_learns_the_modes_when_the_ode_says(key, depth, sigma0):
    predicted = mode_half_time(sigma0, S, depth)
    lrs = (4e-3, 1e-3)  # below 2/λ_max = 2/(N s₁^{2−2/N}): 0.083 at N = 2, 0.024 at N = 3
    steps = int(1.6 * predicted.max() / lrs[1])  # the larger step runs 4× as long: harmless
    W, phi = _aligned_start(key, depth, sigma0)
    errors = []
    for lr in lrs:
        P, R = _gd_jit(W, phi, lr, steps)
        sv = np.linalg.svd(np.asarray(P), compute_uv=False)  # (T, 4), largest first
        times = learning_times(sv)
        errors.append(times * lr / predicted - 1)
        # the loss waits on the saddles between the jumps, one level per learned mode
        p = plateaus(np.asarray(R), times)
        exact = np.array([0.5 * np.sum(S[i:] ** 2) for i in range(5)])
        assert np.all(p.loss[:4] <= exact[:4]) and np.all(p.loss[:4] >= exact[1:])
        assert abs(p.loss[0] / exact[0] - 1) < 0.01 and p.loss[4] < 1e-4 * exact[0]
    errors = np.array(errors)
    # GD lags the flow by O(η c s^{2−2/N}): measured 0.4-2.5 % at the larger step (the largest
    # for s = 12) and 0.09-0.6 % at the smaller, the ratio 4.2-5.2 (an integer iteration adds
    # up to one step)
    assert np.all(errors > 0) and np.all(errors[0] < 0.04) and np.all(errors[1] < 0.01)
    ratio = errors[0] / errors[1]
    assert np.all((ratio > 2.5) & (ratio < 6)), ratio
