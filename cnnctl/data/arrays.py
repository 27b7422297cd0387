"""Data: array rules — labels to class indices (or multi-label 0/1 matrices), the model's layout, stratified and
K-fold splits.

All pure numpy (scikit-learn for the splits): what load_data applies, in order, to the arrays of a source.
Carving is deterministic in the seed, so `cnnctl evaluate` finds the same test examples training left out.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence

import numpy as np

from cnnctl.config.schema import LayerSpec
from cnnctl.data.folders import ImageFiles
from cnnctl.errors import DataError


def check_arrays(split: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim < 2:
        raise DataError(f"data: x_{split} has shape {x.shape}; expected one example per row, e.g. (N, 28, 28)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim not in (1, 2):
        raise DataError(f"data: y_{split} has shape {y.shape}; expected one label per example (N,) or one-hot (N, C)")
    if len(x) != len(y):
        raise DataError(f"data: x_{split} has {len(x)} examples but y_{split} has {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"data: the {split} split is empty")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"data: x_{split} has NaN or infinite values in {int(bad.sum())} of {len(x)} examples "
                f"(first at index {int(np.argmax(bad))}); clean or drop them"
            )
    elif not np.issubdtype(x.dtype, np.integer) and x.dtype != bool:
        raise DataError(f"data: x_{split} has dtype {x.dtype}; expected numbers")


def encode_labels(
    labels: dict[str, np.ndarray], known_names: Optional[list[str]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Labels → int64 indices 0..C-1 shared by all splits; class names kept (strings sorted, numbers by value)."""
    flat = {}
    for split, y in labels.items():
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot
            if np.issubdtype(y.dtype, np.number) and np.any(y.sum(axis=1) != 1):
                raise DataError(
                    f"data: y_{split} has rows that are not one-hot (several 1s, or none): several labels per "
                    "example; set data.multi_label: true"
                )
            y = y.argmax(axis=1)
        flat[split] = y.reshape(-1)
    train = flat["train"]
    if known_names is not None and np.issubdtype(train.dtype, np.integer):
        for split, y in flat.items():
            if y.min() < 0 or y.max() >= len(known_names):
                raise DataError(f"data: y_{split} has labels outside 0..{len(known_names) - 1}")
        encoded, names = {split: y.astype(np.int64) for split, y in flat.items()}, list(known_names)
    else:
        if np.issubdtype(train.dtype, np.floating):
            for split, y in flat.items():
                if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
                    raise DataError(
                        f"data: y_{split} has non-integer labels (e.g. {y[np.mod(y, 1) != 0][:1]}); "
                        "labels must be class indices or names"
                    )
        values = np.unique(train)
        for split, y in flat.items():
            unknown = np.setdiff1d(np.unique(y), values)
            if unknown.size:
                raise DataError(f"data: y_{split} has labels {unknown[:5].tolist()} that never occur in y_train")
        encoded = {split: np.searchsorted(values, y).astype(np.int64) for split, y in flat.items()}
        names = [_label_name(value) for value in values]
    if len(np.unique(encoded["train"])) < 2:
        raise DataError(
            f"data: y_train has only one class ({names[int(encoded['train'][0])]}); a classifier needs at least two"
        )
    return encoded, names


