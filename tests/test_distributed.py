"""Multi-process sweeps on JAX's distributed runtime (gloo collectives on CPU), as a cluster
runs them: N processes joined by `jax.distributed.initialize`, process 0 writing.

Equality with one process, with several devices per process, a worker killed mid-sweep
(reported in one line, no hang, resumed to the same table), and process 0's refusals
reaching the others. Every worker is a real process; a launcher or a single process runs
in this one (through `main`) where nothing kills it; each sweep lasts a few seconds."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import wait_until

from zasjax.cli import main

# The second tier (`pytest -m slow`): real processes, killed, several at once, or at scale.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 64 configurations of a few hundred to ~1300 iterations in chunks of 100: rows finish over
# a dozen chunks, so a worker can be killed in the middle.
GRID = ["sweep", "--depths", "1:9", "--seeds", "0:4", "--lr", "0.005,0.01", "--max-iters",
        "3000", "--chunk", "100", "--x64", "--no-progress"]
KEYS = ("init", "target", "dim", "depth", "seed", "lr", "optimizer")


def _cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    env = {**os.environ, "PYTHONPATH": ROOT}
    for name in ("ZASJAX_COORDINATOR", "ZASJAX_NUM_PROCESSES", "ZASJAX_PROCESS_ID",
                 "ZASJAX_DEVICES", "ZASJAX_LAUNCHER_PID"):
        env.pop(name, None)  # never a worker of someone else's launcher
    return subprocess.Popen([sys.executable, "-m", "zasjax", *args], cwd=ROOT, env=env,
                            stdout=stdout, stderr=stderr, text=True)


def _finish(proc, timeout=120):
    """(exit status, stdout, stderr) of `proc`; a process still running after `timeout`
    seconds is killed and the test fails (a hang, never a slow machine)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout} s:\n{err}")
    return proc.returncode, out, err


def _rows(path):
    with open(path, newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: tuple(r[k] for k in KEYS))


def _same_table(a, b, exact=False):
    assert [tuple(r[k] for k in KEYS) for r in a] == [tuple(r[k] for k in KEYS) for r in b]
    for r, e in zip(a, b):
        assert (r["status"], r["iterations"], r["steps"]) == (e["status"], e["iterations"],
                                                               e["steps"]), (r, e)
        if exact:
            assert r["final_loss"] == e["final_loss"], (r, e)
        else:
            assert abs(float(r["final_loss"]) - float(e["final_loss"])) <= 1e-12 * abs(
                float(e["final_loss"])), (r, e)


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("zasjax: error")]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(args, n, extra=()):
    port = _port()
    return [_cli([*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                  "--process-id", str(i), *extra]) for i in range(n)]


@pytest.fixture(scope="session")
def one_process(once):
    def run(folder):
        assert main([*GRID, "--out", str(folder / "run")]) == 0
        return _rows(folder / "run" / "results.csv")

    rows = once("distributed-one-process", run)
    assert {r["status"] for r in rows} == {"converged"}
    assert len({r["iterations"] for r in rows}) > 10  # rows finish over many chunks
    return rows


def test_two_processes_equal_one(tmp_path, one_process, capfd):
    # The launcher runs here; its two workers are processes of their own, writing to this
    # process's stdout and stderr (hence capfd).
    out = tmp_path / "run"
    code = main([*GRID, "--processes", "2", "--out", str(out)])
    stdout, err = capfd.readouterr()
    assert code == 0, err
    _same_table(_rows(out / "results.csv"), one_process)
    assert len(_rows(out / "runs.csv")) == len(one_process)  # each row once: one writer
    assert sorted(os.listdir(out)) == [".lock", "config.json", "iterations_vs_depth.png",
                                       "results.csv", "runs.csv"]
    assert stdout.count("configurations in") == 1  # process 0 alone reports


