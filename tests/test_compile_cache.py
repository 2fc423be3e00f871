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
# zasjax's own store of compiled programs (`_executables`): warm runs neither trace nor lower
# ---------------------------------------------------------------------------------------------

from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from zasjax import _compilation, _executables  # noqa: E402
from zasjax._executables import stored  # noqa: E402


@partial(jax.jit, static_argnames=("power",))
def _moment(x, y, power):
    return jnp.sum(x ** power) * y, jnp.cumsum(x)


@pytest.fixture
def store(tmp_path):
    """The persistent caches in `tmp_path` for one test, then back to the suite's."""
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    assert _compilation.use_cache_dir(str(tmp_path)) == str(tmp_path)
    yield tmp_path / _executables.FOLDER
    jax.config.update("jax_compilation_cache_dir", before)
    compilation_cache.reset_cache()


def _entries(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.exists() else []


def test_a_stored_program_is_the_jitted_one_and_loads_in_a_new_process(store):
    x, y = jnp.linspace(0.1, 2.0, 7), jnp.float64(3.0)
    first = stored(_moment, ("power",))
    got = first(x, y, power=3)  # before `_moment` itself, which would leave nothing to compile
    assert len(_entries(store)) == 1
    expected = _moment(x, y, power=3)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))

    _executables.forget()  # what a new process has
    before = _compilation.compile_stats()
    again = first(x, y, power=3)
    spent = _compilation.compile_stats().since(before)
    assert spent.cache_hits == 1 and spent.programs == 0
    assert all(np.array_equal(a, b) for a, b in zip(again, expected))

    # Another static value, dtype or shape is another program.
    first(x, y, power=2)
    first(x.astype(jnp.float32), y.astype(jnp.float32), power=3)
    first(x[:3], y, power=3)
    assert len(_entries(store)) == 4


