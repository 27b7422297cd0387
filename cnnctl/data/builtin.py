"""Data: the built-in datasets — scikit-learn's bundled digits, keras.datasets, the Debian Fashion-MNIST."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import IO, Callable, Optional

import numpy as np

from cnnctl.config.schema import DataConfig
from cnnctl.data.files import IDX_STEMS, read_idx_folder
from cnnctl.data.raw import RawData
from cnnctl.errors import DataError, first_line

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_digits(data_cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(
        x_train=digits.images.astype(np.float32),
        y_train=digits.target.astype(np.int64),
        class_names=[str(i) for i in range(10)],
        origin="sklearn.datasets.load_digits (bundled)",
    )


def keras_dataset(name: str, file_name: str, class_names: Optional[list[str]]) -> Callable[[DataConfig], RawData]:
    def load(data_cfg: DataConfig) -> RawData:
        import keras

        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        held = _FirstLineHeld(sys.stdout)
        try:
            with contextlib.redirect_stdout(held):
                (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # keras raises bare Exception/URLError/OSError for a failed download
            debian = (
                f"; on Debian or Ubuntu: apt-get install dataset-fashion-mnist (read from {DEBIAN_FASHION_MNIST})"
                if name == "fashion_mnist"
                else ""
            )
            raise DataError(
                f"data.source {name}: could not load {file_name} ({first_line(exc)}); without internet, "
                f"download it elsewhere and place it at {cache / file_name}{debian}, or use source: npz/idx"
            ) from None
        held.release()
        names = class_names or [str(i) for i in range(int(np.max(y_train)) + 1)]
        return RawData(
            x_train,
            y_train.reshape(-1),
            x_test,
            y_test.reshape(-1),
            class_names=names,
            origin=f"keras.datasets.{name} ({cache})",
        )

    return load


class _FirstLineHeld(io.TextIOBase):
    """Standard output for a keras.datasets download: Keras' "Downloading data from URL" line is held back until
    the download shows progress (then it and the progress bar pass through), so a download that fails at once (no
    network) prints only cnnctl's error line."""

    def __init__(self, target: IO[str]):
        self.target, self.held, self.passing = target, "", False

    def write(self, text: str) -> int:
        if self.passing:
            return self.target.write(text)
        self.held += text
        first, newline, rest = self.held.partition("\n")
        if newline and rest:  # something after the first line: the download is under way
            self.release()
        return len(text)

    def release(self) -> None:
        if not self.passing:
            self.passing = True
            self.target.write(self.held)
            self.held = ""

    def flush(self) -> None:
        if self.passing:
            self.target.flush()

    def isatty(self) -> bool:  # Keras draws its progress bar in place on a terminal
        return self.target.isatty()


def load_fashion_mnist(data_cfg: DataConfig) -> RawData:
    """The Debian package's IDX files when installed (the real 60k/10k set, offline), else keras.datasets."""
    if all((DEBIAN_FASHION_MNIST / f"{stem}.gz").exists() for stem in IDX_STEMS.values()):
        raw = read_idx_folder(DEBIAN_FASHION_MNIST)
        raw.class_names = FASHION_MNIST_CLASSES
        return raw
    return keras_dataset("fashion_mnist", "fashion-mnist/*-ubyte.gz", FASHION_MNIST_CLASSES)(data_cfg)


# What keras.datasets' downloads hold (shape of one example as stored, number of classes), so `cnnctl check` can
# build and rehearse a model without downloading them.
_DOWNLOAD_SHAPES = {
    "mnist": ((28, 28), 10),
    "fashion_mnist": ((28, 28), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}
_CLASS_NAMES = {"fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}


def stand_in(source: str, per_class: int = 10) -> Optional[RawData]:
    """Zero images of a downloadable built-in dataset's shape and classes (8-bit, as the real ones), or None for
    a source that is not one: what `cnnctl check` checks a config against when the download is missing."""
    if source not in _DOWNLOAD_SHAPES:
        return None
    shape, classes = _DOWNLOAD_SHAPES[source]
    labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    names = _CLASS_NAMES.get(source, [str(index) for index in range(classes)])
    return RawData(
        np.zeros((len(labels), *shape), np.uint8),
        labels,
        np.zeros((len(labels), *shape), np.uint8),
        labels.copy(),
        class_names=names,
        origin=f"stand-in zeros shaped like {source} (not downloaded)",
    )
