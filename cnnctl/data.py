"""From `data:` in the config to train/val/test splits and their tf.data pipelines.

Order: load the source's arrays once → map labels to class indices → put examples in the layout the model
takes (channel axis) → carve test (when the source has none) then validation, stratified and seeded →
pipelines that scale, one-hot encode and augment per batch, with prefetch.
Carving is deterministic in the seed, so `cnnctl evaluate` finds the same test examples training left out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from cnnctl.config import Config, LayerSpec
from cnnctl.errors import ConfigError, DataError
from cnnctl.folders import ImageFiles
from cnnctl.sources import RawData, load_raw

SPLITS = ("train", "val", "test")
DEFAULT_TEST_SPLIT = 0.2       # used when the source has no test set and data.test_split is null
IMBALANCE_RATIO = 3.0          # largest / smallest class count in train above which the header warns
VALUE_RANGE_SAMPLE = 64        # image files decoded for data.json's value range (all of them would read every file)


@dataclass
class Split:
    x: np.ndarray  # examples in model layout, source dtype (scaled per batch in the pipeline); for a folder
                   # source an ImageFiles: the file list, decoded only in the pipeline or when indexed
    y: np.ndarray  # int64 class indices

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    splits: dict[str, Split]
    class_names: list[str]
    input_shape: tuple[int, ...]
    pixel_scale: float                      # examples are divided by this (1.0 = as given)
    source: str
    origin: str
    notes: list[str] = field(default_factory=list)    # things the user should know (carved splits, imbalance)
    skipped: list[str] = field(default_factory=list)  # files that could not be read

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def evaluation_split(self, wanted: Optional[str] = None) -> str:
        """The config's evaluate.split (`wanted`) when the data has it; by default test, else val."""
        if wanted is None:
            return "test" if "test" in self.splits else "val"
        if wanted not in self.splits:
            raise ConfigError(f"evaluate.split: this data has no {wanted} split (it has {', '.join(self.splits)}); "
                              f"choose one of those")
        return wanted

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {cls: int(n) for cls, n in zip(self.class_names,
                                                     np.bincount(split.y, minlength=self.num_classes))}
                for name, split in self.splits.items()}

    def summary(self) -> dict[str, Any]:
        """What data.json holds: enough to rebuild inputs for `predict` without loading the data."""
        train = self.splits["train"].x
        return {
            "source": self.source,
            "origin": self.origin,
            "input_shape": list(self.input_shape),
            "dtype": str(train.dtype),
            "value_range": value_range(train),
            **({"value_range_examples": VALUE_RANGE_SAMPLE}
               if isinstance(train, ImageFiles) and len(train) > VALUE_RANGE_SAMPLE else {}),
            "pixel_scale": self.pixel_scale,
            "class_names": self.class_names,
            "num_classes": self.num_classes,
            "sizes": {name: len(split) for name, split in self.splits.items()},
            "counts": self.counts(),
            "notes": self.notes,
            "skipped": self.skipped,
        }

    def pipeline(self, split: str, batch_size: int, *, one_hot: bool = False, shuffle: bool = False,
                 seed: Optional[int] = None, augment: Any = None):
        """Batched tf.data for one split: cast and scale per batch (cheaper than per example), prefetch."""
        import tensorflow as tf

        data = self.splits[split]
        if isinstance(data.x, ImageFiles):
            files = data.x
            dataset = tf.data.Dataset.from_tensor_slices((files.paths, data.y))
            if shuffle:  # only the paths are shuffled, so the buffer costs bytes per example, not pixels
                dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.map(lambda path, y: (files.decode(path), y), num_parallel_calls=tf.data.AUTOTUNE)
            dataset = dataset.batch(batch_size)
        else:
            # In memory: shuffle and batch indices, then gather whole batches: one vectorized copy per batch
            # instead of every example passing through a shuffle buffer and a batching step on its own.
            x, y = tf.constant(data.x), tf.constant(data.y)
            dataset = tf.data.Dataset.range(len(data))
            if shuffle:
                dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.batch(batch_size).map(lambda index: (tf.gather(x, index), tf.gather(y, index)),
                                                    num_parallel_calls=tf.data.AUTOTUNE)
        scale = np.float32(self.pixel_scale)
        num_classes = self.num_classes

        def prepare(x, y):
            x = tf.cast(x, tf.float32)
            if scale != 1:
                x = x / scale
            if one_hot:
                y = tf.one_hot(y, num_classes)
            return x, y

        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if augment is not None:
            dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)


