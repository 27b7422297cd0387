"""Evaluation: what `cnnctl predict` answers for each input — the top classes (or, for a multi-label run, the label
set at each label's threshold), the reject option (`--min-confidence`) — and the CSV it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from cnnctl.errors import ConfigError
from cnnctl.runs.atomic import csv_text
from cnnctl.runs.output import check_output_path, write_output_text

CSV_HEADER = ["input", "rank", "class_index", "class", "probability"]
MULTI_LABEL_CSV_HEADER = ["input", "label_index", "label", "probability", "threshold", "present"]


@dataclass
class Predictions:
    """What `predict` says about each input. `labels` names the inputs (a file, or `file.npz[i]`), as `inputs`
    does; `predicted` gives the predicted class names. With `min_confidence`, inputs whose top probability is
    below it are not answered (the reject option): `answered` is False for them."""

    labels: list[str]
    probabilities: np.ndarray  # (N, C)
    class_names: list[str]
    notes: list[str] = field(default_factory=list)
    min_confidence: Optional[float] = None
    thresholds: Optional[np.ndarray] = None  # multi-label: (K,) a label is present at or above its threshold

    @property
    def multi_label(self) -> bool:
        return self.thresholds is not None

    @property
    def label_sets(self) -> list[list[str]]:
        """Multi-label: per input, the labels whose probability reaches their threshold (possibly none)."""
        present = self.probabilities >= np.asarray(self.thresholds)[None, :]
        return [[name for name, on in zip(self.class_names, row) if on] for row in present]

    @property
    def inputs(self) -> list[str]:
        """The name of each input: its file, or `file.npz[i]`, `array[i]`."""
        return self.labels

    @property
    def predicted(self) -> list[str]:
        """The predicted class name of each input (its most probable class; empty for an input that held NaN or
        infinite values); multi-label: its label set, written as a manifest writes it (`car|bicycle`, empty for
        none)."""
        if self.multi_label:
            return ["|".join(labels) for labels in self.label_sets]
        return [names[0] if names else "" for names in self.top_k_names(1)]

    @property
    def unreadable(self) -> np.ndarray:
        """(N,) inputs that held NaN or infinite values: their probabilities are nan, and they get no class."""
        return ~np.isfinite(self.probabilities).all(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """(N,) each input's top probability (nan where its input held NaN or infinite values)."""
        return self.probabilities.max(axis=1)

    @property
    def answered(self) -> np.ndarray:
        """(N,) whether the model answers each input: its top probability reaches `min_confidence` (every input
        when there is none; never one whose probabilities are nan)."""
        confidence = self.confidence
        threshold = -np.inf if self.min_confidence is None else self.min_confidence
        return np.isfinite(confidence) & (confidence >= threshold)

    def top_k(self, k: int) -> np.ndarray:
        """(N, k) class indices, most probable first; ties keep the lower class index first. The names are
        `top_k_names(k)`."""
        return np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]

    def top_k_names(self, k: int) -> list[list[str]]:
        """Per input, its k most probable class names, most probable first (none for an input that held NaN or
        infinite values)."""
        return [
            [] if unreadable else [self.class_names[index] for index in row]
            for row, unreadable in zip(self.top_k(k), self.unreadable)
        ]

    @property
    def csv_header(self) -> list[str]:
        if self.multi_label:
            return MULTI_LABEL_CSV_HEADER
        return CSV_HEADER + (["answered"] if self.min_confidence is not None else [])

    def csv_rows(self, k: int) -> list[list[Any]]:
        """Top-k rows per input; multi-label: a row per input and label (`k` does not apply)."""
        if self.multi_label:
            return [
                [
                    label,
                    index,
                    name,
                    f"{probabilities[index]:.6f}",
                    f"{threshold:.6f}",
                    int(probabilities[index] >= threshold),
                ]
                for label, probabilities in zip(self.labels, self.probabilities)
                for index, (name, threshold) in enumerate(zip(self.class_names, self.thresholds))
            ]
        rows = []
        for label, probabilities, ranked, answered, unreadable in zip(
            self.labels, self.probabilities, self.top_k(k), self.answered, self.unreadable
        ):
            if unreadable:  # one row saying so: no class is ranked for it
                rows.append([label, "", "", "", "nan"] + ([0] if self.min_confidence is not None else []))
                continue
            for rank, index in enumerate(ranked, start=1):
                row = [label, rank, int(index), self.class_names[index], f"{probabilities[index]:.6f}"]
                rows.append(row + ([int(answered)] if self.min_confidence is not None else []))
        return rows


def check_min_confidence(value: Optional[float]) -> None:
    """--min-confidence must be a probability in [0, 1]."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"--min-confidence {value!r}: give a probability, e.g. --min-confidence 0.9")
    if value is not None and not 0 <= value <= 1:
        raise ConfigError(
            f"--min-confidence {value:g}: must be a probability between 0 and 1, e.g. --min-confidence 0.9"
        )


def check_top_k(k: int) -> None:
    """--top-k must be ≥ 1 (a k above the number of classes shows them all)."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise ConfigError(f"--top-k {k!r}: give a whole number, e.g. --top-k 3")
    if k < 1:
        raise ConfigError(f"--top-k {k}: must be at least 1, e.g. --top-k 3")


def check_out_path(out: Optional[Union[str, Path]], overwrite: bool = False) -> None:
    """--out must be a file name that can be written: checked before the model runs, so a mistake costs nothing
    (an existing file only with `overwrite`; cnnctl/runs/output.py has the rules)."""
    if out is not None:
        check_output_path(out, overwrite=overwrite, example="predictions.csv")


def write_predictions_csv(path: Union[str, Path], predictions: Predictions, k: int, overwrite: bool = False) -> Path:
    """One row per input and rank: input, rank, class_index, class, probability (atomic; an existing file is
    replaced only with `overwrite`)."""
    return write_output_text(path, csv_text(predictions.csv_header, predictions.csv_rows(k)), overwrite=overwrite)
