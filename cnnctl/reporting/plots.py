"""Reporting: the canvas every figure is drawn on — pure functions, arrays in, matplotlib `Figure` out.

Every figure function of cnnctl (curves.py, scores.py, grids.py, trust_plots.py, ...) is pure: it takes plain
arrays and returns a new `matplotlib.figure.Figure`. Nothing touches pyplot, so no global figure registry fills up,
no backend has to be chosen, and figures can be drawn from threads or tests without closing anything. The only file
I/O is `save_figure`, which writes a PNG atomically so `cnnctl plot` never leaves a half-written image behind.
This module holds what they share: the PNG writer, grids of panels laid out by fixed margins, and small helpers.

Example:

```python
from cnnctl.reporting import curves, plots
history = {"epoch": [0, 1, 2], "loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7]}
fig = curves.loss_curve(history, best_epoch=curves.find_best_epoch(history))
plots.save_figure(fig, "runs/last/loss_curve.png")
```
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnctl.runs.atomic import atomic_path

# Pixels per inch of every saved PNG: a figsize of (8, 5) inches becomes an 800×500 image.
DPI = 100


# Signed values (kernels, activations that go negative) on a map centred at zero: red positive, blue negative,
# white zero. Values that are never negative (ReLU outputs, pixels) use a sequential map instead.
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "viridis"


def save_figure(fig: Figure, path: Union[str, os.PathLike], dpi: int = DPI) -> Path:
    """Write `fig` as a PNG to `path` atomically and return the path.

    The image is rendered in memory first (the slow part), then written to a temporary file in the target's
    folder and renamed onto `path`: a reader sees either the old image or the new one, never a truncated file,
    and a process killed while drawing leaves no file behind. The figure is left open: it belongs to the caller.

    Args:
        fig: the figure to render.
        path: where the PNG goes; missing parent folders are created. Always written as PNG.
        dpi: pixels per inch. Defaults to `DPI` (100).
    """
    path = Path(path)
    image = png_bytes(fig, dpi)
    with atomic_path(path) as temp:
        temp.write_bytes(image)
    return path


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """`fig` rendered as a PNG, in memory (for files the user names: cnnctl/runs/output.py writes them)."""
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=dpi)
    return image.getvalue()


def symmetric_limit(values: np.ndarray) -> float:
    """The largest |value| (finite ones), the half-width of a colour scale centred at zero; 1.0 when all are 0."""
    values = np.asarray(values, dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0


GRID_MARGIN = 0.1  # inches around the grid
GRID_GAP = 0.15  # inches between panels
SUPTITLE_HEIGHT = 0.45  # inches above the grid for the figure title
PANEL_TITLE_LINE = 0.16  # inches per line of an 8-point panel title
PANEL_TITLE_CHAR = 0.065  # inches per character of an 8-point panel title (a wide average glyph)
SUPTITLE_CHAR = 0.1  # inches per character of the 12-point figure title
COLORBAR_ROOM = 1.1  # inches right of the grid: bar, tick labels and the bar's label


def grid_figure(
    nrows: int,
    ncols: int,
    panel_width: float,
    panel_height: float,
    title_lines: int = 0,
    title: Optional[str] = None,
    colorbar: bool = False,
) -> tuple[Figure, np.ndarray, Optional[Axes]]:
    """A figure of nrows × ncols panels of panel_width × panel_height inches, GRID_GAP apart, with room above
    each for a title of `title_lines` lines, above the grid for the figure's `title` (widened to fit it) and, when
    asked, to the right for a colour bar. Returns the figure, the panels' axes (flat) and the colour bar's axes
    (None without one)."""
    title_height = title_lines * PANEL_TITLE_LINE
    top_margin = (SUPTITLE_HEIGHT if title else GRID_MARGIN) + title_height
    right_margin = COLORBAR_ROOM if colorbar else GRID_MARGIN
    grid_width = ncols * panel_width + (ncols - 1) * GRID_GAP
    grid_height = nrows * panel_height + (nrows - 1) * (GRID_GAP + title_height)
    width = GRID_MARGIN + grid_width + right_margin
    spare = max(0.0, max(3.0, SUPTITLE_CHAR * len(title or "") + 0.4) - width)  # centres a grid narrower than its title
    left = GRID_MARGIN + spare / 2
    width += spare
    height = top_margin + grid_height + GRID_MARGIN
    fig = Figure(figsize=(width, height), dpi=DPI)
    grid = fig.add_gridspec(
        nrows,
        ncols,
        left=left / width,
        right=(left + grid_width) / width,
        bottom=GRID_MARGIN / height,
        top=(GRID_MARGIN + grid_height) / height,
        wspace=GRID_GAP / panel_width,
        hspace=(GRID_GAP + title_height) / panel_height,
    )
    axes = grid.subplots(squeeze=False).ravel()
    colorbar_axes = None
    if colorbar:
        bar_height = 0.9 * grid_height
        colorbar_axes = fig.add_axes(
            (
                (left + grid_width + 0.2) / width,
                (GRID_MARGIN + (grid_height - bar_height) / 2) / height,
                0.15 / width,
                bar_height / height,
            ),
            label="<colorbar>",
        )
    return fig, axes, colorbar_axes


def new_figure(width: float, height: float) -> Figure:
    # Constrained layout keeps titles, rotated labels and colorbars inside the canvas at any size.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def message_figure(message: str, title: Optional[str] = None) -> Figure:
    """A small figure that says why there is nothing to draw, so a report never shows a missing image."""
    fig = new_figure(6, 2)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    if title:
        ax.set_title(title)
    return fig


def normalize_values(values: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the array's own min and max; a constant array becomes all zeros."""
    values = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)
