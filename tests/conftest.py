import os
import zlib

import jax
import pytest

jax.config.update("jax_enable_x64", True)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
FASHION_MNIST = os.environ.get(
    "ZASJAX_FASHION_MNIST", os.path.join(SHARED, "data", "fashion-mnist")
)


@pytest.fixture
def key(request):
    seed = zlib.crc32(request.node.nodeid.encode())
    print(f"PRNG seed for {request.node.nodeid}: {seed}")
    return jax.random.key(seed)
