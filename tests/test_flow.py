"""Gradient flow (diffrax): conserved invariants, Theorem 4.1, GD → flow at first order, CLI."""

import csv
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax import make_init, make_target
from zasjax._compare import compare_gd_flow, compare_gd_flow_modes
from zasjax._flow import gradient_flow_jit
from zasjax.cli import main as zasjax_main
from zasjax.cli.flow import run

F64 = jnp.float64


def test_zas_flow_conserves_invariants_and_decays_like_exp(key):
    # One (L, d) here, (3, 2) in the GD-gap test below, (1, 2) in test_theory: one compile each.
    L, d = 5, 3
    W0 = make_init("zas", key, (d,) * (L + 1), dtype=F64)
    phis = jax.vmap(lambda k: make_target("gaussian", k, (d, d), F64))(jax.random.split(key, 3))
    ts = jnp.linspace(0.0, 3.0, 31, dtype=F64)
    sol = jax.vmap(lambda phi: gradient_flow_jit(W0, phi, ts, rtol=1e-9, atol=1e-11))(phis)
    assert np.all(np.asarray(sol.ok))
    # Lemma 4.2: D_l(t) = D_l(0) up to the ODE tolerance.
    assert float(jnp.max(sol.invariant_drift)) < 1e-6
    # Theorem 4.1: R(t) ≤ e^{−2t} R(0) for any Φ.
    ratio = sol.losses / (jnp.exp(-2.0 * ts)[None, :] * sol.losses[:, :1])
    assert float(jnp.max(ratio)) <= 1.0 + 1e-6
    assert np.all(np.asarray(sol.losses[:, -1]) < np.asarray(sol.losses[:, 0]) * 1e-2)


# The CLI tests below use the same shapes, times and tolerances, so they reuse these compiles.
LRS, T_MAX, N_SAVE, DIM, DEPTH = [0.04, 0.02, 0.01, 0.005], 2.0, 5, 2, 3


def test_gd_to_flow_gap_is_first_order(key):
    W0 = make_init("zas", key, (DIM,) * (DEPTH + 1), dtype=F64)
    phi = make_target("gaussian", key, (DIM, DIM), F64)
    cmp = compare_gd_flow(W0, phi, LRS, T_MAX, ts=np.linspace(0, T_MAX, N_SAVE))
    assert np.all(np.diff(cmp.gaps) < 0)
    assert abs(cmp.slope - 1.0) <= 0.2, cmp.gaps
    # Lemma 4.5: O(η²) invariant drift per step, T/η steps: O(η) over the horizon.
    assert abs(cmp.drift_slope - 1.0) <= 0.2, cmp.gd_drifts
    assert float(jnp.max(cmp.flow.invariant_drift)) < 1e-7
    ratio = cmp.flow.losses / (jnp.exp(-2.0 * cmp.flow.ts) * cmp.flow.losses[0])
    assert float(jnp.max(ratio)) <= 1.0 + 1e-6


BASE = ["--dim", str(DIM), "--depth", str(DEPTH), "--t-max", str(T_MAX),
        "--n-save", str(N_SAVE), "--lrs", ",".join(map(str, LRS)), "--rtol", "1e-10",
        "--atol", "1e-12", "--x64"]


def _run(tmp_path, *extra):
    # The command's own steps: options -> zj.FlowSpec (checked) -> run, returning the summary.
    from zasjax._options import Parser, add_options, given

    parser = Parser()
    add_options(parser, zj.FlowSpec)
    args = parser.parse_args([*BASE, "--out", str(tmp_path / "out"), *extra])
    return run(zj.FlowSpec(**given(args, zj.FlowSpec)))


def test_flow_spec_is_public_checked_and_holds_its_folder():
    spec = zj.FlowSpec(target="gaussian", lrs=[0.1, 0.05])
    assert spec.lrs == (0.1, 0.05) and spec.out == "runs/flow" and spec.engine == "full"
    with pytest.raises(ValueError, match="exactly one of --target"):
        zj.FlowSpec()
    with pytest.raises(ValueError, match="not below --t-max"):
        zj.FlowSpec(target="gaussian", lrs=(20.0,), t_max=10.0)


