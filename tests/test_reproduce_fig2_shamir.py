import json
import math

import jax
import jax.numpy as jnp
import pytest

from zasjax import cli
from zasjax._inits import make_init
from zasjax._run import run
from zasjax.reproduce import fig2, shamir


@pytest.mark.parametrize("depth", [1, 2, 7, 33])
@pytest.mark.parametrize("dim", [1, 3])
def test_zas_eta_one_solves_any_target_in_one_step(key, depth, dim):
    # At ZAS, ∇_{W_L}R = −Φ and every other layer's gradient is 0 (W_L = 0), so η = 1
    # sets W_L = Φ and W_{L:1} = Φ after one update.
    phi = jax.random.normal(key, (dim, dim), jnp.float64)
    W0 = make_init("zas", key, (dim,) * (depth + 1), dtype=jnp.float64)
    res = run(W0, phi, lr=1.0, eps=1e-24, max_iters=3)
    assert int(res.iterations) == 1
    assert jnp.allclose(res.W[-1], phi, atol=1e-14)
    assert jnp.allclose(res.W[:-1], W0[:-1])


def test_lr_grid_floor_scales_like_one_over_depth():
    assert fig2.lrs_for(1, "neg-identity", 1, 2)[-1] == fig2.ONE_STEP_LR
    assert fig2.lr_floor(64, "gaussian", 2) == pytest.approx(fig2.lr_floor(1, "gaussian", 2) / 64)
    assert min(fig2.lrs_for(8, "gaussian", 100, 4)) >= fig2.lr_floor(8, "gaussian", 100) * 0.999


def test_growth_tells_exponential_from_power_law():
    depths = [2, 4, 6, 8, 10, 12, 14, 16]
    exp = shamir.growth(depths, [math.exp(0.5 * L) for L in depths])
    assert exp["log_linear_rate"] == pytest.approx(0.5) and exp["superpolynomial"]
    poly = shamir.growth(depths, [10 * L**0.5 for L in depths])
    assert poly["power_law_gamma"] == pytest.approx(0.5) and not poly["superpolynomial"]


def _finite(x):
    return x is not None and math.isfinite(x)


@pytest.mark.slow
def test_fig2_quick_end_to_end(tmp_path):
    assert cli.main(["reproduce", "fig2", "--quick", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["quick"] and s["lr_grid"]["fitted_top"] < 1
    for case in fig2.QUICK_CASES:
        e = s[case]
        assert _finite(e["gamma"]) and len(e["fit_depths"]) >= 3
        assert not e["best_lr_on_floor"]
        for row in e["table"]:
            assert _finite(row["lr"]) and _finite(row["iterations"]) and row["lr"] <= 0.5
        assert e["investigation"]["one_step_eta1_iterations"] == [1]
    assert 0.2 <= s["neg-identity_d1"]["gamma"] <= 0.8
    assert (tmp_path / "fig2.png").stat().st_size > 0 and (tmp_path / "fig2.csv").exists()


@pytest.mark.slow
def test_shamir_quick_end_to_end(tmp_path):
    assert cli.main(["reproduce", "shamir", "--quick", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    for init in ("near-identity", "xavier"):
        e = s[init]
        assert e["superpolynomial"], e
        assert e["log_linear_rate"] > 0.2
        assert e["local_gamma_upper"] > e["local_gamma_lower"]
    z = s["zas"]
    assert not z["superpolynomial"] and z["power_law_gamma"] < 1
    assert all(row["success_rate"] == 1 for row in z["table"])
    assert all(_finite(row["median_iterations"]) for row in z["table"])
    assert (tmp_path / "shamir.png").stat().st_size > 0
    assert (tmp_path / "shamir_success.png").stat().st_size > 0
