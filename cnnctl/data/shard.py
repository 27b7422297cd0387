"""Data: how a batch is split when Keras' DataParallel trains on several devices (train.distribute), in
one process or several: each batch a whole multiple of the devices, each process taking its contiguous part."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Every batch is split evenly over `devices` devices (all processes together); this is process `index` of
    `count`, and its batches are its contiguous part of each (see cnnctl/data/batches.py)."""

    index: int = 0
    count: int = 1
    devices: int = 1