def test_flow_cli_writes_three_files(tmp_path):
    summary = _run(tmp_path, "--target", "gaussian")
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["flow.csv", "flow.png", "flow_summary.json"]
    with open(out / "flow.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["t", "loss_flow", "loss_gd_0.04", "loss_gd_0.02", "loss_gd_0.01",
                             "loss_gd_0.005"]
    np.testing.assert_allclose([float(r["t"]) for r in rows], np.linspace(0, T_MAX, N_SAVE))
    assert len(set(rows[0].values()) - {"0.0"}) == 1  # at t = 0 GD and flow share R(0)
    saved = json.loads((out / "flow_summary.json").read_text())
    for k in ("max_ratio_to_exp_bound", "max_invariant_drift_flow", "gd_gap_slope"):
        assert saved[k] == pytest.approx(summary[k])
    assert saved["max_ratio_to_exp_bound"] <= 1.0 + 1e-6
    assert saved["max_invariant_drift_flow"] < 1e-6


def test_flow_cli_reads_a_target_file(tmp_path):
    np.save(tmp_path / "phi.npy", -np.eye(2))
    summary = _run(tmp_path, "--target-file", str(tmp_path / "phi.npy"))
    assert summary["config"]["target"].endswith("phi.npy")
    assert summary["loss0"] == pytest.approx(1.0)  # ½‖0 − (−I)‖²_F at ZAS, d = 2
    assert abs(summary["gd_gap_slope"] - 1.0) <= 0.2


@pytest.mark.parametrize("extra,match", [
    (["--depth", "0"], "--depth must be >= 1"),
    (["--dim", "0"], "--dim must be >= 1"),
    (["--lrs", "0.1,-0.01"], "learning rate must be a finite number > 0"),
    (["--lrs", "0.1,abc"], "--lrs expects numbers"),
    (["--t-max", "0"], "--t-max must be a finite number > 0"),
    (["--n-save", "1"], "--n-save must be in"),
    (["--init", "nope"], "--init must be one of"),
    (["--target-file", "WRONG"], r"has shape \(3, 3\), expected \(2, 2\)"),
])
def test_flow_cli_refuses_bad_input_before_writing(tmp_path, capsys, extra, match):
    np.save(tmp_path / "phi3.npy", np.eye(3))
    extra = [str(tmp_path / "phi3.npy") if e == "WRONG" else e for e in extra]
    if "--target-file" not in extra:
        extra = extra + ["--target", "gaussian"]
    assert zasjax_main(["flow", *BASE, "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_flow_modes_engine_equals_full_and_reaches_a_million_layers(tmp_path):
    key = jax.random.key(5)
    phi = zj.make_target("gaussian", key, (3, 3))
    lrs = [0.02, 0.01, 0.005, 0.0025]
    full = zj.compare_gd_flow(zj.make_init("zas", key, (3,) * 5), phi, lrs, 4.0)
    modes = compare_gd_flow_modes(phi, 4, lrs, 4.0)
    np.testing.assert_allclose(modes.gaps, full.gaps, rtol=1e-6)
    np.testing.assert_allclose(modes.gd_drifts, full.gd_drifts, rtol=1e-6)
    assert abs(modes.slope - 1) < 0.05
    out = tmp_path / "deep"
    assert zasjax_main(["flow", "--engine", "modes", "--target", "neg-identity", "--dim", "2",
                        "--depth", str(2**20), "--t-max", "0.001", "--x64", "--lrs",
                        "1e-6,5e-7,2.5e-7,1.25e-7", "--out", str(out)]) == 0
    summary = json.loads((out / "flow_summary.json").read_text())
    assert summary["engine"] == "modes" and abs(summary["gd_gap_slope"] - 1) < 0.1
    assert zasjax_main(["flow", "--engine", "modes", "--init", "xavier", "--target",
                        "neg-identity", "--out", str(tmp_path / "no")]) == 2


@pytest.mark.slow
def test_flow_warns_about_rates_beyond_stability(tmp_path, capsys):
    # From ZAS the solution's sharpness is known (zas_minimum_sharpness): an η above
    # 2/λ_max there cannot follow the flow, and the command says so.
    args = ["flow", "--target", "neg-identity", "--dim", "2", "--depth", "8", "--t-max", "5",
            "--x64", "--out", str(tmp_path / "f")]
    assert zasjax_main([*args, "--lrs", "0.5,0.1,0.05,0.02"]) == 0
    err = capsys.readouterr().err
    assert "η = 0.5 is beyond its stability limit" in err and "0.1," not in err
    assert zasjax_main([*args, "--lrs", "0.1,0.05,0.02,0.01"]) == 0
    assert "stability" not in capsys.readouterr().err
