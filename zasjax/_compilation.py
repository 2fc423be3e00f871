"""What zasjax asks of XLA's compiler: whole-loop kernels on CPU, a persistent compilation
cache, and a count of what compiling cost. Importing zasjax changes none of it: the
`zasjax` command sets what it needs before JAX starts, a library user opts in.

- `use_cpu_loop_kernels`: XLA:CPU runs a while loop whose buffers total under a threshold
  as ONE compiled kernel; above it, every iteration dispatches each fused op separately
  (~1-3 µs each). The layer loops of small networks are dispatch-bound, so the 1 kB default
  is raised: a d = 2 sweep over depths 1..64 (4 seeds, 2000 iterations, compiled) runs
  about 4x faster on 2 cores (0.22-0.32 s against 0.88-1.58 s, measured by
  `_bench.loop_kernel_speedup()`). XLA reads `XLA_FLAGS` once, when JAX starts its CPU
  backend, so this must come first; the command line calls it itself.
- `persistent_cache` (a block) and `enable_persistent_cache` (the command line, for the
  whole process): JAX's on-disk compilation cache, so a second run of the same sweep loads
  its programs instead of compiling them. `ZASJAX_CACHE_DIR` moves it, `ZASJAX_CACHE=0`
  switches it off, and a cache the user configured in JAX already is left alone. Entries
  are read and written under a file lock (JAX's LRU cache with a size bound), so processes
  may share the folder.
- `CompileStats`: seconds spent tracing, lowering and compiling (or loading from the cache),
  how many programs XLA compiled and how many came from the cache, from JAX's monitoring
  events.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

SMALL_LOOP_BYTES = 10**9
LOOP_OPTION = "xla_cpu_small_while_loop_byte_threshold"

#: Size bound of the default cache folder; the least recently used entries go first.
CACHE_MAX_BYTES = 4 * 2**30

#: The JAX settings `use_cache_dir` changes (and `persistent_cache` puts back).
CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_compilation_cache_max_size",
                  "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


def use_cpu_loop_kernels(env=os.environ) -> bool:
    """Let XLA:CPU compile a small network's whole layer loop as one kernel: about 4x
    faster sweeps at d = 2 (see the module docstring). Call it before JAX's first computation.

    Adds `--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=…` to
    `XLA_FLAGS`, unless backend options are set there already (they are left as they are)
    or `ZASJAX_KEEP_XLA_FLAGS=1` (the off switch, for the command line too). Returns
    whether the option is in `XLA_FLAGS`. Calling it again is harmless.

    Raises `RuntimeError` if JAX's backend is already running without the option: XLA has
    read its flags by then, and a silent no-op would only show as a slower sweep.
    """
    flags = env.get("XLA_FLAGS", "")
    if LOOP_OPTION in flags:
        return True
    if env.get("ZASJAX_KEEP_XLA_FLAGS") == "1" or "xla_backend_extra_options" in flags:
        return False
    if backend_started():
        raise RuntimeError("zasjax.use_cpu_loop_kernels() must come before JAX's first "
                           "computation: XLA reads XLA_FLAGS once, when its backend starts. "
                           "Call it right after the imports, or start Python again.")
    env["XLA_FLAGS"] = (f"{flags} --xla_backend_extra_options="
                        f"{LOOP_OPTION}={SMALL_LOOP_BYTES}").strip()
    return True


def backend_started() -> bool:
    """Whether JAX has started a backend (and so read `XLA_FLAGS`) in this process."""
    if "jax" not in sys.modules:
        return False  # not even imported: checked without importing it
    import jax

    # JAX has no public "is initialised" (jax-ml/jax#23320), but it refuses to change
    # `jax_num_cpu_devices` once a backend runs, and that refusal is public. With no backend
    # running, the probe's value is put back at once, before anything reads it.
    current = getattr(jax.config, "jax_num_cpu_devices", None)
    if not isinstance(current, int):
        return False  # a JAX without the setting: unknown, so not refused
    try:
        jax.config.update("jax_num_cpu_devices", max(current, 0) + 1)
    except RuntimeError:
        return True
    jax.config.update("jax_num_cpu_devices", current)
    return False


def default_cache_dir(env=os.environ) -> str:
    """`ZASJAX_CACHE_DIR`, else `$XDG_CACHE_HOME/zasjax/jax` (`~/.cache/zasjax/jax`)."""
    if env.get("ZASJAX_CACHE_DIR"):
        return env["ZASJAX_CACHE_DIR"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zasjax", "jax")


def enable_persistent_cache(path: str | None = None, env=os.environ) -> str | None:
    """Turn on JAX's persistent compilation cache in `path` (default `default_cache_dir()`).

    Returns the folder in use, or None when switched off (`ZASJAX_CACHE=0`). A folder the
    user already gave JAX (`jax_compilation_cache_dir`) is kept as it is. For the whole
    process (the command line); a library call uses `persistent_cache`.
    """
    import jax

    if not cache_enabled(env):
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    return use_cache_dir(path or default_cache_dir(env))


@contextlib.contextmanager
def persistent_cache(path: str | None = None, env=os.environ):
    """JAX's persistent compilation cache in `path` (default `default_cache_dir()`) inside
    the block; yields the folder in use, or None when switched off (`ZASJAX_CACHE=0`).

    For a library call such as `sweep`: every JAX setting it changes is put back on exit and
    JAX's cache re-reads them, so the caller's process is as it was. A cache the user
    configured (`jax_compilation_cache_dir`) is used and left alone. Not thread-safe: the
    settings are global.
    """
    import jax

    if not cache_enabled(env) or jax.config.jax_compilation_cache_dir:
        yield jax.config.jax_compilation_cache_dir if cache_enabled(env) else None
        return
    before = {name: getattr(jax.config, name) for name in CACHE_SETTINGS}
    try:
        yield use_cache_dir(path or default_cache_dir(env))
    finally:
        from jax.experimental.compilation_cache import compilation_cache

        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()  # forget the folder, as if it had never been set


def cache_enabled(env=os.environ) -> bool:
    """False when `ZASJAX_CACHE` switches the persistent caches off (0, off, false, no)."""
    return env.get("ZASJAX_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")


def use_cache_dir(path: str) -> str | None:
    """Point JAX's persistent compilation cache at `path` now (None if it is unusable)."""
    import jax

    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs compile time; never fail a run for it
    try:
        import filelock  # noqa: F401 - JAX's size-bounded cache locks with it
    except ImportError:  # pragma: no cover - filelock is a dependency
        max_size = -1
    else:
        max_size = CACHE_MAX_BYTES
    if max_size > 0:
        _heal_access_times(path)
    jax.config.update("jax_compilation_cache_max_size", max_size)
    # Our programs compile in well under JAX's 1 s default threshold; cache them all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_dir", path)
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # re-read the settings even if JAX compiled before
    return path


