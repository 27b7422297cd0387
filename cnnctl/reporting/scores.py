"""Reporting: figures of scores — confusion matrices, one-vs-rest ROC and precision-recall curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_curve,
)

from cnnctl.reporting.plots import (
    message_figure,
    new_figure,
)

# Above this many classes a per-cell number no longer fits in a confusion-matrix cell.
MAX_ANNOTATED_CLASSES = 20


# Above this many classes a per-class ROC/PR legend stops being readable: only the weakest are named.
MAX_LABELLED_CLASSES = 10


WEAKEST_CLASSES_SHOWN = 5


# Per-class curve colours: matplotlib's tab10 without its gray, which is kept for what is not a class (the
# unnamed classes of a crowded plot). The chance line is black and dashed; no class curve is either.
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
CLASS_LINESTYLES = ("-", "-.")  # after the colours run out, the next classes repeat them dash-dotted
CHANCE_STYLE = {"color": "black", "ls": "--", "lw": 1}


# When every class's ROC AUC is at least this, the curves hug the top-left corner: a zoomed inset shows them.
NEAR_PERFECT_AUC = 0.99
ZOOM_FPR = 0.1  # the inset's false-positive-rate range, 0..ZOOM_FPR


def confusion_matrix_figure(
    matrix: np.ndarray, class_names: Sequence[str], normalized: bool = False, split: Optional[str] = None
) -> Figure:
    """Draw a confusion matrix as a heatmap: rows are true classes, columns predicted ones.

    The title says what was counted: "Confusion matrix — test split (n=360), counts".

    Args:
        matrix: (C, C) counts, as in confusion_matrix.csv.
        class_names: the C class names, in label order.
        normalized: show each row divided by its total (the per-class recall is on the diagonal), two
            decimals; a class with no samples shows a row of zeros. Defaults to False (raw counts).
        split: the data split the predictions came from ("test", "val"), named in the title. Defaults to
            None (not named).
    """
    counts = np.asarray(matrix, dtype=float)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"matrix must be ({n}, {n}) for {n} class names. Received shape: {counts.shape}")
    if normalized:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        vmax = 1.0
    else:
        values = counts
        vmax = max(float(counts.max(initial=0)), 1.0)

    # Grow with the class count so labels stay legible, within what a screen (and report.html) can show.
    side = float(np.clip(2.5 + 0.45 * n, 5, 16))
    fig = new_figure(side + 1.2, side)
    ax = fig.subplots()
    cmap = colormaps["Blues"]
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalized else "samples")

    cell_points = side * 72 * 0.7 / max(n, 1)
    label_size = float(np.clip(cell_points * 0.7, 3, 10))
    ax.set_xticks(range(n), labels=list(class_names), fontsize=label_size)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=label_size)
    longest = max((len(str(name)) for name in class_names), default=0)
    if longest * label_size * 0.6 > cell_points * 0.9:  # names wider than their column (~0.6 em a character): slant
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")

    if n <= MAX_ANNOTATED_CLASSES:
        text_size = float(np.clip(cell_points / 4, 6, 11))
        for row in range(n):
            for col in range(n):
                value = values[row, col]
                text = f"{value:.2f}" if normalized else _format_count(value)
                # Dark cells get white text: judge by the cell colour's luminance, not by its value.
                red, green, blue, _ = cmap(value / vmax)
                color = "white" if 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.5 else "black"
                ax.text(col, row, text, ha="center", va="center", color=color, fontsize=text_size)

    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(confusion_title(round(float(counts.sum())), normalized, split))
    return fig


def confusion_title(examples: int, normalized: bool, split: Optional[str] = None) -> str:
    """ "Confusion matrix — test split (n=360), counts": which examples, how many, and what a cell holds."""
    where = f" — {split} split" if split else ""
    return f"Confusion matrix{where} (n={examples}), {'row-normalized' if normalized else 'counts'}"


def roc_figure(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Draw one-vs-rest ROC curves with their AUC, plus micro- and macro-averages.

    Two classes give one curve, for the positive class (label 1). Classes absent from `y_true` have no
    ROC curve and are skipped (the micro-average still counts their scores as negatives). With more than
    MAX_LABELLED_CLASSES classes only the weakest few are named in the legend; the rest are drawn in gray.

    Args:
        y_true: (N,) integer labels.
        y_prob: (N, C) predicted probabilities; for two classes (N,) or (N, 1) positive-class scores work too.
        class_names: the C class names, in label order.
    """
    y_true, y_prob = _check_scores(y_true, y_prob, class_names)
    n_classes = y_prob.shape[1]
    if n_classes == 2:
        if len(np.unique(y_true)) < 2:
            return message_figure(
                f"ROC undefined: y_true holds only {class_names[int(y_true[0])]!r}"
                if len(y_true)
                else "ROC undefined: no samples",
                "ROC curve",
            )
        fpr, tpr, _ = roc_curve(y_true == 1, y_prob[:, 1])
        score = auc(fpr, tpr)
        fig, ax = _score_axes("ROC curve", "False positive rate", "True positive rate")
        ax.plot([0, 1], [0, 1], **CHANCE_STYLE, label="chance (AUC = 0.500)")
        ax.plot(fpr, tpr, color=CLASS_COLORS[0], lw=2, label=f"{class_names[1]} (AUC = {score:.3f})")
        legend_beside_square_plot(ax)
        if score >= NEAR_PERFECT_AUC:
            _zoom_top_left(ax, [(fpr, tpr)])
        return fig

    curves = {}
    for label in range(n_classes):
        positives = y_true == label
        # A class needs both positives and negatives for its ROC curve to exist.
        if positives.any() and not positives.all():
            fpr, tpr, _ = roc_curve(positives, y_prob[:, label])
            curves[label] = (fpr, tpr, auc(fpr, tpr))
    if not curves:
        return message_figure("ROC undefined: y_true holds fewer than two classes", "ROC curves (one-vs-rest)")

    one_hot = np.eye(n_classes)[y_true]
    micro_fpr, micro_tpr, _ = roc_curve(one_hot.ravel(), y_prob.ravel())
    # Macro-average curve: mean TPR over a shared FPR grid. Its area equals the mean of the class AUCs.
    grid = np.unique(np.concatenate([fpr for fpr, _, _ in curves.values()]))
    mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr, _ in curves.values()], axis=0)
    macro_auc = float(np.mean([score for _, _, score in curves.values()]))

    fig, ax = _score_axes("ROC curves (one-vs-rest)", "False positive rate", "True positive rate")
    ax.plot([0, 1], [0, 1], **CHANCE_STYLE, label="chance (AUC = 0.500)")
    ax.plot(
        micro_fpr,
        micro_tpr,
        color="deeppink",
        ls=":",
        lw=2.5,
        label=f"micro-average (AUC = {auc(micro_fpr, micro_tpr):.3f})",
    )
    ax.plot(grid, mean_tpr, color="navy", ls=":", lw=2.5, label=f"macro-average (AUC = {macro_auc:.3f})")
    _plot_class_curves(ax, curves, class_names, "AUC", drawstyle="default")
    legend_beside_square_plot(ax)
    if min(score for _, _, score in curves.values()) >= NEAR_PERFECT_AUC:
        _zoom_top_left(ax, [(fpr, tpr) for fpr, tpr, _ in curves.values()])
    return fig


