"""Cut the Fashion-MNIST subset in this folder from a larger IDX release (one-off).

    python tests/data/make_fashion_mnist_subset.py SOURCE_FOLDER [OUT_FOLDER]

Keeps the first TRAIN training and the first TEST test images with their labels, in file
order, and writes them as gzip IDX files with the headers' counts set to the new sizes
(gzip level 9, mtime 0: the same input gives the same bytes).
"""

import gzip
import os
import sys

TRAIN, TEST = 1000, 100
FILES = {
    "train-images-idx3-ubyte": TRAIN, "train-labels-idx1-ubyte": TRAIN,
    "t10k-images-idx3-ubyte": TEST, "t10k-labels-idx1-ubyte": TEST,
}


def cut(data: bytes, n: int) -> bytes:
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    if dims[0] < n:
        raise SystemExit(f"source holds {dims[0]} items, fewer than {n}")
    item = 1
    for d in dims[1:]:
        item *= d
    header = 4 + 4 * rank
    return data[:4] + n.to_bytes(4, "big") + data[8:header] + data[header: header + n * item]


def main(source: str, out: str = os.path.dirname(os.path.abspath(__file__)) + "/fashion-mnist"):
    os.makedirs(out, exist_ok=True)
    for name, n in FILES.items():
        with gzip.open(os.path.join(source, name + ".gz"), "rb") as f:
            data = cut(f.read(), n)
        with open(os.path.join(out, name + ".gz"), "wb") as f:
            f.write(gzip.compress(data, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main(*sys.argv[1:])
