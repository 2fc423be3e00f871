import gzip
import os

import numpy as np
import pytest
from conftest import (
    COMMITTED_FASHION_MNIST,
    FASHION_MNIST,
    SHARED_FASHION_MNIST,
    fashion_mnist_size,
)

from zasjax._data import load_fashion_mnist, read_idx

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"

# Images per class among the first n official images of a split, for the folders the tests
# know: the shared 3,000 + 1,000 subset (its README: 282-321 per class in train), the
# committed 1,000 + 100 one (tests/data/README.md) and the full release.
CLASS_COUNTS = {
    ("train", 3000): [282, 321, 290, 312, 303, 300, 298, 312, 287, 295],
    ("test", 1000): [107, 105, 111, 93, 115, 87, 97, 95, 95, 95],
    ("train", 1000): [107, 104, 86, 92, 95, 100, 100, 115, 102, 99],
    ("test", 100): [8, 13, 14, 9, 10, 9, 8, 11, 12, 6],
    ("train", 60000): [6000] * 10,
    ("test", 10000): [1000] * 10,
}


def _raw(name):
    with gzip.open(os.path.join(FASHION_MNIST, name + ".gz"), "rb") as f:
        return f.read()


def _folder(tmp_path, images=None, labels=None, compress=True):
    """A copy of the real train split in tmp_path, with either file optionally replaced."""
    for name, data in ((TRAIN_IMAGES, images), (TRAIN_LABELS, labels)):
        data = _raw(name) if data is None else data
        if compress:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    return tmp_path


def _check_counts(y, split, n):
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == n
    if (split, n) in CLASS_COUNTS:  # a folder of another size ($ZASJAX_FASHION_MNIST)
        assert counts.tolist() == CLASS_COUNTS[split, n]


def test_reads_real_subset():
    n, n_test = fashion_mnist_size("train"), fashion_mnist_size("test")
    x, y = load_fashion_mnist(FASHION_MNIST)
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    # Pixels are k / 255 exactly: scaling back gives integers.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    _check_counts(y, "train", n)

    xt, yt = load_fashion_mnist(FASHION_MNIST, "test", dtype=np.float64)
    assert xt.shape == (n_test, 784) and xt.dtype == np.float64 and yt.shape == (n_test,)
    _check_counts(yt, "test", n_test)


def test_committed_subset_is_the_start_of_the_shared_one():
    # The 1,000 + 100 images committed with the tests, whatever folder the others use;
    # where the shared subset is present too, they are its first images, byte for byte.
    for split, n in (("train", 1000), ("test", 100)):
        assert fashion_mnist_size(split, COMMITTED_FASHION_MNIST) == n
        x, y = load_fashion_mnist(COMMITTED_FASHION_MNIST, split)
        assert x.shape == (n, 784) and y.shape == (n,)
        _check_counts(y, split, n)
        if os.path.isdir(SHARED_FASHION_MNIST):
            xs, ys = load_fashion_mnist(SHARED_FASHION_MNIST, split, size=n)
            np.testing.assert_array_equal(x, xs)
            np.testing.assert_array_equal(y, ys)


def test_size_takes_the_first_images():
    size = fashion_mnist_size() // 3
    x, y = load_fashion_mnist(FASHION_MNIST)
    x1, y1 = load_fashion_mnist(FASHION_MNIST, size=size)
    assert x1.shape == (size, 784)
    np.testing.assert_array_equal(x1, x[:size])
    np.testing.assert_array_equal(y1, y[:size])


def test_raw_files_equal_gzip(tmp_path):
    x, y = load_fashion_mnist(_folder(tmp_path, compress=False))
    xg, yg = load_fashion_mnist(FASHION_MNIST)
    np.testing.assert_array_equal(x, xg)
    np.testing.assert_array_equal(y, yg)


def test_header_shape():
    images = read_idx(os.path.join(FASHION_MNIST, TRAIN_IMAGES + ".gz"), 0x803)
    assert images.shape == (fashion_mnist_size(), 28, 28) and images.dtype == np.uint8


def test_missing_file(tmp_path):
    (tmp_path / (TRAIN_IMAGES + ".gz")).write_bytes(gzip.compress(_raw(TRAIN_IMAGES)))
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_wrong_magic(tmp_path):
    # Labels where images belong: magic 0x801, not 0x803.
    folder = _folder(tmp_path, images=_raw(TRAIN_LABELS))
    with pytest.raises(ValueError, match="wrong magic number 0x00000801, expected 0x00000803"):
        load_fashion_mnist(folder)


def test_truncated_data(tmp_path):
    folder = _folder(tmp_path, images=_raw(TRAIN_IMAGES)[:-100])
    with pytest.raises(ValueError, match="truncated data"):
        load_fashion_mnist(folder)


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(_raw(TRAIN_IMAGES))
    _folder(tmp_path)
    (tmp_path / (TRAIN_IMAGES + ".gz")).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        load_fashion_mnist(tmp_path)


def test_trailing_bytes(tmp_path):
    folder = _folder(tmp_path, labels=_raw(TRAIN_LABELS) + b"\x00")
    with pytest.raises(ValueError, match="1 unexpected trailing bytes"):
        load_fashion_mnist(folder)


def test_counts_disagree(tmp_path):
    n = fashion_mnist_size()
    labels = _raw(TRAIN_LABELS)
    # A consistent label file of n - 1 entries: header count and payload both shortened.
    short = labels[:4] + (n - 1).to_bytes(4, "big") + labels[8:-1]
    folder = _folder(tmp_path, labels=short)
    with pytest.raises(ValueError, match=f"{n} images but .* {n - 1} labels"):
        load_fashion_mnist(folder)


def test_label_out_of_range(tmp_path):
    labels = bytearray(_raw(TRAIN_LABELS))
    labels[8] = 10
    with pytest.raises(ValueError, match="label 10 outside 0..9"):
        load_fashion_mnist(_folder(tmp_path, labels=bytes(labels)))


def test_bad_arguments():
    n = fashion_mnist_size()
    with pytest.raises(ValueError, match=f"asked for {n + 1} train images but .* holds {n}$"):
        load_fashion_mnist(FASHION_MNIST, size=n + 1)
    with pytest.raises(ValueError, match="positive"):
        load_fashion_mnist(FASHION_MNIST, size=0)
    with pytest.raises(ValueError, match="unknown split"):
        load_fashion_mnist(FASHION_MNIST, "validation")