def test_a_damaged_entry_is_compiled_again(store):
    x, y = jnp.arange(1.0, 5.0), jnp.float64(2.0)
    stored(_moment, ("power",))(x, y, power=2)
    (entry,) = _entries(store)
    size = entry.stat().st_size
    entry.write_bytes(entry.read_bytes()[: size // 2])  # torn, as no atomic write leaves it

    jax.clear_caches()  # as a new process
    _executables.forget()
    before = _compilation.compile_stats()
    got = stored(_moment, ("power",))(x, y, power=2)
    spent = _compilation.compile_stats().since(before)
    assert spent.programs == 1 and spent.cache_hits == 0
    assert np.array_equal(got[0], _moment(x, y, power=2)[0])
    assert entry.stat().st_size == size  # written whole again


def test_the_key_holds_the_source_and_libraries(store, monkeypatch):
    x, y = jnp.arange(1.0, 4.0), jnp.float64(1.0)
    stored(_moment, ("power",))(x, y, power=2)
    edited = (*_executables._environment()[:1], "an edited zasjax")
    monkeypatch.setattr(_executables, "_environment", lambda: edited)
    jax.clear_caches()
    _executables.forget()
    before = _compilation.compile_stats()
    stored(_moment, ("power",))(x, y, power=2)
    assert _compilation.compile_stats().since(before).programs == 1
    assert len(_entries(store)) == 2


def test_under_a_transformation_it_is_the_function_itself(store):
    f = stored(_moment, ("power",))
    xs = jnp.arange(6.0).reshape(2, 3)
    got = jax.vmap(lambda x: f(x, jnp.float64(2.0), power=2)[0])(xs)
    assert np.allclose(got, 2.0 * jnp.sum(xs ** 2, axis=1))
    assert jax.grad(lambda y: f(xs[1], y, power=1)[0])(jnp.float64(1.0)) == 12.0
    assert _entries(store) == []  # nothing concrete was compiled


def test_only_module_level_functions_with_static_arguments_last():
    with pytest.raises(TypeError, match="module-level"):
        stored(jax.jit(lambda x: x))
    with pytest.raises(TypeError, match="must be the last"):
        stored(_moment, ("x",))


def test_without_the_persistent_cache_nothing_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("ZASJAX_CACHE", "0")
    assert _executables.folder() is None
    got = stored(_moment, ("power",))(jnp.arange(3.0), jnp.float64(1.0), power=1)
    assert float(got[0]) == 3.0


def test_the_store_keeps_its_size_bound_dropping_the_least_recently_used(tmp_path):
    for i, name in enumerate(["old", "mid", "new"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    (tmp_path / ".tmp-killed").write_bytes(b"x")  # a writer's, left by a killed process
    os.utime(tmp_path / ".tmp-killed", (0, 0))
    (tmp_path / ".tmp-writing").write_bytes(b"x")  # another process's, being written now
    _executables._evict(str(tmp_path), max_bytes=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-writing", "mid", "new"]


def test_refilling_the_store_while_jax_has_the_programs_still_runs_right(tmp_path):
    # JAX's own cache hands back executables that serialise incompletely on XLA:CPU; the
    # store must hold freshly compiled ones ("Function ... not found" at the next run).
    cache = tmp_path / "cache"
    first = _start(tmp_path / "run0", cache)
    first.communicate()
    assert first.returncode == 0
    expected = (tmp_path / "run0" / "results.csv").read_text()
    for p in (cache / _executables.FOLDER).iterdir():
        p.unlink()  # JAX's cache warm, the store cold
    for i in (1, 2):
        p = _start(tmp_path / f"run{i}", cache)
        _, err = p.communicate()
        assert p.returncode == 0, err
        assert (tmp_path / f"run{i}" / "results.csv").read_text() == expected
    timing = _timing(tmp_path / "run2")
    assert timing["programs"] == 0 and timing["cache_hits"] >= 2


def test_killed_between_two_stored_programs_then_run_again(tmp_path):
    import signal
    import time

    cache = tmp_path / "cache"
    folder = cache / _executables.FOLDER
    proc = _start(tmp_path / "killed", cache)
    end = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < end and len(_entries(folder)) < 1:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # the initial-state program stored, the chunk compiling
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and len(_entries(folder)) == 1

    again = _start(tmp_path / "again", cache)
    _, err = again.communicate()
    assert again.returncode == 0, err
    timing = _timing(tmp_path / "again")
    assert timing["cache_hits"] >= 1 and timing["programs"] >= 1
    reference = _start(tmp_path / "reference", tmp_path / "other-cache", ZASJAX_CACHE="0")
    reference.communicate()
    assert (tmp_path / "again" / "results.csv").read_text() == \
        (tmp_path / "reference" / "results.csv").read_text()


def test_a_stored_program_calling_lapack_runs_in_a_new_process(tmp_path):
    # The modes engine takes the singular values of Φ (LAPACK's gesdd on CPU), whose kernels
    # jaxlib sets up only when JAX lowers such a call: loaded unlowered, they must be set up
    # first (they were not: a segmentation fault).
    args = ["sweep", "--engine", "modes", "--depths", "1,10,100,1000", "--seeds", "0:3",
            "--dim", "4", "--target", "gaussian", "--lr", "0.0005", "--max-iters", "3000",
            "--x64", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": ROOT, "ZASJAX_CACHE_DIR": str(tmp_path / "cache")}
    for run in ("cold", "warm"):
        p = subprocess.run([sys.executable, "-m", "zasjax", *args, "--out", str(tmp_path / run)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert _timing(tmp_path / "warm")["programs"] == 0
    assert len(_entries(tmp_path / "cache" / _executables.FOLDER)) == 2
    assert (tmp_path / "warm" / "results.csv").read_text() == \
        (tmp_path / "cold" / "results.csv").read_text()


def test_only_lapack_among_library_calls_is_stored():
    qr = jax.jit(jnp.linalg.qr).lower(np.ones((3, 3))).as_text()
    calls = _executables._library_calls(qr)
    assert calls and all(c.startswith("lapack_") for c in calls)
    assert _executables._storable(calls) and _executables._storable(set())
    text = 'stablehlo.custom_call @Sharding(%0)\nstablehlo.custom_call @cusolver_gesvdj_ffi(%1)'
    assert _executables._library_calls(text) == {"cusolver_gesvdj_ffi"}
    assert not _executables._storable({"cusolver_gesvdj_ffi"})


# ---------------------------------------------------------------------------------------------
# The store's key holds every JAX setting, taken from JAX: no setting can serve a stale program
# ---------------------------------------------------------------------------------------------

import contextlib  # noqa: E402

import zasjax  # noqa: E402


@jax.jit
def _draw(seed):
    return jax.random.normal(jax.random.key(seed), (4,))


def _as_new_process():
    jax.clear_caches()
    _executables.forget()


@contextlib.contextmanager
def _setting(name, value):
    before = getattr(jax.config, name)
    jax.config.update(name, value)
    try:
        yield
    finally:
        jax.config.update(name, before)


# jax_random_seed_offset was missing from the hand-kept list the key had before (a warm run
# returned the old rows); the other two were on it.
SETTINGS = [("jax_random_seed_offset", 7),
            ("jax_threefry_partitionable", not jax.config.jax_threefry_partitionable),
            ("jax_default_prng_impl", "rbg")]


@pytest.mark.parametrize("name, value", SETTINGS)
def test_a_warm_program_under_another_jax_setting_is_that_settings_program(store, monkeypatch,
                                                                          name, value):
    draw, seed = stored(_draw), jnp.int32(3)
    old = np.asarray(draw(seed))  # stored under the setting as it was
    with _setting(name, value):
        _as_new_process()
        warm = np.asarray(draw(seed))
        _as_new_process()
        monkeypatch.setenv("ZASJAX_CACHE", "0")  # the store off: a cold reference
        cold = np.asarray(draw(seed))
    assert np.array_equal(warm, cold)
    assert not np.array_equal(cold, old)  # the setting does change the program's values


def test_a_warm_sweep_under_another_seed_offset_gives_that_settings_rows(store, monkeypatch):
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


def test_a_setting_without_a_stable_text_switches_the_store_off(store, monkeypatch):
    monkeypatch.setattr(_executables, "_trace_context", lambda: (object(),))
    before = _compilation.compile_stats()
    got = stored(_draw)(jnp.int32(1))
    assert _compilation.compile_stats().since(before).cache_hits == 0
    assert _entries(store) == []
    assert np.array_equal(got, _draw(jnp.int32(1)))


def test_a_jax_without_a_trace_context_runs_the_function_itself(store, monkeypatch):
    monkeypatch.setattr(_executables, "_trace_context", None)
    assert np.array_equal(stored(_draw)(jnp.int32(2)), _draw(jnp.int32(2)))
    assert _entries(store) == []


def test_the_key_text_is_the_same_in_another_process():
    # Set order varies with the hash seed; an address, with the process: neither reaches it.
    code = ("from zasjax import _executables as e; import hashlib; "
            "print(hashlib.sha256(e._settings(e._trace_context()).encode()).hexdigest())")
    keys = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                           text=True, check=True,
                           env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": str(seed)}
                           ).stdout for seed in (1, 2)}
    assert len(keys) == 1 and len(keys.pop()) == 65


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
