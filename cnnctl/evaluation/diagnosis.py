"""Evaluation, step 5b: diagnose a finished run from its per-epoch history: overfitting, underfitting, good fit or still improving.

`diagnose` reads only the numbers a Keras CSVLogger writes to history.csv, so it works on any run folder, needs
no TensorFlow, and every verdict comes with the evidence (epochs and losses) a student can find on the loss curve.

Example:

    >>> from cnnctl.evaluation.diagnosis import diagnose
    >>> history = {"loss": [1.2, 0.6, 0.35, 0.2, 0.12, 0.07, 0.04],
    ...            "val_loss": [1.1, 0.7, 0.5, 0.45, 0.52, 0.6, 0.68]}
    >>> report = diagnose(history)
    >>> report["verdict"], report["best_epoch"], report["turn_epoch"]
    ('overfitting', 4, 4)
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from cnnctl.errors import RunError
from cnnctl.runs import contract

# Thresholds. Why each has its value is explained in `diagnose`'s docstring.
MIN_EPOCHS = 3              # fewer finite epochs than this: too little history for a trend


RISE_TOLERANCE = 0.10       # validation loss must end > 10% above its minimum to have turned upward


STILL_FALLING = 0.01        # a loss still falling > 1% of its minimum per epoch is still improving


NOISE_FACTOR = 3.0          # both tolerances widen to 3x the epoch-to-epoch noise of a jumpy loss


LARGE_GAP = 0.5             # validation loss at least twice the training loss ...


GAP_SCALE = 0.10            # ... and the gap at least 10% of the first epoch's training loss


UNDERFIT_LOSS_RATIO = 0.7   # training loss still above 70% of its first value: it barely fell


UNDERFIT_HEADROOM = 0.2     # accuracy within 20% of the headroom above the majority-class baseline


CONFIDENT_ACCURACY = 0.9    # a model this accurate on its training data is never called underfitting


def read_history_csv(path: Union[str, Path]) -> dict[str, list[float]]:
    """Read a Keras CSVLogger file (history.csv) into `{column: [value per epoch]}`.

    Keras writes `NA` for a metric missing in an epoch (e.g. `val_loss` with `validation_freq` > 1) and `nan`
    when a loss diverged; both, and empty cells, become `float("nan")`.

    Args:
        path: the history.csv file.

    Raises:
        RunError: the file is missing, has no header or no `loss` column, or holds a value that is not a number.
    """
    path = Path(path)
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
            history[name].append(_parse_number(cell, f"{path}, line {line}, column {name}"))
    return history


def _parse_number(cell: str, where: str) -> float:
    text = cell.strip()
    if text in ("", "NA"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise RunError(f"{where}: {cell!r} is not a number") from None


def diagnose(history: dict[str, list[float]], baseline_accuracy: Optional[float] = None,
             accuracy_key: str = "accuracy") -> dict[str, Any]:
    """Classify a training run from its per-epoch history, with the evidence behind the verdict.

    The rules, checked in this order (the first that holds gives the verdict). "Recent" means the mean of the
    last k epochs, k = min(3, max(1, epochs // 4)), so one lucky or unlucky epoch does not decide anything.
    Validation loss is smoothed with a centered 3-epoch mean (from 5 epochs on) before its minimum is located,
    and its noise is estimated from epoch-to-epoch second differences (robust median, from 6 epochs on); the
    tolerances below widen to NOISE_FACTOR (3) times that noise, relative to the minimum, for jumpy curves.

    1. Diverged: the last epoch's training loss is NaN/inf -> "underfitting" (the final model fits nothing);
       the advice is a lower learning rate and the last good weights.
    2. Too little history: fewer than 3 epochs with a finite loss -> "still improving", saying so.
    3. Turned upward: the smoothed validation loss reached its minimum before the recent window and the recent
       validation loss is more than 10% (RISE_TOLERANCE) above it. If the recent training loss is no more than
       10% above its value at the turn -> "overfitting" (the textbook U-shaped validation curve). If training
       loss rose back as well, optimisation became unstable -> "underfitting" with learning-rate advice.
    4. Still falling: a least-squares line through the last w = max(3, min(8, epochs // 3)) epochs falls more
       than 1% of the minimum per epoch (STILL_FALLING; 10 more epochs would gain 10%) and more than 3 standard
       errors of its slope, and it ends below every smoothed value before the recent window (the curve is at
       its lowest, not recovering from a bump) -> "still improving": training stopped too early.
    5. Large, persistent gap: recent validation loss is at least twice the training loss (LARGE_GAP), the gap
       is at least 10% of the first epoch's training loss (GAP_SCALE, so near-zero losses such as 0.02 vs 0.04
       on MNIST do not count) and it is no smaller than over the first k epochs -> "overfitting", even though
       validation loss has only flattened.
    6. Stuck high: with `baseline_accuracy` and an accuracy column, the final validation accuracy (training
       accuracy without validation) is below baseline + 20% of the headroom 1 - baseline (UNDERFIT_HEADROOM;
       0.28 for ten balanced classes); otherwise the recent training loss is above 70% of the first epoch's
       (UNDERFIT_LOSS_RATIO) and the training accuracy, if known, is below 0.9 -> "underfitting". (A large
       gap was caught by rule 5, so both losses are high together here.)
    7. Otherwise -> "good fit": validation loss has flattened near its minimum with a small gap.

    Without `val_loss` (or with fewer than 3 finite values of it in a longer run) the training loss takes its
    place in rules 2 and 4, rules 3 and 5 cannot apply, and the summary says overfitting cannot be ruled out.
    NaN/inf values are left out of every computation and their epochs listed in `nan_epochs`.

    Args:
        history: per-epoch columns as Keras' History or CSVLogger give them: `loss` (required), and optionally
            `epoch` (0-based), `val_loss`, `accuracy`, `val_accuracy`, `learning_rate`, ... Extra columns are
            ignored. Defaults to nothing: it must be given.
        baseline_accuracy: the accuracy of always predicting the majority class (e.g. 0.1 for ten balanced
            classes), used to tell "learned nothing" from "learned something". Defaults to None (unknown).
        accuracy_key: the accuracy column; its validation column is `"val_" + accuracy_key`.
            Defaults to "accuracy".

    Returns:
        A JSON-serializable dict: `verdict` (one of contract.VERDICTS), `summary` (one sentence), `advice` (list of
        suggestions), `epochs` (rows), `monitor` ("val_loss", or "loss" without validation), `best_epoch`
        (1-based epoch of the minimum monitored loss), `turn_epoch` (1-based epoch where validation loss turned
        upward, else None), `first_train_loss`, `final_train_loss`, `final_val_loss`, `min_val_loss`,
        `val_loss_rise` ((final - min) / min validation loss), `generalization_gap` (`absolute`: final
        validation minus final training loss; `relative`: that as a fraction of the final validation loss, so
        0.5 means validation loss is twice training loss), `nan_epochs`, `notes` (caveats); plus
        `final_train_accuracy` / `final_val_accuracy` when those columns exist and `baseline_accuracy` when given.
        Values that do not exist (no validation data) are None.

    Raises:
        ValueError: `history` has no `loss` column, no rows, columns of different lengths, or
            `baseline_accuracy` is outside [0, 1].
    """
    columns = _columns(history)
    if baseline_accuracy is not None and not 0.0 <= baseline_accuracy <= 1.0:
        raise ValueError("baseline_accuracy must be between 0 and 1. "
                         f"Received: baseline_accuracy={baseline_accuracy}")
    rows = len(columns["loss"])
    epochs = np.asarray(contract.epoch_numbers(columns.get("epoch"), rows), dtype=int)
    train = _Curve(epochs, columns["loss"])
    val = _Curve(epochs, columns["val_loss"]) if "val_loss" in columns else None
    notes = []
    # Validation loss is what a diagnosis is about; it gives way only where it is too sparse to show a trend.
    monitored = val if val is not None and len(val) and (len(val) >= MIN_EPOCHS or len(val) >= len(train)) \
        else None
    if val is None:
        notes.append("no val_loss column: diagnosed from training loss alone")
    elif monitored is None:
        notes.append(f"val_loss is finite in only {len(val)} of {rows} epochs: diagnosed from training loss alone")

    nan_mask = ~np.isfinite(columns["loss"])
    if "val_loss" in columns:
        nan_mask |= ~np.isfinite(columns["val_loss"])
    nan_epochs = [int(e) for e in epochs[nan_mask]]
    if nan_epochs:
        notes.append(f"loss or val_loss is NaN, inf or missing at epoch(s) {_epoch_list(nan_epochs)}: "
                     "left out of the diagnosis")

    evidence: dict[str, Any] = {
        "epochs": rows,
        "monitor": "val_loss" if monitored is not None else "loss",
        "best_epoch": None, "turn_epoch": None,
        "first_train_loss": train.first, "final_train_loss": train.last,
        "final_val_loss": val.last if val else None, "min_val_loss": val.minimum if val else None,
        "val_loss_rise": None, "generalization_gap": None,
    }
    evidence["best_epoch"] = (monitored if monitored is not None else train).best_epoch
    if val is not None and len(val) and val.minimum != 0:
        evidence["val_loss_rise"] = (val.last - val.minimum) / abs(val.minimum)
    if val is not None and len(val) and len(train):
        gap = val.last - train.last
        evidence["generalization_gap"] = {"absolute": gap, "relative": gap / val.last if val.last else None}
    accuracies = {}
    for name, key in (("final_train_accuracy", accuracy_key), ("final_val_accuracy", "val_" + accuracy_key)):
        if key in columns:
            accuracies[name] = _Curve(epochs, columns[key]).last
    evidence.update(accuracies)
    if baseline_accuracy is not None:
        evidence["baseline_accuracy"] = float(baseline_accuracy)

    verdict, summary, advice = _judge(train, monitored, columns["loss"], epochs, evidence, accuracies,
                                      baseline_accuracy)
    if monitored is None and verdict in ("good fit", "still improving") and len(train) >= MIN_EPOCHS:
        summary = summary[:-1] + "; without validation data, overfitting cannot be ruled out."
        advice.append("Set data.validation_split (e.g. 0.1) so the run can tell overfitting from a good fit.")
    return {"verdict": verdict, "summary": summary, **evidence, "advice": advice,
            "nan_epochs": nan_epochs, "notes": notes}


class _Curve:
    """One loss or metric column with its non-finite epochs left out."""

    def __init__(self, epochs: np.ndarray, values: np.ndarray):
        keep = np.isfinite(values)
        self.epochs, self.values = epochs[keep], values[keep]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def first(self) -> Optional[float]:
        return float(self.values[0]) if len(self) else None

    @property
    def last(self) -> Optional[float]:
        return float(self.values[-1]) if len(self) else None

    @property
    def minimum(self) -> Optional[float]:
        return float(self.values.min()) if len(self) else None

    @property
    def best_epoch(self) -> Optional[int]:
        return int(self.epochs[np.argmin(self.values)]) if len(self) else None

    def recent(self, k: int) -> float:
        return float(self.values[-k:].mean())

    def at(self, epoch: int) -> float:
        """The value at `epoch`, interpolated across left-out epochs."""
        return float(np.interp(epoch, self.epochs, self.values))


def _judge(train: _Curve, val: Optional[_Curve], raw_loss: np.ndarray, epochs: np.ndarray,
           evidence: dict[str, Any], accuracies: dict[str, Optional[float]],
           baseline: Optional[float]) -> tuple[str, str, list[str]]:
    """Apply the rules of `diagnose` in order; fills `evidence["turn_epoch"]`."""
    if not math.isfinite(raw_loss[-1]):
        return _diverged(train, val, raw_loss, epochs)
    curve = val if val is not None else train
    name = "validation loss" if val is not None else "training loss"
    if len(curve) < MIN_EPOCHS:
        count = len(curve)
        ran = "ran" if count == len(raw_loss) else f"have a finite {name}"
        return ("still improving",
                f"Too little history to diagnose: only {count} epoch{'s' if count != 1 else ''} {ran} "
                f"({name} {_num(curve.last)}); train for more epochs to see a trend.",
                ["Train for more epochs (train.epochs): one or two epochs cannot show a trend."])

    n = len(curve)
    k = _recent_window(n)
    smoothed = _smooth(curve.values)
    low = int(np.argmin(smoothed))
    scale = max(abs(float(smoothed[low])), 1e-12)
    noise = _noise(curve.values, smoothed)

    if val is not None and low < n - k:
        rise = (val.recent(k) - smoothed[low]) / scale
        if rise > max(RISE_TOLERANCE, NOISE_FACTOR * noise):
            # The turn is the raw minimum next to the smoothed one, so it is an epoch a student sees on the plot.
            start = max(low - 1, 0)
            turn = start + int(np.argmin(val.values[start:low + 2]))
            turn_epoch, turn_loss = int(val.epochs[turn]), float(val.values[turn])
            evidence["turn_epoch"] = turn_epoch
            return _turned(train, val, turn_epoch, turn_loss, k)

    window = max(3, min(8, n // 3))
    slope, intercept = np.polyfit(np.arange(window), curve.values[-window:], 1)
    fall = -slope / scale
    # Standard error of the fitted slope for independent noise: a jumpy curve must fall faster to count.
    fall_noise = noise / math.sqrt(window * (window ** 2 - 1) / 12)
    line_end = intercept + slope * (window - 1)
    if fall > max(STILL_FALLING, NOISE_FACTOR * fall_noise) and line_end < smoothed[:n - k].min():
        return ("still improving",
                f"Still improving: {name} was still falling at the last epoch ({_num(curve.last)} at epoch "
                f"{curve.epochs[-1]}, down about {fall:.0%} per epoch over the last {window} epochs); training "
                "stopped too early, train for more epochs.",
                ["Train for more epochs (train.epochs), or raise early_stopping.patience if early stopping "
                 "ended the run.",
                 "If progress is slow, a somewhat higher learning rate (train.optimizer.learning_rate) may "
                 "get there sooner."])

    if val is not None:
        overfit = _large_gap(train, val, k)
        if overfit:
            return overfit

    underfit = _stuck_high(train, val, k, accuracies, baseline)
    if underfit:
        return underfit

    if val is None:
        return ("good fit",
                f"Good fit as far as training loss shows: it flattened at {_num(train.recent(k))} "
                f"(best {_num(train.minimum)} at epoch {train.best_epoch}).",
                ["Keep this run; evaluate it on the test split (cnnctl evaluate RUN --split test)."])
    return ("good fit",
            f"Good fit: validation loss flattened at {_num(val.last)} (best {_num(val.minimum)} at epoch "
            f"{val.best_epoch}) and stays close to training loss ({_num(train.last)}); this run has converged.",
            ["Keep this run; evaluate it on the test split (cnnctl evaluate RUN --split test).",
             "To do better, try a bigger model with more regularisation or augmentation and compare the runs "
             "(cnnctl compare)."])


def _turned(train: _Curve, val: _Curve, turn_epoch: int, turn_loss: float, k: int) -> tuple[str, str, list[str]]:
    rise = (val.last - turn_loss) / abs(turn_loss)
    train_at_turn, train_recent = train.at(turn_epoch), train.recent(k)
    if train_recent <= train_at_turn * (1 + RISE_TOLERANCE):
        return ("overfitting",
                f"Overfitting: validation loss bottomed out at epoch {turn_epoch} ({_num(turn_loss)}) and rose "
                f"{rise:.0%} by epoch {val.epochs[-1]} while training loss kept falling; use the epoch-{turn_epoch} "
                "weights, add dropout/augmentation or stop earlier.",
                [f"Use the epoch-{turn_epoch} weights: early_stopping with restore_best_weights: true keeps them.",
                 "Add regularisation: Dropout layers, data.augment, or a smaller network.",
                 "More training data narrows the gap most reliably."])
    return ("underfitting",
            f"Underfitting from unstable training: after epoch {turn_epoch} both losses rose (training loss from "
            f"{_num(train_at_turn)} to {_num(train.last)}, validation loss by {rise:.0%}), so the final model fits "
            "even the training data worse; lower the learning rate.",
            ["Lower the learning rate (train.optimizer.learning_rate) by 3-10x, or enable reduce_lr_on_plateau.",
             f"Use the epoch-{turn_epoch} weights, from before the losses rose."])


def _large_gap(train: _Curve, val: _Curve, k: int) -> Optional[tuple[str, str, list[str]]]:
    common, in_val, in_train = np.intersect1d(val.epochs, train.epochs, return_indices=True)
    if len(common) < MIN_EPOCHS:
        return None
    val_loss, train_loss = val.values[in_val], train.values[in_train]
    gap = val_loss - train_loss
    recent_gap, recent_val, early_gap = gap[-k:].mean(), val_loss[-k:].mean(), gap[:k].mean()
    if recent_val <= 0 or recent_gap / recent_val <= LARGE_GAP or recent_gap <= GAP_SCALE * abs(train.first) \
            or recent_gap < early_gap:
        return None
    ratio = recent_val / max(train_loss[-k:].mean(), 1e-12)
    return ("overfitting",
            f"Overfitting: training loss fell to {_num(train.last)} but validation loss stalled at "
            f"{_num(val.last)} ({ratio:.1f}x the training loss) and the gap kept growing; the model memorises the "
            "training set, so add dropout/augmentation or use a smaller network.",
            ["Add Dropout layers or data augmentation (data.augment) to narrow the gap.",
             "Try a smaller network or weight decay (kernel_regularizer in the layer kwargs).",
             f"The epoch-{val.best_epoch} weights have the lowest validation loss; more training data helps most."])


def _stuck_high(train: _Curve, val: Optional[_Curve], k: int, accuracies: dict[str, Optional[float]],
                baseline: Optional[float]) -> Optional[tuple[str, str, list[str]]]:
    advice = ["Use a bigger model: more filters or Conv2D blocks, a wider Dense layer.",
              "Train longer or raise the learning rate (train.optimizer.learning_rate).",
              "Weaken regularisation (Dropout rate, augmentation) the model cannot afford yet.",
              "Check the data: labels match the images and inputs are normalized (data.normalize: true)."]
    closeness = f" and validation loss ({_num(val.last)}) stays close to it" if val is not None else ""
    accuracy_name = "final_val_accuracy" if accuracies.get("final_val_accuracy") is not None \
        else "final_train_accuracy"
    accuracy = accuracies.get(accuracy_name)
    if baseline is not None and accuracy is not None:
        threshold = baseline + UNDERFIT_HEADROOM * (1 - baseline)
        if accuracy >= threshold:
            return None
        which = "validation" if accuracy_name == "final_val_accuracy" else "training"
        return ("underfitting",
                f"Underfitting: {which} accuracy ended at {accuracy:.1%}, not clearly above the {baseline:.1%} "
                f"that always guessing the most common class gets (training loss went from {_num(train.first)} "
                f"to {_num(train.last)}); the model is too weak or trained too little.",
                advice)
    train_accuracy = accuracies.get("final_train_accuracy")
    if train.recent(k) <= UNDERFIT_LOSS_RATIO * train.first or \
            (train_accuracy is not None and train_accuracy >= CONFIDENT_ACCURACY):
        return None
    fell = 1 - train.recent(k) / train.first if train.first else 0.0
    return ("underfitting",
            f"Underfitting: training loss only fell from {_num(train.first)} to {_num(train.last)} "
            f"({fell:.0%} lower){closeness}; the model is too weak or trained too little.",
            advice)


def _diverged(train: _Curve, val: Optional[_Curve], raw_loss: np.ndarray,
              epochs: np.ndarray) -> tuple[str, str, list[str]]:
    finite = np.isfinite(raw_loss)
    # The first epoch of the final run of NaNs: where training blew up for good.
    last_good = np.flatnonzero(finite)
    blown = int(epochs[last_good[-1] + 1]) if len(last_good) else int(epochs[0])
    advice = ["Lower the learning rate by 10x (train.optimizer.learning_rate).",
              "Clip gradients: add clipnorm: 1.0 to train.optimizer.",
              "Check the data: inputs normalized (data.normalize: true), labels valid class indices."]
    if not len(train):
        where, keep = "from the first epoch", ""
    else:
        curve, name = (val, "validation") if val is not None else (train, "training")
        where = f"at epoch {blown}"
        keep = f" and use the epoch-{curve.best_epoch} weights (best {name} loss {_num(curve.minimum)})"
    return ("underfitting",
            f"Underfitting: training diverged, the loss became NaN {where}, so the final model fits nothing; "
            f"lower the learning rate{keep}.",
            advice)


def _columns(history: dict[str, list[float]]) -> dict[str, np.ndarray]:
    if "loss" not in history:
        raise ValueError(f"history has no 'loss' column. Available columns are: {', '.join(history) or 'none'}")
    columns = {}
    for name, values in history.items():
        array = np.array([math.nan if value is None else value for value in values], dtype=float).ravel()
        columns[name] = array
    lengths = {name: len(array) for name, array in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history columns must all have one value per epoch. Received lengths: {lengths}")
    if lengths["loss"] == 0:
        raise ValueError("history has no epochs: the run stopped before its first epoch ended")
    return columns


def _recent_window(n: int) -> int:
    return min(3, max(1, n // 4))


def _smooth(values: np.ndarray) -> np.ndarray:
    """Centered 3-epoch mean (2 at the ends); short curves are returned as they are."""
    if len(values) < 5:
        return values.copy()
    sums = np.convolve(values, np.ones(3), mode="same")
    counts = np.convolve(np.ones(len(values)), np.ones(3), mode="same")
    return sums / counts


def _noise(values: np.ndarray, smoothed: np.ndarray) -> float:
    """Epoch-to-epoch noise as a fraction of the loss level: second differences cancel the trend, the median
    the outliers.

    Noise is measured relative to the (smoothed) level at each epoch because a loss jitters in proportion to
    its size: the jumps of the early, high epochs would otherwise swamp the quiet end of the run. For
    independent noise of standard deviation s, a second difference has standard deviation s * sqrt(6), and
    1.4826 * median absolute deviation estimates a standard deviation.
    """
    if len(values) < 6:
        return 0.0
    second = np.diff(values, n=2) / np.maximum(np.abs(smoothed[1:-1]), 1e-12)
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6))


def _num(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _epoch_list(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
