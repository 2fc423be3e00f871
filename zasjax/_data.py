"""Fashion-MNIST from the official IDX files (Xiao, Rasul & Vollgraf 2017).

The nonlinear experiment of Wu, Wang & Ma (NeurIPS 2019, Section 6) trains on the first
1,000 Fashion-MNIST training images. This module reads the IDX files of the official
release from a local folder, gzip-compressed (`train-images-idx3-ubyte.gz`) or raw
(`train-images-idx3-ubyte`); it never touches the network. Every structural problem with
a file (wrong magic number, truncated or over-long payload, image and label counts that
disagree, labels outside 0..9) raises a ValueError that names the file and what was
expected, and a missing file raises FileNotFoundError naming the paths that were tried.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

# IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_NUM_CLASSES = 10
_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(data_dir: Path, stem: str) -> Path:
    tried = [data_dir / (stem + ".gz"), data_dir / stem]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem!r} not found; tried {', '.join(str(p) for p in tried)}. "
        "Put the official IDX files (gzip or raw) in that folder."
    )


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking its header.

    Layout: a big-endian uint32 magic number (`0x803` for rank-3 images, `0x801` for
    rank-1 labels), then one big-endian uint32 per dimension, then the payload, one byte
    per element in C order.

    Args:
        path: the file, gzip-compressed or raw (told apart by the gzip magic bytes).
        magic: the expected magic number.

    Returns:
        uint8 array with the shape the header declares, e.g. `(n, 28, 28)` or `(n,)`.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}; "
            "is this the right IDX file (images 0x00000803, labels 0x00000801)?"
        )
    rank = magic & 0xFF
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"{path}: truncated header: {len(data)} bytes, expected {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    expected = int(np.prod(shape))
    payload = len(data) - header
    if payload < expected:
        raise ValueError(
            f"{path}: truncated data: header declares shape {shape} ({expected} bytes) "
            f"but only {payload} bytes follow"
        )
    if payload > expected:
        raise ValueError(
            f"{path}: {payload - expected} unexpected trailing bytes after the "
            f"{expected} bytes that shape {shape} declares"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist_files(data_dir: str | os.PathLike, split: str = "train") -> tuple[Path, Path]:
    """`(images, labels)` paths of a split in `data_dir`; FileNotFoundError naming what is
    missing (the folder, or the paths tried for a file)."""
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder {str(data_dir)!r} does not exist")
    return _find(data_dir, _SPLITS[split][0]), _find(data_dir, _SPLITS[split][1])


def load_fashion_mnist(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    size: int | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split from the official IDX files in `data_dir`.

    The paper (Section 6) trains on 1,000 training images: `size=1000` takes the first
    1,000 in file order, which is deterministic and roughly class-balanced.

    Args:
        data_dir: folder holding `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
        split: `"train"` or `"test"`.
        size: keep the first `size` examples (default: all in the file).
        dtype: floating dtype of the images.

    Returns:
        `images: (n, 784)` in [0, 1] (pixel / 255, row-major 28x28 flattened) and
        `labels: (n,)` int32 in 0..9.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of images, got {size}")
    images_path, labels_path = fashion_mnist_files(data_dir, split)
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image and label counts disagree: {images_path} holds {images.shape[0]} "
            f"images but {labels_path} holds {labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..{_NUM_CLASSES - 1}")
    n = images.shape[0]
    if size is not None:
        if size > n:
            raise ValueError(f"asked for {size} {split} images but {images_path} holds {n}")
        n = size
    x = images[:n].reshape(n, -1).astype(dtype) / dtype(255)
    return x, labels[:n].astype(np.int32)
