"""Data, step 2h: batches of in-memory examples without TensorFlow — a `keras.utils.PyDataset`.

`Dataset.pipeline` builds tf.data pipelines whenever TensorFlow is installed (Keras feeds them to any backend).
This is the same batching for a machine that has only JAX (`KERAS_BACKEND=jax`, TensorFlow not installed, as
on the project's GPU test machine): the same reshuffle each epoch (seeded), float32 per batch, one-hot labels,
augmentation layers called on the batch in training mode. Folder sources stream and decode through tf.data and
need TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Batches of `x`/`y` in order, or reshuffled at every epoch with `seed`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 seed: Optional[int] = None, one_hot: int = 0, augment: Any = None, scale: float = 1.0):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.one_hot, self.augment, self.scale = shuffle, one_hot, augment, np.float32(scale)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.x[chosen].astype(np.float32)
        if self.scale != 1:
            x = x / self.scale
        y = self.y[chosen]
        if self.one_hot:
            y = np.eye(self.one_hot, dtype=np.float32)[y]
        if self.augment is not None:
            x = keras.ops.convert_to_numpy(self.augment(x, training=True))
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self[index] for index in range(len(self)))

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))
