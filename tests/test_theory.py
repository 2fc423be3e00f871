"""Theorem monitors: Wu-Wang-Ma Theorems 4.1 and 4.3, Arora et al. Theorem 1."""

import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import make_target
from zasjax._theory import (
    arora_conditions,
    check_arora_rate,
    check_flow_rate,
    check_gd_rate,
    gd_rate_ratios,
    zas_lr_bound,
    zas_phi,
)

F64 = jnp.float64


def test_lr_bound_closed_form():
    zero = jnp.zeros((2, 2), F64)
    # φ = max{0, 3/√1, 1} = 3: η* = min{1/(4·3⁶), 1/(144·3⁴)} = 1/11664.
    np.testing.assert_allclose(zas_lr_bound(1, zero), 1 / 11664, rtol=1e-14)
    big = 5.0 * jnp.eye(1, dtype=F64)  # φ = 10 at L = 4: min{1/(256·10⁶), 1/(2304·10⁴)}
    np.testing.assert_allclose(zas_phi(4, big), 10.0)
    np.testing.assert_allclose(zas_lr_bound(4, big), 1 / 256e6, rtol=1e-14)


@pytest.mark.parametrize("L,d,target", [(1, 2, "gaussian"), (2, 3, "neg-identity"),
                                        (4, 2, "gaussian")])
def test_theorem_4_3_rate_holds_at_the_bound(key, L, d, target):
    phi = make_target(target, key, (d, d), F64)
    check = check_gd_rate(phi, L, n_steps=1000, key=key)
    assert check.lr == pytest.approx(float(zas_lr_bound(L, phi)))
    assert check.max_ratio <= 1.0 + 1e-12 and check.holds
    assert check.losses[-1] < check.losses[0]
    np.testing.assert_allclose(gd_rate_ratios(jnp.asarray(check.losses), check.lr),
                               check.ratios, rtol=1e-9)


def test_rate_monitor_can_fail():
    # Past the edge of stability GD oscillates: the monitor must say the rate broke.
    check = check_gd_rate(jnp.eye(1, dtype=F64) * 3.0, 1, lr=1.9, n_steps=20)
    assert not check.holds and check.max_ratio > 1


def test_theorem_4_1_depth_one_is_tight(key):
    # L = 1 from W = 0: W(t) = (1 − e^{−t})Φ, so R(t) = e^{−2t}R(0) exactly.
    phi = make_target("gaussian", key, (2, 2), F64)
    check = check_flow_rate(phi, 1, t_max=3.0, n_save=16, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(check.ratios, 1.0, rtol=1e-6)


def test_arora_conditions_on_an_exactly_balanced_init():
    N, c = 3, 1.8
    W0 = jnp.stack([c ** (1 / N) * jnp.eye(2, dtype=F64)] * N)
    phi = 2.0 * jnp.eye(2, dtype=F64)
    cond = arora_conditions(W0, phi)
    np.testing.assert_allclose(cond.margin, 2.0 - 0.2 * np.sqrt(2), rtol=1e-12)
    assert float(cond.delta) < 1e-14 and bool(cond.holds)
    check = check_arora_rate(W0, phi, lr=0.01, n_steps=200)
    assert check.max_ratio <= 1.0 + 1e-12
    with pytest.raises(ValueError, match="conditions do not hold"):
        check_arora_rate(jnp.zeros_like(W0), phi)


@pytest.mark.parametrize("call,match", [
    (lambda: zas_lr_bound(0, jnp.eye(2)), "depth L must be an integer >= 1"),
    (lambda: zas_lr_bound(2, jnp.ones((2, 3))), "must be a square"),
    (lambda: check_gd_rate(jnp.ones((2, 3)), 2), "must be a square"),
    (lambda: check_gd_rate(jnp.eye(2), 2, lr=0.0), "learning rate must be > 0"),
    (lambda: check_gd_rate(jnp.eye(2), 2, lr=-1e-3), "learning rate must be > 0"),
    (lambda: check_flow_rate(jnp.eye(2), 0), "depth L must be"),
    (lambda: check_flow_rate(jnp.eye(2), 2, t_max=-1.0), "t_max > 0"),
])
def test_bad_input_raises_before_tracing(call, match):
    with pytest.raises(ValueError, match=match):
        call()
