"""Sweeps of any size: the grid's index, lazy planning, Parquet results, a full disk."""

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import wait_until

import zasjax as zj
from zasjax import _store
from zasjax._sweep import _plan, _results
from zasjax._sweep._grid import Grid

# The second tier (`pytest -m slow`): real processes, killed, several at once, or at scale.
pytestmark = pytest.mark.slow

ZASJAX = [sys.executable, "-m", "zasjax"]
GRIDS = {
    "product": Grid(inits=("zas", "identity"), targets=("neg-identity", "gaussian"),
                    dims=(1, 2), depths=(1, 3, 7), seeds=(0, 5, 9), lrs=(0.1, 0.01)),
    "auto-rates": Grid(depths=(1, 2, 4), seeds=(0, 1), lrs="auto"),
    "rates-per-seed": Grid(depths=(1, 4), seeds=(0, 1), lrs={
        (0, 1): (0.5,), (0, 4): (0.1, 0.2), (1, 1): (0.3, 0.2, 0.1), (1, 4): (0.7,)}),
    "dmf-axes": Grid(inits=("small-gaussian",), targets=("low-rank",), dims=(6,),
                     depths=(2, 3), seeds=(0, 1), objective="completion",
                     observations=(10, 20), init_scale=(1e-3, 1e-2), rank=2),
}


def listing(g: Grid) -> list[dict]:
    """Every configuration, listed the plain way (what the index must reproduce)."""
    return [dict(init=i, target=t, dim=d, depth=L, seed=s, lr=lr, optimizer=g.optimizer,
                 objective=g.objective, model=g.model, observations=n, init_scale=x)
            for i, t, d, L, n, x, s in itertools.product(
                g.inits, g.targets, g.dims, g.depths, g.observations or (None,),
                g.init_scale or (None,), g.seeds)
            for lr in g.lrs_at(L, s)]


@pytest.mark.parametrize("name", GRIDS)
def test_index_is_the_listing_and_positions_invert_it(name):
    g = GRIDS[name]
    rows = listing(g)
    assert g.index.size == len(rows)
    assert g.index.rows(np.arange(len(rows))) == rows
    assert [g.index.position(r) for r in rows] == list(range(len(rows)))
    stranger = {**rows[0], "seed": 12345}
    assert g.index.position(stranger) == -1  # not this grid's


@pytest.mark.parametrize("name", GRIDS)
@pytest.mark.parametrize("batch", [1, 3, 5, 64])
def test_slices_cover_every_position_once_cut_at_rate_groups(name, batch):
    g = GRIDS[name]
    index = g.index
    seen = []
    for cls in _plan.classes(index, 2.0, 1, 1 << 30, 8, g.optimizer, max_batch=batch):
        depths = {g.depths[i] for i in cls.depths}
        for part in _plan.parts(index, cls):
            assert 0 < part.size <= cls.batch
            positions = [p for a, n in part.pieces for p in range(a, a + n)]
            rows = index.rows(positions)
            assert {r["dim"] for r in rows} == {cls.dim} and {r["depth"] for r in rows} <= depths
            assert part.active == max(r["depth"] for r in rows)
            groups = {tuple(v for k, v in r.items() if k != "lr") for r in rows}
            largest = max(index.largest_group(i) for i in cls.depths)
            if largest <= cls.batch:  # a configuration's rates are never split
                for grp in groups:
                    members = [r for r in listing(g)
                               if tuple(v for k, v in r.items() if k != "lr") == grp]
                    assert all(m in rows for m in members)
            seen += positions
    assert sorted(seen) == list(range(index.size))


