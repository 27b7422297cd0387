"""Data: `load_data` — a config's source → a `Dataset` of splits, and its batched tf.data pipelines.

Order: load the source's arrays once → map labels to class indices → put examples in the layout the model
takes (channel axis) → carve test (when the source has none) then validation, stratified and seeded →
pipelines that cast, one-hot encode and augment per batch, with prefetch. Scaling to [0, 1] is not done here:
the model carries it (cnnctl/model/build.py), so every consumer of model.keras sees what training saw, and
data.json's `scaling` says so. Run folders saved before that (data.json without `scaling`) hold a model that
takes examples already divided by `pixel_scale`: `pipeline(..., scale_outside=True)` still feeds those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from cnnctl import runtime
from cnnctl.config.schema import Config
from cnnctl.data.arrays import (
    check_arrays,
    encode_labels,
    encode_multi_labels,
    fold_split,
    spatial_rank_of,
    stratified_split,
    to_model_layout,
)
from cnnctl.data.builtin import stand_in
from cnnctl.data.folders import ImageFiles
from cnnctl.data.shard import Shard
from cnnctl.data.sources import load_raw
from cnnctl.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


DEFAULT_TEST_SPLIT = 0.2  # used when the source has no test set and data.test_split is null


IMBALANCE_RATIO = 3.0  # largest / smallest class count in train above which the header warns


VALUE_RANGE_SAMPLE = 64  # image files decoded for data.json's value range (all of them would read every file)


SCALING = "scaling"  # data.json key: how examples reach model.keras; absent in older run folders
SCALED_IN_MODEL = "in_model"  # the model's first layer divides by pixel_scale: it takes examples as stored
NOT_SCALED = "none"  # pixel_scale is 1 (data.normalize: false, or data already within [-1, 1])


@dataclass
class Split:
    x: np.ndarray  # examples in model layout, source dtype and units (the model scales them); for a folder
    # source an ImageFiles: the file list, decoded only in the pipeline or when indexed
    y: np.ndarray  # int64 class indices; multi-label: float32 (N, K) of 0/1

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    splits: dict[str, Split]
    class_names: list[str]
    input_shape: tuple[int, ...]
    pixel_scale: float  # the model divides examples by this (1.0 = as given)
    full_scale: float  # the data's full-scale value (255 for 8-bit data), even when not
    # normalized: what an 8-bit 255 means in predict
    source: str
    origin: str
    notes: list[str] = field(default_factory=list)  # things the user should know (carved splits, imbalance)
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    stand_in: Optional[str] = None  # why zero images stand in for the data (load_data(stand_in_when_missing=True))
    multi_label: bool = False  # y is (N, K) of 0/1: any number of labels per example

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def evaluation_split(self, wanted: Optional[str] = None) -> str:
        """The config's evaluate.split (`wanted`) when the data has it; by default test, else val."""
        if wanted is None:
            return "test" if "test" in self.splits else "val"
        if wanted not in self.splits:
            raise ConfigError(
                f"evaluate.split: this data has no {wanted} split (it has {', '.join(self.splits)}); "
                f"choose one of those"
            )
        return wanted

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples of each class per split (multi-label: examples carrying each label)."""
        return {
            name: {
                cls: int(n)
                for cls, n in zip(
                    self.class_names,
                    split.y.sum(axis=0) if self.multi_label else np.bincount(split.y, minlength=self.num_classes),
                )
            }
            for name, split in self.splits.items()
        }

    def summary(self) -> dict[str, Any]:
        """What data.json holds: enough to rebuild inputs for `predict` without loading the data."""
        train = self.splits["train"].x
        return {
            "source": self.source,
            "origin": self.origin,
            "input_shape": list(self.input_shape),
            "dtype": str(train.dtype),
            "value_range": value_range(train),
            **(
                {"value_range_examples": VALUE_RANGE_SAMPLE}
                if isinstance(train, ImageFiles) and len(train) > VALUE_RANGE_SAMPLE
                else {}
            ),
            "pixel_scale": self.pixel_scale,
            "full_scale": self.full_scale,
            SCALING: SCALED_IN_MODEL if self.pixel_scale != 1 else NOT_SCALED,
            "class_names": self.class_names,
            "num_classes": self.num_classes,
            **({"multi_label": True} if self.multi_label else {}),
            "sizes": {name: len(split) for name, split in self.splits.items()},
            "counts": self.counts(),
            "notes": self.notes,
            "skipped": self.skipped,
        }

    def pipeline(
        self,
        split: str,
        batch_size: int,
        *,
        one_hot: bool = False,
        shuffle: bool = False,
        seed: Optional[int] = None,
        augment: Any = None,
        mix: Optional[list] = None,
        scale_outside: bool = False,
        shard: Optional[Shard] = None,
    ):
        """Batched tf.data for one split: cast to float32 per batch (cheaper than per example), augment, mix,
        prefetch. `mix`: data.mix's layers (cnnctl/model/mixing.py), called on (images, labels) of each batch, one
        of them at random per batch when there are two; the labels must be one-hot or a 0/1 matrix.

        Examples keep their units: the model divides them by `pixel_scale` itself, and `augment` sees them as
        stored (0..255 for 8-bit images). `scale_outside` divides here instead, for a model saved before models
        carried their scaling (`scaled_outside_model` of its data.json). Without TensorFlow (JAX alone), in-memory
        examples come in the same batches from an ArrayBatches (a keras.utils.PyDataset) instead, as they do for
        Keras' DataParallel on JAX, whose batches a `shard` (cnnctl/data/batches.py) cuts per process and device."""
        data = self.splits[split]
        if (shard is not None or not runtime.tensorflow_installed()) and not isinstance(data.x, ImageFiles):
            from cnnctl.data.batches import ArrayBatches

            return ArrayBatches(
                data.x,
                data.y,
                batch_size,
                shuffle=shuffle,
                seed=seed,
                augment=augment,
                mix=mix,
                one_hot=self.num_classes if one_hot else 0,
                scale=self.pixel_scale if scale_outside else 1.0,
                shard=shard,
            )
        tf = runtime.require_tensorflow("data.source: folder (streaming images)")
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
            dataset = dataset.batch(batch_size).map(
                lambda index: (tf.gather(x, index), tf.gather(y, index)), num_parallel_calls=tf.data.AUTOTUNE
            )
        scale = np.float32(self.pixel_scale if scale_outside else 1.0)
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
            # Layer by layer: inside tf.data each Keras preprocessing layer computes with TensorFlow whatever the
            # backend; a Sequential around them would call JAX's ops on tf.data's symbolic tensors, and fail.
            layers = getattr(augment, "layers", [augment])

            def augmented(x, y):
                for layer in layers:
                    x = layer(x, training=True)
                return x, y

            dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
        if mix:
            dataset = dataset.map(_mixing(tf, mix, seed), num_parallel_calls=tf.data.AUTOTUNE)
        if isinstance(data.x, ImageFiles):
            return dataset.prefetch(tf.data.AUTOTUNE)
        # In memory, each batch is one gather and a cast (plus any augmentation): with tf.data's autotuner on, the
        # end of an epoch's iterator waited 15-20 s for a tf.data thread to join in about half of the runs on a
        # 2-core machine (py-spy: the iterator's destructor; see benchmarks/RESULTS.md). Without it, the maps keep
        # tf.data's fixed initial parallelism (AutotuneOptions.initial_parallelism) and the prefetch two batches.
        options = tf.data.Options()
        options.autotune.enabled = False
        return dataset.prefetch(2).with_options(options)


