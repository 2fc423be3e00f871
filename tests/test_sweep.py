"""Sweeps: bucketed, sharded, chunked and resumed grids equal plain per-configuration runs."""

import json
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import wait_until

from zasjax import _store, _sweep
from zasjax._compilation import compile_stats
from zasjax._run import STATUS_NAMES, run
from zasjax._sweep import _driver, _inflight
from zasjax._sweep._driver import as_row, build_inputs

# lr 3.0 diverges. At ratio 1.5 the depths fall into three classes ([1], [2, 3], [5]); by
# default all share one class of capacity 8.
GRID_FIELDS = dict(inits=("near-identity",), targets=("gaussian",), dims=(2,),
                   depths=(1, 2, 3, 5), seeds=(0, 1), lrs=(0.1, 3.0), eps=1e-8, max_iters=200)
GRID = _sweep.Grid(**GRID_FIELDS)
# The same grid in a process of its own (which imports zasjax, not these tests).
GRID_SCRIPT = f"import zasjax._sweep as S\nGRID = S.Grid(**{GRID_FIELDS!r})\n"
OPTS = dict(chunk=7, cache=False)


def _reference(grid, matmul):
    """Every configuration run alone at its own depth with `zasjax._run.run`."""
    rows = []
    for cfg in grid.configs():
        host = build_inputs(grid, [cfg], cfg["depth"], jnp.float64)
        res = run(jnp.asarray(host["W"][0]), jnp.asarray(host["phi"][0]), lr=cfg["lr"],
                  eps=grid.eps, max_iters=grid.max_iters, matmul=matmul)
        iters = int(res.iterations)
        rows.append({**cfg, "status": STATUS_NAMES[int(res.status)],
                     "iterations": iters if iters >= 0 else None,
                     "final_loss": float(res.final_loss), "steps": int(res.steps)})
    return rows


def _assert_same(rows, ref):
    assert [_sweep.config_key(r) for r in rows] == [_sweep.config_key(r) for r in ref]
    for r, e in zip(rows, ref):
        assert (r["status"], r["iterations"], r["steps"]) == (e["status"], e["iterations"],
                                                              e["steps"]), (r, e)
        if np.isfinite(e["final_loss"]):
            assert abs(r["final_loss"] - e["final_loss"]) <= 1e-12 * abs(e["final_loss"]), (r, e)
        else:
            assert not np.isfinite(r["final_loss"])


class _References(dict):
    """matmul -> the reference rows, each computed when first asked for, once a session."""

    def __init__(self, once):
        super().__init__()
        self.once = once

    def __missing__(self, matmul):
        self[matmul] = self.once(f"sweep-reference-{matmul}", lambda _: _reference(GRID, matmul))
        return self[matmul]


@pytest.fixture(scope="session")
def reference(once):
    return _References(once)


@pytest.mark.parametrize("matmul,ratio", [("unrolled", None), *(
    pytest.param(m, r, marks=pytest.mark.slow)
    for m, r in (("dot", None), ("unrolled", 1.5), ("dot", 1.5)))])
def test_padded_chunked_sweep_equals_single_runs(reference, matmul, ratio):
    rows = _sweep.sweep(GRID, matmul=matmul, bucket_ratio=ratio, **OPTS)
    _assert_same(rows, reference[matmul])
    statuses = {r["lr"]: {x["status"] for x in rows if x["lr"] == r["lr"]} for r in rows}
    assert statuses[3.0] == {"diverged"}             # flagged, never raised ...
    assert "converged" in statuses[0.1] and "diverged" not in statuses[0.1]  # ... the rest go on


def test_looped_batch_equals_single_runs(reference):
    # batching="loop": configurations one after another inside the compiled chunk.
    _assert_same(_sweep.sweep(GRID, matmul="dot", batching="loop", **OPTS), reference["dot"])
    with pytest.raises(ValueError, match="unknown batching"):
        _sweep.sweep(GRID, batching="serial")


def test_batch_slices_equal_one_batch(reference):
    # max_batch splits every class into slices of 4 configurations, each stopping its layer
    # loops at its own deepest member.
    _assert_same(_sweep.sweep(GRID, max_batch=4, **OPTS), reference["unrolled"])
    _assert_same(_sweep.sweep(GRID, max_batch=3, matmul="dot", **OPTS), reference["dot"])