def test_two_processes_of_two_devices_started_by_hand(tmp_path, one_process):
    # The cluster's way: each process the same command with its id; 4 devices in all.
    out = tmp_path / "run"
    procs = _workers([*GRID, "--out", str(out)], 2, ["--devices", "2"])
    # Against one process of 4 devices (the same batch per device), started beside them.
    four = tmp_path / "four"
    procs.append(_cli([*GRID, "--devices", "4", "--out", str(four)]))
    for p in procs:
        code, _, err = _finish(p)
        assert code == 0, err
    _same_table(_rows(out / "results.csv"), one_process)
    _same_table(_rows(out / "results.csv"), _rows(four / "results.csv"), exact=True)  # bit for bit
    config = json.loads((out / "config.json").read_text())
    assert (config["process_count"], config["device_count"]) == (2, 4)


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _worker_pid(launcher, index):
    for child in _children(launcher):
        with open(f"/proc/{child}/environ", "rb") as f:
            if f"ZASJAX_PROCESS_ID={index}".encode() in f.read().split(b"\0"):
                return child
    raise AssertionError(f"no worker {index} under {launcher}")


def _wait_rows(out, proc):
    return wait_until(lambda: (out / "runs.csv").exists(), proc)


def test_killed_worker_is_one_line_then_resume_finishes(tmp_path, one_process, capfd):
    out = tmp_path / "run"
    args = [*GRID, "--processes", "2", "--out", str(out)]
    launcher = _cli(args)
    assert _wait_rows(out, launcher), "the sweep ended before it could be interrupted"
    os.kill(_worker_pid(launcher.pid, 1), signal.SIGKILL)
    # No hang: the launcher stops the other worker within its grace period (10 s).
    code, _, err = _finish(launcher, timeout=30)
    assert code != 0
    assert len(_errors(err)) == 1 and "Traceback" not in err, err
    assert "worker 1 of 2" in err and "SIGKILL" in err and "--resume" in err
    assert not (out / "results.csv").exists()
    code = main([*args, "--resume"])  # the same command, its launcher here
    assert code == 0, capfd.readouterr().err
    _same_table(_rows(out / "results.csv"), one_process)
    assert len(_rows(out / "runs.csv")) == len(one_process)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def test_sigkilled_launcher_takes_its_workers_with_it(tmp_path):
    # SIGKILL cannot be forwarded: the workers notice their launcher is gone and stop,
    # rather than run on unseen and hold the folder's lock. Output to files: workers that
    # inherited the launcher's pipes would keep them open.
    out = tmp_path / "run"
    # A slow rate: the sweep lasts far longer than the half second the workers need to stop.
    slow = [*GRID[:GRID.index("--lr")], "--lr", "0.0001", "--max-iters", "100000", "--chunk",
            "100", "--x64", "--no-progress"]
    args = [*slow, "--processes", "2", "--out", str(out)]
    with open(tmp_path / "log", "w") as log:
        launcher = _cli(args, stdout=log, stderr=log)
    # Until the first chunk is checkpointed: early in the sweep.
    assert wait_until(lambda: any((out / "inflight").glob("*.npz")), launcher), \
        "the sweep ended before it could be interrupted"
    workers = [_worker_pid(launcher.pid, i) for i in range(2)]
    launcher.kill()
    launcher.wait()
    # Each watches its launcher every half second: 20 s is a generous deadline, not a timing.
    assert wait_until(lambda: not any(_alive(w) for w in workers), timeout=20), \
        (tmp_path / "log").read_text()
    assert "launcher of this sweep is gone" in (tmp_path / "log").read_text()
    assert not (out / "results.csv").exists()  # stopped, not left to finish unseen
    # Resumed by two workers again, and run by one process alone, in chunks of 10,000: the
    # many small chunks were there to make the sweep outlast the kill, and the chunking never
    # changes a row.
    chunked = [*slow[:slow.index("--chunk")], "--chunk", "10000", "--x64", "--no-progress"]
    assert main([*chunked, "--processes", "2", "--out", str(out), "--resume"]) == 0
    alone = tmp_path / "alone"
    assert main([*chunked, "--out", str(alone)]) == 0
    _same_table(_rows(out / "results.csv"), _rows(alone / "results.csv"))


