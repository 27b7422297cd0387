"""Data: `data.source` → the loader of its family, which returns RawData."""

from __future__ import annotations

from typing import Callable

from cnnctl.config.schema import DataConfig
from cnnctl.data.builtin import (
    CIFAR10_CLASSES,
    keras_dataset,
    load_digits,
    load_fashion_mnist,
)
from cnnctl.data.files import load_csv, load_idx, load_npz
from cnnctl.data.folders import load_folder
from cnnctl.data.manifest import load_manifest
from cnnctl.data.raw import RawData, load_registered


def load_raw(data_cfg: DataConfig) -> RawData:
    loader = _LOADERS.get(data_cfg.source)
    if loader is None:  # not built in: registered from Python (or the arrays given to cnnctl.train)
        return load_registered(data_cfg.source, data_cfg)
    return loader(data_cfg)


_LOADERS: dict[str, Callable[[DataConfig], RawData]] = {
    "digits": load_digits,
    "mnist": keras_dataset("mnist", "mnist.npz", None),
    "fashion_mnist": load_fashion_mnist,
    "cifar10": keras_dataset("cifar10", "cifar-10-batches-py.tar.gz", CIFAR10_CLASSES),
    "cifar100": keras_dataset("cifar100", "cifar-100-python.tar.gz", None),
    "npz": load_npz,
    "npy": load_npz,
    "idx": load_idx,
    "csv": load_csv,
    "folder": load_folder,
    "manifest": load_manifest,
}