@pytest.mark.slow
@pytest.mark.no_compile_cache
def test_compiled_programs_do_not_depend_on_which_depths():
    # Depth is data: another set of depths of the same capacity (32) and count compiles
    # nothing new, and neither does a second sweep of them.
    a = _sweep.Grid(inits=("zas", "near-identity"), targets=("gaussian",), dims=(2,),
                    depths=(17, 20, 32), seeds=(0, 1), lrs=(0.01,), max_iters=30)
    b = _sweep.Grid(inits=a.inits, targets=a.targets, dims=a.dims, depths=(18, 25, 31),
                    seeds=a.seeds, lrs=a.lrs, max_iters=a.max_iters)
    _sweep.sweep(a, **OPTS)
    before = compile_stats()
    rows = _sweep.sweep(b, **OPTS)
    assert compile_stats().since(before).programs == 0
    assert {r["depth"] for r in rows} == {18, 25, 31}
    _assert_same(rows, _reference(b, "unrolled"))


def test_resume_after_interruption(tmp_path, monkeypatch, reference):
    out = str(tmp_path / "sw")
    calls = {"n": 0}
    save = _inflight.save

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as if killed while the 5th chunk was in flight
        save(*args, **kwargs)

    monkeypatch.setattr(_inflight, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        _sweep.sweep(GRID, out, max_batch=4, **OPTS)
    monkeypatch.setattr(_inflight, "save", save)
    done_before = {_sweep.config_key(r) for r in _store.read_csv(f"{out}/runs.csv")}
    assert 0 < len(done_before) < len(GRID.configs())
    assert os.listdir(f"{out}/inflight")  # the chunks before the crash were checkpointed

    with pytest.raises(ValueError, match="resume"):
        _sweep.sweep(GRID, out, **OPTS)  # refuses to overwrite a sweep

    recomputed = []
    run_slice = _driver._run_slice

    def spy(ctx, sl, *args):
        recomputed.extend(_sweep.config_key(r) for r in sl.rows)
        return run_slice(ctx, sl, *args)

    monkeypatch.setattr(_driver, "_run_slice", spy)
    rows = _sweep.sweep(GRID, out, resume=True, **OPTS)  # regrouped: one slice, capacity 8
    _assert_same(rows, reference["unrolled"])
    assert not done_before & set(recomputed)  # finished configurations are not recomputed
    table = {_sweep.config_key(r): as_row(r) for r in _store.read_csv(f"{out}/runs.csv")}
    assert len(table) == len(GRID.configs())  # each configuration appended exactly once
    _assert_same([table[_sweep.config_key(c)] for c in GRID.configs()], reference["unrolled"])
    assert not os.path.exists(f"{out}/inflight")


def test_checkpoints_restore_per_configuration_whatever_the_grouping(tmp_path, monkeypatch):
    # Interrupted with one grouping, resumed with another (ratio 1.5 -> one class): each
    # configuration continues from its own checkpoint, counters and weights together, and
    # the table equals the uninterrupted one. (Issue: counters restored onto fresh weights.)
    grid = _sweep.Grid(inits=("zas",), targets=("neg-identity",), dims=(1,), depths=(10, 12),
                       seeds=(0, 1, 2), lrs=(0.0007,), max_iters=5000)
    full = _sweep.sweep(grid, chunk=300, **{k: v for k, v in OPTS.items() if k != "chunk"})
    out = str(tmp_path / "sw")
    save, calls = _inflight.save, {"n": 0}

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        save(*args, **kwargs)
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(_inflight, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        _sweep.sweep(grid, out, chunk=300, bucket_ratio=1.1, cache=False)
    monkeypatch.setattr(_inflight, "save", save)
    saved = _inflight.load_all(f"{out}/inflight", _driver.run_identity(
        grid, jnp.dtype("float64"), _sweep._engines.FullEngine()))
    assert saved and all(int(v["step"]) > 0 for v in saved.values())
    resumed = _sweep.sweep(grid, out, resume=True, chunk=300, cache=False)
    _assert_same(resumed, full)
    assert [r["iterations"] for r in resumed] == [r["iterations"] for r in full]


def test_unusable_checkpoints_restart_their_configurations(tmp_path, reference):
    out = tmp_path / "sw"
    (out / "inflight").mkdir(parents=True)
    (out / "runs.csv").write_text(",".join(_sweep.COLUMNS) + "\n")
    (out / "inflight" / "garbage.npz").write_bytes(b"not a checkpoint")
    (out / "inflight" / ".x.npz.123.tmp").write_bytes(b"torn")
    with pytest.warns(UserWarning, match="garbage.npz"):
        rows = _sweep.sweep(GRID, str(out), resume=True, **OPTS)
    _assert_same(rows, reference["unrolled"])
    assert not (out / "inflight").exists()


def test_resume_after_sigkill(tmp_path, reference):
    out = str(tmp_path / "sw")
    script = GRID_SCRIPT + f"S.sweep(GRID, {out!r}, chunk=1, bucket_ratio=1.5, cache=False)\n"
    env = {**os.environ, "JAX_ENABLE_X64": "1", "PYTHONPATH": _root()}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=_root())
    try:
        reached = wait_until(lambda: os.path.exists(f"{out}/runs.csv"), proc)
    finally:
        proc.kill()
        proc.wait()
    assert reached and proc.returncode == -signal.SIGKILL, "the sweep ended before the kill"
    rows = _sweep.sweep(GRID, out, resume=True, **OPTS)
    _assert_same(rows, reference["unrolled"])
    assert len(_store.read_csv(f"{out}/runs.csv")) == len(GRID.configs())


def _root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_four_devices_equal_one(reference):
    script = GRID_SCRIPT + (
        "import json, jax\n"
        "assert len(jax.devices()) == 4\n"
        "rows = S.sweep(GRID, chunk=7, bucket_ratio=1.5, matmul='unrolled', cache=False)\n"
        "looped = S.sweep(GRID, chunk=7, matmul='dot', batching='loop', cache=False)\n"
        "print(json.dumps([rows, looped]))\n")
    env = {**os.environ, "JAX_ENABLE_X64": "1", "PYTHONPATH": _root(),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=_root(),
                         capture_output=True, text=True, check=True)
    rows, looped = json.loads(out.stdout.strip().splitlines()[-1])
    _assert_same(rows, reference["unrolled"])
    _assert_same(looped, reference["dot"])  # a loop per device shard


def test_pruned_tuning_keeps_the_fastest_rate():
    # Pruning stops rates that cannot win; the winner per configuration must not change.
    grid = _sweep.Grid(inits=("zas", "near-identity"), targets=("gaussian",), dims=(2,),
                       depths=(3, 6), seeds=(0, 1), lrs=(0.003, 0.01, 0.03, 0.1, 0.3),
                       eps=1e-10, max_iters=3000)
    full = _sweep.sweep(grid, chunk=50, dtype="float64", cache=False)
    pruned = _sweep.sweep(grid, chunk=50, dtype="float64", tune_lr=True, cache=False)
    assert any(r["status"] == "pruned" for r in pruned)
    key = lambda r: (r["init"], r["depth"], r["seed"])
    best_full = {key(r): r for r in _sweep.best_per_config(full)}
    best_pruned = {key(r): r for r in _sweep.best_per_config(pruned)}
    assert best_full.keys() == best_pruned.keys()
    for k, r in best_full.items():
        assert (best_pruned[k]["lr"], best_pruned[k]["iterations"]) == (r["lr"], r["iterations"])
    assert sum(r["steps"] for r in pruned) < sum(r["steps"] for r in full)


@pytest.mark.slow
def test_inputs_are_make_init_padded_by_pad_depth():
    # The sweep draws each configuration's weights on the device with its depth as data,
    # into a stack of the class's capacity; the result must be make_init followed by
    # pad_depth, at any depth (to rounding: XLA may fuse the compiled draw's scaling
    # differently from the op-by-op one).
    import jax

    from zasjax._inits import make_init
    from zasjax._network import pad_depth

    for init, L in (("near-identity", 130), ("balanced", 7), ("zas", 3), ("orthogonal", 4)):
        grid = _sweep.Grid(inits=(init,), targets=("gaussian",), dims=(2,),
                           depths=(L,), seeds=(3,), lrs=(0.01,))
        (cfg,) = grid.configs()
        host = build_inputs(grid, [cfg], L + 2, jnp.float64)
        key = jax.random.fold_in(jax.random.key(3), 0)
        W = make_init(init, key, (2,) * (L + 1), None, jnp.float64)
        W_pad, mask_pad = pad_depth(W, jnp.ones((L, 1, 1), jnp.float64), L + 2)
        np.testing.assert_allclose(host["W"][0], np.asarray(W_pad), rtol=1e-15, atol=1e-15)
        assert np.array_equal(host["W"][0][L:], np.asarray(W_pad)[L:])
        assert np.array_equal(host["mask"][0], np.asarray(mask_pad))
        # The same configuration in a deeper class draws the same numbers.
        deeper = build_inputs(grid, [cfg], 4 * L, jnp.float64)
        assert np.array_equal(deeper["W"][0][:L], host["W"][0][:L])


@pytest.mark.slow
def test_modes_engine_gives_the_full_engines_rows():
    # GD from ZAS reduces exactly to d scalar pairs (zasjax._modes): the same status,
    # iterations and steps in every row, losses to rounding. Rates well inside the stable
    # range, where the full engine's own result does not hinge on rounding.
    grid = _sweep.Grid(inits=("zas",), targets=("neg-identity", "gaussian", "psd"), dims=(1, 2),
                       depths=(1, 2, 5, 16), seeds=(0, 3), lrs=(0.01, 0.02), max_iters=4000)
    full = _sweep.sweep(grid, chunk=500, **{k: v for k, v in OPTS.items() if k != "chunk"})
    modes = _sweep.sweep(grid, chunk=500, engine="modes", cache=False)
    assert [_sweep.config_key(r) for r in modes] == [_sweep.config_key(r) for r in full]
    for m, f in zip(modes, full):
        assert (m["status"], m["iterations"], m["steps"]) == (f["status"], f["iterations"],
                                                              f["steps"]), (m, f)
        # Rounding in E = W_{L:1} − Φ is absolute, hence the floor near R ≈ ε.
        assert abs(m["final_loss"] - f["final_loss"]) <= 1e-9 * f["final_loss"] + 1e-18
    assert {r["status"] for r in modes} == {"converged"}


def test_modes_engine_refuses_what_it_cannot_represent():
    for grid, what in ((_sweep.Grid(inits=("zas", "near-identity")), "near-identity"),
                       (_sweep.Grid(optimizer="adam"), "optimizer adam")):
        with pytest.raises(ValueError, match=what):
            _sweep.sweep(grid, engine="modes", cache=False)
    with pytest.raises(ValueError, match="unknown engine"):
        _sweep.sweep(GRID, engine="exact", cache=False)


def test_default_tuning_grid_follows_depth():
    # Stable rates shrink like 1/L: the default grid reaches 2/L at every depth.
    grid = _sweep.Grid(depths=(1, 1024), lrs=_sweep.AUTO_LRS)
    lrs = {L: sorted(r["lr"] for r in grid.configs() if r["depth"] == L) for L in (1, 1024)}
    assert lrs[1][0] == 2.0**-14 and lrs[1][-1] == 1.0
    assert lrs[1024][0] == 2.0**-24 and lrs[1024][-1] == 2.0 / 1024


def test_learning_rates_per_depth_or_per_seed_and_depth():
    by_depth = _sweep.Grid(depths=(1, 4), lrs={4: (0.1, 0.2), 1: (0.5,)})
    assert [(r["depth"], r["lr"]) for r in by_depth.configs()] == [(1, 0.5), (4, 0.1), (4, 0.2)]
    # Keyed by (seed, depth): each seed has its own rates, e.g. capped at its own Φ's bound.
    by_seed = _sweep.Grid(depths=(1, 4), seeds=(0, 7),
                          lrs={(0, 1): (0.5,), (7, 1): (0.25,), (0, 4): (0.1,), (7, 4): (0.05,)})
    assert [(r["depth"], r["seed"], r["lr"]) for r in by_seed.configs()] == [
        (1, 0, 0.5), (1, 7, 0.25), (4, 0, 0.1), (4, 7, 0.05)]
    assert by_seed.lrs_at(4, 7) == (0.05,)
    json.dumps(by_seed.identity())  # config.json holds it
    with pytest.raises(ValueError, match="depend on the seed"):
        by_seed.lrs_at(4)
    bad = [({(0, 1): (0.5,)}, r"\(seed, depth\) pairs \[\(0, 1\), \(0, 4\)"),  # missing (0, 4)
           ({1: (0.5,), (0, 4): (0.1,)}, "not a mix"),
           ({(0, 1): (0.5,), (0, 4): ()}, "at least one lr"),
           ({1: (0.5,), 4: (0.1,), 8: (0.1,)}, "exactly the depths")]
    for lrs, match in bad:
        with pytest.raises(ValueError, match=match):
            _sweep.Grid(depths=(1, 4), lrs=lrs)
