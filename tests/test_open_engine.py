"""The open engine: objectives as classes in one table, problems from a data file, a sweep
replayed from its config.json, and bad input refused where it is given."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zasjax as zj
from zasjax._schema import column, columns
from zasjax.cli import main


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_built_in_objective_is_one_class_in_the_table():
    assert set(zj.OBJECTIVES) == {"whitened", "completion", "sensing", "regression",
                                  "linear-regression"}
    for name, cls in zj.OBJECTIVES.items():
        assert issubclass(cls, zj.Objective) and cls.label() == name
        # every measure is a float column of the rows
        assert all(column(m).kind is float and m in columns(cls.measures)
                   for m in cls.measures)


@pytest.mark.slow
def test_a_dmf_sweep_with_several_axes_replays_from_its_config(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sweep", "--objective", "sensing", "--target", "low-rank", "--rank", "1",
                 "--init", "small-gaussian", "--dim", "4", "--depths", "1:4",
                 "--observations", "6,10", "--seeds", "0:2", "--init-scale", "0.1,0.3",
                 "--lr", "0.05,0.1", "--max-iters", "150", "--x64", "--no-cache",
                 "--no-progress", "--out", str(a)]) == 0
    assert main(["sweep", "--config", str(a / "config.json"), "--out", str(b),
                 "--no-progress"]) == 0
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    assert len(_csv(a / "results.csv")) == 3 * 2 * 2 * 2 * 2
    # An option given beside --config overrides it: here one more seed.
    c = tmp_path / "c"
    assert main(["sweep", "--config", str(a / "config.json"), "--seeds", "0:3", "--out",
                 str(c), "--no-progress"]) == 0
    rows_c = _csv(c / "results.csv")
    assert len(rows_c) == 3 * 2 * 2 * 3 * 2
    assert [r for r in rows_c if r["seed"] != "2"] == _csv(a / "results.csv")


@pytest.mark.slow
def test_regression_from_a_data_file_equals_zj_run(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 12))
    Y = rng.normal(size=(3, 3)) @ X
    np.savez(tmp_path / "reg.npz", X=X, Y=Y)
    out = tmp_path / "reg"
    assert main(["sweep", "--objective", "regression", "--data-file",
                 str(tmp_path / "reg.npz"), "--dim", "3", "--depths", "1,2,4", "--seeds",
                 "0,1", "--init", "near-identity", "--lr", "0.01", "--max-iters", "3000",
                 "--x64", "--no-cache", "--no-progress", "--out", str(out)]) == 0
    rows = _csv(out / "results.csv")
    assert {r["target"] for r in rows} == {"file"} and len(rows) == 6
    grid = zj.SweepSpec.from_json(json.loads((out / "config.json").read_text()),
                                  data={"X": X, "Y": Y}).grids[0]
    for r in rows:
        W0, objective = zj.sweep_problem(grid, depth=int(r["depth"]), seed=int(r["seed"]))
        assert isinstance(objective, zj.Regression)
        np.testing.assert_array_equal(objective.X, X)  # the same data for every seed
        res = zj.run(W0, objective, lr=0.01, eps=grid.eps, max_iters=grid.max_iters)
        assert r["status"] == zj.STATUS_NAMES[int(res.status)]
        assert float(r["final_loss"]) == pytest.approx(float(res.final_loss), rel=1e-10,
                                                       abs=1e-300)


@pytest.mark.slow
def test_a_completion_problem_from_a_data_file(tmp_path):
    rng = np.random.default_rng(2)
    phi = rng.normal(size=(4, 1)) @ rng.normal(size=(1, 4))
    observed = rng.random((4, 4)) < 0.7
    grid = zj.Grid(objective="completion", data=dict(phi=phi, observed=observed), dims=(4,),
                   depths=(2, 3), inits=("small-gaussian",), init_scale=(0.1,), lrs=(0.05,),
                   max_iters=2000, eps=1e-8)
    assert grid.targets == ("file",)
    rows = zj.sweep(grid, dtype="float64", cache=False)
    for r in rows:
        W0, objective = zj.sweep_problem(grid, depth=r["depth"])
        np.testing.assert_array_equal(objective.observed, observed)
        res = zj.run(W0, objective, lr=0.05, eps=grid.eps, max_iters=grid.max_iters)
        assert r["final_loss"] == pytest.approx(float(res.final_loss), rel=1e-10, abs=1e-300)
        X = zj.end_to_end(res.W)
        assert r["reconstruction_error"] == pytest.approx(
            float(jnp.linalg.norm(X - phi) / np.linalg.norm(phi)), rel=1e-8)


BAD_OBJECTIVES = [
    (lambda: zj.Completion(jnp.eye(4), jnp.ones((3, 4), bool)), "observed must have shape"),
    (lambda: zj.Sensing(jnp.ones((5, 4, 4)), jnp.ones(6)), "measurements y must have shape"),
    (lambda: zj.Whitened(jnp.full((2, 2), jnp.nan)), "finite"),
    (lambda: zj.Sensing(jnp.ones((2, 3, 3)), jnp.asarray([1.0, jnp.inf])), "finite"),
    (lambda: zj.Regression(jnp.ones((3, 4)), jnp.ones((3, 5))), "must both have shape"),
]


@pytest.mark.parametrize("build,message", BAD_OBJECTIVES)
def test_a_bad_objective_is_refused_on_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_an_objective_for_another_width_is_refused_by_run():
    with pytest.raises(ValueError, match="for 3 × 3 end-to-end matrices"):
        zj.run(jnp.zeros((2, 4, 4)), zj.Whitened(jnp.eye(3)), lr=0.1)


GRID = dict(inits=("small-gaussian",), targets=("low-rank",), rank=1, dims=(4,),
            depths=(1, 2), init_scale=(0.1,))


@pytest.mark.parametrize("make,message", [
    (lambda: zj.SweepSpec(grids=zj.Grid(**GRID, objective="completion", observations=(5,)),
                          matmul="unrolled"), "not a layout of objective completion"),
    (lambda: zj.Grid(targets=("neg-identity",), rank=2), "rank is the rank of target"),
    (lambda: zj.Grid(**{**GRID, "rank": 5}), r"rank must be an integer in \[1, 4\]"),
    (lambda: zj.Grid(objective="completion", data=dict(phi=np.eye(4), mask=np.eye(4)),
                     dims=(4,)), "not fields of objective completion"),
    (lambda: zj.Grid(objective="completion", data=dict(phi=np.eye(4), observed=np.eye(4)),
                     dims=(4,), observations=(3,)), "fix the observations"),
    (lambda: zj.Grid(objective="whitened", data=dict(phi=np.eye(3)), dims=(4,)),
     "for 3 × 3"),
    (lambda: zj.Grid(objective="regression"), r"no random draw.*\['X', 'Y'\]"),
    (lambda: zj.Grid(objective="no-such"), "unknown objective"),
    (lambda: zj.Grid(objective="math:pi"), "expected one of"),
    (lambda: zj.SweepSpec(save=("weights",)), "unknown array 'weights'"),
    (lambda: zj.SweepSpec(engine="modes", save=("end-to-end",)), "needs engine 'full'"),
])
def test_bad_input_is_a_value_error_where_it_is_given(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("argv", [
    ["--rank", "2", "--target", "neg-identity"],
    ["--rank", "9", "--target", "low-rank", "--dim", "3"],
    ["--objective", "completion", "--observations", "4", "--target", "low-rank", "--rank",
     "1", "--dim", "3", "--matmul-is-not-an-option"],
])
def test_bad_options_are_one_line_and_exit_2(argv, tmp_path, capsys):
    assert main(["sweep", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zasjax") and len(err.splitlines()) <= 2, err
    assert "Traceback" not in err and "jax" not in err.replace("zasjax", "")


def test_an_objective_built_inside_a_trace_from_concrete_data_is_checked_or_traced():
    # Inside jit, concrete data (a closed-over target) are still checked, with numpy; traced
    # data are not checked at all (their values are unknown).
    phi = np.eye(3)
    W0 = jnp.stack([jnp.eye(3)] * 2)
    loss = jax.jit(lambda lr: zj.run(W0, phi, lr=lr, max_iters=10).final_loss)(0.1)
    assert np.isfinite(float(loss))
    assert jax.jit(lambda p: zj.Whitened(p).head(jnp.zeros((3, 3)))[0])(jnp.eye(3)) == 1.5
