"""Compiled sweep programs kept on disk under a key of what they compute, so a later process
runs them without tracing or lowering anything.

JAX's persistent cache (`_compilation`) keys a program by its lowered text, so a warm run
still traces and lowers every program before the cache can answer: with the compiling
itself gone, that was most of what a second sweep paid. `stored(fn)` keys a jitted
function's program instead by the function, its static arguments, the abstract values and
shardings of its array arguments, the devices, the versions of zasjax's own source and of
the libraries that trace it, and JAX's settings; a hit deserialises the executable
(`jax.experimental.serialize_executable`) and runs it.

The settings are taken from JAX, not listed here, so none can be forgotten: in a process,
the trace context jit's own caches key on (`jax._src.config.trace_context()`: every
setting JAX declares as changing a trace, and the meshes and axes in scope), which is
cheap to read at every call; on disk, that context and the value of every declared setting
(`jax.config.values`), compile options included. A setting or context without a stable
text, or a JAX without either source, switches the store off (compile, never serve).

The entries live in `programs/` inside the compilation-cache folder, written atomically
(a reader sees a whole entry or none, so processes may share the folder), least recently
used first out beyond `MAX_BYTES`. Anything unreadable is compiled afresh. The store is on
exactly when the persistent cache is (`ZASJAX_CACHE=0` switches both off) and only in
single-process runs. Library kernels called by a program (LAPACK) are set up before it
runs, as lowering would have; programs calling other libraries are left to JAX's cache.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import re
import sys
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import _compilation, _store

try:  # what jit's own caches key a trace on
    from jax._src.config import trace_context as _trace_context
except ImportError:  # pragma: no cover - another JAX: the store is off
    _trace_context = None

#: Size bound of the store; entries are a few hundred kB.
MAX_BYTES = 2**30
FOLDER = "programs"

def folder() -> str | None:
    """The store's folder, or None while the persistent cache is off."""
    cache = jax.config.jax_compilation_cache_dir
    if not cache or not _compilation.cache_enabled() or jax.process_count() > 1:
        return None
    return os.path.join(cache, FOLDER)


_loaded: dict = {}  # (function, key) -> the program this process compiled or loaded


def forget() -> None:
    """Drop every program this process holds, as `jax.clear_caches` does JAX's: the next
    call of a stored function loads (or compiles) again, as a new process would."""
    _loaded.clear()


def stored(fn: Callable, static_argnames: tuple[str, ...] = ()) -> Callable:
    """`fn` (a `jax.jit` function with these `static_argnames`, which follow every array
    argument) taking its compiled programs from the store. Called like `fn`; within a
    process each program is looked up once and kept, under JAX's trace context as jit keeps
    its own. Under a transformation (vmap, jit, grad: tracers among the arguments), or where
    JAX offers no trace context, it is `fn` itself."""
    inner = inspect.unwrap(fn)
    if "<locals>" in inner.__qualname__ or getattr(inner, "__closure__", None):
        raise TypeError(f"{inner.__qualname__}: only a module-level function can be stored "
                        "(what a closure captures would not be in the key)")
    signature = inspect.signature(fn)
    static = frozenset(static_argnames)
    params = list(signature.parameters)
    if not static <= set(params) or any(n in static for n in params[:len(params) - len(static)]):
        raise TypeError(f"static arguments {sorted(static)} must be the last of {params}")

    @functools.wraps(fn)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        dynamic = [v for k, v in bound.arguments.items() if k not in static]
        statics = tuple((k, v) for k, v in bound.arguments.items() if k in static)
        leaves, tree = jax.tree.flatten(dynamic)
        if _trace_context is None or any(isinstance(x, jax.core.Tracer) for x in leaves):
            return fn(*args, **kwargs)
        memo_key = (statics, tree, tuple(_abstract(x) for x in leaves), _trace_context())
        program = _loaded.get((fn, memo_key))
        if program is None:
            program = _loaded[fn, memo_key] = _load_or_compile(fn, dynamic, statics, memo_key)
        return program(*dynamic)

    return call


def _abstract(x):
    # Shape, dtype, weak type and placement: all a program depends on of an argument. A
    # whole copy on each device is one placement however it is spelled (on one device,
    # P("cfg") and P() are the same; a program's outputs come back as the latter).
    sharding = getattr(x, "sharding", None)
    if sharding is not None and sharding.is_fully_replicated:
        sharding = ("replicated", tuple(sorted(d.id for d in sharding.device_set)),
                    getattr(sharding, "memory_kind", None))
    return (str(jax.typeof(x)), sharding)


_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")


def _settings(context) -> str | None:
    """Every setting JAX declares and its trace `context`, as text; None where JAX offers
    no `jax.config.values` or a value is known only by its address (no stable text)."""
    values = getattr(jax.config, "values", None)
    if not isinstance(values, dict):
        return None
    text = repr((_describe(values), _describe(context)))
    return None if _ADDRESS.search(text) else text


def _load_or_compile(fn, dynamic, statics, memo_key):
    where = folder()
    settings = _settings(memo_key[-1]) if where is not None else None
    path = None
    if settings is not None:
        key = hashlib.sha256(repr((fn.__module__, fn.__qualname__, _describe(memo_key[:-1]),
                                   settings, _environment())).encode()).hexdigest()
        path = os.path.join(where, key)
        program = _load(path)
        if program is not None:
            return program
    lowered = fn.lower(*dynamic, **dict(statics))
    calls = _library_calls(lowered.as_text()) if path is not None else set()
    if path is None or not _storable(calls):
        return lowered.compile()  # JAX's persistent cache, if any, as for any jitted function
    before = _compilation.compile_stats()
    with _compilation.fresh_compiles():
        program = lowered.compile()
    if _compilation.compile_stats().since(before).programs == 1:
        _save(path, program, bool(calls))  # only what XLA compiled just now, not a JAX copy
    return program


