import atexit
import json
import os
import shutil
import tempfile
import time
import zlib

import jax
import pytest

from zasjax._compilation import use_cpu_loop_kernels

# The suite runs as the `zasjax` command does, with XLA:CPU's whole-loop kernels (the
# documented opt-in, before JAX's backend starts; subprocesses inherit it through XLA_FLAGS,
# and test_import clears it for its clean-environment checks). Without it the small
# networks' layer loops are dispatch-bound: test_modes' d = 5 tuning grid takes 52 CPU-s
# instead of 17.
use_cpu_loop_kernels()

jax.config.update("jax_enable_x64", True)
# As diffrax's tests: no implicit dtype promotion or rank broadcasting, in the library or here.
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# Tests of optax's `adam` carry the `loose_promotion` marker: its bias correction raises a
# float to an int32 power, which strict promotion refuses (optax's code, not ours).

# The suite's own compilation cache (inherited by the subprocesses it starts), so tests
# neither read nor fill the user's. The controller makes it before it starts the xdist
# workers, which inherit the variable: one folder per session, shared by all its processes.
# It is not switched on for the test processes from the start: JAX's size-bounded cache
# scans every entry under one lock at each write (0.15-0.2 s at 2,800 entries), and on a
# loaded 2-core machine that cost at least what loading ~20% of the programs from another
# worker's entries saved (issue 28, item 11).
if "ZASJAX_CACHE_DIR" not in os.environ:
    os.environ["ZASJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="zasjax-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ZASJAX_CACHE_DIR"], ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default, pyproject.toml): the cores plus one. Many tests wait on a
    subprocess or a notebook kernel for part of their time; a third worker on 2 cores took
    the suite from 442 s to 395 s (a fourth: 391 s). $PYTEST_XDIST_AUTO_NUM_WORKERS wins."""
    given = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    return int(given) if given else len(os.sched_getaffinity(0)) + 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked `no_compile_cache` runs, fixtures included, without JAX's persistent
    cache, which an in-process `zasjax sweep` (test_cli, test_distributed) leaves on in its
    worker: the programs it counts (`timing.programs`, `compile_stats().programs`) are the
    ones XLA compiled for it, never entries another process happened to store first."""
    if not item.get_closest_marker("no_compile_cache"):
        return (yield)
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
    try:
        return (yield)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        compilation_cache.reset_cache()


def pytest_collection_modifyitems(items):
    """Modules holding a slow-marked test (the quick reproductions, the notebooks) run first,
    each module kept whole (its module-scoped fixtures are set up once): the suite then
    ends on short tests, which the workers share out evenly."""
    slow = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow)


SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
# Fashion-MNIST in the official IDX format: $ZASJAX_FASHION_MNIST if set, else the
# 3,000 + 1,000-image subset beside the checkout where there is one, else the
# 1,000 + 100-image subset committed with the tests (tests/data/README.md). Tests size
# themselves by `fashion_mnist_size`, not by a fixed count.
SHARED_FASHION_MNIST = os.path.join(SHARED, "data", "fashion-mnist")
COMMITTED_FASHION_MNIST = os.path.join(os.path.dirname(__file__), "data", "fashion-mnist")
FASHION_MNIST = os.environ.get("ZASJAX_FASHION_MNIST") or (
    SHARED_FASHION_MNIST if os.path.isdir(SHARED_FASHION_MNIST) else COMMITTED_FASHION_MNIST
)


def fashion_mnist_size(split="train", folder=FASHION_MNIST):
    """Number of images in a split of `folder`, from its IDX header (gzip or raw file)."""
    import gzip

    stem = os.path.join(folder, ("train" if split == "train" else "t10k") + "-images-idx3-ubyte")
    path = stem + ".gz" if os.path.isfile(stem + ".gz") else stem
    with open(path, "rb") as f:
        head = f.read(2)
    with (gzip.open if head == b"\x1f\x8b" else open)(path, "rb") as f:
        return int.from_bytes(f.read(8)[4:], "big")


@pytest.fixture(autouse=True)
def _promotion(request):
    if request.node.get_closest_marker("loose_promotion"):
        with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
            yield
    else:
        yield


@pytest.fixture
def key(request):
    seed = zlib.crc32(request.node.nodeid.encode())
    print(f"PRNG seed for {request.node.nodeid}: {seed}")
    return jax.random.key(seed)


def wait_until(predicate, proc=None, timeout=120.0, poll_s=0.005):
    """Poll `predicate()` until it holds (True), or `proc` has ended or `timeout` seconds
    have passed without it (False). Fault tests wait for an event this way (a row written, a
    checkpoint present), never for a time sized to the machine's speed; the deadline only
    stops a broken run from hanging the suite. A file that vanishes while the predicate looks
    at it (the run finishing) counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except FileNotFoundError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


@pytest.fixture(scope="session")
def once(tmp_path_factory):
    """`once(name, make)`: the JSON value `make(folder)` returns, computed once per test
    session, however many pytest-xdist workers ask (the first runs it under a lock, the
    others read what it wrote). For the reference sweeps several tests compare against."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers

    def value(name, make):
        folder = base / f"once-{name}"
        done = folder / "value.json"
        with FileLock(f"{folder}.lock"):
            if not done.exists():
                folder.mkdir(exist_ok=True)
                done.write_text(json.dumps(make(folder)))
        return json.loads(done.read_text())

    return value
