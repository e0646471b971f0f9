"""Stand-in files for the Keras dataset cache, so tests never download.

The machines that run the course's tests have no internet access, but the lectures
load Fashion-MNIST exactly as students do, with ``keras.datasets.fashion_mnist.load_data()``.
Keras looks for its files in ``$KERAS_HOME/datasets/fashion-mnist/`` before it
downloads anything, so the harness writes files of the same format and shape there.

They are **stand-ins, not the real data set**: 28x28 grey images made from
scikit-learn's bundled handwritten digits (real scans, 8x8, upscaled, shifted and
jittered), labelled with the digit 0-9 in place of the clothing classes. They keep
every code path of a notebook honest (shapes, dtypes, training, evaluation) but not
its accuracy figures: those are stated in the lectures for the real data set.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from filelock import FileLock

VERSION = "1"
N_TRAIN, N_TEST, SIZE = 60_000, 10_000, 28
NOTICE = f"""STAND-IN DATA (coursetools.standin_data, version {VERSION})

These files are NOT Fashion-MNIST. They are built from scikit-learn's bundled
handwritten digits so that the course's tests run offline; labels are digits 0-9.
Delete this folder to drop them; Keras will then download the real data set.
"""


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upscaled to 20x20 grey levels in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    upscaled = np.stack(
        [
            np.asarray(Image.fromarray(img.astype(np.float32) / 16.0).resize((20, 20), Image.BILINEAR))
            for img in digits.images
        ]
    )
    return upscaled.clip(0.0, 1.0), digits.target.astype(np.uint8)


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images (digits at random offsets and contrast) and their labels."""
    rng = np.random.default_rng(seed)
    base, labels = _digit_images()
    pick = rng.integers(0, len(base), size=n)
    offsets = rng.integers(2, 7, size=(n, 2))
    contrast = rng.uniform(0.6, 1.0, size=n)
    images = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    for i, (k, (r, c)) in enumerate(zip(pick, offsets, strict=True)):
        images[i, r : r + 20, c : c + 20] = base[k] * contrast[i]
    images += rng.normal(0.0, 0.03, size=images.shape).astype(np.float32)
    return (images.clip(0.0, 1.0) * 255).round().astype(np.uint8), labels[pick]


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the gzipped IDX format of (Fashion-)MNIST."""
    magic = 0x0800 | array.ndim  # 0x08: unsigned byte data
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.tobytes())


def seed_fashion_mnist(keras_home: Path) -> Path:
    folder = Path(keras_home) / "datasets" / "fashion-mnist"
    stamp = folder / "STAND-IN-README.txt"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # parallel test workers seed it once
        if not (stamp.exists() and stamp.read_text() == NOTICE):
            _write_fashion_mnist(folder)
            stamp.write_text(NOTICE)
    return folder


def _write_fashion_mnist(folder: Path) -> None:
    x_train, y_train = make_images(N_TRAIN, seed=0)
    x_test, y_test = make_images(N_TEST, seed=1)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y_train)
    _write_idx(folder / "train-images-idx3-ubyte.gz", x_train)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", x_test)


def seed_keras_cache(keras_home: Path) -> None:
    """Write every stand-in data set the course needs into a Keras cache directory."""
    seed_fashion_mnist(keras_home)
