"""Arora et al. (balanced init, deficiency margin) and Zou-Long-Gu (linear ResNets with fixed
transforms): the mathematics of each study, then each `--quick` run end to end."""

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax import cli
from zasjax._network import end_to_end, pad_square
from zasjax._theory import arora_conditions
from zasjax.reproduce import arora, zou

# The second tier (`pytest -m slow`): studies and notebooks in their quick sizes.
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------------
# Arora et al.
# ---------------------------------------------------------------------------------------------


def _margin_positive_balanced(key, depth, d0, phi, tries=64):
    """A balanced init (s = 1/d_0) whose deficiency margin is > 0 (about 1 try in 3)."""
    W0 = arora.init_batch("balanced", jax.random.split(key, tries), depth, d0, 1.0 / d0,
                          phi.dtype)
    cond = jax.vmap(lambda W: arora_conditions(W, pad_square(phi, d0),
                                               arora.widths_for(depth, d0)))(W0)
    i = int(np.flatnonzero(np.asarray(cond.margin) > 0)[0])
    return W0[i:i + 1]


@pytest.mark.parametrize("depth", [2, 5])
def test_measured_rate_beats_theorem_1_bound_at_its_step_size(key, depth):
    d0 = 6
    phi = arora.scalar_target(jax.random.fold_in(key, 1), d0)
    W0 = _margin_positive_balanced(key, depth, d0, phi)
    widths = arora.widths_for(depth, d0)
    cond = arora_conditions(W0[0], pad_square(phi, d0), widths)
    assert bool(cond.holds)  # balanced: δ ≈ 1e-16 ≤ δ_max, margin c > 0
    check = arora.theorem_check(W0, pad_square(phi, d0), widths, n_steps=300)
    # ℓ(t) ≤ ℓ(0) exp(−η c^{2(N−1)/N} t) at every recorded t, and the fitted rate is faster.
    assert check["max_loss_over_bound"] <= 1.0 + 1e-12
    assert check["min_rate_ratio"] >= 1.0