# Custom calls the compiler itself consumes (sharding annotations). The others are kernels
# of libraries: jaxlib sets LAPACK's up (QR, SVD, eigh on CPU) when JAX first lowers such a
# call, so a program loaded without lowering would run them uninitialised (a segmentation
# fault); `_set_up_lapack` does it first. Programs calling anything else are not stored.
_COMPILER_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"})


def _library_calls(module_text: str) -> set[str]:
    return set(re.findall(r"custom_call\s*@([\w.$-]+)", module_text)) - _COMPILER_CUSTOM_CALLS


def _storable(calls: set[str]) -> bool:
    return all(name.startswith("lapack_") for name in calls)


@functools.cache
def _set_up_lapack() -> None:
    jax.jit(jnp.linalg.qr).lower(np.ones((1, 1), np.float32))  # lowering one sets them all up


def _load(path: str):
    start = time.perf_counter()
    try:
        with open(path, "rb") as f:
            blob, in_tree, out_tree, calls_lapack = pickle.load(f)
        if calls_lapack:
            paused = time.perf_counter()
            _set_up_lapack()  # a lowering: JAX's own events count its time
            start += time.perf_counter() - paused
        from jax.experimental.serialize_executable import deserialize_and_load

        program = deserialize_and_load(blob, in_tree, out_tree)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a damaged or foreign entry is only a miss
        return None
    try:
        os.utime(path)  # least recently used goes first
    except OSError:
        pass
    _compilation.record_load(time.perf_counter() - start)
    return program


def _save(path: str, program, calls_lapack: bool) -> None:
    start = time.perf_counter()
    try:
        from jax.experimental.serialize_executable import serialize

        blob = pickle.dumps((*serialize(program), calls_lapack),
                            protocol=pickle.HIGHEST_PROTOCOL)
        _store.atomic_write_bytes(path, blob)  # whole or not at all, whoever else writes it
        _evict(os.path.dirname(path))
    except Exception:  # noqa: BLE001 - a program that cannot be stored is only compiled again
        pass
    _compilation.record_store(time.perf_counter() - start)


#: A writer's temporary (dot) file older than this was left by a killed process.
STALE_SECONDS = 3600


def _evict(where: str, max_bytes: int = MAX_BYTES) -> None:
    entries = []
    now = time.time()
    with os.scandir(where) as it:
        for e in it:
            if not e.is_file():
                continue
            st = e.stat()
            if not e.name.startswith("."):
                entries.append((st.st_mtime, st.st_size, e.path))
            elif now - st.st_mtime > STALE_SECONDS:
                _unlink(e.path)
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        _unlink(path)
        total -= size


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _describe(obj):
    """A stable text of `obj` for the disk key: devices by id, everything else by value."""
    if isinstance(obj, jax.sharding.Mesh):
        return ("Mesh", obj.axis_names, obj.devices.shape,
                tuple(d.id for d in obj.devices.flat), str(getattr(obj, "axis_types", "")))
    if isinstance(obj, jax.sharding.NamedSharding):
        return ("NamedSharding", _describe(obj.mesh), str(obj.spec), obj.memory_kind)
    if isinstance(obj, jax.sharding.Sharding):
        return (type(obj).__name__, tuple(sorted(d.id for d in obj.device_set)),
                getattr(obj, "memory_kind", None), repr(obj))
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
        return (type(obj).__qualname__, *(_describe(x) for x in obj))
    if isinstance(obj, (tuple, list)):
        return tuple(_describe(x) for x in obj)
    if isinstance(obj, (set, frozenset)):  # printed in an order that varies by process
        return ("set", *sorted(map(repr, map(_describe, obj))))
    if isinstance(obj, Mapping):
        return (type(obj).__qualname__,
                *sorted((repr(_describe(k)), _describe(v)) for k, v in obj.items()))
    if isinstance(obj, jax.tree_util.PyTreeDef):
        return str(obj)
    text = repr(obj)
    if _ADDRESS.search(text) and hasattr(type(obj), "__slots__"):
        # Known by address, by value by its fields (JAX's AxisEnv in the trace context).
        return (type(obj).__qualname__,
                *((n, _describe(getattr(obj, n, None))) for n in _slots(type(obj))))
    return text


def _slots(cls) -> list[str]:
    names = []
    for c in cls.__mro__:
        own = vars(c).get("__slots__", ())
        names += [own] if isinstance(own, str) else [n for n in own if n != "__weakref__"]
    return names


@functools.cache
def _environment() -> tuple:
    """What a program depends on beyond its arguments, the same for the whole process."""
    import equinox
    import jaxlib
    import optax

    backend = jax.devices()[0].client
    return (_source_digest(), sys.version_info[:2], jax.__version__,
            jaxlib.version.__version__, equinox.__version__, optax.__version__,
            np.__version__, backend.platform, backend.platform_version,
            tuple((d.id, d.device_kind, d.process_index) for d in jax.devices()),
            os.environ.get("XLA_FLAGS", ""), os.environ.get("LIBTPU_INIT_ARGS", ""))


def _source_digest() -> str:
    """A hash of every Python file of zasjax: an edit anywhere misses every old entry."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for folder_, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder_, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()
