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
