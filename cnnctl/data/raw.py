"""Data, step 2a: `RawData`, the arrays a source gives (no scaling, no splits), and sources registered from Python.

Every loader — built-in, file, folder or one registered with `register_source` — returns a RawData; the
later steps (cnnctl/data/dataset.py) never need to know where the arrays came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cnnctl.errors import DataError


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
    origin: str = ""                         # where the arrays came from, for data.json
    skipped: list[str] = field(default_factory=list)  # files that could not be read (folder)


def raw_from_arrays(arrays: dict[str, np.ndarray], origin: str) -> RawData:
    for split in ("test", "val"):
        if (f"x_{split}" in arrays) != (f"y_{split}" in arrays):
            raise DataError(f"data.path: {origin} has only one of x_{split} and y_{split}; give both or neither")
    return RawData(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
                   arrays.get("x_val"), arrays.get("y_val"), origin=origin)
