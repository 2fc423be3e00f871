import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import cli
from zasjax._inits import make_init
from zasjax._modes import modes_flow_jit, run_modes
from zasjax._run import run
from zasjax._sharpness import zas_minimum_sharpness
from zasjax._status import CONVERGED
from zasjax.reproduce import fig2, shamir

# The second tier (`pytest -m slow`): studies and notebooks in their quick sizes.
pytestmark = pytest.mark.slow


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


def test_lr_grid_scales_like_one_over_depth_and_stops_at_the_stable_rate():
    # Every depth sees the same multiples 2^{k/n}/(L ν) of its stability scale.
    assert fig2.lr_floor(64, "gaussian", 2) == pytest.approx(fig2.lr_floor(1, "gaussian", 2) / 64)
    deep, deeper = fig2.lrs_for(2**10, "gaussian", 100, 4), fig2.lrs_for(2**20, "gaussian", 100, 4)
    assert len(deep) == len(deeper) == 9 * 4 + 1
    assert [x * 2**10 for x in deeper] == pytest.approx(deep)
    assert min(deeper) == pytest.approx(fig2.lr_floor(2**20, "gaussian", 100))
    narrow = fig2.lrs_for(2**20, "gaussian", 100, 4, lo=-1)
    assert narrow == deeper[-len(narrow):] and len(narrow) == 6 * 4 + 1
    with pytest.raises(ValueError, match="grid_lo"):
        fig2.Config(grid_lo=1).check()
    # Each seed's grid ends below η = 1 (one step) and below 2/λ_max of its own Φ, so a
    # chaotic hit above that bound cannot prune the seed's stable optimum.
    cfg = fig2.Config.quick(depths=(1, 2, 64), seeds=2)
    grids = fig2.grids(cfg)
    assert [(g.targets[0], g.seeds) for g in grids] == [("neg-identity", (0,)),
                                                         ("gaussian", (0, 1))]
    for grid, seed in ((g, s) for g in grids for s in g.seeds):
        s_max = fig2.s_range(grid.targets[0], grid.dims[0], seed)[0]
        for L in grid.depths:
            top = max(grid.lrs_at(L, seed))
            assert top <= cfg.lr_top and top * fig2.lambda_max(s_max, L) < 2
            assert top * fig2.lambda_max(s_max, L) > 2 * 2 ** (-1 / cfg.per_octave) or \
                top * 1.0001 >= cfg.lr_top  # the next grid point up would be unstable


def test_local_exponents_per_step_and_per_octave():
    step, octave = fig2.local_exponents([1, 2, 3, 4, 8], [10, 20, 30, 40, 80 * 2**0.5])
    assert [s["gamma"] for s in step] == pytest.approx([1, 1, 1, 1.5])
    assert [o["depths"] for o in octave] == [[1, 2], [2, 4], [4, 8]]
    assert [o["gamma"] for o in octave] == pytest.approx([1, 1, 1.5])


def test_mode_and_full_engines_agree_on_the_study_grid():
    # The study runs every depth through the mode engine; the full network must give the
    # same status and count for the chosen η and its neighbours (cross_check).
    jax.config.update("jax_enable_x64", True)
    cfg = fig2.Config.quick(depths=(1, 2, 3, 8), seeds=2, per_octave=2, max_iters=5000)
    for grid in fig2.grids(cfg):
        rows = fig2.ENGINES["modes"](grid)
        chosen = fig2.best_per_config(fig2._eligible(rows, cfg.lr_top)[0])
        check = fig2.cross_check(grid, rows, chosen, 8, "full")
        assert check["compared"] >= 2 * len(grid.depths) and check["mismatches"] == []


def _flow_time(s, depth, eps=1e-10, n=4001):
    """First t with R(t) ≤ ε along the mode flow (`modes_flow`), interpolated in log R,
    searched on [0, 3 T∞], T∞ = √(π/2)/(s√L) + log(s/√(2ε))/(1 + L s²) (both regimes)."""
    t_max = 3 * (math.sqrt(math.pi / 2) / (s * math.sqrt(depth))
                 + math.log(s / math.sqrt(2 * eps)) / (1 + depth * s * s))
    ts = jnp.linspace(0.0, t_max, n)
    sol = modes_flow_jit(jnp.array([[s]]), float(depth), ts, rtol=1e-10, atol=1e-14)
    R = np.asarray(sol.losses)
    i = int(np.argmax(R <= eps))
    assert R[i] <= eps and i > 0
    w = (math.log(R[i - 1]) - math.log(eps)) / (math.log(R[i - 1]) - math.log(R[i]))
    return float(ts[i - 1] + w * (ts[i] - ts[i - 1]))


@pytest.mark.parametrize("s", [1.0, 2.0])
def test_flow_time_tends_to_sqrt_pi_over_2_over_s_sqrt_L(s):
    # Along the flow a² − b² = 1; with a = cosh θ, θ̇ = (s − p) cosh^{L−2}θ, p = cosh^{L−1}θ sinh θ.
    # With u = θ√L, cosh^L θ → e^{u²/2} and T = L^{-1/2} ∫ e^{−u²/2} du / (s − p) → √(π/2)/(s√L);
    # the linear tail near the minimum adds log(s/e_ε)/(L s²) and the end region
    # ~ log(L s²)/(2 s²L), so the relative error falls like log(L)/(s√L).
    errors = []
    for depth in (2**12, 2**16, 2**20):
        T = _flow_time(s, depth)
        errors.append(T * s * math.sqrt(depth) / math.sqrt(math.pi / 2) - 1)
    assert errors[0] > errors[1] > errors[2] > 0 and errors[2] < 0.02, errors


