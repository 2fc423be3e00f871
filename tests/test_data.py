import gzip
import os

import numpy as np
import pytest
from conftest import FASHION_MNIST

from zasjax._data import load_fashion_mnist, read_idx

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"


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


def test_reads_real_subset():
    x, y = load_fashion_mnist(FASHION_MNIST)
    assert x.shape == (3000, 784) and x.dtype == np.float32
    assert y.shape == (3000,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    # Pixels are k / 255 exactly: scaling back gives integers.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    # Counts in the README: 282-321 images per class.
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 3000 and counts.min() == 282 and counts.max() == 321

    xt, yt = load_fashion_mnist(FASHION_MNIST, "test", dtype=np.float64)
    assert xt.shape == (1000, 784) and xt.dtype == np.float64 and yt.shape == (1000,)


def test_size_takes_the_first_images():
    x, y = load_fashion_mnist(FASHION_MNIST)
    x1, y1 = load_fashion_mnist(FASHION_MNIST, size=1000)
    np.testing.assert_array_equal(x1, x[:1000])
    np.testing.assert_array_equal(y1, y[:1000])


def test_raw_files_equal_gzip(tmp_path):
    x, y = load_fashion_mnist(_folder(tmp_path, compress=False))
    xg, yg = load_fashion_mnist(FASHION_MNIST)
    np.testing.assert_array_equal(x, xg)
    np.testing.assert_array_equal(y, yg)


def test_header_shape():
    images = read_idx(os.path.join(FASHION_MNIST, TRAIN_IMAGES + ".gz"), 0x803)
    assert images.shape == (3000, 28, 28) and images.dtype == np.uint8


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
    labels = _raw(TRAIN_LABELS)
    # A consistent label file of 2,999 entries: header count and payload both shortened.
    short = labels[:4] + (2999).to_bytes(4, "big") + labels[8:-1]
    folder = _folder(tmp_path, labels=short)
    with pytest.raises(ValueError, match="3000 images but .* 2999 labels"):
        load_fashion_mnist(folder)


def test_label_out_of_range(tmp_path):
    labels = bytearray(_raw(TRAIN_LABELS))
    labels[8] = 10
    with pytest.raises(ValueError, match="label 10 outside 0..9"):
        load_fashion_mnist(_folder(tmp_path, labels=bytes(labels)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="holds 3000"):
        load_fashion_mnist(FASHION_MNIST, size=3001)
    with pytest.raises(ValueError, match="positive"):
        load_fashion_mnist(FASHION_MNIST, size=0)
    with pytest.raises(ValueError, match="unknown split"):
        load_fashion_mnist(FASHION_MNIST, "validation")
