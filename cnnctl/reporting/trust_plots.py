"""Reporting, figures of trust: where the model looked (Grad-CAM overlays) and whether its confidence means
anything (the reliability diagram, accuracy against coverage). Arrays in, matplotlib `Figure` out, as in plots.py.

Heat maps are drawn over their input as each kind of example allows: over an image (its pixels in gray or colour,
the heat in matplotlib's `inferno` map, half transparent), under a 1-D signal (a band of heat along the time
axis), and for a volume the slices holding the most heat, each with its overlay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from cnnctl.reporting.grids import draw_example, example_kind
from cnnctl.reporting.plots import grid_figure, message_figure, new_figure, normalize_values

HEAT_CMAP = "inferno"
HEAT_ALPHA = 0.5
VOLUME_SLICES = 3  # a volume's hottest slices drawn by `explain`


def overlay(ax: Any, example: np.ndarray, heatmap: np.ndarray, kind: str = "auto") -> None:
    """Draw `heatmap` (the example's spatial shape, values in [0, 1]) over `example` on `ax`."""
    example, heatmap = np.asarray(example), np.asarray(heatmap, dtype=float)
    if kind == "auto":
        kind = example_kind(example)
    if kind == "volume":  # the slice with the most heat stands for the volume in a grid
        depth = int(np.argmax(heatmap.reshape(len(heatmap), -1).sum(axis=1)))
        example, heatmap, kind = example[depth], heatmap[depth], "image"
    if kind == "signal":
        values = example.reshape(len(example), -1)
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if not high > low:
            low, high = low - 1, high + 1
        ax.imshow(
            heatmap.reshape(1, -1),
            cmap=HEAT_CMAP,
            vmin=0,
            vmax=1,
            aspect="auto",
            alpha=HEAT_ALPHA,
            extent=(-0.5, len(values) - 0.5, low, high),
            interpolation="nearest",
        )
        ax.plot(values, lw=0.9, color="black")
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_ylim(low, high)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_axis_off()
    image = example[..., 0] if example.ndim == 3 and example.shape[-1] == 1 else example
    if image.ndim == 3:
        ax.imshow(normalize_values(image[..., :3]), interpolation="nearest")
    else:
        ax.imshow(normalize_values(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(
        heatmap.reshape(image.shape[:2]), cmap=HEAT_CMAP, vmin=0, vmax=1, alpha=HEAT_ALPHA, interpolation="bilinear"
    )


def gradcam_grid(
    examples: Sequence[np.ndarray],
    heatmaps: Sequence[np.ndarray],
    titles: Sequence[str],
    colors: Optional[Sequence[str]] = None,
    ncols: int = 8,
    title: Optional[str] = None,
) -> Figure:
    """A grid of examples, each with its heat map over it and a title (class, probability).

    Args:
        examples: one array per example (image, signal or volume, as grids.example_grid takes them).
        heatmaps: one heat map per example, its spatial shape, values in [0, 1].
        titles: one title per panel.
        colors: one title colour per panel (e.g. red for a wrong prediction). Defaults to None (black).
        ncols: panels per row. Defaults to 8.
        title: a title over the grid. Defaults to None.
    """
    count = len(examples)
    if count == 0:
        return message_figure("no examples", title)
    if len(heatmaps) != count or len(titles) != count or (colors is not None and len(colors) != count):
        raise ValueError(f"heatmaps, titles and colors need one entry per example ({count})")
    ncols = max(1, min(ncols, count))
    lines = max(len(str(text).split("\n")) for text in titles)
    fig, axes, _ = grid_figure(math.ceil(count / ncols), ncols, 1.5, 1.5, lines, title)
    for index, ax in enumerate(axes):
        if index >= count:
            ax.set_axis_off()
            continue
        overlay(ax, examples[index], heatmaps[index])
        ax.set_title(str(titles[index]), fontsize=8, color=colors[index] if colors else "black")
    if title:
        fig.suptitle(title)
    return fig


def explanation_figure(example: np.ndarray, heatmap: np.ndarray, title: str) -> Figure:
    """One example explained: the input alone, then the heat over it (for a volume: its hottest slices)."""
    example, heatmap = np.asarray(example), np.asarray(heatmap, dtype=float)
    kind = example_kind(example)
    if kind == "volume":
        heat = heatmap.reshape(len(heatmap), -1).sum(axis=1)
        slices = sorted(np.argsort(-heat, kind="stable")[:VOLUME_SLICES].tolist())
        panels = [(example[depth], heatmap[depth], f"slice {depth} of {len(example)}") for depth in slices]
    else:
        panels = [(example, None, "input"), (example, heatmap, "Grad-CAM")]
    wide = 4.0 if kind == "signal" else 2.6
    fig, axes, bar = grid_figure(1, len(panels), wide, 2.6, 1, title, colorbar=True)
    for ax, (values, heat, name) in zip(axes, panels):
        if heat is None:
            draw_example(ax, values, kind)
        else:
            overlay(ax, values, heat, "image" if kind == "volume" else kind)
        ax.set_title(name, fontsize=8)
    fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[HEAT_CMAP]), cax=bar, label="class activation")
    fig.suptitle(title, fontsize=10)
    return fig


def reliability_figure(calibration: dict[str, Any], split: str = "test") -> Figure:
    """Accuracy against confidence per bin (the reliability diagram): a perfectly calibrated model sits on the
    diagonal; each bar's gap to it is shaded, and the number of examples is written over each bar."""
    bins = [entry for entry in calibration.get("bins", []) if entry.get("count")]
    if not bins:
        return message_figure("no predictions to calibrate", "Reliability")
    fig = new_figure(6.4, 4.8)
    ax = fig.subplots()
    centres = np.array([(entry["lower"] + entry["upper"]) / 2 for entry in bins])
    widths = np.array([entry["upper"] - entry["lower"] for entry in bins])
    accuracy = np.array([entry["accuracy"] for entry in bins])
    confidence = np.array([entry["confidence"] for entry in bins])
    ax.bar(centres, accuracy, width=widths, edgecolor="#1f77b4", color="#1f77b4", alpha=0.75, label="accuracy")
    ax.bar(
        centres,
        confidence - accuracy,
        bottom=accuracy,
        width=widths,
        color="#d62728",
        alpha=0.25,
        edgecolor="#d62728",
        hatch="//",
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1, label="perfect calibration")
    for centre, height, entry in zip(centres, np.maximum(accuracy, confidence), bins):
        ax.text(centre, min(height + 0.02, 1.02), str(entry["count"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ece, mce = calibration.get("ece"), calibration.get("mce")
    ax.set_title(
        f"Reliability on the {split} split: ECE {ece:.3f}, MCE {mce:.3f}"
        if ece is not None
        else f"Reliability on the {split} split"
    )
    ax.legend(loc="upper left", fontsize=8)
    return fig


def coverage_figure(curve: dict[str, Sequence[float]], sentence: str = "", split: str = "test") -> Figure:
    """Accuracy of the answered examples against the share answered, when the model abstains below a confidence
    threshold (the reject option), with the plain sentence under it."""
    coverage, accuracy = np.asarray(curve.get("coverage", [])), np.asarray(curve.get("accuracy", []))
    if coverage.size == 0:
        return message_figure("no predictions", "Accuracy against coverage")
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    ax.plot(coverage, accuracy, color="#1f77b4", lw=1.5, drawstyle="steps-post")
    ax.set_xlim(0, 1.01)
    low = float(np.nanmin(accuracy)) if accuracy.size else 0.0
    ax.set_ylim(max(0.0, min(low, 0.9) - 0.05), 1.005)
    ax.set_xlabel("coverage (share of examples answered)")
    ax.set_ylabel("accuracy of the answered examples")
    ax.set_title(f"Accuracy against coverage, {split} split")
    ax.grid(alpha=0.3)
    if sentence:
        fig.supxlabel(sentence, fontsize=9)
    return fig