def test_balanced_end_to_end_is_gaussian_margin_probability_matches_closed_form(key):
    d0, depth, n = 20, 3, 4000
    phi = arora.scalar_target(jax.random.fold_in(key, 1), d0)
    W0 = arora.init_batch("balanced", jax.random.split(key, n), depth, d0, 1.0 / d0,
                          jnp.float64)
    A = jax.vmap(end_to_end)(W0)[:, 0, :]
    margin = 1.0 - jnp.linalg.norm(A - phi, axis=1)  # σ_min(Φ) = ‖Φ‖ = 1
    p = arora.exact_margin_probability(d0, 1.0 / d0)
    assert 0.25 < p < 0.4
    assert abs(float(jnp.mean(margin > 0)) - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_matched_gaussian_has_the_balanced_end_to_end_scale(key):
    d0, depth, n, s = 8, 3, 4000, 0.125
    sq = {name: float(jnp.mean(jnp.sum(jax.vmap(end_to_end)(
        arora.init_batch(name, jax.random.split(key, n), depth, d0, s, jnp.float64)) ** 2,
        axis=(1, 2)))) for name in ("balanced", "gaussian")}
    assert sq["balanced"] == pytest.approx(d0 * s * s, rel=0.1)
    assert sq["gaussian"] == pytest.approx(d0 * s * s, rel=0.2)


# ---------------------------------------------------------------------------------------------
# Zou-Long-Gu
# ---------------------------------------------------------------------------------------------


def test_zero_init_resnet_computes_BA(key):
    d, k, m, depth = 5, 3, 11, 4
    A, B = zou.gaussian_transforms(key, d, k, m)
    W0, mask = zou.resnet(A, B, depth)
    assert W0.shape == (depth + 2, m, m)
    assert np.allclose(end_to_end(W0)[:k, :d], B @ A, atol=1e-13)
    assert float(jnp.abs(end_to_end(W0)).sum() - jnp.abs(end_to_end(W0)[:k, :d]).sum()) == 0
    Ai, Bi = zou.identity_transforms(d, k)
    Wi, _ = zou.resnet(Ai, Bi, depth)
    assert float(jnp.abs(end_to_end(Wi)).max()) == 0.0  # modified identity: BA = 0


@pytest.mark.parametrize("optimizer", ["gd", "sgd"])
def test_fixed_transforms_never_change(key, optimizer):
    d, k, m, n, depth = 4, 2, 8, 12, 3
    X, Y = zou.make_data(jax.random.fold_in(key, 1), d, k, n)
    A, B = zou.gaussian_transforms(key, d, k, m)
    W0, mask = zou.resnet(A, B, depth)
    lr = 0.5 * zou.resnet_lr_unit(A, B, X, depth)
    W, status, final, losses = zou.train_grid(W0, mask, X, Y, [lr, 2 * lr], 200, optimizer,
                                              batch_size=4, key=key)
    for g in range(2):
        assert np.array_equal(W[g, 0], W0[0]) and np.array_equal(W[g, -1], W0[-1])
        assert float(jnp.abs(W[g, 1:-1] - W0[1:-1]).max()) > 1e-3  # the hidden layers trained
        assert float(final[g]) < 1e-2 * float(losses[g, 0])


# ---------------------------------------------------------------------------------------------
# The quick studies, end to end
# ---------------------------------------------------------------------------------------------


def _finite(x):
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


@pytest.mark.slow
def test_arora_quick(tmp_path):
    assert cli.main(["reproduce", "arora", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "arora.csv").exists() and (tmp_path / "arora.png").exists()
    with open(tmp_path / "arora.csv") as f:  # status by name, as in every other file
        assert {r["status"] for r in csv.DictReader(f)} <= {"converged", "max-iters",
                                                            "diverged"}
    p = summary["exact_margin_probability_balanced"]
    for e in summary["results"]:
        for field in ("success_probability", "margin_positive_fraction",
                      "median_measured_rate", "median_bound_rate"):
            assert isinstance(e[field], float) and math.isfinite(e[field]), (e, field)
        assert e["seeds"] >= 100
        assert _finite(e)
        if e["init"] == "balanced":
            # a depth-independent constant: 0.32 in closed form for s = 1/d_0, d_0 = 20
            assert e["success_probability"] > 0.15
            assert abs(e["margin_positive_fraction"] - p) < 4 * math.sqrt(p * (1 - p) / 100)
            assert e["median_measured_rate"] >= e["median_bound_rate"]
            check = e["theorem_check"]
            assert check["min_rate_ratio"] >= 1.0
            assert check["max_loss_over_bound"] <= 1.0 + 1e-12


@pytest.mark.slow
def test_zou_quick(tmp_path):
    assert cli.main(["reproduce", "zou", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "zou.csv").exists() and (tmp_path / "zou.png").exists()
    with open(tmp_path / "zou.csv") as f:
        assert {r["status"] for r in csv.DictReader(f)} <= {"converged", "max-iters",
                                                            "diverged"}
    tables = summary["tables"]
    for name in ("resnet-identity-gd", "resnet-identity-sgd", "resnet-gaussian-gd",
                 "resnet-gaussian-sgd", "plain-xavier-gd"):
        assert _finite(tables[name]["final_loss"])
    widest = str(max(summary["setting"]["widths"]))
    for name in ("resnet-gaussian-gd", "resnet-gaussian-sgd", "resnet-identity-gd",
                 "resnet-identity-sgd"):
        for width, by_depth in tables[name]["relative_loss"].items():
            for depth, rel in by_depth.items():
                assert rel < 1e-3, (name, width, depth)  # at least 3 orders of magnitude
                if name.endswith(("identity-gd", "identity-sgd")) or width == widest:
                    assert rel < 1e-10, (name, width, depth)
