"""Where the Keras data sets come from when the course is built: the real ones, or stand-ins.

Lectures 12-15 call ``keras.datasets.fashion_mnist.load_data()``, which downloads the real
data set into the Keras cache (``~/.keras`` or ``$KERAS_HOME``) on first use. A machine
without internet access cannot, so the build then serves stand-in files instead
(:mod:`coursetools.offline`) and says so once at the start and on every page they touch.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

# Where Keras downloads its data sets from, and the files of the one the course uses.
HOST = "storage.googleapis.com"
FASHION_MNIST = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")


@dataclass(frozen=True)
class DataSource:
    real: bool
    why: str

    @property
    def name(self) -> str:
        return "real" if self.real else "stand-in"


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets" / "fashion-mnist"


def real_data_cached() -> bool:
    """The real Fashion-MNIST is already in the Keras cache (downloaded by an earlier run)."""
    return all((keras_cache() / name).is_file() for name in FASHION_MNIST)


def reachable(host: str = HOST, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def choose(force_standins: bool = False) -> DataSource:
    if force_standins:
        return DataSource(False, "OFFLINE=1 was given")
    if real_data_cached():
        return DataSource(True, f"already in the Keras cache ({keras_cache()})")
    if reachable():
        return DataSource(True, f"downloaded by Keras from {HOST} when a lecture first asks")
    return DataSource(False, f"there is no internet access ({HOST} cannot be reached)")


def uses_keras_data(nb) -> bool:
    """The notebook loads a Keras data set (its outputs depend on where the data came from)."""
    return any("keras.datasets." in cell.source for cell in nb.cells if cell.cell_type == "code")


STANDIN_NOTE = """:::{admonition} Built without the real data set
:class: warning
This page was built on a machine without internet access, so
`keras.datasets.fashion_mnist.load_data()` returned **stand-in data**: handwritten digits
(scikit-learn's bundled set) in Fashion-MNIST's format and with its class names. Every
output below that comes from the data (images, accuracies, losses, confusion counts,
training curves) therefore differs from the real data set's, and images labelled as
clothing show digits. The text describes the real data: run the notebook yourself (the
Colab badge above) to see its figures.
:::"""