def encode_multi_labels(
    labels: dict[str, np.ndarray], known_names: Optional[list[str]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """data.multi_label: each split's (N, K) matrix of 0/1 → float32 (what binary cross-entropy takes), with the
    label names (`known_names`, else "0".."K-1"). Every split has the same K labels."""
    encoded = {}
    width = None
    for split, y in labels.items():
        y = np.asarray(y)
        if y.ndim != 2 or (y.dtype.kind not in "biuf"):
            raise DataError(
                f"data: y_{split} has shape {list(y.shape)} ({y.dtype}); multi-label data needs a 0/1 matrix of "
                "shape (N, K), one column per label (a manifest writes labels as car|bicycle)"
            )
        if not np.isin(y, (0, 1)).all():
            bad = y[~np.isin(y, (0, 1))].reshape(-1)[0].item()
            raise DataError(
                f"data: y_{split} holds {bad:g}; a multi-label matrix holds only 0 (label absent) and 1 (present)"
            )
        if width is not None and y.shape[1] != width:
            raise DataError(f"data: y_{split} has {y.shape[1]} label columns but y_train has {width}")
        width = y.shape[1]
        encoded[split] = y.astype(np.float32)
    names = list(known_names) if known_names is not None else [str(index) for index in range(width)]
    if len(names) != width:
        raise DataError(f"data: {len(names)} class_names for {width} label columns; give one name per column")
    if width < 2:
        raise DataError("data: multi-label data needs at least two labels (one label is a binary classifier)")
    unseen = encoded["train"].sum(axis=0) == 0
    for split, y in encoded.items():
        only_here = np.flatnonzero(unseen & (y.sum(axis=0) > 0))
        if split != "train" and only_here.size:  # as single-label data refuses a class y_train never has
            shown = ", ".join(repr(names[index]) for index in only_here[:5])
            raise DataError(
                f"data: y_{split} has labels {shown} that never occur in y_train; a model cannot learn them"
            )
    return encoded, names


def multi_label_strata(y: np.ndarray) -> np.ndarray:
    """A stratum per example for splitting multi-label data: its rarest present label (K for none), so every label
    reaches both sides of a split in proportion. Strata with a single example join the largest one."""
    counts = y.sum(axis=0)
    rarity = np.where(y > 0, counts[None, :], np.inf)
    strata = np.where(np.isfinite(rarity.min(axis=1)), rarity.argmin(axis=1), y.shape[1])
    sizes = np.bincount(strata, minlength=y.shape[1] + 1)
    strata[sizes[strata] < 2] = int(sizes.argmax())
    return strata


def _label_name(value: Any) -> str:
    if isinstance(value, (np.floating, float)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def spatial_rank_of(layers: Sequence[LayerSpec]) -> int:
    """1, 2 or 3: the first layer named *1D/*2D/*3D decides (Conv1D → signals, Conv3D → volumes); else 2."""
    for layer in layers:
        match = re.search(r"([123])D", layer.name)
        if match:
            return int(match.group(1))
    return 2


def to_model_layout(x: np.ndarray, spatial_rank: int, input_shape: Optional[Sequence[int]], split: str) -> np.ndarray:
    """Add the channel axis to grayscale images and single-channel signals; reshape to model.input_shape if given."""
    if input_shape:
        target = tuple(input_shape)
        if isinstance(x, ImageFiles) and x.shape[1:] != target:
            raise DataError(
                f"model.input_shape: {list(target)} does not match the folder's images, "
                f"{list(x.shape[1:])} from data.image_size and data.color_mode; change one of them"
            )
        if x.shape[1:] != target:
            if math.prod(x.shape[1:]) != math.prod(target):
                raise DataError(
                    f"model.input_shape: {list(target)} does not fit x_{split} examples of shape {list(x.shape[1:])}"
                )
            x = x.reshape((len(x),) + target)
        return x
    example_rank = x.ndim - 1
    if example_rank == spatial_rank:
        return x[..., np.newaxis]
    if example_rank == spatial_rank + 1:
        return x
    layout = {1: "(length, channels)", 2: "(height, width[, channels])", 3: "(depth, height, width, channels)"}
    raise DataError(
        f"data: x_{split} examples have shape {list(x.shape[1:])} but the model's "
        f"{spatial_rank}-D layers expect {layout[spatial_rank]}; set model.input_shape or use "
        f"Conv{example_rank if example_rank <= 3 else 3}D layers"
    )


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, key: str, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve `fraction` of (x, y) with every class in both parts; seeded, so it is the same on every call.
    Multi-label y (N, K) is stratified by each example's rarest label (multi_label_strata)."""
    from sklearn.model_selection import train_test_split

    if y.ndim == 2:
        strata = multi_label_strata(y)
        held_out = math.ceil(fraction * len(y))
        fits = min(held_out, len(y) - held_out) >= len(np.unique(strata))
        keep, out = train_test_split(
            np.arange(len(y)), test_size=held_out, stratify=strata if fits else None, random_state=seed
        )
        keep.sort()
        out.sort()
        return x[keep], y[keep], x[out], y[out]
    n = len(y)
    held_out = math.ceil(fraction * n)
    present = np.unique(y)
    classes = len(present)
    if n < 2 * classes:  # no fraction works: each side needs every class
        fix = "lower data.test_split (carved first), or use more data" if key == "validation_split" else "use more data"
        raise DataError(
            f"data.{key}: {n} examples cannot hold all {classes} classes on both sides of a split (at least "
            f"{2 * classes} needed); {fix}"
        )
    if held_out < classes:
        needed = math.ceil(classes / n * 100) / 100
        raise DataError(
            f"data.{key}: {fraction:g} of {n} examples is {held_out}, too small to hold all "
            f"{classes} classes; use at least {needed:g}, or more data"
        )
    if n - held_out < classes:
        most = math.floor((n - classes) / n * 100) / 100
        raise DataError(
            f"data.{key}: {fraction:g} of {n} examples leaves {n - held_out}, too few to hold all {classes} classes; "
            f"use at most {most:g}"
        )
    counts = np.bincount(y, minlength=len(class_names))
    thin = [class_names[i] for i in present if counts[i] < 2]
    if thin:
        raise DataError(
            f"data.{key}: class '{thin[0]}' has only 1 example, so the split would leave one side "
            "without it; stratified splits need at least 2 examples per class"
        )
    keep, out = train_test_split(np.arange(n), test_size=held_out, stratify=y, random_state=seed)
    keep.sort()
    out.sort()
    return x[keep], y[keep], x[out], y[out]


def fold_split(
    x: np.ndarray, y: np.ndarray, index: int, folds: int, seed: int, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold `index` (1-based) of a seeded stratified K-fold: (x, y) of the other folds, then of this fold.
    Multi-label y (N, K) is stratified by each example's rarest label (multi_label_strata)."""
    from sklearn.model_selection import StratifiedKFold

    if y.ndim == 2:
        strata = multi_label_strata(y)
        if len(y) < folds:
            raise DataError(f"data.fold: {folds} folds need at least {folds} training examples; there are {len(y)}")
        sizes = np.bincount(strata)
        if sizes[sizes > 0].min() < folds:
            strata = np.zeros(len(y), dtype=np.int64)  # too few per stratum: plain shuffled folds
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        keep, out = list(splitter.split(np.zeros(len(y)), strata))[index - 1]
        return x[keep], y[keep], x[out], y[out]
    counts = np.bincount(y, minlength=len(class_names))
    present = np.flatnonzero(counts)
    thinnest = present[np.argmin(counts[present])]
    if counts[thinnest] < folds:
        raise DataError(
            f"data.fold: {folds} folds need at least {folds} training examples of every class, but "
            f"class '{class_names[thinnest]}' has {counts[thinnest]}; use fewer folds "
            f"(--folds {max(2, int(counts[thinnest]))}) or more data"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    keep, out = list(splitter.split(np.zeros(len(y)), y))[index - 1]
    return x[keep], y[keep], x[out], y[out]
