"""Reporting: figures: arrays in, matplotlib `Figure` out.

Every function here is pure: it takes plain arrays (or dicts of lists, as read from history.csv) and returns a
new `matplotlib.figure.Figure`. Nothing touches pyplot, so no global figure registry fills up, no backend has
to be chosen, and figures can be drawn from threads or tests without closing anything. The only file I/O is
`save_figure`, which writes a PNG atomically so `cnnctl plot` never leaves a half-written image behind.

Example:

```python
from cnnctl.reporting import plots
history = {"epoch": [0, 1, 2], "loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7]}
fig = plots.loss_curve(history, best_epoch=plots.find_best_epoch(history))
plots.save_figure(fig, "runs/last/loss_curve.png")
```
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_curve,
)

from cnnctl.runs import contract
from cnnctl.runs.folder import atomic_path

# Pixels per inch of every saved PNG: a figsize of (8, 5) inches becomes an 800×500 image.
DPI = 100


# Metric names (as substrings) where a larger value is better; anything else is treated like a loss.
HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1")


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


# Signed values (kernels, activations that go negative) on a map centred at zero: red positive, blue negative,
# white zero. Values that are never negative (ReLU outputs, pixels) use a sequential map instead.
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "viridis"


History = Mapping[str, Sequence[float]]


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


def find_best_epoch(history: History, monitor: str = "val_loss") -> Optional[int]:
    """Return the 1-based epoch where `monitor` was best, or None when the history lacks it.

    Higher is better for accuracy, AUC, precision, recall and F1 scores; lower for everything else (losses,
    errors such as mae). Ties go to the earliest epoch, as Keras' EarlyStopping(restore_best_weights=True) does.

    Args:
        history: columns of history.csv, e.g. {"epoch": [0, 1], "loss": [...], "val_loss": [...]}.
        monitor: the column to rank epochs by. Defaults to "val_loss".
    """
    if monitor not in history:
        return None
    values = _column(history, monitor)
    if np.all(np.isnan(values)):
        return None
    higher_is_better = any(word in monitor for word in HIGHER_IS_BETTER)
    index = np.nanargmax(values) if higher_is_better else np.nanargmin(values)
    return int(_epochs(history)[index])


def loss_curve(history: History, best_epoch: Optional[int] = None, diagnosis: Optional[Mapping] = None) -> Figure:
    """Plot training and validation loss per epoch, with the best epoch and an optional diagnosis.

    Args:
        history: columns of history.csv: "epoch" (0-based, as Keras' CSVLogger writes it; optional),
            "loss" and/or "val_loss".
        best_epoch: 1-based epoch to mark (the one early stopping restored). Defaults to None (no mark).
        diagnosis: {"verdict": one of contract.VERDICTS, "summary": one sentence, "turn_epoch": optional
            1-based epoch where validation loss turned up}. The verdict is written on the plot; for
            "overfitting" the epochs from turn_epoch on are shaded. Defaults to None.
    """
    return _history_figure(history, "loss", best_epoch, diagnosis)


def metric_curve(history: History, metric: str = "accuracy", best_epoch: Optional[int] = None) -> Figure:
    """Plot a metric's training and validation values per epoch (validation omitted when not recorded).

    Args:
        history: columns of history.csv, including `metric` and ideally `val_<metric>`.
        metric: the column to plot. Defaults to "accuracy".
        best_epoch: 1-based epoch to mark. Defaults to None (no mark).
    """
    return _history_figure(history, metric, best_epoch, None)


def compare_figure(histories: Mapping[str, History], metric: str = "loss") -> Figure:
    """Overlay several runs' curves: one colour per run, validation solid, training dashed.

    Args:
        histories: run label → that run's history columns.
        metric: which column pair to draw (`metric` and `val_<metric>`). Defaults to "loss".
    """
    if not histories:
        return message_figure("no runs to compare")
    fig = new_figure(8, 5)
    ax = fig.subplots()
    palette = colormaps["tab10" if len(histories) <= 10 else "tab20"]
    run_handles = []
    for index, (label, history) in enumerate(histories.items()):
        val_key = f"val_{metric}"
        if metric not in history and val_key not in history:
            raise ValueError(
                f"run {label!r} has no {metric!r} or {val_key!r} column; it has: {', '.join(history) or 'nothing'}"
            )
        epochs = _epochs(history)
        color = palette(index % palette.N)
        if val_key in history:
            run_handles += ax.plot(epochs, _column(history, val_key), color=color, lw=2, label=label)
        if metric in history:
            # A run without validation data is still listed, under its training line.
            train_label = None if val_key in history else label
            lines = ax.plot(
                epochs, _column(history, metric), color=color, lw=1.2, ls="--", alpha=0.8, label=train_label
            )
            if train_label:
                run_handles += lines
    style_handles = [
        Line2D([], [], color="black", lw=2, label="validation"),
        Line2D([], [], color="black", lw=1.2, ls="--", label="train"),
    ]
    ax.legend(handles=run_handles + style_handles, fontsize="small")
    ax.set_title(f"{_pretty(metric)} per epoch, {len(histories)} runs")
    ax.set_xlabel("Epoch")
    ax.set_ylabel(_pretty(metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig


def _history_figure(history: History, metric: str, best_epoch: Optional[int], diagnosis: Optional[Mapping]) -> Figure:
    val_key = f"val_{metric}"
    if metric not in history and val_key not in history:
        raise ValueError(f"history has no {metric!r} or {val_key!r} column; it has: {', '.join(history) or 'nothing'}")
    epochs = _epochs(history)
    fig = new_figure(8, 5)
    ax = fig.subplots()
    # Dots show where the epochs are; past ~30 they only clutter the line.
    marker = "o" if len(epochs) <= 30 else None
    if metric in history:
        ax.plot(epochs, _column(history, metric), marker=marker, ms=3, lw=1.8, label=f"train {metric}")
    if val_key in history:
        ax.plot(epochs, _column(history, val_key), marker=marker, ms=3, lw=1.8, label=f"validation {metric}")

    if best_epoch is not None:
        index = _epoch_index(epochs, best_epoch, "best_epoch")
        # Mark the value the choice was made on: the validation curve when there is one.
        reference = val_key if val_key in history else metric
        value = _column(history, reference)[index]
        ax.axvline(best_epoch, color="gray", ls="--", lw=1)
        ax.plot(
            [best_epoch],
            [value],
            ls="none",
            marker="*",
            ms=15,
            color="gold",
            mec="black",
            zorder=5,
            label=f"best epoch {best_epoch} ({reference} {value:.4g})",
        )

    if diagnosis is not None:
        _annotate_diagnosis(ax, epochs, diagnosis)
    _mark_fine_tuning(ax, history, epochs)

    ax.set_title(f"{_pretty(metric)} per epoch")
    ax.set_xlabel("Epoch")
    ax.set_ylabel(_pretty(metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def fine_tuning_start(history: History) -> Optional[int]:
    """The first epoch of the fine-tuning phase (history.csv's `phase` column is 2), or None."""
    if "phase" not in history:
        return None
    later = np.flatnonzero(_column(history, "phase") == 2)
    return int(_epochs(history)[later[0]]) if len(later) else None


def _mark_fine_tuning(ax, history: History, epochs: np.ndarray) -> None:
    first = fine_tuning_start(history)
    if first is not None:  # between the last frozen epoch and the first fine-tuned one
        ax.axvline(first - 0.5, color="tab:purple", ls=":", lw=1.5, label=f"fine-tuning from epoch {first}")


def _annotate_diagnosis(ax, epochs: np.ndarray, diagnosis: Mapping) -> None:
    verdict = diagnosis.get("verdict")
    if verdict not in contract.VERDICTS:
        raise ValueError(
            f"diagnosis verdict must be one of {', '.join(map(repr, contract.VERDICTS))}. Received: {verdict!r}"
        )
    color = contract.verdict_color(verdict)
    turn_epoch = diagnosis.get("turn_epoch")
    if verdict == "overfitting" and turn_epoch is not None:
        _epoch_index(epochs, turn_epoch, "diagnosis turn_epoch")
        # fill_between rather than axvspan: the legend's "best" placement avoids a span rectangle entirely,
        # which leaves it little room; of a fill only the edges count.
        ax.fill_between(
            [turn_epoch, epochs[-1]],
            0,
            1,
            transform=ax.get_xaxis_transform(),
            color=color,
            alpha=0.12,
            linewidth=0,
            label=f"overfitting from epoch {turn_epoch}",
        )
    # Summaries open with the verdict already ("Overfitting: ..."): it is said once.
    text = textwrap.fill(contract.verdict_sentence(diagnosis, separator=". "), 100)
    # A caption under the plot rather than a box inside it: it can never hide the curves it explains, nor
    # fight the legend for the one empty corner.
    fig = ax.get_figure()
    fig.supxlabel(text, fontsize=9, bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": color})
    # The layout measures the caption's text, not its box: leave room for the box's padding at the bottom edge.
    fig.get_layout_engine().set(h_pad=0.1)


def _epochs(history: History) -> np.ndarray:
    """1-based epoch numbers by contract.epoch_numbers, the rule diagnosis follows too, so its best_epoch and
    turn_epoch land on this axis; every column must have one value per epoch."""
    lengths = {key: len(values) for key, values in history.items()}
    rows = max(lengths.values(), default=0)
    column = _column(history, "epoch").tolist() if "epoch" in history else None
    epochs = np.asarray(contract.epoch_numbers(column, rows), dtype=int)
    uneven = [key for key, length in lengths.items() if length != len(epochs)]
    if uneven:
        raise ValueError(f"history columns must all have {len(epochs)} values; {', '.join(uneven)} differ: {lengths}")
    return epochs


def _epoch_index(epochs: np.ndarray, epoch: int, what: str) -> int:
    matches = np.flatnonzero(epochs == epoch)
    if len(matches) == 0:
        span = f"{epochs[0]}..{epochs[-1]}" if len(epochs) else "none"
        raise ValueError(f"{what} must be a 1-based epoch of the history ({span}). Received: {epoch!r}")
    return int(matches[0])


def _column(history: History, key: str) -> np.ndarray:
    # Missing cells (None) become NaN, which matplotlib leaves as a gap.
    return np.asarray([np.nan if value is None else value for value in history[key]], dtype=float)


def _pretty(metric: str) -> str:
    return metric.replace("_", " ").capitalize()


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
    if n > 6 or max((len(str(name)) for name in class_names), default=0) > 4:
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
        _legend_outside(ax)
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
    _legend_outside(ax)
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
        _legend_outside(ax)
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
    _legend_outside(ax)
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
    ax.set_aspect("equal")
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


def _legend_outside(ax) -> None:
    """The legend to the right of the plot, where it cannot cover a curve however good or bad the model is.

    A figure legend placed "outside": constrained layout makes room for it in one pass, where an axes legend
    anchored past the axes' edge is only fitted on a second draw and the saved image would clip it.
    """
    ax.get_figure().legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize="small")


def _zoom_top_left(ax, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """An inset magnifying false-positive rates 0..ZOOM_FPR, where near-perfect ROC curves differ.

    It sits in the lower right of the plot, below the chance line, which near-perfect curves never visit.
    Its true-positive range starts a little below the lowest curve's value at ZOOM_FPR.
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
    inset.set_title(f"zoom: FPR 0–{ZOOM_FPR:g}", fontsize=8)
    ax.indicate_inset_zoom(inset, edgecolor="0.3")


def _format_count(value: float) -> str:
    return str(int(round(value))) if float(value).is_integer() else f"{value:.3g}"


def example_grid(
    examples: Union[np.ndarray, Sequence[np.ndarray]],
    titles: Optional[Sequence[str]] = None,
    colors: Optional[Sequence[str]] = None,
    ncols: int = 8,
    kind: str = "auto",
    title: Optional[str] = None,
) -> Figure:
    """Show examples in a grid: images, 1-D signals, or the middle slice of 3-D volumes.

    Used for the misclassified examples (titles like "true: 3\\npred: 8 (0.97)", red) and data samples.
    Each image is scaled to its own min..max so faint and bright ones are equally visible.

    Args:
        examples: (N, ...) array or a list of arrays, one per example, each shaped
            (H, W), (H, W, 1|3) image; (L,) or (L, C) signal; (D, H, W[, C]) volume.
        titles: one title per example. Defaults to None (no titles).
        colors: one title colour per example. Defaults to None (black).
        ncols: examples per row. Defaults to 8.
        kind: "image", "signal", "volume", or "auto" to guess from the shape: 2-D arrays are signals when
            they are long and have at most 16 channels, 3-D arrays are images when they have at most 4
            channels. Defaults to "auto".
        title: a title over the whole grid. Defaults to None.
    """
    examples = [np.asarray(example) for example in examples]
    count = len(examples)
    if count == 0:
        return message_figure("no examples", title)
    for name, values in (("titles", titles), ("colors", colors)):
        if values is not None and len(values) != count:
            raise ValueError(f"{name} must have one entry per example ({count}). Received {len(values)}")
    if kind not in ("auto", "image", "signal", "volume"):
        raise ValueError(f"kind must be 'auto', 'image', 'signal' or 'volume'. Received: {kind!r}")

    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    title_rows = [str(text).split("\n") for text in titles] if titles else []
    title_lines = max(map(len, title_rows), default=0)
    # Wide enough for the longest title line (8-point text), so neighbouring titles do not overlap; capped, so
    # very long class names make a readable figure whose titles may touch rather than a huge one.
    longest = max((len(line) for rows in title_rows for line in rows), default=0)
    panel_width = min(3.0, max(1.35, PANEL_TITLE_CHAR * longest))
    fig, axes, _ = grid_figure(nrows, ncols, panel_width, 1.35, title_lines, title)
    for index, ax in enumerate(axes):
        if index >= count:
            ax.set_axis_off()
            continue
        draw_example(ax, examples[index], kind)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=8, color=colors[index] if colors is not None else "black")
    if title:
        fig.suptitle(title)
    return fig


def filters_figure(kernel: np.ndarray, max_filters: int = 64) -> Figure:
    """Show the first convolution layer's filters, one panel per output filter, titled with its index.

    Every panel shares one colour scale, symmetric around zero (-m..+m, m the largest |value| drawn across
    all the layer's filters), so a weight's sign and size read the same in every panel, with a colour bar.
    Conv2D kernels (kh, kw, in, out) are drawn as images on a diverging map (red positive, blue negative),
    averaged over the input channels unless in == 3 (RGB input): those are drawn in colour, each channel
    scaled by the same m, so zero is mid-gray. Conv1D kernels (k, in, out) are drawn as bars of the weights
    averaged over the input channels, or as one line per input channel when there are 2 or 3, on the same
    -m..+m axis. Conv3D kernels show their middle depth slice.

    Args:
        kernel: the layer's kernel weights.
        max_filters: draw at most this many (the first ones). Defaults to 64.
    """
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim == 5:
        kernel = kernel[kernel.shape[0] // 2]
    if kernel.ndim not in (3, 4):
        raise ValueError(
            f"kernel must be (kh, kw, in, out) for Conv2D or (k, in, out) for Conv1D. Received shape: {kernel.shape}"
        )
    total = kernel.shape[-1]
    shown = min(total, max_filters)
    ncols = max(1, min(8, shown))
    nrows = max(1, math.ceil(shown / ncols))
    in_channels = kernel.shape[-2]
    rgb = kernel.ndim == 4 and in_channels == 3
    one_line_per_channel = kernel.ndim == 3 and in_channels in (2, 3)
    has_colorbar = kernel.ndim == 4 and not rgb
    drawn = kernel if rgb or one_line_per_channel else kernel.mean(axis=-2)
    limit = symmetric_limit(drawn)
    size = "×".join(str(dim) for dim in kernel.shape[:-1])
    # Without a colour bar (RGB kernels, Conv1D bars) the title carries the shared scale.
    scale = "" if has_colorbar else f", shared scale ±{limit:.3g}" + (" (gray = 0)" if rgb else "")
    title = (
        f"First conv layer: {total} filters of {size}" + (f" (first {shown} shown)" if shown < total else "") + scale
    )
    fig, axes, colorbar_axes = grid_figure(nrows, ncols, 1.15, 1.15, 1, title, colorbar=has_colorbar)
    image = None
    for index, ax in enumerate(axes):
        if index >= shown:
            ax.set_axis_off()
            continue
        weights = drawn[..., index]
        if kernel.ndim == 4:
            if rgb:
                ax.imshow(np.clip(0.5 + weights / (2 * limit), 0, 1), interpolation="nearest")
            else:
                image = ax.imshow(weights, cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_axis_off()
        else:
            ax.axhline(0, color="gray", lw=0.5)
            if one_line_per_channel:
                ax.plot(weights, lw=1)
            else:
                ax.bar(np.arange(len(weights)), weights, color=np.where(weights >= 0, "tab:red", "tab:blue"))
            ax.set_ylim(-1.05 * limit, 1.05 * limit)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(str(index), fontsize=8)
    if image is not None:
        averaged = f", mean of {in_channels} input channels" if in_channels > 1 else ""
        fig.colorbar(image, cax=colorbar_axes, label=f"weight{averaged}")
    fig.suptitle(title)
    return fig


def symmetric_limit(values: np.ndarray) -> float:
    """The largest |value| (finite ones), the half-width of a colour scale centred at zero; 1.0 when all are 0."""
    values = np.asarray(values, dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def feature_maps_figure(activations: Sequence[tuple[str, np.ndarray]], max_channels: int = 16) -> Figure:
    """Show what each layer outputs for one example: one row per layer, up to `max_channels` channels.

    Each row is labelled with the layer name and the activation's shape. (H, W, C) maps are drawn as
    images, (L, C) as lines, (units,) vectors as one bar chart, (D, H, W, C) as their middle slice.
    All channels of a layer share one scale (see `activation_scale`), so a faint channel looks faint and
    a dead one blank: image rows get a colour bar, line and bar rows a "range" note under their label.

    Args:
        activations: (layer name, activation of one example without the batch axis) pairs, in layer order.
        max_channels: channels shown per layer (the first ones). Defaults to 16.
    """
    if not activations:
        return message_figure("no activations")
    rows = []
    for name, activation in activations:
        activation = np.asarray(activation, dtype=float)
        shape = activation.shape
        if activation.ndim == 4:
            activation = activation[activation.shape[0] // 2]
        if activation.ndim not in (1, 2, 3):
            raise ValueError(
                f"activation of layer {name!r} must be (H, W, C), (L, C) or (units,). Received shape: {shape}"
            )
        panels = 1 if activation.ndim == 1 else min(activation.shape[-1], max_channels)
        rows.append((name, shape, activation, panels))

    ncols = max(panels for _, _, _, panels in rows)
    fig = new_figure(1.1 * ncols + 2.0, 1.15 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for row, (name, shape, activation, panels) in enumerate(rows):
        cmap, low, high = activation_scale(activation)
        image = None
        for channel in range(ncols):
            ax = axes[row, channel]
            if channel >= panels:
                ax.set_axis_off()
                continue
            margin = 0.05 * (high - low)
            if activation.ndim == 1:
                ax.bar(np.arange(len(activation)), activation, width=1.0)
                ax.set_ylim(low - margin, high + margin)
            elif activation.ndim == 2:
                ax.plot(activation[:, channel], lw=0.8)
                ax.margins(x=0)
                ax.set_ylim(low - margin, high + margin)
            else:
                image = ax.imshow(activation[..., channel], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            # Ticks off but the frame kept: hiding the axis would hide the row label too.
            ax.set_xticks([])
            ax.set_yticks([])
            if activation.ndim > 1:
                ax.set_title(str(channel), fontsize=7)
        total = 1 if activation.ndim == 1 else activation.shape[-1]
        channels = f"\n{panels} of {total} ch." if panels < total else ""
        scale = "" if image is not None else f"\nrange {low:.3g} … {high:.3g}"
        axes[row, 0].set_ylabel(
            f"{name}\n{tuple(shape)}{channels}{scale}", rotation=0, ha="right", va="center", fontsize=8
        )
        if image is not None:
            colorbar = fig.colorbar(image, ax=axes[row, :].tolist(), fraction=0.02, aspect=6, pad=0.01)
            colorbar.ax.tick_params(labelsize=6)
    return fig


def activation_scale(activation: np.ndarray) -> tuple[str, float, float]:
    """(colour map, vmin, vmax) shared by every channel of one layer's activation.

    Never-negative outputs (ReLU, pooling of them, pixels) go from 0 to the layer's maximum on a sequential
    map, so zero is the darkest colour; outputs with negative values go on a diverging map centred at zero,
    from -m to +m with m the largest |value|. A layer of zeros gets 0..1.
    """
    values = np.asarray(activation, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        limit = symmetric_limit(finite)
        return DIVERGING_CMAP, -limit, limit
    high = float(finite.max()) if finite.size else 0.0
    return SEQUENTIAL_CMAP, 0.0, high if high > 0 else 1.0


def filter_demo_figure(panels: Sequence[tuple[str, np.ndarray]]) -> Figure:
    """Show 2-D images side by side with their titles and sizes (original → convolution → ReLU → pooled).

    Each panel is scaled to its own 1st..99th percentile, so negative convolution outputs show dark rather
    than clipped, and a few extreme pixels (the zero-padded border of a sharpened image) cannot wash the
    rest out to flat gray; drawn without smoothing, so pooling's coarser grid is visible.

    Args:
        panels: (title, image) pairs; images (H, W), (H, W, 1) or (H, W, 3).
    """
    if not panels:
        return message_figure("no images")
    fig = new_figure(3.0 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels):
        image = np.asarray(image, dtype=float)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
            ax.imshow(image, cmap="gray", interpolation="nearest", vmin=low, vmax=max(high, low + 1e-12))
        elif image.ndim == 3 and image.shape[-1] == 3:
            ax.imshow(normalize_values(image), interpolation="nearest")
        else:
            raise ValueError(f"panel {title!r} must be an (H, W) or (H, W, 1|3) image. Received shape: {image.shape}")
        ax.set_title(title)
        ax.set_xlabel(f"{image.shape[0]} × {image.shape[1]}")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def draw_example(ax, example: np.ndarray, kind: str) -> None:
    if kind == "auto":
        kind = example_kind(example)
    if kind == "volume":
        example = example[example.shape[0] // 2]
        kind = "image"
    if kind == "signal":
        ax.plot(example.reshape(len(example), -1), lw=0.8)
        ax.margins(x=0)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_axis_off()
    if example.ndim == 3 and example.shape[-1] == 1:
        example = example[..., 0]
    if example.ndim == 3:
        if example.shape[-1] in (3, 4):
            # RGB, or RGBA with alpha dropped; the channels are scaled together so hue survives.
            ax.imshow(normalize_values(example[..., :3]), interpolation="nearest")
            return
        example = example.mean(axis=-1)
    if example.ndim != 2:
        raise ValueError(f"cannot show an example of shape {example.shape} as an image")
    ax.imshow(normalize_values(example), cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def example_kind(example: np.ndarray) -> str:
    shape = example.shape
    if example.ndim == 1:
        return "signal"
    if example.ndim == 2:
        return "signal" if shape[1] <= 16 and shape[0] >= 4 * shape[1] else "image"
    if example.ndim == 3:
        return "image" if shape[-1] <= 4 else "volume"
    if example.ndim == 4:
        return "volume"
    raise ValueError(f"examples must be 1-D to 4-D (signal, image or volume). Received shape: {shape}")


# Grids of small panels (filters, examples) are laid out by fixed margins in inches instead of constrained
# layout, which measures every panel's title and ticks at each save: 1.5-2 s of a 32-panel grid's 2.5 s.
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