def load_data(config: Config, stand_in_when_missing: bool = False) -> Dataset:
    """The config's data, loaded once, in model layout, split. With `stand_in_when_missing` (cnnctl check), a
    built-in dataset that is not downloaded is replaced by zero images of its shape and classes, and the
    Dataset says so (`stand_in`)."""
    data_cfg = config.data
    missing = None
    try:
        raw = load_raw(data_cfg)
    except DataError as exc:
        raw = stand_in(data_cfg.source) if stand_in_when_missing else None
        if raw is None:
            raise
        missing = str(exc)
    arrays = {
        name: (getattr(raw, f"x_{name}"), getattr(raw, f"y_{name}"))
        for name in SPLITS
        if getattr(raw, f"x_{name}") is not None
    }
    for name, (x, y) in arrays.items():
        check_arrays(name, x, y)
        if x.shape[1:] != arrays["train"][0].shape[1:]:  # the model takes one shape: said now, not after training
            raise DataError(
                f"data: x_{name} holds examples of shape {list(x.shape[1:])} but x_train's are "
                f"{list(arrays['train'][0].shape[1:])}; every split must hold examples of one shape"
            )
    encode = encode_multi_labels if data_cfg.multi_label else encode_labels
    labels, class_names = encode({name: y for name, (x, y) in arrays.items()}, raw.class_names)
    spatial_rank = spatial_rank_of(config.model.layers)
    arrays = {
        name: (to_model_layout(x, spatial_rank, config.model.input_shape, name), labels[name])
        for name, (x, _) in arrays.items()
    }

    notes: list[str] = []
    x_train, y_train = arrays.pop("train")
    if "test" not in arrays:
        fraction = data_cfg.test_split or DEFAULT_TEST_SPLIT
        x_train, y_train, x_test, y_test = stratified_split(
            x_train, y_train, fraction, config.seed, "test_split", class_names
        )
        arrays["test"] = (x_test, y_test)
        notes.append(
            f"test: {len(y_test)} examples ({fraction:g}) carved from train, stratified "
            f"(the source has no test set; data.test_split)"
        )
    if data_cfg.fold:
        left_out = len(arrays["test"][1])
        x_train, y_train, x_fold, y_fold = fold_split(
            x_train, y_train, data_cfg.fold.index, data_cfg.fold.folds, config.seed, class_names
        )
        arrays["test"] = (x_fold, y_fold)
        notes.append(
            f"test: fold {data_cfg.fold.index} of {data_cfg.fold.folds} ({len(y_fold)} examples) held out "
            f"of train for cross-validation; the {left_out} test examples are left out"
        )
    if "val" not in arrays and data_cfg.validation_split > 0:
        x_train, y_train, x_val, y_val = stratified_split(
            x_train, y_train, data_cfg.validation_split, config.seed, "validation_split", class_names
        )
        arrays["val"] = (x_val, y_val)
    splits = {"train": Split(x_train, y_train)}
    splits.update({name: Split(*arrays[name]) for name in ("val", "test") if name in arrays})

    train_counts = y_train.sum(axis=0) if data_cfg.multi_label else np.bincount(y_train, minlength=len(class_names))
    if data_cfg.multi_label and train_counts.min() == 0:
        notes.append(
            f"label '{class_names[int(train_counts.argmin())]}' never occurs in train: the model cannot learn it"
        )
    elif (
        not data_cfg.multi_label
        and train_counts.min() > 0
        and train_counts.max() / train_counts.min() > IMBALANCE_RATIO
    ):
        notes.append(
            f"imbalanced classes: train has {train_counts.max()} of '{class_names[train_counts.argmax()]}' "
            f"but {train_counts.min()} of '{class_names[train_counts.argmin()]}'; consider "
            "train.class_weight: balanced"
        )
    full_scale = pixel_scale(x_train)
    return Dataset(
        splits=splits,
        class_names=class_names,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        pixel_scale=full_scale if data_cfg.normalize else 1.0,
        full_scale=full_scale,
        source=data_cfg.source,
        origin=raw.origin,
        notes=notes,
        skipped=list(raw.skipped),
        stand_in=missing,
        multi_label=data_cfg.multi_label,
    )