def _heal_access_times(path: str) -> None:
    # JAX's size-bounded cache keeps an access-time file beside every entry and fails to
    # write new entries if one is missing, which happens to entries written without the
    # bound (by JAX with its default settings, or without filelock installed).
    try:
        names = set(os.listdir(path))
    except OSError:
        return
    stamp = time.time_ns().to_bytes(8, "little")
    for name in names:
        if name.endswith("-cache") and name[: -len("-cache")] + "-atime" not in names:
            try:
                with open(os.path.join(path, name[: -len("-cache")] + "-atime"), "wb") as f:
                    f.write(stamp)
            except OSError:
                return


# ---------------------------------------------------------------------------------------------
# Compile cost, from JAX's monitoring events
# ---------------------------------------------------------------------------------------------

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_BACKEND = _COMPILE_EVENTS[-1]
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclass
class CompileStats:
    """Running totals since the process started listening (see `compile_stats`)."""

    seconds: float = 0.0   # tracing + lowering + XLA compiling or loading from the cache
    backend: int = 0       # programs handed to XLA (compiled, or loaded from the cache)
    cache_hits: int = 0    # of those, loaded from the persistent cache

    @property
    def programs(self) -> int:
        """Programs XLA actually compiled."""
        return self.backend - self.cache_hits

    def since(self, before: CompileStats) -> CompileStats:
        return CompileStats(self.seconds - before.seconds, self.backend - before.backend,
                            self.cache_hits - before.cache_hits)


_stats = CompileStats()
_lock = threading.Lock()
_listening = False


def _on_duration(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        with _lock:
            _stats.seconds += duration
            _stats.backend += event == _BACKEND


def _on_event(event: str, **_) -> None:
    if event == _CACHE_HIT:
        with _lock:
            _stats.cache_hits += 1


def compile_stats() -> CompileStats:
    """A snapshot of the totals; the first call starts listening (a no-op after that)."""
    global _listening
    if not _listening:
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(_on_duration)
        monitoring.register_event_listener(_on_event)
        _listening = True
    with _lock:
        return CompileStats(_stats.seconds, _stats.backend, _stats.cache_hits)


class Timer:
    """Wall time and compile cost of a block: `compile_s`, `run_s` (the rest), counts."""

    def __init__(self):
        self.start_stats = compile_stats()
        self.start = time.perf_counter()

    def record(self) -> dict:
        wall = time.perf_counter() - self.start
        c = compile_stats().since(self.start_stats)
        return {"wall_s": round(wall, 3), "compile_s": round(c.seconds, 3),
                "run_s": round(max(wall - c.seconds, 0.0), 3), "programs": c.programs,
                "cache_hits": c.cache_hits}