def load_data(config: Config) -> Dataset:
    data_cfg = config.data
    raw = load_raw(data_cfg)
    arrays = {name: (getattr(raw, f"x_{name}"), getattr(raw, f"y_{name}")) for name in SPLITS
              if getattr(raw, f"x_{name}") is not None}
    for name, (x, y) in arrays.items():
        _check_arrays(name, x, y)
    labels, class_names = encode_labels({name: y for name, (x, y) in arrays.items()}, raw.class_names)
    spatial_rank = spatial_rank_of(config.model.layers)
    arrays = {name: (to_model_layout(x, spatial_rank, config.model.input_shape, name), labels[name])
              for name, (x, _) in arrays.items()}

    notes: list[str] = []
    x_train, y_train = arrays.pop("train")
    if "test" not in arrays:
        fraction = data_cfg.test_split or DEFAULT_TEST_SPLIT
        x_train, y_train, x_test, y_test = stratified_split(x_train, y_train, fraction, config.seed,
                                                            "test_split", class_names)
        arrays["test"] = (x_test, y_test)
        notes.append(f"test: {len(y_test)} examples ({fraction:g}) carved from train, stratified "
                     f"(the source has no test set; data.test_split)")
    if data_cfg.fold:
        left_out = len(arrays["test"][1])
        x_train, y_train, x_fold, y_fold = fold_split(x_train, y_train, data_cfg.fold.index, data_cfg.fold.folds,
                                                      config.seed, class_names)
        arrays["test"] = (x_fold, y_fold)
        notes.append(f"test: fold {data_cfg.fold.index} of {data_cfg.fold.folds} ({len(y_fold)} examples) held out "
                     f"of train for cross-validation; the {left_out} test examples are left out")
    if "val" not in arrays and data_cfg.validation_split > 0:
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, data_cfg.validation_split,
                                                          config.seed, "validation_split", class_names)
        arrays["val"] = (x_val, y_val)
    splits = {"train": Split(x_train, y_train)}
    splits.update({name: Split(*arrays[name]) for name in ("val", "test") if name in arrays})

    train_counts = np.bincount(y_train, minlength=len(class_names))
    if train_counts.min() > 0 and train_counts.max() / train_counts.min() > IMBALANCE_RATIO:
        notes.append(f"imbalanced classes: train has {train_counts.max()} of '{class_names[train_counts.argmax()]}' "
                     f"but {train_counts.min()} of '{class_names[train_counts.argmin()]}'; consider "
                     "train.class_weight: balanced")
    return Dataset(splits=splits, class_names=class_names, input_shape=tuple(int(d) for d in x_train.shape[1:]),
                   pixel_scale=pixel_scale(x_train) if data_cfg.normalize else 1.0,
                   source=data_cfg.source, origin=raw.origin, notes=notes, skipped=list(raw.skipped))


def _check_arrays(split: str, x: np.ndarray, y: np.ndarray) -> None:
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
            raise DataError(f"data: x_{split} has NaN or infinite values in {int(bad.sum())} of {len(x)} examples "
                            f"(first at index {int(np.argmax(bad))}); clean or drop them")
    elif not np.issubdtype(x.dtype, np.integer) and x.dtype != bool:
        raise DataError(f"data: x_{split} has dtype {x.dtype}; expected numbers")


