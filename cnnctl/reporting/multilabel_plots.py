"""Reporting: figures of multi-label scores — one 2×2 confusion matrix per label, per-label precision-recall curves.

Inputs as cnnctl.evaluation.multilabel takes them: `y_true` (N, K) of 0/1, `y_pred` (N, K) of 0/1 or `y_prob`
(N, K) of sigmoid probabilities, and K label names. Like every figure function, these return a new Figure and save
nothing (the caller saves with plots.save_figure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, multilabel_confusion_matrix, precision_recall_curve

from cnnctl.reporting.plots import GRID_MARGIN, PANEL_TITLE_CHAR, grid_figure, message_figure, new_figure
from cnnctl.reporting.scores import (
    CHANCE_STYLE,
    CLASS_COLORS,
    CLASS_LINESTYLES,
    MAX_LABELLED_CLASSES,
    legend_beside_square_plot,
)

# Beyond this many labels the panels stop fitting a report page: the first ones are drawn, the title says so.
MAX_LABEL_PANELS = 40
PANELS_PER_ROW = 5

# Where each count of sklearn's per-label matrix [[TN, FP], [FN, TP]] sits: rows true absent/present, columns
# predicted absent/present. The cells are named because the small panels have no room for tick labels.
CELL_NAMES = (("TN", "FP"), ("FN", "TP"))


def label_confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> Figure:
    """One 2×2 confusion matrix per label, titled with the label's name, counts (TN, FP, FN, TP) in the cells.

    Every panel shares one colour scale (0..N examples), so a label's cells compare with another's at a glance.
    At most MAX_LABEL_PANELS labels are drawn (the first ones); the title then says "first 40 of K labels".

    Args:
        y_true: (N, K) true 0/1 indicators.
        y_pred: (N, K) predicted 0/1 indicators (evaluation.multilabel.predicted_labels).
        class_names: the K label names, in column order.
    """
    y_true, y_pred = _check_labels(y_true, y_pred, "y_pred", class_names)
    examples, num_labels = y_true.shape
    if num_labels == 0 or examples == 0:
        return message_figure("no labels" if num_labels == 0 else "no examples", "Confusion per label")
    matrices = multilabel_confusion_matrix(y_true, y_pred.astype(int))
    shown = min(num_labels, MAX_LABEL_PANELS)
    title = f"Confusion per label (n={examples}): rows true, columns predicted"
    if shown < num_labels:
        title += f" — first {shown} of {num_labels} labels"
    ncols = min(PANELS_PER_ROW, shown)
    longest = max(len(str(name)) for name in class_names[:shown])
    # Wide enough for the longest name (8-point titles), capped so long names make a readable figure, as grids.py.
    panel_width = min(3.0, max(1.4, PANEL_TITLE_CHAR * longest))
    fig, axes, _ = grid_figure(math.ceil(shown / ncols), ncols, panel_width, 1.4, 1, title)
    cmap = colormaps["Blues"]
    for index, ax in enumerate(axes):
        if index >= shown:
            ax.set_axis_off()
            continue
        counts = matrices[index]
        ax.imshow(counts, cmap=cmap, vmin=0, vmax=examples, interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        for row in range(2):
            for col in range(2):
                # Dark cells get white text: judge by the cell colour's luminance, as scores.py does.
                red, green, blue, _ = cmap(counts[row, col] / examples)
                color = "white" if 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.5 else "black"
                text = f"{CELL_NAMES[row][col]}\n{counts[row, col]}"
                ax.text(col, row, text, ha="center", va="center", color=color, fontsize=8)
        ax.set_title(str(class_names[index]), fontsize=8)
    # Pinned a fixed distance from the top edge: suptitle's default (98% of the height) drifts down onto the first
    # row's panel titles as a tall grid grows.
    fig.suptitle(title, y=1 - GRID_MARGIN / fig.get_figheight(), va="top")
    return fig


def label_pr_figure(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: Union[float, Sequence[float], np.ndarray],
    class_names: Sequence[str],
) -> Figure:
    """Precision-recall curve of each label with its average precision (AP), a dot at the chosen threshold.

    Up to MAX_LABELLED_CLASSES curves share one axes and a legend; more get a grid of panels (the first
    MAX_LABEL_PANELS), each over a dashed chance line at the label's prevalence. Labels without a positive
    example have no curve: they are skipped and the title names them.

    Args:
        y_true: (N, K) true 0/1 indicators.
        y_prob: (N, K) sigmoid probabilities.
        thresholds: the decision threshold of each label (K,), or one for all
            (evaluation.multilabel.choose_thresholds).
        class_names: the K label names, in column order.
    """
    y_true, y_prob = _check_labels(y_true, y_prob, "y_prob", class_names)
    num_labels = y_true.shape[1]
    cutoffs = np.asarray(thresholds, dtype=float)
    if cutoffs.ndim > 1 or (cutoffs.ndim == 1 and len(cutoffs) != num_labels):
        raise ValueError(f"thresholds must be one number or one per label ({num_labels}). Received: {cutoffs.shape}")
    cutoffs = np.broadcast_to(cutoffs, (num_labels,))

    curves = {}
    for label in np.flatnonzero(y_true.sum(axis=0) > 0):
        positives, scores = y_true[:, label], y_prob[:, label]
        precision, recall, _ = precision_recall_curve(positives, scores)
        chosen = scores >= cutoffs[label]
        hits = int((chosen & (positives == 1)).sum())
        # Predicting nothing is the curve's end point (recall 0, precision 1 by sklearn's convention).
        point = (hits / positives.sum(), hits / chosen.sum() if chosen.any() else 1.0)
        curves[int(label)] = (recall, precision, float(average_precision_score(positives, scores)), point)
    if not curves:
        return message_figure("precision-recall undefined: no label has a positive example", "Precision-recall")

    skipped = [str(class_names[label]) for label in range(num_labels) if label not in curves]
    macro_ap = float(np.mean([ap for _, _, ap, _ in curves.values()]))
    title = f"Precision-recall per label, macro AP = {macro_ap:.3f}"
    if len(curves) > MAX_LABEL_PANELS:
        title += f" — first {MAX_LABEL_PANELS} of {len(curves)} labels drawn"
    if skipped:
        names = ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else "")
        title += f"\n{len(skipped)} without a positive example skipped: {names}"
    if len(curves) <= MAX_LABELLED_CLASSES:
        return _pr_one_axes(curves, class_names, title)
    return _pr_grid(curves, y_true.mean(axis=0), class_names, title)


def _pr_one_axes(curves: dict, class_names: Sequence[str], title: str) -> Figure:
    fig = new_figure(7.0, 5.8 + 0.25 * title.count("\n"))  # the width is fitted to the legend at the end
    ax = fig.subplots()
    _pr_axes_limits(ax)
    fig.suptitle(title)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    for position, (label, (recall, precision, ap, point)) in enumerate(curves.items()):
        color = CLASS_COLORS[position % len(CLASS_COLORS)]
        style = CLASS_LINESTYLES[position // len(CLASS_COLORS) % len(CLASS_LINESTYLES)]
        ax.plot(
            recall,
            precision,
            color=color,
            ls=style,
            lw=1.3,
            drawstyle="steps-post",
            label=f"{class_names[label]} (AP = {ap:.3f})",
        )
        ax.plot(*point, "o", color=color, mec="black", mew=0.8, ms=6, zorder=3)
    # One legend entry explains every dot; each dot's colour already names its label.
    ax.plot([], [], "o", ls="none", color="white", mec="black", mew=0.8, label="chosen threshold")
    legend_beside_square_plot(ax)
    return fig


def _pr_grid(curves: dict, prevalence: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    drawn = list(curves)[:MAX_LABEL_PANELS]
    ncols = min(PANELS_PER_ROW, len(drawn))
    nrows = math.ceil(len(drawn) / ncols)
    fig = new_figure(2.2 * ncols + 0.5, 2.3 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        if index >= len(drawn):
            ax.set_axis_off()
            continue
        label = drawn[index]
        recall, precision, ap, point = curves[label]
        _pr_axes_limits(ax)
        ax.axhline(prevalence[label], **CHANCE_STYLE)
        ax.plot(recall, precision, color=CLASS_COLORS[0], lw=1.3, drawstyle="steps-post")
        ax.plot(*point, "o", color=CLASS_COLORS[0], mec="black", mew=0.8, ms=5, zorder=3)
        ax.set_title(f"{class_names[label]}\nAP = {ap:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title + "\n(dot: chosen threshold; dashed: chance, the label's prevalence)", fontsize=10)
    fig.supxlabel("Recall")
    fig.supylabel("Precision")
    return fig


def _pr_axes_limits(ax) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)


def _check_labels(y_true, values, name: str, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """y_true as (N, K) 0/1 ints and `values` as (N, K) floats, K the number of class names, or a ValueError."""
    y_true = np.asarray(y_true)
    values = np.asarray(values, dtype=float)
    count = len(class_names)
    if y_true.ndim != 2 or y_true.shape[1] != count:
        raise ValueError(f"y_true must be (N, K) with K = {count} label names. Received shape: {y_true.shape}")
    if values.shape != y_true.shape:
        raise ValueError(f"{name} must have y_true's shape {y_true.shape}. Received shape: {values.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 indicators only (one column per label)")
    return y_true.astype(int), values
