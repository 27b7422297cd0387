"""Reporting: training curves — loss and metric per epoch (best epoch, fine-tuning start, the diagnosis drawn),
and several runs overlaid (`cnnctl compare`)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cnnctl.reporting.plots import (
    message_figure,
    new_figure,
)
from cnnctl.runs import contract

# Metric names (as substrings) where a larger value is better; anything else is treated like a loss.
HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1")


History = Mapping[str, Sequence[float]]


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


def lr_find_figure(finding: Any) -> Figure:
    """`cnnctl lr-find`: each batch's loss and the smoothed loss against the learning rate (log axis), with the
    suggested rate and the rate where the loss diverged marked."""
    figure = new_figure(7.0, 4.5)
    ax = figure.add_subplot()
    rates = np.asarray(finding.learning_rates)
    ax.plot(rates, finding.losses, color="#b0b7c3", linewidth=1, label="loss of each batch")
    ax.plot(rates[: len(finding.smoothed)], finding.smoothed, color="#1f5fbf", linewidth=2, label="smoothed")
    ax.axvline(finding.suggestion, color="#2e7d32", linestyle="--", label=f"suggested {finding.suggestion:.2g}")
    if finding.diverged_at is not None:
        ax.axvline(finding.diverged_at, color="#c62828", linestyle=":", label=f"diverged at {finding.diverged_at:.2g}")
    finite = [value for value in finding.smoothed if np.isfinite(value)]
    if finite:  # the divergence would squash the useful part of the curve
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test: pick a rate on the falling slope")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return figure
