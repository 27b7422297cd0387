"""Config: the names `data.source` accepts — the built-in datasets, the file formats read from `data.path`, and
sources registered from Python with `cnnctl.register_source` (their loaders run in cnnctl/data/raw.py).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator

from cnnctl.errors import ConfigError

BUILTIN_SOURCES = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")  # no data.path needed
FILE_SOURCES = ("npz", "npy", "idx", "csv", "folder", "manifest")  # read from data.path
# The arrays handed to cnnctl.train(config, arrays={...}) from Python; the run keeps a copy as arrays.npz.
ARRAYS_SOURCE = "arrays"

# A loader gets the config's `data:` section (a DataConfig: path, shape, ... as the user wrote them) and returns
# a RawData, or a mapping of arrays under ARRAY_KEYS with optional "class_names" and "origin".
Loader = Callable[[Any], Any]

_registered: dict[str, Loader] = {}


def register_source(name: str, loader: Loader) -> None:
    """Make `data: {source: name}` call `loader(data_config)` in this process (a notebook's own dataset, a
    database query, ...). A run trained on it records the name only: register it again before evaluating,
    resuming or predicting in another process.

    Example:

        cnnctl.register_source("sines", lambda data: {"x_train": x, "y_train": y})
        cnnctl.train({"data": {"source": "sines"}, "model": {...}})
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"register_source: name {name!r} must be letters, digits and '_' (e.g. 'my_data')")
    if name in (*BUILTIN_SOURCES, *FILE_SOURCES, ARRAYS_SOURCE):
        raise ConfigError(f"register_source: '{name}' is a built-in source; choose another name")
    if not callable(loader):
        raise ConfigError(f"register_source: the loader of '{name}' must be a function taking the data config")
    _registered[name] = loader


def registered_sources() -> dict[str, Loader]:
    return dict(_registered)


@contextlib.contextmanager
def arrays_source(arrays: Any) -> Iterator[None]:
    """`data.source: arrays` reads `arrays` inside the block."""
    _registered[ARRAYS_SOURCE] = lambda data_cfg: arrays
    try:
        yield
    finally:
        _registered.pop(ARRAYS_SOURCE, None)
