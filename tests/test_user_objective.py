"""An objective of the user's own, in this file (not in zasjax/), sweeps like a built-in one:
one program per width over depths × seeds × learning rates, rows equal to `zj.run` on each
configuration, a kill and resume to the same table, Parquet, `load_sweep`, replay."""

import json
import os
import signal
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import wait_until

import zasjax as zj
from zasjax._sweep import _inflight
from zasjax.cli import main

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


class HuberCompletion(zj.Objective):
    """Huber loss on the observed entries: Σ_Ω h_δ((W_{L:1} − Φ)_ij), h_δ(e) = e²/2 for
    |e| ≤ δ, δ(|e| − δ/2) beyond; G = M ⊙ clip(W_{L:1} − Φ, −δ, δ)."""

    phi: jax.Array
    observed: jax.Array
    delta: float = eqx.field(static=True, default=0.5)

    name = "huber-completion"
    axes = ("observations",)
    measures = ("max_error",)

    def head(self, X):
        E = jnp.where(self.observed, X - self.phi, 0)
        a = jnp.abs(E)
        f = jnp.where(a <= self.delta, 0.5 * E * E, self.delta * (a - 0.5 * self.delta))
        return jnp.sum(f, axis=(0, 1)), jnp.clip(E, -self.delta, self.delta)

    def check(self):  # on construction, with concrete data
        super().check()  # finite values
        if jnp.shape(self.observed) != jnp.shape(self.phi):
            raise ValueError(f"observed must have shape {jnp.shape(self.phi)}, got "
                             f"{jnp.shape(self.observed)}")

    @classmethod
    def draw(cls, key, phi, *, observations, most_observations):
        return cls(phi, zj.observed_entries(key, phi.shape, observations))

    def measure(self, X):
        return {"max_error": jnp.max(jnp.abs(X - self.phi))}


GRID = dict(objective=HuberCompletion, inits=("small-gaussian",), targets=("low-rank",),
            rank=1, dims=(4,), depths=(1, 2, 3), seeds=(0, 1), lrs=(0.05, 0.1),
            observations=(10,), init_scale=(0.3,), eps=1e-6, max_iters=3000)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("huber") / "sw")
    grid = zj.Grid(**GRID)
    rows = zj.sweep(grid, out, dtype="float64", chunk=400, cache=False,
                    save=("end-to-end",))
    return grid, out, rows


def test_the_head_is_the_gradient_of_the_loss():
    rng = np.random.default_rng(0)
    obj = HuberCompletion(jnp.asarray(rng.normal(size=(4, 4))),
                          jnp.asarray(rng.random((4, 4)) < 0.6))
    X = jnp.asarray(rng.normal(size=(4, 4)))
    f, G = obj.head(X)
    assert np.allclose(G, jax.grad(lambda X: obj.head(X)[0])(X), atol=1e-12)
    assert float(f) > 0


@pytest.mark.slow
@pytest.mark.no_compile_cache
def test_a_user_objective_sweeps_and_each_row_equals_zj_run(swept):
    grid, out, rows = swept
    assert len(rows) == 3 * 2 * 2
    config = json.load(open(f"{out}/config.json"))
    # One of each for the width, whatever the depths, seeds and rates: the initial state, a
    # chunk, the measurements, the saved end-to-end matrices.
    assert config["timing"]["programs"] == 4
    assert config["spec"]["grids"][0]["objective"] == "test_user_objective:HuberCompletion"
    df = zj.load_sweep(out, arrays=True)
    assert len(df) == len(rows) and df["max_error"].dtype == np.float64
    for r, saved in zip(rows, df["end_to_end"]):
        W0, objective = zj.sweep_problem(grid, depth=r["depth"], seed=r["seed"])
        assert isinstance(objective, HuberCompletion) and W0.shape == (r["depth"], 4, 4)
        res = zj.run(W0, objective, lr=r["lr"], eps=grid.eps, max_iters=grid.max_iters)
        iters = int(res.iterations)
        assert (r["status"], r["iterations"], r["steps"]) == (
            zj.STATUS_NAMES[int(res.status)], iters if iters >= 0 else None, int(res.steps))
        assert r["final_loss"] == pytest.approx(float(res.final_loss), rel=1e-10, abs=1e-300)
        X = zj.end_to_end(res.W)
        assert r["max_error"] == pytest.approx(float(jnp.max(jnp.abs(X - objective.phi))),
                                               rel=1e-10)
        np.testing.assert_allclose(saved, X, rtol=1e-9, atol=1e-12)  # aligned with its row
        assert r["objective"] == "huber-completion"
    assert any(r["status"] == "converged" for r in rows)