def encode_labels(labels: dict[str, np.ndarray], known_names: Optional[list[str]]
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Labels → int64 indices 0..C-1 shared by all splits; class names kept (strings sorted, numbers by value)."""
    flat = {}
    for split, y in labels.items():
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot
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
                    raise DataError(f"data: y_{split} has non-integer labels (e.g. {y[np.mod(y, 1) != 0][:1]}); "
                                    "labels must be class indices or names")
        values = np.unique(train)
        for split, y in flat.items():
            unknown = np.setdiff1d(np.unique(y), values)
            if unknown.size:
                raise DataError(f"data: y_{split} has labels {unknown[:5].tolist()} that never occur in y_train")
        encoded = {split: np.searchsorted(values, y).astype(np.int64) for split, y in flat.items()}
        names = [_label_name(value) for value in values]
    if len(np.unique(encoded["train"])) < 2:
        raise DataError(f"data: y_train has only one class ({names[int(encoded['train'][0])]}); "
                        "a classifier needs at least two")
    return encoded, names


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
            raise DataError(f"model.input_shape: {list(target)} does not match the folder's images, "
                            f"{list(x.shape[1:])} from data.image_size and data.color_mode; change one of them")
        if x.shape[1:] != target:
            if math.prod(x.shape[1:]) != math.prod(target):
                raise DataError(f"model.input_shape: {list(target)} does not fit x_{split} examples of shape "
                                f"{list(x.shape[1:])}")
            x = x.reshape((len(x),) + target)
        return x
    example_rank = x.ndim - 1
    if example_rank == spatial_rank:
        return x[..., np.newaxis]
    if example_rank == spatial_rank + 1:
        return x
    layout = {1: "(length, channels)", 2: "(height, width[, channels])", 3: "(depth, height, width, channels)"}
    raise DataError(f"data: x_{split} examples have shape {list(x.shape[1:])} but the model's "
                    f"{spatial_rank}-D layers expect {layout[spatial_rank]}; set model.input_shape or use "
                    f"Conv{example_rank if example_rank <= 3 else 3}D layers")


def stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, key: str,
                     class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve `fraction` of (x, y) with every class in both parts; seeded, so it is the same on every call."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    held_out = math.ceil(fraction * n)
    present = np.unique(y)
    if held_out < len(present) or n - held_out < len(present):
        needed = math.ceil(len(present) / n * 100) / 100
        raise DataError(f"data.{key}: {fraction:g} of {n} examples is {held_out}, too small to hold all "
                        f"{len(present)} classes; use at least {needed:g}, or more data")
    counts = np.bincount(y, minlength=len(class_names))
    thin = [class_names[i] for i in present if counts[i] < 2]
    if thin:
        raise DataError(f"data.{key}: class '{thin[0]}' has only 1 example, so the split would leave one side "
                        "without it; stratified splits need at least 2 examples per class")
    keep, out = train_test_split(np.arange(n), test_size=held_out, stratify=y, random_state=seed)
    keep.sort()
    out.sort()
    return x[keep], y[keep], x[out], y[out]


def fold_split(x: np.ndarray, y: np.ndarray, index: int, folds: int, seed: int,
               class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold `index` (1-based) of a seeded stratified K-fold: (x, y) of the other folds, then of this fold."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=len(class_names))
    present = np.flatnonzero(counts)
    thinnest = present[np.argmin(counts[present])]
    if counts[thinnest] < folds:
        raise DataError(f"data.fold: {folds} folds need at least {folds} training examples of every class, but "
                        f"class '{class_names[thinnest]}' has {counts[thinnest]}; use fewer folds "
                        f"(--folds {max(2, int(counts[thinnest]))}) or more data")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    keep, out = list(splitter.split(np.zeros(len(y)), y))[index - 1]
    return x[keep], y[keep], x[out], y[out]


def value_range(x: np.ndarray) -> Optional[list[float]]:
    """[min, max] of the examples; for image files, of the first VALUE_RANGE_SAMPLE of them."""
    if isinstance(x, ImageFiles):
        x = np.asarray(x[:VALUE_RANGE_SAMPLE])
    return [float(np.min(x)), float(np.max(x))] if x.size else None


def pixel_scale(x: np.ndarray) -> float:
    """The divisor that brings examples into [0, 1]: 255 for 8-bit images, else the largest magnitude (if > 1)."""
    if x.dtype == np.uint8:
        return 255.0
    largest = float(np.max(np.abs(x))) if x.size else 1.0
    return largest if largest > 1 else 1.0
