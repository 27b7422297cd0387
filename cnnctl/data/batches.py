"""Data: batches of in-memory examples without TensorFlow — a `keras.utils.PyDataset`.

`Dataset.pipeline` builds tf.data pipelines whenever TensorFlow is installed (Keras feeds them to any backend).
This is the same batching for a machine that has only JAX (`KERAS_BACKEND=jax`, TensorFlow not installed, as
on the project's GPU test machine): the same reshuffle each epoch (seeded), float32 per batch, one-hot labels,
augmentation and mixing (data.mix) layers called on the batch in training mode. Folder sources stream and decode through tf.data and
need TensorFlow.

They also feed Keras' DataParallel on JAX (train.distribute, cnnctl/training/distribute.py), which splits every batch
evenly over the devices and, in a job of several processes, takes each process's part from that process: a `Shard`
makes each batch a whole multiple of the devices and yields this process's rows of it.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import keras
import numpy as np

from cnnctl.data.shard import Shard


class ArrayBatches(keras.utils.PyDataset):
    """Batches of `x`/`y` in order, or reshuffled at every epoch with `seed`.

    With a `shard`: a shuffled (training) epoch's last, short batch is filled up with the epoch's first examples,
    so every batch splits evenly; an ordered (validation) one is padded to a multiple of the devices with copies
    of its first example weighted 0, and every batch carries sample weights, so accuracy counts each real example
    once (the loss's mean divides by the padded size: at most devices - 1 rows in a whole split)."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: Optional[int] = None,
        one_hot: int = 0,
        augment: Any = None,
        mix: Optional[list] = None,
        scale: float = 1.0,
        shard: Optional[Shard] = None,
    ):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.one_hot, self.augment, self.scale = shuffle, one_hot, augment, np.float32(scale)
        self.shard, self.mix = shard, mix
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self.shard is None:
            return self.batch_of(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.shard_of_batch(index)

    def shard_of_batch(self, index: int) -> tuple[np.ndarray, ...]:
        shard, start = self.shard, index * self.batch_size
        if self.shuffle:
            chosen = np.take(self.order, np.arange(start, start + self.batch_size), mode="wrap")
            weights = None
        else:
            chosen = self.order[start : start + self.batch_size]
            padded = math.ceil(len(chosen) / shard.devices) * shard.devices
            weights = np.zeros(padded, np.float32)
            weights[: len(chosen)] = 1
            chosen = np.concatenate([chosen, np.repeat(chosen[:1], padded - len(chosen))])
        part = len(chosen) // shard.count
        rows = slice(shard.index * part, (shard.index + 1) * part)
        batch = self.batch_of(chosen[rows])
        return batch if weights is None else (*batch, weights[rows])

    def batch_of(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.x[chosen].astype(np.float32)
        if self.scale != 1:
            x = x / self.scale
        y = self.y[chosen]
        if self.one_hot:
            y = np.eye(self.one_hot, dtype=np.float32)[y]
        if self.augment is not None:
            x = keras.ops.convert_to_numpy(self.augment(x, training=True))
        if self.mix:  # one of the mixing layers, chosen per batch
            layer = self.mix[int(self.rng.integers(len(self.mix)))]
            mixed = layer({"images": x, "labels": y.astype(np.float32)}, training=True)
            x, y = (keras.ops.convert_to_numpy(mixed[key]) for key in ("images", "labels"))
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self[index] for index in range(len(self)))

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))
