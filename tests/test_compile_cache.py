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


# ---------------------------------------------------------------------------------------------
# A warm run under another JAX setting is that setting's run, never a stale one
# ---------------------------------------------------------------------------------------------

import contextlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import zasjax  # noqa: E402
from zasjax import _compilation  # noqa: E402

# The second tier (`pytest -m slow`): real processes, killed, several at once, or at scale.
pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path):
    """JAX's persistent cache in `tmp_path` for one test, then back to the suite's."""
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    assert _compilation.use_cache_dir(str(tmp_path)) == str(tmp_path)
    yield tmp_path
    jax.config.update("jax_compilation_cache_dir", before)
    compilation_cache.reset_cache()


def _as_new_process():
    jax.clear_caches()


@contextlib.contextmanager
def _setting(name, value):
    before = getattr(jax.config, name)
    jax.config.update(name, value)
    try:
        yield
    finally:
        jax.config.update(name, before)


def test_a_warm_sweep_under_another_seed_offset_gives_that_settings_rows(cache, monkeypatch):
    grid = zasjax.Grid(inits=("near-identity",), targets=("gaussian",), dims=(2,), depths=(1,),
                       seeds=(0, 1), lrs=(0.01,), max_iters=20, eps=1e-30)

    def rows():
        _as_new_process()
        return [(r["final_loss"], r["status"]) for r in zasjax.sweep(grid, dtype="float64")]

    old = rows()
    with _setting("jax_random_seed_offset", 7):
        warm = rows()
        monkeypatch.setenv("ZASJAX_CACHE", "0")
        cold = rows()
    assert warm == cold and cold != old


def _settings_text():
    return {k: repr(v) for k, v in jax.config.values.items()}


def test_a_persistent_cache_block_puts_every_jax_setting_back(tmp_path, monkeypatch):
    monkeypatch.delenv("ZASJAX_CACHE", raising=False)
    with _setting("jax_compilation_cache_dir", None):
        _as_new_process()
        before = _settings_text()
        with _compilation.persistent_cache(str(tmp_path / "ours")) as where:
            assert where == jax.config.jax_compilation_cache_dir == str(tmp_path / "ours")
            jax.jit(lambda x: x * 3.0 + 1.0)(jnp.arange(5.0)).block_until_ready()
        assert _settings_text() == before
        written = sorted(os.listdir(where))
        assert written  # the block's compilation went to the cache
        jax.jit(lambda x: x * 5.0 - 2.0)(jnp.arange(5.0)).block_until_ready()
        assert sorted(os.listdir(where)) == written  # and none after it

        monkeypatch.setenv("ZASJAX_CACHE", "0")
        with _compilation.persistent_cache(str(tmp_path / "off")) as where:
            assert where is None and _settings_text() == before
    with _setting("jax_compilation_cache_dir", str(tmp_path / "theirs")):
        monkeypatch.delenv("ZASJAX_CACHE")
        before = _settings_text()
        with _compilation.persistent_cache(str(tmp_path / "ours")) as where:
            assert where == str(tmp_path / "theirs") and _settings_text() == before
        assert _settings_text() == before
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
