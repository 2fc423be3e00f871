"""Deep matrix factorization (Arora, Cohen, Hu & Luo) and the 2 × 2 completion of Razin &
Cohen: the mathematics each study rests on, then each `--quick` run end to end (one run per
study, shared by a module-scoped fixture)."""

import csv
import importlib.util
import json
import math
import sys
from collections import defaultdict

import numpy as np
import pytest

from zasjax import cli
from zasjax._baselines import MISSING_CVXPY
from zasjax.reproduce import _runner, dmf, razin

# The second tier (`pytest -m slow`): studies and notebooks in their quick sizes.
pytestmark = pytest.mark.slow

HAVE_CVXPY = importlib.util.find_spec("cvxpy") is not None

# ---------------------------------------------------------------------------------------------
# Arora et al.: the command line
# ---------------------------------------------------------------------------------------------


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="observations must be in"):
        dmf.Config.quick(observations=(0, 10))
    with pytest.raises(ValueError, match="distinct"):
        dmf.Config.quick(observations=(10, 10))
    with pytest.raises(ValueError, match="unknown problems"):
        dmf.Config.quick(problems=("regression",))


def test_without_cvxpy_the_study_stops_on_one_line_before_anything(tmp_path, monkeypatch,
                                                                    capsys):
    # The baseline is on by default: without cvxpy the command refuses at once (exit 2, one
    # line) rather than after the gradient descent; --no-baseline runs without it.
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    out = tmp_path / "dmf"
    assert cli.main(["reproduce", "dmf", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and MISSING_CVXPY in err, err
    assert not out.exists()
    cfg, _ = _runner.parse("dmf", ["--quick", "--no-baseline", "--out", str(out)])
    assert cfg.baseline is False


@pytest.mark.skipif(not HAVE_CVXPY, reason="cvxpy is not installed")
def test_an_unknown_solver_is_refused_before_anything(tmp_path, capsys):
    out = tmp_path / "dmf"
    assert cli.main(["reproduce", "dmf", "--quick", "--solver", "NOPE", "--out",
                     str(out)]) == 2
    assert "solver 'NOPE' is not installed" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Razin & Cohen: the branch bound, the unobserved entry, the balanced layers
# ---------------------------------------------------------------------------------------------


def test_det_positive_matrices_fitting_the_observations_are_above_the_bound():
    # X = [[x, 1 + a], [1 + b, c]] with det X > 0 and R = ½(a² + b² + c²) < ½ has
    # |x| ≥ (1 − √(2R))²/√(2R); the bound is tight (a = b = 0, x = 1/c).
    rng = np.random.default_rng(0)
    abc = rng.normal(size=(20000, 3)) * 10.0 ** rng.uniform(-4, -0.5, size=(20000, 1))
    a, b, c = abc.T
    x = rng.uniform(-1e4, 1e4, size=20000)
    R = 0.5 * (abc**2).sum(1)
    keep = (x * c - (1 + a) * (1 + b) > 0) & (R < 0.5)
    assert keep.sum() > 1000
    assert np.all(np.abs(x[keep]) >= razin.lower_bound(R[keep]) * (1 - 1e-12))
    c = np.array([1e-1, 1e-3])
    assert np.allclose(razin.lower_bound(0.5 * c**2), 1 / c * (1 - c) ** 2)
    # A solution (det −1, R = 0 up to rounding) is far below it: the bound certifies a crossing.
    assert razin.lower_bound(np.array([1e-20]))[0] > 1e9


def test_unobserved_entry_from_the_recorded_error():
    # ‖X − Φ‖²_F = X_11² + 2R with Φ = [[0, 1], [1, 0]] and R = ½ Σ_observed r².
    X = np.random.default_rng(1).normal(size=(7, 2, 2)) * 10.0 ** np.arange(-3, 4)[:, None, None]
    phi, observed = np.asarray(razin.PHI), np.asarray(razin.OBSERVED)
    rec = np.linalg.norm(X - phi, axis=(1, 2)) / np.linalg.norm(phi)
    loss = 0.5 * (((X - phi) * observed) ** 2).sum(axis=(1, 2))
    m = razin.measured(dict(loss=loss, reconstruction_error=rec, step=np.arange(7),
                            effective_rank=np.ones(7), nuclear_norm=np.ones(7),
                            end_to_end_sv=np.ones((7, 2))))
    assert np.allclose(m["unobserved_abs"], np.abs(X[:, 0, 0]), rtol=1e-9, atol=1e-12)
    assert np.allclose(m["mse"], loss * 2 / 3)  # their loss: the mean of the 3 r²


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_balanced_layers_multiply_to_their_matrix(depth):
    z = np.random.default_rng(depth).standard_normal((depth + 1, 2, 2))
    W = razin.layers("balanced", z, depth, 0.01)
    assert np.allclose(razin.product(W), 0.01 * z[0], atol=1e-15)
    for lo, hi in zip(W[:-1], W[1:]):  # W_{l+1}ᵀ W_{l+1} = W_l W_lᵀ
        assert np.allclose(hi.T @ hi, lo @ lo.T, atol=1e-15)
    assert np.array_equal(razin.layers("gaussian", z, depth, 0.01), 0.01 * z[:depth])


def test_every_initialisation_has_positive_determinant():
    cfg = razin.Config.quick()
    runs = razin.runs_of(cfg)
    W0 = razin.initial_weights(cfg, runs)
    for r, W in zip(runs, W0):
        assert np.linalg.det(razin.product(W)) > 0, r
        assert np.array_equal(W[r["depth"]:], np.tile(np.eye(2), (len(W) - r["depth"], 1, 1)))


# ---------------------------------------------------------------------------------------------
# The quick studies, end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dmf_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmf")
    args = ["reproduce", "dmf", "--quick", "--out", str(out)]
    assert cli.main(args + ([] if HAVE_CVXPY else ["--no-baseline"])) == 0
    with open(out / "dmf.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_dmf_quick(dmf_quick):
    out, rows, summary = dmf_quick
    assert (out / "dmf.png").exists()
    assert {"method", "observations", "seed", "reconstruction_error", "effective_rank",
            "problem", "status", "iterations", "final_loss"} <= set(rows[0])
    cfg = dmf.Config.quick()
    methods = {f"depth-{L}" for L in cfg.depths} | ({dmf.NUCLEAR} if HAVE_CVXPY else set())
    assert {r["method"] for r in rows} == methods
    assert len(rows) == len(methods) * len(cfg.observations) * cfg.seeds
    errors = defaultdict(list)
    for r in rows:
        errors[(r["method"], int(r["observations"]))].append(float(r["reconstruction_error"]))
    median = {k: float(np.median(v)) for k, v in errors.items()}
    top = max(cfg.observations)
    for L in (2, 3, 4):  # depth ≥ 2 completes what depth 1 (≈ 70 % error) cannot
        assert median[(f"depth-{L}", top)] < 0.5 * median[("depth-1", top)], median
    for L in (3, 4):  # and deeper factorizations are (nearly) exact
        assert median[(f"depth-{L}", top)] < 0.02, median
    assert all(r["status"] in ("converged", "solved") for r in rows), {r["status"] for r in rows}
    by = {(e["method"], e["observations"]): e for e in summary["results"]}
    assert by[("depth-3", top)]["reconstruction_error"] == pytest.approx(median[("depth-3", top)])
    assert all(c["deep_beats_depth_1"] for c in summary["claims"]["completion"])
    # The effective rank of a deep solution is the target's (2), depth 1's is not.
    assert abs(by[("depth-3", top)]["effective_rank"] - summary["target_effective_rank"]) < 0.1
    assert by[("depth-1", top)]["effective_rank"] > 5
    # The problems the baseline solves are the ones the sweep ran. Depth 1 at η = 1 fits the
    # observed entries in one step, X = M⊙Φ + (1 − M)⊙W(0), so its reconstruction error over
    # its error off the observations is ‖(1 − M)⊙Φ‖_F / ‖Φ‖_F, whatever W(0) is; and each
    # run's η is c / (L σ_1(Φ)^{2−2/L}) of its own Φ.
    for r in rows:
        s, n = int(r["seed"]), int(r["observations"])
        phi = np.asarray(dmf.target(s, cfg))
        if r["method"] == "depth-1":
            off = ~np.asarray(dmf.observed(s, n, cfg))
            assert float(r["reconstruction_error"]) / float(r["unobserved_error"]) == \
                pytest.approx(np.linalg.norm(phi * off) / np.linalg.norm(phi), rel=1e-9), r
        if r["method"] != dmf.NUCLEAR:
            L = int(r["depth"])
            s1 = np.linalg.svd(phi, compute_uv=False)[0]
            assert float(r["lr"]) == pytest.approx(cfg.lr_scale / (L * s1 ** (2 - 2 / L)),
                                                   rel=1e-12), r
    if not HAVE_CVXPY:
        pytest.skip("cvxpy is not installed: the nuclear-norm rows were skipped")
    nuclear = [r for r in rows if r["method"] == dmf.NUCLEAR]
    assert all(r["status"] == "solved" and math.isfinite(float(r["reconstruction_error"]))
               for r in nuclear)
    for n in cfg.observations:  # depth 3 beats the nuclear norm, as in the paper's Figure 2
        assert median[("depth-3", n)] < median[(dmf.NUCLEAR, n)], median
    assert median[(dmf.NUCLEAR, top)] < median[("depth-1", top)]


@pytest.fixture(scope="module")
def razin_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("razin")
    assert cli.main(["reproduce", "razin", "--quick", "--out", str(out)]) == 0
    with open(out / "razin.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_razin_quick(razin_quick):
    out, rows, summary = razin_quick
    assert (out / "razin.png").exists()
    results = summary["results"]
    deep = [e for e in results if e["depth"] == 3]
    assert len(deep) == 4  # both inits, two scales
    for e in deep:
        start, h = e["start"], e["at_horizon"]
        assert e["det_positive"] and e["claim_holds"], e
        # The effective rank falls to 1 while every norm grows, and |W_11| with them.
        assert h["effective_rank"] < 1.01 < start["effective_rank"], e
        for k in razin.NORMS:
            assert h[k] > 1e3 * start[k], (k, e)
            assert e["norm_growth_anchor_to_horizon"][k] > 1.2, (k, e)
            assert e["norms_nondecreasing_from"][k] <= e["anchor_step"], (k, e)
        assert h["unobserved_abs"] >= e["bound_at_horizon"] > 10
        assert h["nuclear_norm"] == pytest.approx(h["unobserved_abs"], rel=0.05)
    # The records say the same, run by run: non-decreasing from the anchor on.
    for e in deep:
        seq = [float(r["nuclear_norm"]) for r in rows if r["init"] == e["init"]
               and int(r["depth"]) == 3 and float(r["init_std"]) == e["init_std"]
               and e["anchor_step"] <= int(r["step"]) <= e["stop_step"]]
        assert len(seq) > 5 and all(b >= a for a, b in zip(seq, seq[1:]))
    # A run that left det > 0 fitted the observations exactly: a solution has det −1.
    for e in results:
        if e["det_positive"] is False:
            assert e["end"]["mse"] < 1e-20 and e["end"]["abs_det"] == pytest.approx(1, rel=1e-6)
            assert not e["claim_holds"]
    for init, b in summary["branches"].items():
        assert b["claim_holds_on_det_positive"], (init, b)