def test_a_billion_configurations_plan_in_bounded_memory():
    grid = Grid(inits=("zas",), targets=("gaussian",), dims=(2,), depths=range(1, 10_001),
                seeds=range(100_000), lrs=(0.001,), max_iters=10)
    tracemalloc.start()
    plan = zj.plan_sweep(grid, calibrate=False, dtype="float32")
    first = next(_plan.parts(grid.index, _plan.classes(
        grid.index, None, 1, 1 << 28, 4, "gd")[-1]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert plan.configs == grid.index.size == 10**9
    assert plan.results_format == "parquet"
    assert sum(c.configs for c in plan.classes) == 10**9
    assert "1,000,000,000 configurations" in str(plan)
    assert first.size <= _plan.HOST_BATCH
    assert peak < 64 * 2**20, f"planning held {peak / 2**20:.0f} MiB"


def _high_water_mark(pid: int) -> int:
    """Peak resident memory of a running process, in bytes (Linux: VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb * 1024


def test_a_billion_configurations_run_a_few_slices_and_stop_cleanly(tmp_path):
    # The CLI, from its first slices to SIGINT (exit 130), in a separate process whose peak
    # resident memory is measured; what it wrote are the grid's first positions.
    out = tmp_path / "big"
    args = ["sweep", "--init", "zas", "--target", "gaussian", "--dim", "2", "--depths",
            "1:10001", "--seeds", "0:100000", "--lr", "0.001", "--max-iters", "10",
            "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(ZASJAX + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = out / "results.parquet"
    assert wait_until(lambda: results.is_dir() and len(os.listdir(results)) >= 2, proc=proc,
                      timeout=240), proc.communicate()[1].decode()[-2000:]
    peak = _high_water_mark(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"--resume" in err and b"Traceback" not in err
    assert peak < 2 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"
    grid = Grid(inits=("zas",), targets=("gaussian",), dims=(2,), depths=range(1, 10_001),
                seeds=range(100_000), lrs=(0.001,), max_iters=10)
    for name in sorted(os.listdir(results))[:2]:
        lo, hi = (int(x) for x in name[len("part-"):-len(".parquet")].split("-"))
        rows = _results.read_parquet(str(results / name))
        assert [r["index"] for r in rows] == list(range(lo, hi))
        expect = grid.index.rows(range(lo, hi))
        assert [{k: r[k] for k in e} for r, e in zip(rows, expect)] == expect
        assert {r["steps"] for r in rows} <= {10} | {r["iterations"] for r in rows}


def _table(rows):
    return sorted((tuple(r[k] for k in zj._sweep.KEY_COLUMNS), r["status"], r["iterations"],
                   r["steps"], r["final_loss"]) for r in rows)


@pytest.fixture(scope="module")
def tuning():
    grid = Grid(depths=(1, 2, 3, 5), seeds=(0, 1, 2), lrs=(0.05, 0.1, 0.2, 0.4, 0.8),
                targets=("gaussian",), dims=(2,), max_iters=3000)
    return grid, zj.sweep(grid, tune_lr=True, chunk=40, cache=False)


def test_parquet_results_equal_csv_and_resume_exactly(tmp_path, tuning, monkeypatch):
    # Interrupted mid-slice (a checkpoint written), resumed: the Parquet table equals the
    # CSV one of an uninterrupted run, configuration by configuration, pruning included.
    grid, rows = tuning
    best = zj.best_per_config(rows)
    out = str(tmp_path / "pq")
    from zasjax._sweep import _inflight

    save, calls = _inflight.save, {"n": 0}

    def flaky_save(*args, **kwargs):
        save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_inflight, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        zj.sweep(grid, out, tune_lr=True, chunk=40, cache=False, results="parquet",
                 max_batch=10)
    monkeypatch.setattr(_inflight, "save", save)
    assert os.listdir(f"{out}/runs.parquet") and os.listdir(f"{out}/inflight")
    assert zj.sweep(grid, out, resume=True, tune_lr=True, chunk=40, cache=False,
                    max_batch=10) is None
    df = zj.load_sweep(out)
    got = [{k: (None if v is None or v != v else v) for k, v in r.items()}
           for r in df.astype(object).where(df.notna(), None).to_dict("records")]
    assert _table(got) == _table(best)
    runs = zj.load_sweep(out, runs=True)
    assert len(runs) == len(rows) and runs["index"].is_unique
    assert not os.path.exists(f"{out}/inflight")


NAMESPACE = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "--mount", "--map-root-user", "true"], capture_output=True).returncode == 0


DISK_SWEEP = ["sweep", "--depths", "1:17", "--seeds", "0:8", "--lr", "0.01,0.02", "--target",
              "gaussian", "--dim", "2", "--chunk", "50", "--max-iters", "1500", "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(ZASJAX + DISK_SWEEP + ["--out", str(out)], check=True, capture_output=True)
    return zj.load_sweep(out)


@pytest.mark.skipif(not NAMESPACE, reason="needs `unshare --mount --map-root-user` to "
                                          "mount a small tmpfs")
@pytest.mark.parametrize("fault, results", [("full", "csv"), ("read-only", "parquet")])
def test_a_full_disk_is_one_line_and_the_moved_folder_resumes(tmp_path, fault, results,
                                                              uninterrupted):
    args = DISK_SWEEP + ["--results", results]
    disk, moved = tmp_path / "disk", tmp_path / "moved"
    disk.mkdir()
    runs = "runs.csv" if results == "csv" else "runs.parquet/run-*"
    # In a mount namespace of its own: a 4 MB tmpfs; once a row is written, fill it (or make
    # the folder read-only, by a read-only bind mount over it); the sweep's error; then the
    # folder is moved out. The sweep is stopped while the fault is made: a file it opened
    # through the new bind mount in between would make the read-only remount busy.
    cut = "dd if=/dev/zero of=$D/filler bs=4k 2>/dev/null" if fault == "full" else \
        "mount --bind $D/run $D/run && mount -o remount,bind,ro $D/run"  # open files or not
    script = f"""
D={disk}; mount -t tmpfs -o size=4m tmpfs $D
{' '.join(ZASJAX + args)} --out $D/run 2>$D/../err & pid=$!
until ls $D/run/{runs} >/dev/null 2>&1; do sleep 0.02; done
kill -STOP $pid; {cut}; kill -CONT $pid
wait $pid; echo $? > {tmp_path}/rc
cp -a $D/run {moved}
"""
    subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], check=True,
                   timeout=300)
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "74", err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("zasjax: error: cannot write "), err
    assert ("No space left" if fault == "full" else "Read-only") in lines[0]
    assert "--resume" in lines[0] and "needs about" in lines[0]
    if results == "csv":  # what was written is whole rows
        assert all(len(r) == len(zj._sweep.COLUMNS) for r in
                   _store.read_csv(moved / "runs.csv"))
    done = subprocess.run(ZASJAX + args + ["--out", str(moved), "--resume"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = uninterrupted, zj.load_sweep(moved)
    cols = [c for c in a.columns if c != "index"]
    key = ["depth", "seed", "lr"]
    assert a[cols].sort_values(key).reset_index(drop=True).equals(
        b[cols].sort_values(key).reset_index(drop=True))


def test_plan_refuses_results_beyond_the_free_disk(monkeypatch, tmp_path):
    from zasjax._sweep import _report

    grid = Grid(depths=range(1, 101), seeds=range(20_000), lrs=(0.01,), max_iters=10)
    plan = zj.plan_sweep(grid, str(tmp_path / "run"), calibrate=False, dtype="float32")
    assert plan.results_format == "parquet" and plan.result_bytes > 2 * 10**6
    monkeypatch.setattr(_report, "_free", lambda out: 10**6)
    with pytest.raises(ValueError, match=r"the results need about .* more than the 1\.0 MB "
                                         r"free"):
        zj.plan_sweep(grid, str(tmp_path / "run"), calibrate=False, dtype="float32")


def test_progress_reports_rate_and_time_left(capfd):
    grid = Grid(depths=(1, 2), seeds=(0, 1), lrs=(0.01,), max_iters=200)
    zj.sweep(grid, progress=True, chunk=50, cache=False)
    err = capfd.readouterr().err
    assert "4/4 configs done" in err and "sweep ETA" in err and "slice ETA <=" in err
