"""Runs: history.csv read back — the per-epoch numbers every reader of a run folder (diagnosis, figures, report,
resume, compare) shares."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Union

from cnnctl.errors import RunError
from cnnctl.runs.folder import readable_file


def read_history_csv(path: Union[str, Path]) -> dict[str, list[float]]:
    """Read a Keras CSVLogger file (history.csv) into `{column: [value per epoch]}`.

    Keras writes `NA` for a metric missing in an epoch (e.g. `val_loss` with `validation_freq` > 1) and `nan`
    when a loss diverged; both, and empty cells, become `float("nan")`.

    Args:
        path: the history.csv file.

    Raises:
        RunError: the file is missing, has no header or no `loss` column, or holds a value that is not a number.
    """
    path = readable_file(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; the run has no training history") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot read the training history ({exc})") from None
    if not rows:
        raise RunError(f"{path}: empty; expected a header such as `epoch,loss,val_loss`")
    header, body = [name.strip() for name in rows[0]], [row for row in rows[1:] if row]
    if "loss" not in header:
        raise RunError(f"{path}: no `loss` column; the columns are {', '.join(header) or 'none'}")
    history: dict[str, list[float]] = {name: [] for name in header}
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RunError(f"{path}, line {line}: {len(row)} values for {len(header)} columns")
        for name, cell in zip(header, row):
            history[name].append(parse_number(cell, f"{path}, line {line}, column {name}"))
    return history


def parse_number(cell: str, where: str) -> float:
    """A history.csv cell as a number: `NA` (Keras' missing metric) and an empty cell are NaN."""
    text = cell.strip()
    if text in ("", "NA"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise RunError(f"{where}: {cell!r} is not a number") from None
