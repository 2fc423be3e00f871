"""The persistent compilation cache: a second run compiles nothing; processes may share it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["sweep", "--depths", "1:40", "--seeds", "0:3", "--dim", "3", "--lr", "0.01", "--x64",
        "--no-progress"]


def _start(out, cache, **env):
    env = {**os.environ, "PYTHONPATH": ROOT, "ZASJAX_CACHE_DIR": str(cache), **env}
    return subprocess.Popen([sys.executable, "-m", "zasjax", *ARGS, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _timing(out):
    return json.loads((out / "config.json").read_text())["timing"]


def test_two_processes_share_a_cold_cache_then_a_third_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    procs = [_start(tmp_path / f"run{i}", cache) for i in range(2)]  # at the same time
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err
        assert "cache" not in err.lower(), err  # no torn or failed cache reads or writes
    results = [(tmp_path / f"run{i}" / "results.csv").read_text() for i in range(2)]
    assert results[0] == results[1]
    assert any(_timing(tmp_path / f"run{i}")["programs"] > 0 for i in range(2))

    third = _start(tmp_path / "run2", cache)
    third.communicate()
    assert third.returncode == 0
    timing = _timing(tmp_path / "run2")
    assert timing["programs"] == 0 and timing["cache_hits"] >= 2
    assert timing["cache_dir"] == str(cache)
    assert (tmp_path / "run2" / "results.csv").read_text() == results[0]


def test_cache_can_be_switched_off(tmp_path):
    cache = tmp_path / "cache"
    p = _start(tmp_path / "run", cache, ZASJAX_CACHE="0")
    p.communicate()
    assert p.returncode == 0
    timing = _timing(tmp_path / "run")
    assert timing["cache_dir"] is None and timing["cache_hits"] == 0 and timing["programs"] > 0
    assert not cache.exists()
