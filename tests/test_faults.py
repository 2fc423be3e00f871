"""Faults a sweep must survive: kills at awkward moments, interrupts, two writers, changed
options on resume, unreadable files, and bad input (one line, exit 2, nothing written).

The process killed is always a real `zasjax` process, killed when the moment has come (a
file written, seen by polling); what needs no process of its own (the uninterrupted
reference, the resumes, the refused second writer) runs in this one through `main`."""

import csv
import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import wait_until

from zasjax.cli import main

# The second tier (`pytest -m slow`): real processes, killed, several at once, or at scale.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A sweep of a few seconds whose 1,024 rows finish over its 200 chunks: enough chunks and
# checkpoints to be killed in the middle of.
LONG = ["sweep", "--depths", "1:65", "--seeds", "0:16", "--lr", "0.0001", "--max-iters", "60000",
        "--chunk", "300", "--x64", "--no-progress"]


def _cli(args, **kw):
    # As at a terminal: a shell without job control starts background commands (a CI runner
    # started with `&`) with SIGINT ignored, and exec passes "ignored" on, so the child would
    # never see ^C. A caught signal is reset to its default by exec instead.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-m", "zasjax", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _rows(path):
    with open(path, newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: (int(r["depth"]), int(r["seed"])))


def _row_count(path):
    with open(path, "rb") as f:
        return f.read().count(b"\n") - 1  # less the header; cheap enough to poll


@pytest.fixture(scope="session")
def uninterrupted(once):
    def run(folder):
        assert main([*LONG, "--out", str(folder / "run")]) == 0
        return _rows(folder / "run" / "results.csv")

    return once("faults-uninterrupted", run)


def _same_table(a, b):
    assert len(a) == len(b)
    for r, e in zip(a, b):
        for k in ("init", "target", "dim", "depth", "seed", "lr", "status", "iterations", "steps"):
            assert r[k] == e[k], (k, r, e)
        assert abs(float(r["final_loss"]) - float(e["final_loss"])) <= 1e-12 * abs(
            float(e["final_loss"]))