def test_interrupted_parquet_sweep_resumes_to_the_csv_table(swept, tmp_path, monkeypatch):
    grid, reference, _ = swept
    out = str(tmp_path / "again")
    save, calls = _inflight.save, {"n": 0}

    def interrupted(*args, **kwargs):  # the event: a checkpoint written, then the "kill"
        calls["n"] += 1
        save(*args, **kwargs)
        raise KeyboardInterrupt

    options = dict(dtype="float64", chunk=400, cache=False, save=("end-to-end",),
                   results="parquet")
    monkeypatch.setattr(_inflight, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        zj.sweep(grid, out, **options)
    monkeypatch.setattr(_inflight, "save", save)
    assert calls["n"] >= 1  # the driver finishes a save that an interrupt cut short
    zj.sweep(grid, out, resume=True, **options)
    a, b = zj.load_sweep(out, arrays=True), zj.load_sweep(reference, arrays=True)
    cols = [c for c in b.columns if c not in ("end_to_end", "tuned")]
    assert a[cols].equals(b[cols])
    for x, y in zip(a["end_to_end"], b["end_to_end"]):
        np.testing.assert_array_equal(x, y)


def test_replayed_from_its_config(swept, tmp_path):
    _, out, rows = swept
    spec = zj.SweepSpec.from_json(json.load(open(f"{out}/config.json")))
    assert zj.sweep(spec, str(tmp_path / "replay")) == rows


def test_an_objective_with_an_unknown_measure_or_bad_data_says_so():
    with pytest.raises(ValueError, match="observed must have shape"):
        HuberCompletion(jnp.zeros((4, 4)), jnp.ones((3, 4), bool))
    with pytest.raises(ValueError, match="finite"):
        HuberCompletion(jnp.full((4, 4), jnp.inf), jnp.ones((4, 4), bool))
    with pytest.raises(ValueError, match="needs the number of observations"):
        zj.Grid(**{**GRID, "observations": ()})


CLI = ["sweep", "--objective", "test_user_objective:HuberCompletion", "--init",
       "small-gaussian", "--target", "low-rank", "--rank", "1", "--dim", "4", "--depths",
       "1:4", "--seeds", "0,1", "--lr", "0.05,0.1", "--observations", "10", "--init-scale",
       "0.3", "--eps", "1e-6", "--max-iters", "3000", "--x64", "--chunk", "20",
       "--save", "end-to-end", "--no-cache", "--no-progress"]


def test_sigkill_from_the_command_line_then_resume(swept, tmp_path):
    # A real `zasjax` process, the class named module:Class, killed once a checkpoint and
    # some saved arrays exist; resumed here: the table and arrays of the uninterrupted sweep.
    _, reference, _ = swept
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
    proc = subprocess.Popen([sys.executable, "-m", "zasjax", *CLI, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    arrays = out / "arrays" / "grid-0" / "end-to-end"
    reached = wait_until(lambda: any((out / "inflight").glob("*.npz"))
                         and any(arrays.glob("arrays-*.npz")), proc)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert reached, f"the sweep ended before the moment (exit {proc.returncode}): {err}"
    assert proc.returncode == -signal.SIGKILL and not (out / "results.csv").exists()
    assert main([*CLI, "--out", str(out), "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == \
        open(f"{reference}/results.csv", "rb").read()
    a, b = zj.load_sweep(out, arrays=True), zj.load_sweep(reference, arrays=True)
    for x, y in zip(a["end_to_end"], b["end_to_end"]):
        np.testing.assert_array_equal(x, y)
    # And plotted like any sweep, by its own measure.
    assert main(["plot", str(out), "--y", "max_error", "--out", str(tmp_path / "m.png")]) == 0
    assert (tmp_path / "m.png").stat().st_size > 0
