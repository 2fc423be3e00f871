import atexit
import os
import shutil
import tempfile
import zlib

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# As diffrax's tests: no implicit dtype promotion or rank broadcasting, in the library or here.
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# Tests of optax's `adam` carry the `loose_promotion` marker: its bias correction raises a
# float to an int32 power, which strict promotion refuses (optax's code, not ours).

# The suite's own compilation cache (inherited by the subprocesses it starts), so tests
# neither read nor fill the user's.
if "ZASJAX_CACHE_DIR" not in os.environ:
    os.environ["ZASJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="zasjax-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ZASJAX_CACHE_DIR"], ignore_errors=True)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
FASHION_MNIST = os.environ.get(
    "ZASJAX_FASHION_MNIST", os.path.join(SHARED, "data", "fashion-mnist")
)


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