def _checkpoints(out):
    """name -> (size, mtime) of every checkpoint in flight."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in (out / "inflight").glob("*.npz")}


def _inflight(out):
    return bool((out / "inflight").is_dir() and _checkpoints(out))


# The moments: once some rows are written, once a checkpoint exists, while temporary files
# are being written (mid-write), and once a seventh of the rows are in.
MOMENTS = {
    "first rows": lambda out: (out / "runs.csv").exists(),
    "checkpoint": _inflight,
    "mid-write": lambda out: (out / "inflight").is_dir() and any(
        p.name.endswith(".tmp") for p in (out / "inflight").iterdir()),
    "later": lambda out: (out / "runs.csv").exists() and _row_count(out / "runs.csv") > 150,
}


def _kill_when(args, moment, sig=signal.SIGKILL):
    """Start `zasjax *args`, send `sig` once `moment()` holds; (returncode, stderr). Fails
    unless the signal found the sweep running."""
    proc = _cli(args)
    reached = wait_until(moment, proc)
    proc.send_signal(sig)
    _, err = proc.communicate()
    assert reached, f"the sweep ended before the moment (exit {proc.returncode}): {err}"
    return proc.returncode, err


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, uninterrupted, moment):
    out = tmp_path / "run"
    code, _ = _kill_when([*LONG, "--out", str(out)], lambda: MOMENTS[moment](out))
    assert code == -signal.SIGKILL and not (out / "results.csv").exists()  # killed mid-sweep
    assert main([*LONG, "--out", str(out), "--resume"]) == 0
    _same_table(_rows(out / "results.csv"), uninterrupted)
    assert len(_rows(out / "runs.csv")) == len(uninterrupted)  # each row exactly once
    assert not (out / "inflight").exists()  # stale checkpoints and torn writes are gone


def test_sigint_stops_cleanly_and_resumes(tmp_path, uninterrupted):
    out = tmp_path / "run"
    code, err = _kill_when([*LONG, "--out", str(out)], lambda: _inflight(out), signal.SIGINT)
    assert code == 130
    assert "--resume" in err and "Traceback" not in err
    assert main([*LONG, "--out", str(out), "--resume"]) == 0
    _same_table(_rows(out / "results.csv"), uninterrupted)


def test_kill_on_resume_with_changed_options_then_resume_again(tmp_path, uninterrupted):
    out = tmp_path / "run"
    code, _ = _kill_when([*LONG, "--out", str(out)], lambda: _inflight(out))
    assert code == -signal.SIGKILL
    # Another chunk size and capacity classes: the grouping changes, the results must not.
    # Killed once the resumed process has written a checkpoint of its own.
    before = _checkpoints(out)
    changed = [*LONG, "--out", str(out), "--resume", "--bucket-ratio", "1.5", "--chunk", "97"]
    code, _ = _kill_when(changed, lambda: any(
        before.get(name) != state for name, state in _checkpoints(out).items()))
    assert code == -signal.SIGKILL and not (out / "results.csv").exists()
    assert main([*LONG, "--out", str(out), "--resume"]) == 0
    _same_table(_rows(out / "results.csv"), uninterrupted)


def test_two_writers_one_folder(tmp_path, capsys):
    out = tmp_path / "run"
    first = _cli([*LONG, "--out", str(out)])
    try:
        assert wait_until(lambda: (out / "config.json").exists(), first)
        assert main([*LONG, "--out", str(out), "--resume"]) == 2
        assert first.poll() is None  # the first writer held the folder all along
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by pid" in err and str(first.pid) in err


def test_resume_refuses_other_dtype_or_tuning(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["sweep", "--depths", "1,2", "--lr", "0.1,0.2", "--out", out, "--no-progress"]
    assert main(base) == 0
    before = open(os.path.join(out, "runs.csv")).read()
    for extra in (["--x64"], ["--tune-lr"], ["--max-iters", "5"]):
        assert main([*base, "--resume", *extra]) == 2
        assert "different sweep" in capsys.readouterr().err
    assert open(os.path.join(out, "runs.csv")).read() == before


@pytest.mark.parametrize("extra", [["--lr", "100"], ["--lr", "1e-6", "--max-iters", "10"]])
def test_nothing_converges_is_still_a_result(tmp_path, extra):
    out = tmp_path / "run"
    assert main(["sweep", "--depths", "1,3", "--out", str(out), "--no-progress", *extra]) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 and not any(r["status"] == "converged" for r in rows)
    assert (out / "iterations_vs_depth.png").stat().st_size > 1000


def test_unreadable_files_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["sweep", "--depths", "1,2", "--out", str(out), "--no-progress"]
    assert main(base) == 0
    (out / "inflight").mkdir()
    (out / "inflight" / "x.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="x.npz"):
        assert main([*base, "--resume"]) == 0  # a bad checkpoint: its configurations restart
    (out / "runs.csv").write_text("garbage,only\n1\n")
    assert main([*base, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "runs.csv" in err and err.count("\n") == 1


def test_results_follow_the_umask(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(["sweep", "--depths", "1", "--out", str(out), "--no-progress"]) == 0
    finally:
        os.umask(old)
    for name in ("results.csv", "runs.csv", "config.json", "iterations_vs_depth.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("zasjax ")


def _bad_inputs(tmp):
    (tmp / "afile").write_text("x")
    (tmp / "text.npy").write_text("1 2\n3 4\n")
    np.savez(tmp / "arch.npz", a=np.eye(2))
    np.save(tmp / "huge.npy", np.full((1, 1), 1e300))
    return {
        "seed beyond int32": (["--seeds", "2147483648"], "seeds must be in"),
        "max-iters beyond int32": (["--max-iters", "3000000000"], "max_iters must be in"),
        "unknown optimizer argument": (["--optimizer", "momentum", "--opt-arg", "unknown=1"],
                                       "takes momentum"),
        "argument for plain gd": (["--opt-arg", "momentum=0.9"], "takes no hyper-parameters"),
        "out is a file": (["--out", str(tmp / "afile")], "is not a folder"),
        "out under a file": (["--out", str(tmp / "afile" / "x")], "which is a file"),
        "out in /proc": (["--out", "/proc/zasjax-x"], "cannot write"),
        "empty out": (["--out", ""], "must name a folder"),
        "text target": (["--target-file", str(tmp / "text.npy"), "--dim", "2"],
                        "expected a .npy array of shape (2, 2)"),
        "archive target": (["--target-file", str(tmp / "arch.npz"), "--dim", "2"],
                           "expected a .npy array of shape (2, 2)"),
        "target overflows float32": (["--target-file", str(tmp / "huge.npy")],
                                     "too large for float32"),
        "target and target file": (["--target", "gaussian", "--target-file",
                                    str(tmp / "huge.npy"), "--x64"], "not both"),
        "repeated depth": (["--depths", "2,4,2"], "listed twice"),
        "repeated seed": (["--seeds", "0,1,0"], "listed twice"),
        "nan ratio": (["--bucket-ratio", "nan"], "--bucket-ratio"),
        "huge width": (["--dim", "2000000", "--depths", "1"], "GiB per configuration"),
    }


def test_bad_sweep_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    for name, (args, message) in _bad_inputs(tmp_path).items():
        out = [] if "--out" in args else ["--out", str(tmp_path / "never")]
        assert main(["sweep", "--no-progress", *out, *args]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (name, err)
        assert "pickle" not in err, name
        assert not (tmp_path / "never").exists(), name


def test_bad_flow_input_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = {
        "out is a file": (["--out", str(tmp_path / "afile")], "is not a folder"),
        "lr beyond the horizon": (["--lrs", "20", "--t-max", "10"], "not below --t-max"),
        "too many saves": (["--n-save", "2000000000"], "--n-save must be in"),
    }
    for name, (args, message) in cases.items():
        out = [] if "--out" in args else ["--out", str(tmp_path / "never")]
        assert main(["flow", "--target", "neg-identity", *out, *args]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (name, err)
        assert not (tmp_path / "never").exists(), name
