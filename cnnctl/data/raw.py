"""Data: `RawData`, the arrays a source gives (no scaling, no splits), and sources registered from Python.

Every loader — built-in, file, folder or one registered with `register_source` — returns a RawData; the
later steps (cnnctl/data/dataset.py) never need to know where the arrays came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from cnnctl.config.sources import ARRAYS_SOURCE, registered_sources
from cnnctl.errors import ConfigError, DataError

ARRAY_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass
class RawData:
    """Arrays as loaded. `y_*` may be integers or strings; `x_test`/`x_val` are None when the source has none."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None
    class_names: Optional[list[str]] = None  # known names for integer labels 0..C-1
    origin: str = ""  # where the arrays came from, for data.json
    skipped: list[str] = field(default_factory=list)  # files that could not be read (folder)


def raw_from_arrays(arrays: Mapping[str, np.ndarray], origin: str, where: str = "data.path: ") -> RawData:
    """x_train, y_train (+ x_val, y_val, x_test, y_test in pairs) and optional class_names → RawData. `where`
    opens a mistake's message: the config key that named the file (`data: ` for arrays from Python)."""
    for split in ("test", "val"):
        if (f"x_{split}" in arrays) != (f"y_{split}" in arrays):
            raise DataError(f"{where}{origin} has only one of x_{split} and y_{split}; give both or neither")
    names = arrays.get("class_names")
    return RawData(
        arrays["x_train"],
        arrays["y_train"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        arrays.get("x_val"),
        arrays.get("y_val"),
        origin=origin,
        class_names=None if names is None else [str(name) for name in np.asarray(names).reshape(-1)],
    )


# ---------------------------------------------------------------- sources registered from Python


def load_registered(name: str, data_cfg: Any) -> RawData:
    """Call the loader registered as `name`; what it returns is checked like an npz file's arrays."""
    loader = registered_sources().get(name)
    if loader is None:
        if name == ARRAYS_SOURCE:
            raise DataError(
                "data.source: arrays are passed from Python: cnnctl.train(config, arrays={'x_train': "
                "..., 'y_train': ...}); from the command line use source: npz"
            )
        raise DataError(
            f"data.source: '{name}' is not registered in this process; call "
            f"cnnctl.register_source('{name}', loader) first"
        )
    origin = "arrays passed to cnnctl.train" if name == ARRAYS_SOURCE else f"source '{name}' registered from Python"
    try:
        result = loader(data_cfg)
    except (ConfigError, DataError):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's own code: name it, keep the message
        raise DataError(f"data.source {name}: the loader raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, RawData):
        return result
    return raw_from_mapping(result, origin)


def raw_from_mapping(arrays: Any, origin: str) -> RawData:
    """A mapping of numpy-like arrays (x_train, y_train[, x_val, y_val, x_test, y_test][, class_names]) → RawData."""
    if not isinstance(arrays, Mapping):
        raise DataError(
            f"data: {origin} gave {type(arrays).__name__}; expected a mapping such as {{'x_train': x, 'y_train': y}}"
        )
    unknown = [key for key in arrays if key not in (*ARRAY_KEYS, "class_names", "origin")]
    if unknown:
        raise DataError(
            f"data: {origin} has key '{unknown[0]}'; the keys are {', '.join(ARRAY_KEYS)} (and class_names)"
        )
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(f"data: {origin} needs x_train and y_train (and optionally x_val, y_val, x_test, y_test)")
    converted = {}
    for key in (*ARRAY_KEYS, "class_names"):
        if arrays.get(key) is not None:
            value = np.asarray(arrays[key])
            if value.dtype == object:
                raise DataError(
                    f"data: {origin}: {key} has Python objects (dtype object); give numbers, or strings for labels"
                )
            converted[key] = value
    return raw_from_arrays(converted, str(arrays.get("origin") or origin), where="data: ")
