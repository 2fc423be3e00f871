"""Sweeps of deep matrix factorization: completion and sensing as grid axes (observation
counts, init scales), equal to single runs, compiled once per width whatever the axes."""

import csv
import json

import jax
import jax.numpy as jnp
import pytest

import zasjax as zj
from zasjax._sweep import config_key
from zasjax._sweep._driver import build_inputs
from zasjax.cli import main

GRID = dict(inits=("small-gaussian",), targets=("low-rank",), rank=1, dims=(5,),
            depths=(1, 3), seeds=(0,), lrs=(0.05,), max_iters=6000, eps=1e-5,
            init_scale=(3e-1, 1e-1))


def _alone(grid, cfg):
    """`cfg` run alone with `zj.run` on the objective the sweep drew for it."""
    host = build_inputs(grid, [cfg], cfg["depth"], jnp.float64)
    objective = jax.tree.map(lambda x: jnp.asarray(x[0]), host["objective"])
    return zj.run(jnp.asarray(host["W"][0]), objective, lr=cfg["lr"], eps=grid.eps,
                  max_iters=grid.max_iters)


@pytest.mark.parametrize("objective,observations", [("completion", (8, 16)),
                                                    ("sensing", (6, 12))])
@pytest.mark.slow
def test_a_sweep_equals_its_runs_alone(objective, observations):
    grid = zj.Grid(**GRID, objective=objective, observations=observations)
    rows = zj.sweep(grid, dtype="float64", chunk=500, cache=False)
    assert len(rows) == 2 * 2 * 2
    assert {(r["observations"], r["init_scale"]) for r in rows} == {
        (n, x) for n in observations for x in GRID["init_scale"]}
    # Depth 3 (and, for completion, depth 1) alone: other observations and scales.
    for r in [rows[0], rows[-1]] if objective == "completion" else [rows[-1]]:
        res = _alone(grid, r)
        iters = int(res.iterations)
        assert (r["status"], r["iterations"], r["steps"]) == (
            zj.STATUS_NAMES[int(res.status)], iters if iters >= 0 else None, int(res.steps)), r
        assert r["final_loss"] == pytest.approx(float(res.final_loss), rel=1e-10, abs=1e-300)
    assert all(r["status"] == "converged" for r in rows), rows
    # Measured at the end, of the end-to-end matrix: depth 1 leaves what it never sees at
    # its (small) init, so its error off the observations is about 100 %.
    for r in rows:
        assert r["effective_rank"] >= 1 and r["nuclear_norm"] > 0
        assert 0 <= r["reconstruction_error"]
    if objective == "completion":
        shallow = [r for r in rows if r["depth"] == 1]
        assert all(0.8 < r["unobserved_error"] < 1.2 for r in shallow), shallow
    else:
        assert all(r["unobserved_error"] is None for r in rows)


@pytest.mark.no_compile_cache
def test_the_axes_do_not_multiply_the_compiled_programs(tmp_path):
    # The grid, 4 depths × 4 observation counts × 8 seeds × 3 init scales, from the
    # command line: one program of each kind for the width (a width no other test uses, so
    # nothing is compiled already), counted in config.json.
    out = tmp_path / "big"
    assert main(["sweep", "--objective", "completion", "--target", "low-rank", "--rank", "1",
                 "--init", "small-gaussian", "--dim", "6", "--depths", "1:5",
                 "--observations", "10,15,20,25", "--seeds", "0:8", "--init-scale",
                 "1e-3,1e-2,1e-1", "--lr", "0.02", "--max-iters", "100", "--x64",
                 "--no-cache", "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 4 * 8 * 3
    assert config["timing"]["programs"] == 3  # initial state, a chunk, the measurements
    assert {"effective_rank", "reconstruction_error", "observations", "init_scale"} <= set(
        rows[0])
    assert {(r["observations"], r["init_scale"]) for r in rows} == {
        (n, x) for n in ("10", "15", "20", "25") for x in ("0.001", "0.01", "0.1")}


def test_a_dmf_folder_resumes_to_the_same_rows(tmp_path):
    grid = zj.Grid(**GRID, objective="completion", observations=(8, 16))  # compiled above
    out = str(tmp_path / "dmf")
    rows = zj.sweep(grid, out, dtype="float64", chunk=500, cache=False)
    again = zj.sweep(grid, out, resume=True, dtype="float64", cache=False)
    assert [config_key(r) for r in again] == [config_key(r) for r in rows]
    assert again == rows  # read back from runs.csv: every type and measurement as written


@pytest.mark.parametrize("changes,message", [
    (dict(objective="completion"), "needs the number of observations"),
    (dict(objective="whitened", observations=(3,)), "observations \\(samples\\) are for"),
    (dict(objective="completion", observations=(26,)), r"must be in \[1, 25\]"),
    (dict(objective="blur", observations=(3,)), "unknown objective 'blur'"),
    (dict(rank=6), r"rank must be an integer in \[1, 5\]"),
    (dict(init_scale=(0.0,)), "init scale must be finite numbers > 0"),
])
def test_bad_dmf_grids_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        zj.Grid(**{**GRID, **changes})


def test_the_modes_engine_refuses_other_objectives():
    grid = zj.Grid(**{**GRID, "inits": ("zas",)}, objective="completion", observations=(4,))
    with pytest.raises(ValueError, match="objective completion"):
        zj.SweepSpec(grids=grid, engine="modes")


@pytest.mark.parametrize("objective,observations", [("whitened", ()), ("completion", (8, 16))])
def test_programs_loaded_from_the_cache_give_the_same_rows(objective, observations):
    # A second sweep in a fresh state (as a new process) loads every program from JAX's
    # persistent cache, whatever its inputs and outputs hold (objective data, measurements).
    grid = zj.Grid(**GRID, objective=objective, observations=observations)
    rows = []
    for _ in range(2):
        jax.clear_caches()
        rows.append(zj.sweep(grid, dtype="float64", chunk=500, cache=True))
    assert rows[0] == rows[1]