def value_range(x: np.ndarray) -> Optional[list[float]]:
    """[min, max] of the examples; for image files, of the first VALUE_RANGE_SAMPLE of them."""
    if isinstance(x, ImageFiles):
        x = np.asarray(x[:VALUE_RANGE_SAMPLE])
    return [float(np.min(x)), float(np.max(x))] if x.size else None


def pixel_scale(x: np.ndarray) -> float:
    """The data's full-scale value, the divisor that brings examples into [0, 1]: 255 for 8-bit images, else
    the largest magnitude (if > 1)."""
    if x.dtype == np.uint8:
        return 255.0
    largest = float(np.max(np.abs(x))) if x.size else 1.0
    return largest if largest > 1 else 1.0


def scaled_outside_model(summary: dict[str, Any]) -> bool:
    """Whether a run's model.keras takes examples already divided by pixel_scale, given its data.json: true only
    for run folders saved before models carried their scaling (no `scaling` key) with a pixel_scale other than 1."""
    return SCALING not in summary and float(summary.get("pixel_scale", 1.0)) != 1


def _mixing(tf: Any, layers: list, seed: Optional[int]) -> Callable:
    """(x, y) → (x, y) mixed by one of `layers` (MixUp, CutMix), chosen per batch."""

    def mixed_by(layer: Any, x: Any, y: Any) -> tuple[Any, Any]:
        mixed = layer({"images": x, "labels": tf.cast(y, tf.float32)}, training=True)
        return mixed["images"], mixed["labels"]

    def mix(x, y):
        if len(layers) == 1:
            return mixed_by(layers[0], x, y)
        first = tf.random.uniform((), seed=seed) < 0.5
        return tf.cond(first, lambda: mixed_by(layers[0], x, y), lambda: mixed_by(layers[1], x, y))

    return mix