def test_survivor_started_by_hand_stops_with_one_line(tmp_path):
    out = tmp_path / "run"
    first, second = _workers([*GRID, "--out", str(out)], 2)
    assert _wait_rows(out, first), "the sweep ended before it could be interrupted"
    second.kill()
    second.communicate()
    code, _, err = _finish(first, timeout=60)
    assert code == 75  # PEER_LOST
    assert len(_errors(err)) == 1 and "Traceback" not in err, err
    assert "process 0 of 2 stopped" in err and "--resume" in err


def test_refusal_of_process_0_stops_every_process(tmp_path, capfd):
    from zasjax._store import OutputLock

    out = tmp_path / "run"
    out.mkdir()
    with OutputLock(out):  # another writer holds the folder: process 0 refuses
        code = main([*GRID, "--processes", "2", "--out", str(out)])  # launcher here
    err = capfd.readouterr().err
    assert code == 2
    assert len(_errors(err)) == 1 and "in use by" in err, err
    assert sorted(os.listdir(out)) == [".lock"]


@pytest.mark.parametrize("bad", [["--processes", "0"], ["--devices", "zero"],
                                 ["--coordinator", "nohost", "--num-processes", "2",
                                  "--process-id", "0"],
                                 ["--coordinator", "127.0.0.1:1", "--num-processes", "2",
                                  "--process-id", "2"],
                                 ["--process-id", "0"],
                                 ["--processes", "2", "--distributed"]])
def test_bad_process_options_are_one_line(tmp_path, capsys, bad):
    out = tmp_path / "run"
    assert main([*GRID, "--out", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("zasjax: error: "), err
    assert not out.exists()


def test_a_preset_runs_on_several_devices(tmp_path):
    # The fig2-quick grids compute with JAX (their η caps draw Φ), so the CLI builds them
    # only after the devices are set and x64 is on: no "backend already started" refusal,
    # no float32 truncation warning, and the same table as on one device.
    procs = {devices: _cli(["sweep", "--preset", "fig2-quick", "--devices", devices,
                             "--no-progress", "--out", str(tmp_path / devices)])
             for devices in ("1", "2")}  # side by side
    tables = []
    for devices, proc in procs.items():
        out = tmp_path / devices
        code, _, err = _finish(proc, timeout=300)
        assert code == 0, err
        assert "not available" not in err, err
        assert json.loads((out / "config.json").read_text())["device_count"] == int(devices)
        tables.append(_rows(out / "results.csv"))
    _same_table(*tables)


def test_two_processes_save_every_end_to_end_matrix_once(tmp_path, capfd):
    # The end-to-end matrices are gathered by every process (a collective) and written by
    # process 0 alone: one per row, and each the matrix whose loss the row reports.
    import numpy as np

    import zasjax as zj

    out = tmp_path / "run"
    code = main([*GRID, "--processes", "2", "--save", "end-to-end", "--out", str(out)])
    assert code == 0, capfd.readouterr().err
    df = zj.load_sweep(out, arrays=True)
    grid = zj.SweepSpec.from_json(json.loads((out / "config.json").read_text())).grids[0]
    assert len(df) == grid.index.size and df["end_to_end"].map(lambda a: a is not None).all()
    for _, r in df.iterrows():
        _, objective = zj.sweep_problem(grid, depth=int(r["depth"]), seed=int(r["seed"]))
        X = np.asarray(r["end_to_end"], np.float64)
        loss = 0.5 * np.sum((X - np.asarray(objective.phi, np.float64)) ** 2)
        assert abs(loss - r["final_loss"]) <= 1e-5 * max(loss, 1e-30) + 1e-12, r
