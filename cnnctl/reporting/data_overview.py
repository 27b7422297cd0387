"""Reporting: `cnnctl data`: load and summarise a config's data without training, and draw a grid of samples.

The summary is the one a run writes to data.json (sources, shapes, dtype, value range, class names, counts per
split, skipped files); the grid shows a few training examples of every class with their labels: images as
images, 1-D signals as line plots, 3-D volumes as their middle slice (grids.example_grid decides).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from cnnctl.config.schema import Config
from cnnctl.data.dataset import Dataset, load_data
from cnnctl.reporting import grids, plots
from cnnctl.runs.output import check_output_path, write_output_bytes

SAMPLES_SHOWN = 32  # examples in the grid, spread evenly over the classes


def sample_indices(y: np.ndarray, num_classes: int, count: int = SAMPLES_SHOWN) -> np.ndarray:
    """The first few examples of every class, class after class (the same on every call)."""
    per_class = max(1, count // num_classes)
    return np.concatenate([np.flatnonzero(y == label)[:per_class] for label in range(num_classes)])[:count]


def sample_figure(dataset: Dataset, split: str = "train"):
    """A grid of labelled examples of `split`; for image files only the shown ones are read."""
    data = dataset.splits[split]
    indices = sample_indices(data.y, dataset.num_classes)
    examples = np.asarray(data.x[indices])
    titles = [dataset.class_names[label] for label in data.y[indices]]
    return grids.example_grid(
        examples, titles, title=f"{dataset.source}: {len(indices)} {split} examples of {len(data)}, by class"
    )


def describe_data(config: Config, out: Union[str, Path], *, overwrite: bool = False) -> tuple[dict[str, Any], Path]:
    """Load the data as training would, write the sample grid to `out`; returns data.json's summary and the path.
    An existing `out` is replaced only with `overwrite` (cnnctl/runs/output.py)."""
    check_output_path(out, overwrite=overwrite, example=f"{config.name}-samples.png")  # before the data loads
    dataset = load_data(config)
    return dataset.summary(), write_output_bytes(out, plots.png_bytes(sample_figure(dataset)), overwrite=overwrite)
