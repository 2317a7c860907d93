#!/usr/bin/python3
"""make_mnist_idx.py: writes a synthetic MNIST in the original idx format.

Usage: make_mnist_idx.py OUT_DIR

Writes train-images-idx3-ubyte, train-labels-idx1-ubyte (60000 images, the
count LibTorch's MNIST reader requires) and t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte (10000) to OUT_DIR: 28 x 28 uint8 images of ten
learnable classes (a fixed random stroke pattern per class, shifted by up to
two pixels, plus noise) with their labels. The same files every run.
"""

import os
import struct
import sys

import numpy as np

ROWS = COLS = 28


def write_set(out_dir, prefix, count, rng, patterns):
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    images = patterns[labels].astype(np.int16)
    shifts = rng.integers(-2, 3, size=(count, 2))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            images[chosen] = np.roll(images[chosen], (dy, dx), axis=(1, 2))
    images += rng.integers(-40, 41, size=images.shape, dtype=np.int16)
    images = np.clip(images, 0, 255).astype(np.uint8)
    with open(os.path.join(out_dir, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">iiii", 2051, count, ROWS, COLS))
        f.write(images.tobytes())
    with open(os.path.join(out_dir, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">ii", 2049, count))
        f.write(labels.tobytes())


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(2024)
    # Ten patterns: sparse bright strokes inside the central 20 x 20 pixels.
    patterns = np.zeros((10, ROWS, COLS), dtype=np.uint8)
    patterns[:, 4:24, 4:24] = (rng.random((10, 20, 20)) < 0.2) * 220
    write_set(out_dir, "train", 60000, rng, patterns)
    write_set(out_dir, "t10k", 10000, rng, patterns)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
