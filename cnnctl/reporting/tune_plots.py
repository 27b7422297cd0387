"""Reporting, step 6: the figures of a `cnnctl tune` search, drawn from numbers alone (tune_summary.json's trials).

Pure functions in the manner of plots.py: lists of trial numbers, values and states in, a matplotlib Figure out;
`plots.save_figure` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from cnnctl.reporting.plots import DPI

STATE_STYLE = {  # marker colour and label of each trial state (tab10 blue, grey, red)
    "complete": ("#1f77b4", "completed"),
    "pruned": ("#7f7f7f", "pruned"),
}


def history_figure(
    numbers: Sequence[int], values: Sequence[Optional[float]], states: Sequence[str], objective: str = "val accuracy"
) -> Figure:
    """Each trial's score against its number, completed and pruned trials apart, and the best so far as a step
    line over the completed ones (pruned trials never count as best)."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for state, (color, label) in STATE_STYLE.items():
        shown = [(n, v) for n, v, s in zip(numbers, values, states) if s == state and v is not None]
        if shown:
            xs, ys = zip(*shown)
            ax.scatter(xs, ys, color=color, label=label, zorder=3)
    completed = sorted((n, v) for n, v, s in zip(numbers, values, states) if s == "complete" and v is not None)
    if completed:
        xs, ys = zip(*completed)
        ax.step(xs, np.maximum.accumulate(ys), where="post", color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("Optimisation history")
    if numbers:
        ax.set_xticks(sorted(set(numbers)) if len(set(numbers)) <= 20 else ax.get_xticks())
    ax.grid(alpha=0.3)
    if completed or any(v is not None for v in values):
        ax.legend(loc="lower right")
    return fig


def importance_figure(importances: Mapping[str, float]) -> Figure:
    """Horizontal bars: each tuned path's share of the score's variance (Optuna's fANOVA), largest on top."""
    items = sorted(importances.items(), key=lambda item: item[1])
    fig = _figure(8, 1.2 + 0.5 * len(items))
    ax = fig.subplots()
    ax.barh([name for name, _ in items], [value for _, value in items], color="#1f77b4")
    for index, (_, value) in enumerate(items):
        ax.text(value, index, f" {value:.2f}", va="center")
    ax.set_xlim(0, max([value for _, value in items] + [0.0]) * 1.15 or 1)
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("Parameter importances")
    return fig


def slice_figure(
    params: Mapping[str, Sequence[Any]],
    values: Sequence[float],
    states: Sequence[str],
    log_params: Sequence[str] = (),
    objective: str = "val accuracy",
) -> Figure:
    """One panel per tuned path: each trial's score against the value it tried (a log axis for log_uniform
    paths, categories side by side for choices)."""
    names = list(params)
    columns = min(3, max(1, len(names)))
    rows = -(-len(names) // columns) if names else 1
    fig = _figure(4.2 * columns, 3.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        tried = params[name]
        categorical = any(isinstance(value, (str, bool)) or value is None for value in tried)
        labels = sorted({str(value) for value in tried}) if categorical else []
        for state, (color, label) in STATE_STYLE.items():
            shown = [(x, v) for x, v, s in zip(tried, values, states) if s == state and v is not None]
            if shown:
                xs, ys = zip(*shown)
                xs = [labels.index(str(x)) for x in xs] if categorical else xs
                ax.scatter(xs, ys, color=color, label=label)
        if categorical:
            ax.set_xticks(range(len(labels)), labels)
        elif name in log_params:
            ax.set_xscale("log")
            _readable_log_ticks(ax, [value for value in tried if isinstance(value, (int, float)) and value > 0])
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    fig.suptitle("Score by parameter value")
    return fig


def _readable_log_ticks(ax: Any, values: Sequence[float]) -> None:
    """Matplotlib labels the minor ticks of a range narrower than a decade (2e-4, 3e-4, ... 9e-4 side by side,
    overlapping): round numbers within a factor of 3, labels at 1, 2 and 5 of each decade over up to two decades,
    at each decade over more, written as plain numbers, and no minor labels."""
    decades = np.log10(max(values) / min(values)) if values else 0.0
    if decades < 0.5:  # within a factor of 3: evenly spaced round numbers read best
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    else:
        subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")
