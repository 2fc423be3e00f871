import atexit
import os
import shutil
import tempfile
import zlib

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# The suite's own compilation cache (inherited by the subprocesses it starts), so tests
# neither read nor fill the user's.
if "ZASJAX_CACHE_DIR" not in os.environ:
    os.environ["ZASJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="zasjax-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ZASJAX_CACHE_DIR"], ignore_errors=True)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
FASHION_MNIST = os.environ.get(
    "ZASJAX_FASHION_MNIST", os.path.join(SHARED, "data", "fashion-mnist")
)


@pytest.fixture
def key(request):
    seed = zlib.crc32(request.node.nodeid.encode())
    print(f"PRNG seed for {request.node.nodeid}: {seed}")
    return jax.random.key(seed)