def test_linear_regime_time_is_log_one_over_eps():
    # L s² ≪ 1: cosh^{L−2}θ ≈ 1, θ̇ ≈ s − θ, so e decays like e^{−t}: T ≈ log(s/√(2ε)) at
    # every such depth, and GD at η ∝ 1/L needs N = T/η ∝ L iterations (exponent 1).
    s = 0.01
    for depth in (4, 64):
        assert _flow_time(s, depth) == pytest.approx(math.log(s / math.sqrt(2e-10)), rel=0.03)


def test_gd_count_is_flow_time_over_eta_at_large_depth():
    # At η = c/(L s²) the path's curvature is O(1) ≪ 1/η until the last steps, so GD follows
    # the flow, N·η → T (exponent ½ at fixed c). Near the edge (η·λ_max → 2, λ_max ≈
    # L(1 + 1/log L)) the last phase contracts by |1 − ηλ| ≈ 1 a step: a fixed tail that
    # the main phase (∝ √L) outgrows, which is why the tuned c creeps up with L.
    ratio = {}
    for depth in (2**16, 2**20):
        T = _flow_time(1.0, depth)
        for c in (0.5, 1.5, 1.75):
            res = run_modes(jnp.array([[-1.0]]), depth, lr=c / depth, max_iters=5000)
            assert int(res.status) == CONVERGED
            ratio[depth, c] = int(res.iterations) * c / depth / T
        assert 1.75 * float(zas_minimum_sharpness(1.0, depth)) / depth < 2
    assert ratio[2**16, 0.5] == pytest.approx(1, abs=0.01)
    assert ratio[2**20, 0.5] == pytest.approx(1, abs=0.002)
    assert 1 < ratio[2**20, 1.5] < ratio[2**16, 1.5] < 1.1
    assert ratio[2**16, 1.75] > 1.5 and 1 < ratio[2**20, 1.75] < 1.2


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
            assert row["eta_lambda"] < 2
        octave = e["local_gamma_per_octave"]
        assert [o["depths"][0] for o in octave] == [1, 2, 4, 8, 16, 32]
        assert all(_finite(o["gamma"]) for o in octave)
        check = e["cross_check"]
        assert check["engine"] == "full" and max(check["depths"]) == 16
        assert check["compared"] > 0 and check["agree"] == check["compared"]
    assert 0.2 <= s["neg-identity_d1"]["gamma"] <= 0.8
    assert (tmp_path / "fig2.png").stat().st_size > 0 and (tmp_path / "fig2.csv").exists()


@pytest.mark.slow
def test_shamir_quick_end_to_end(tmp_path):
    # Half the quick size's seeds: the claims hold there too (REPRODUCTION quotes 64).
    assert cli.main(["reproduce", "shamir", "--quick", "--seeds", "32", "--out",
                     str(tmp_path)]) == 0
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


def test_fig2_keeps_its_sweeps_and_resumes_them(tmp_path):
    # Each case's main sweep lives in out/sweeps/<case>-<engine>: a rerun of the same
    # command reads its finished rows instead of recomputing them (a killed d = 100 run
    # loses at most a chunk), and other options never reuse those rows.
    def args(cap):
        return ["reproduce", "fig2", "--cases", "gaussian_d2", "--depths", "2,8", "--seeds",
                "2", "--per-octave", "2", "--max-iters", str(cap), "--full-max-depth", "0",
                "--out", str(tmp_path)]

    assert cli.main(args(3000)) == 0
    runs = tmp_path / "sweeps" / "gaussian_d2-modes" / "runs.csv"
    lines = runs.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if ",converged," in line)
    lines[i] = lines[i].replace(",converged,", ",max-iters,")  # a mark only a read-back keeps
    runs.write_text("\n".join(lines) + "\n")
    assert cli.main(args(3000)) == 0
    assert runs.read_text().splitlines() == lines  # nothing rerun, nothing appended
    fig2_csv = (tmp_path / "fig2.csv").read_text()
    assert fig2_csv.count(",max-iters,") == 1
    assert cli.main(args(2500)) == 2  # another cap: refused, the folder left as it was
    assert runs.read_text().splitlines() == lines


def test_flow_estimate_predicts_the_count_once_the_slow_mode_is_nonlinear():
    # Φ = diag(20, 0.1): η is set by the stiff mode (c = η L s_max² = 1.5), the count by the
    # slow one. Once s_min√L ≫ 1 the flow's time over η plus its ε-tail gives the count
    # (REPRODUCTION.md: the d = 100 seeds within 1 % at L = 2^19); before, it overestimates.
    jax.config.update("jax_enable_x64", True)
    ratios = []
    for L in (2**12, 2**16):  # s_min√L = 6.4, 25.6
        lr = 1.5 / (L * 400.0)
        res = run_modes(jnp.diag(jnp.array([20.0, 0.1])), L, lr=lr, max_iters=2_000_000,
                        record_every=100_000)
        assert int(res.status) == CONVERGED
        ratios.append(int(res.iterations) / fig2.flow_estimate(L, lr, 20.0, 0.1))
    assert 0.8 < ratios[0] < 0.95 and abs(ratios[1] - 1) < 0.01
