"""Data, step 2b: the built-in datasets — scikit-learn's bundled digits, keras.datasets, the Debian Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from cnnctl.config.schema import DataConfig
from cnnctl.data.files import IDX_STEMS, read_idx_folder
from cnnctl.data.raw import RawData
from cnnctl.errors import DataError, first_line

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_digits(data_cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(x_train=digits.images.astype(np.float32), y_train=digits.target.astype(np.int64),
                   class_names=[str(i) for i in range(10)], origin="sklearn.datasets.load_digits (bundled)")


def keras_dataset(name: str, file_name: str, class_names: Optional[list[str]]) -> Callable[[DataConfig], RawData]:
    def load(data_cfg: DataConfig) -> RawData:
        import keras

        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        try:
            (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # keras raises bare Exception/URLError/OSError for a failed download
            raise DataError(
                f"data.source {name}: could not load {file_name} ({first_line(exc)}); without internet, "
                f"download it elsewhere and place it at {cache / file_name}, or use source: npz/idx") from None
        names = class_names or [str(i) for i in range(int(np.max(y_train)) + 1)]
        return RawData(x_train, y_train.reshape(-1), x_test, y_test.reshape(-1), class_names=names,
                       origin=f"keras.datasets.{name} ({cache})")

    return load


def load_fashion_mnist(data_cfg: DataConfig) -> RawData:
    """The Debian package's IDX files when installed (the real 60k/10k set, offline), else keras.datasets."""
    if all((DEBIAN_FASHION_MNIST / f"{stem}.gz").exists() for stem in IDX_STEMS.values()):
        raw = read_idx_folder(DEBIAN_FASHION_MNIST)
        raw.class_names = FASHION_MNIST_CLASSES
        return raw
    return keras_dataset("fashion_mnist", "fashion-mnist/*-ubyte.gz", FASHION_MNIST_CLASSES)(data_cfg)