def pr_figure(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Draw one-vs-rest precision-recall curves with their average precision (AP), plus the micro-average.

    Two classes give one curve, for the positive class (label 1), over a chance line at its prevalence.
    Classes absent from `y_true` are skipped. The title carries the macro AP over the classes drawn.

    Args:
        y_true: (N,) integer labels.
        y_prob: (N, C) predicted probabilities; for two classes (N,) or (N, 1) positive-class scores work too.
        class_names: the C class names, in label order.
    """
    y_true, y_prob = _check_scores(y_true, y_prob, class_names)
    n_classes = y_prob.shape[1]
    if n_classes == 2:
        positives = y_true == 1
        if not positives.any():
            return message_figure(f"precision-recall undefined: no {class_names[1]!r} in y_true", "Precision-recall")
        precision, recall, _ = precision_recall_curve(positives, y_prob[:, 1])
        score = average_precision_score(positives, y_prob[:, 1])
        fig, ax = _score_axes(f"Precision-recall ({class_names[1]})", "Recall", "Precision")
        prevalence = float(positives.mean())
        ax.axhline(prevalence, **CHANCE_STYLE, label=f"chance (AP = {prevalence:.3f})")
        ax.plot(
            recall,
            precision,
            color=CLASS_COLORS[0],
            lw=2,
            drawstyle="steps-post",
            label=f"{class_names[1]} (AP = {score:.3f})",
        )
        legend_beside_square_plot(ax)
        return fig

    curves = {}
    for label in range(n_classes):
        positives = y_true == label
        if positives.any():
            precision, recall, _ = precision_recall_curve(positives, y_prob[:, label])
            curves[label] = (recall, precision, average_precision_score(positives, y_prob[:, label]))
    if not curves:
        return message_figure("precision-recall undefined: no samples", "Precision-recall (one-vs-rest)")

    one_hot = np.eye(n_classes)[y_true]
    micro_precision, micro_recall, _ = precision_recall_curve(one_hot.ravel(), y_prob.ravel())
    micro_ap = average_precision_score(one_hot.ravel(), y_prob.ravel())
    macro_ap = float(np.mean([score for _, _, score in curves.values()]))

    fig, ax = _score_axes(f"Precision-recall (one-vs-rest), macro AP = {macro_ap:.3f}", "Recall", "Precision")
    ax.plot(
        micro_recall,
        micro_precision,
        color="deeppink",
        ls=":",
        lw=2.5,
        drawstyle="steps-post",
        label=f"micro-average (AP = {micro_ap:.3f})",
    )
    _plot_class_curves(ax, curves, class_names, "AP", drawstyle="steps-post")
    legend_beside_square_plot(ax)
    return fig


def _check_scores(y_true, y_prob, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=float)
    n = len(class_names)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be (N,) integer labels. Received shape: {y_true.shape}")
    if n == 2 and (y_prob.ndim == 1 or y_prob.shape[1:] == (1,)):
        # A sigmoid output scores the positive class only; the negative class is its complement.
        positive = y_prob.reshape(-1)
        y_prob = np.column_stack([1 - positive, positive])
    if y_prob.ndim != 2 or y_prob.shape != (len(y_true), n):
        raise ValueError(
            f"y_prob must be (N, C) = ({len(y_true)}, {n}) for {len(y_true)} labels and {n} class names. "
            f"Received shape: {y_prob.shape}"
        )
    y_true = y_true.astype(int)
    outside = sorted(set(y_true[(y_true < 0) | (y_true >= n)].tolist()))
    if outside:
        raise ValueError(f"y_true labels must be in 0..{n - 1} for {n} class names. Received: {outside[:5]}")
    return y_true, y_prob


def _score_axes(title: str, xlabel: str, ylabel: str):
    fig = new_figure(7, 6)
    ax = fig.subplots()
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _plot_class_curves(ax, curves: dict, class_names: Sequence[str], score_name: str, drawstyle: str) -> None:
    """Draw per-class (x, y, score) curves; with many classes name only the weakest, the ones worth a look."""
    if len(curves) <= MAX_LABELLED_CLASSES:
        named = list(curves)
    else:
        named = sorted(curves, key=lambda label: curves[label][2])[:WEAKEST_CLASSES_SHOWN]
        others = [label for label in curves if label not in named]
        for position, label in enumerate(others):
            x, y, _ = curves[label]
            ax.plot(
                x,
                y,
                color="lightgray",
                lw=0.7,
                drawstyle=drawstyle,
                label=f"{len(others)} other classes" if position == 0 else None,
            )
    for position, label in enumerate(named):
        x, y, score = curves[label]
        color = CLASS_COLORS[position % len(CLASS_COLORS)]
        style = CLASS_LINESTYLES[position // len(CLASS_COLORS) % len(CLASS_LINESTYLES)]
        ax.plot(
            x,
            y,
            color=color,
            ls=style,
            lw=1.3,
            drawstyle=drawstyle,
            label=f"{class_names[label]} ({score_name} = {score:.3f})",
        )


def legend_beside_square_plot(ax) -> None:
    """The legend to the right of the plot, where it cannot cover a curve however good or bad the model is, and
    the figure's width fitted so the plot is square and the plot and legend fill the canvas.

    A figure legend placed "outside": constrained layout makes room for it, where an axes legend anchored past
    the axes' edge is only fitted on a second draw and the saved image would clip it. The plot is made square by
    the width, not by an equal aspect: inside the box the layout gives it, an equal-aspect plot shrank along one
    side and left bands of empty canvas (above and below with a short legend, squeezed with long class names).
    """
    fig = ax.get_figure()
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize="small")
    fig.draw_without_rendering()  # lays the figure out at its current width
    box = ax.get_position()
    width, height = fig.get_size_inches()
    # The margins (tick labels, legend) keep their size: the plot gains exactly the width the figure gains.
    fig.set_figwidth(width + box.height * height - box.width * width)


def _zoom_top_left(ax, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """An inset magnifying false-positive rates 0..ZOOM_FPR, where near-perfect ROC curves differ.

    It sits in the lower right of the plot, below the chance line, which near-perfect curves never visit; a gray
    box marks the corner it magnifies, and its title says which. Its true-positive range starts a little below the
    lowest curve's value at ZOOM_FPR.
    """
    lowest = min(float(np.interp(ZOOM_FPR, fpr, tpr)) for fpr, tpr in curves)
    bottom = min(0.9, math.floor(lowest * 20) / 20)
    inset = ax.inset_axes([0.5, 0.06, 0.46, 0.4])
    for line in ax.get_lines():
        inset.plot(
            *line.get_data(),
            color=line.get_color(),
            ls=line.get_linestyle(),
            lw=line.get_linewidth(),
            drawstyle=line.get_drawstyle(),
        )
    inset.set_xlim(-0.002, ZOOM_FPR)
    inset.set_ylim(bottom, 1.002)
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    inset.set_title(f"zoom: FPR 0–{ZOOM_FPR:g} (gray box)", fontsize=8)
    # The box alone marks the zoomed corner: connector lines from it to the inset would cross the curves.
    ax.indicate_inset([-0.002, bottom, ZOOM_FPR + 0.002, 1.002 - bottom], edgecolor="0.3")


def _format_count(value: float) -> str:
    return str(int(round(value))) if float(value).is_integer() else f"{value:.3g}"
