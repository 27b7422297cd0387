"""Evaluation: diagnose a finished run from its per-epoch history: overfitting, underfitting, good fit or still improving.

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
from cnnctl.runs.folder import readable_file

# Thresholds. Why each has its value is explained in `diagnose`'s docstring.
MIN_EPOCHS = 3  # fewer finite epochs than this: too little history for a trend


RISE_TOLERANCE = 0.10  # validation loss must end > 10% above its minimum to have turned upward


STILL_FALLING = 0.01  # a loss still falling > 1% of its minimum per epoch is still improving


NOISE_FACTOR = 3.0  # both tolerances widen to 3x the epoch-to-epoch noise of a jumpy loss


LARGE_GAP = 0.5  # validation loss at least twice the training loss ...


GAP_SCALE = 0.10  # ... and the gap at least 10% of the first epoch's training loss


UNDERFIT_LOSS_RATIO = 0.7  # training loss still above 70% of its first value: it barely fell


UNDERFIT_HEADROOM = 0.2  # accuracy within 20% of the headroom above the majority-class baseline


CONFIDENT_ACCURACY = 0.9  # a model this accurate on its training data is never called underfitting


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


def diagnose(
    history: dict[str, list[float]],
    baseline_accuracy: Optional[float] = None,
    accuracy_key: str = "accuracy",
    accuracy: Optional[float] = None,
    split: Optional[str] = None,
    train_examples: Optional[int] = None,
    backbone: Optional[str] = None,
    num_classes: Optional[int] = None,
) -> dict[str, Any]:
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
       errors of its slope, it ends below every smoothed value before the recent window (the curve is at
       its lowest, not recovering from a bump), and the lowest value of all came in the recent window, more
       than 1% below the best before it -> "still improving": training stopped too early. The slope only
       decides; the summary states the two values and epochs a reader finds in history.csv.
    5. Large, persistent gap: recent validation loss is at least twice the training loss (LARGE_GAP), the gap
       is at least 10% of the first epoch's training loss (GAP_SCALE, so near-zero losses such as 0.02 vs 0.04
       on MNIST do not count) and it is no smaller than over the first k epochs -> "overfitting", even though
       validation loss has only flattened.
    6. Near the baseline: with `baseline_accuracy`, the evaluated `accuracy` (else the history's final
       validation, else training, accuracy) is below baseline + 20% of the headroom 1 - baseline
       (UNDERFIT_HEADROOM; 0.28 for ten balanced classes, 0.63 for a 0.54 majority class). This is said in
       plain words ("accuracy 0.59 is barely above always answering the majority class, 0.54") with advice:
       after rules 3-5 as an added clause, otherwise as the "underfitting" verdict, never a good fit.
    7. Stuck high: the recent training loss is above 70% of the first epoch's (UNDERFIT_LOSS_RATIO) and the
       training accuracy, if known, is below 0.9 -> "underfitting". (A large gap was caught by rule 5.)
    8. Otherwise -> "good fit": the summary gives the last and the lowest validation loss and the training loss.

    Every number a summary states is a value of history.csv at a named (1-based) epoch, a minimum, a change
    between two of them as a percentage of the second, the accuracy and baseline passed in, or a count.

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
        accuracy: the evaluated accuracy (metrics.json `accuracy`), judged against `baseline_accuracy` in place
            of the history's. Defaults to None (use the history's).
        split: the split `accuracy` was measured on ("test", "val"); on "test" the advice never says to
            evaluate on the test split. Defaults to None (unknown).
        train_examples: the number of training examples (data.json `sizes.train`): an underfitting run on fewer
            than SMALL_DATASET (5000) without a backbone is advised to use a pretrained one, with the config
            lines. Defaults to None (unknown: only accuracy near the baseline earns that advice).
        backbone: the run's `model.backbone.name`, if it has one: its advice is about the backbone instead.
            Defaults to None.

    Returns:
        A JSON-serializable dict: `verdict` (one of contract.VERDICTS), `summary` (one sentence), `advice` (list of
        suggestions), `epochs` (rows), `monitor` ("val_loss", or "loss" without validation), `best_epoch`
        (1-based epoch of the minimum monitored loss), `turn_epoch` (1-based epoch where validation loss turned
        upward, else None), `first_train_loss`, `final_train_loss`, `final_val_loss`, `min_val_loss`,
        `val_loss_rise` ((final - min) / min validation loss), `generalization_gap` (`absolute`: final
        validation minus final training loss; `relative`: that as a fraction of the final validation loss, so
        0.5 means validation loss is twice training loss), `nan_epochs`, `notes` (caveats); plus
        `final_train_accuracy` / `final_val_accuracy` when those columns exist, `baseline_accuracy` when given,
        and `accuracy` / `split` when `accuracy` is given.
        Values that do not exist (no validation data) are None.

    Raises:
        ValueError: `history` has no `loss` column, no rows, columns of different lengths, or
            `baseline_accuracy` is outside [0, 1].
    """
    columns = _columns(history)
    if baseline_accuracy is not None and not 0.0 <= baseline_accuracy <= 1.0:
        raise ValueError(f"baseline_accuracy must be between 0 and 1. Received: baseline_accuracy={baseline_accuracy}")
    if accuracy is not None and not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be between 0 and 1. Received: accuracy={accuracy}")
    rows = len(columns["loss"])
    epochs = np.asarray(contract.epoch_numbers(columns.get("epoch"), rows), dtype=int)
    train = _Curve(epochs, columns["loss"])
    val = _Curve(epochs, columns["val_loss"]) if "val_loss" in columns else None
    notes = []
    # Validation loss is what a diagnosis is about; it gives way only where it is too sparse to show a trend.
    monitored = val if val is not None and len(val) and (len(val) >= MIN_EPOCHS or len(val) >= len(train)) else None
    if val is None:
        notes.append("no val_loss column: diagnosed from training loss alone")
    elif monitored is None:
        notes.append(f"val_loss is finite in only {len(val)} of {rows} epochs: diagnosed from training loss alone")

    nan_mask = ~np.isfinite(columns["loss"])
    if "val_loss" in columns:
        nan_mask |= ~np.isfinite(columns["val_loss"])
    nan_epochs = [int(e) for e in epochs[nan_mask]]
    if nan_epochs:
        notes.append(
            f"loss or val_loss is NaN, inf or missing at epoch(s) {_epoch_list(nan_epochs)}: left out of the diagnosis"
        )

    evidence: dict[str, Any] = {
        "epochs": rows,
        "monitor": "val_loss" if monitored is not None else "loss",
        "best_epoch": None,
        "turn_epoch": None,
        "first_train_loss": train.first,
        "final_train_loss": train.last,
        "final_val_loss": val.last if val else None,
        "min_val_loss": val.minimum if val else None,
        "val_loss_rise": None,
        "generalization_gap": None,
    }
    evidence["best_epoch"] = (monitored if monitored is not None else train).best_epoch
    if val is not None and len(val) and val.minimum != 0:
        evidence["val_loss_rise"] = (val.last - val.minimum) / abs(val.minimum)
    if val is not None and len(val) and len(train):
        gap = val.last - train.last
        evidence["generalization_gap"] = {"absolute": gap, "relative": gap / val.last if val.last else None}
    # The accuracy judged against the baseline: the evaluated one when given, else the history's last.
    measured = None
    for name, key, described in (
        ("final_train_accuracy", accuracy_key, "training accuracy"),
        ("final_val_accuracy", "val_" + accuracy_key, "validation accuracy"),
    ):
        if key in columns:
            curve = _Curve(epochs, columns[key])
            evidence[name] = curve.last
            if len(curve):
                measured = (curve.last, f"{described} {_at(curve.last, curve.epochs[-1])}")
    if accuracy is not None:
        evidence["accuracy"], evidence["split"] = float(accuracy), split
        where = {"val": "validation", "train": "training"}.get(split or "", split)
        measured = (float(accuracy), f"{where + ' ' if where else ''}accuracy {_num(accuracy)}")
    if baseline_accuracy is not None:
        evidence["baseline_accuracy"] = float(baseline_accuracy)

    verdict, summary, advice = _judge(
        train, monitored, columns["loss"], epochs, evidence, measured, baseline_accuracy, split
    )
    chance = _at_chance(train, monitored, num_classes, measured, baseline_accuracy)
    if chance is not None:  # whatever the slope rules said, losses flat at ln K mean nothing was learned
        verdict, summary, advice = chance
    advice = _transfer_advice(
        verdict, advice, train_examples, backbone, evidence, diverged=not math.isfinite(columns["loss"][-1])
    )
    if monitored is None and verdict in ("good fit", "still improving") and len(train) >= MIN_EPOCHS:
        summary = summary[:-1] + "; without validation data, overfitting cannot be ruled out."
        advice.append("Set data.validation_split (e.g. 0.1) so the run can tell overfitting from a good fit.")
    return {
        "verdict": verdict,
        "summary": summary,
        **evidence,
        "advice": advice,
        "nan_epochs": nan_epochs,
        "notes": notes,
    }


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

    def at_or_before(self, epoch: int) -> tuple[int, float]:
        """The last epoch up to `epoch` with a value, and that value: a row a reader finds in history.csv."""
        index = max(int(np.searchsorted(self.epochs, epoch, side="right")) - 1, 0)
        return int(self.epochs[index]), float(self.values[index])


def _judge(
    train: _Curve,
    val: Optional[_Curve],
    raw_loss: np.ndarray,
    epochs: np.ndarray,
    evidence: dict[str, Any],
    measured: Optional[tuple[float, str]],
    baseline: Optional[float],
    split: Optional[str],
) -> tuple[str, str, list[str]]:
    """Apply the rules of `diagnose` in order; fills `evidence["turn_epoch"]`."""
    if not math.isfinite(raw_loss[-1]):
        return _diverged(train, val, raw_loss, epochs)
    curve = val if val is not None else train
    name = "validation loss" if val is not None else "training loss"
    if len(curve) < MIN_EPOCHS:
        count = len(curve)
        ran = "ran" if count == len(raw_loss) else f"have a finite {name}"
        return (
            "still improving",
            f"Still improving: too little history to diagnose, only {count} epoch{'s' if count != 1 else ''} "
            f"{ran} ({name} {_at(curve.last, curve.epochs[-1])}); train for more epochs to see a trend.",
            ["Train for more epochs (train.epochs): one or two epochs cannot show a trend."],
        )

    k = _recent_window(len(curve))
    judged = _judge_loss(train, val, curve, name, k, evidence)
    near = _near_baseline(measured, baseline)
    if judged is None and near:
        return _learned_little(train, val, near)
    if judged is None:
        judged = _stuck_high(train, val, k, evidence.get("final_train_accuracy")) or _good_fit(train, val, split)
    if near:
        # Whatever the losses did, accuracy at the level of guessing is the first thing to fix.
        verdict, summary, advice = judged
        return verdict, f"{summary[:-1]}; {near}.", BASELINE_ADVICE + advice
    return judged


def _judge_loss(
    train: _Curve, val: Optional[_Curve], curve: _Curve, name: str, k: int, evidence: dict[str, Any]
) -> Optional[tuple[str, str, list[str]]]:
    """Rules 3-5 of `diagnose`, from the shape of the losses alone; None when none applies."""
    n = len(curve)
    smoothed = _smooth(curve.values)
    low = int(np.argmin(smoothed))
    scale = max(abs(float(smoothed[low])), 1e-12)
    noise = _noise(curve.values, smoothed)

    if val is not None and low < n - k:
        rise = (val.recent(k) - smoothed[low]) / scale
        if rise > max(RISE_TOLERANCE, NOISE_FACTOR * noise):
            # The turn is the raw minimum next to the smoothed one, so it is an epoch a student sees on the plot.
            start = max(low - 1, 0)
            turn = start + int(np.argmin(val.values[start : low + 2]))
            turn_epoch, turn_loss = int(val.epochs[turn]), float(val.values[turn])
            evidence["turn_epoch"] = turn_epoch
            return _turned(train, val, turn_epoch, turn_loss, k)

    # The fitted slope decides whether the fall is more than noise; the sentence states only what the history
    # shows: the lowest value came in the last k epochs and beat everything before them by > STILL_FALLING.
    window = max(3, min(8, n // 3))
    slope, intercept = np.polyfit(np.arange(window), curve.values[-window:], 1)
    fall = -slope / scale
    # Standard error of the fitted slope for independent noise: a jumpy curve must fall faster to count.
    fall_noise = noise / math.sqrt(window * (window**2 - 1) / 12)
    line_end = intercept + slope * (window - 1)
    best = int(np.argmin(curve.values))
    earlier = int(np.argmin(curve.values[: n - k]))
    prior = float(curve.values[earlier])
    gain = (prior - float(curve.values[best])) / abs(prior) if prior else 0.0
    if (
        fall > max(STILL_FALLING, NOISE_FACTOR * fall_noise)
        and line_end < smoothed[: n - k].min()
        and best >= n - k
        and gain > STILL_FALLING
    ):
        return (
            "still improving",
            f"Still improving: {name} reached its lowest in the final epochs, "
            f"{_at(curve.values[best], curve.epochs[best])}, {_percent(gain)} below the best before epoch "
            f"{curve.epochs[n - k]}, {_at(prior, curve.epochs[earlier])}; training stopped too early, train "
            "for more epochs.",
            [
                "Train for more epochs (train.epochs), or raise early_stopping.patience if early stopping "
                "ended the run.",
                "If progress is slow, a somewhat higher learning rate (train.optimizer.learning_rate) may "
                "get there sooner.",
            ],
        )

    if val is not None:
        return _large_gap(train, val, k)
    return None


def _turned(train: _Curve, val: _Curve, turn_epoch: int, turn_loss: float, k: int) -> tuple[str, str, list[str]]:
    rise = (val.last - turn_loss) / abs(turn_loss)
    train_epoch, train_at_turn = train.at_or_before(turn_epoch)
    rose = (
        f"validation loss bottomed out at {_at(turn_loss, turn_epoch)} and rose to "
        f"{_at(val.last, val.epochs[-1])}, {_percent(rise)} above it"
    )
    trained = f"from {_at(train_at_turn, train_epoch)} to {_at(train.last, train.epochs[-1])}"
    best = (
        f"the epoch-{turn_epoch} weights"
        if val.best_epoch == turn_epoch
        else f"the epoch-{val.best_epoch} weights (lowest validation loss, {_at(val.minimum, val.best_epoch)})"
    )
    if train.recent(k) <= train_at_turn * (1 + RISE_TOLERANCE):
        trend = "kept falling" if train.last < train_at_turn else "stayed level"
        return (
            "overfitting",
            f"Overfitting: {rose}, while training loss {trend}, {trained}; use {best}, add "
            "dropout/augmentation or stop earlier.",
            [
                f"Use the epoch-{val.best_epoch} weights: early_stopping with restore_best_weights: true keeps them.",
                "Add regularisation: Dropout layers, data.augment, or a smaller network.",
                "More training data narrows the gap most reliably.",
            ],
        )
    return (
        "underfitting",
        f"Underfitting from unstable training: {rose}, and training loss went {trained}, so the final model "
        "fits even the training data worse; lower the learning rate.",
        [
            "Lower the learning rate (train.optimizer.learning_rate) by 3-10x, or enable reduce_lr_on_plateau.",
            f"Use the epoch-{val.best_epoch} weights, from before the losses rose.",
        ],
    )


def _large_gap(train: _Curve, val: _Curve, k: int) -> Optional[tuple[str, str, list[str]]]:
    common, in_val, in_train = np.intersect1d(val.epochs, train.epochs, return_indices=True)
    if len(common) < MIN_EPOCHS:
        return None
    val_loss, train_loss = val.values[in_val], train.values[in_train]
    gap = val_loss - train_loss
    recent_gap, recent_val, early_gap = gap[-k:].mean(), val_loss[-k:].mean(), gap[:k].mean()
    if (
        recent_val <= 0
        or recent_gap / recent_val <= LARGE_GAP
        or recent_gap <= GAP_SCALE * abs(train.first)
        or recent_gap < early_gap
        or train_loss[-1] <= 0
    ):
        return None
    last = int(common[-1])
    return (
        "overfitting",
        f"Overfitting: validation loss stayed far above training loss, {_at(val_loss[-1], last)} against "
        f"{_at(train_loss[-1], last)} ({val_loss[-1] / train_loss[-1]:.1f}x); the model memorises the "
        "training set, so add dropout/augmentation or use a smaller network.",
        [
            "Add Dropout layers or data augmentation (data.augment) to narrow the gap.",
            "Try a smaller network or weight decay (kernel_regularizer in the layer kwargs).",
            f"The epoch-{val.best_epoch} weights have the lowest validation loss; more training data helps most.",
        ],
    )


UNDERFIT_ADVICE = [
    "Use a bigger model: more filters or Conv2D blocks, a wider Dense layer.",
    "Train longer or raise the learning rate (train.optimizer.learning_rate).",
    "Weaken regularisation (Dropout rate, augmentation) the model cannot afford yet.",
    "Check the data: labels match the images and inputs are normalized (data.normalize: true).",
]

# The config lines that add a pretrained backbone (cnnctl/model/backbone.py); model.layers become its head.
TRANSFER_LINES = "model: {backbone: {name: MobileNetV3Small, weights: imagenet}}"
TRANSFER_ADVICE = (
    "With few training images, a network trained from scratch rarely gets far: start from a "
    f"pretrained network (transfer learning) instead: add `{TRANSFER_LINES}` to the config (images of "
    "3 or 1 channels; the configured layers become the head, e.g. Dense with one unit per class)."
)
BACKBONE_ADVICE = (
    "The pretrained backbone is frozen: try another one (model.backbone.name, e.g. EfficientNetB0), "
    "a larger model.backbone.input_size, or check that model.backbone.weights is imagenet, not null."
)
SMALL_DATASET = 5000  # training examples; below this, underfitting from scratch earns the transfer advice

BASELINE_ADVICE = [
    "Train for more epochs (train.epochs); if early stopping ended the run, raise early_stopping.patience.",
    "Try another learning rate (train.optimizer.learning_rate): about 3x lower if the loss jumped "
    "around, about 3x higher if it fell slowly.",
    TRANSFER_ADVICE,
    "Check the data: labels match the images and every class has enough examples.",
]


def _near_baseline(measured: Optional[tuple[float, str]], baseline: Optional[float]) -> Optional[str]:
    """A plain clause when accuracy is within UNDERFIT_HEADROOM of the headroom above the majority class."""
    if measured is None or baseline is None:
        return None
    accuracy, described = measured
    if accuracy <= baseline:
        return f"{described} is no better than always answering the majority class, {_num(baseline)}"
    if accuracy < baseline + UNDERFIT_HEADROOM * (1 - baseline):
        return f"{described} is barely above always answering the majority class, {_num(baseline)}"
    return None


def _transfer_advice(
    verdict: str,
    advice: list[str],
    train_examples: Optional[int],
    backbone: Optional[str],
    evidence: dict[str, Any],
    diverged: bool,
) -> list[str]:
    """Near the baseline, or underfitting on a small dataset trained from scratch: use a pretrained backbone
    (with the config lines). A run that has one is told about its backbone instead."""
    if train_examples is not None:
        evidence["train_examples"] = int(train_examples)
    if backbone:
        evidence["backbone"] = backbone
        return [BACKBONE_ADVICE if line == TRANSFER_ADVICE else line for line in advice]
    small = train_examples is not None and train_examples < SMALL_DATASET
    if verdict == "underfitting" and small and not diverged and TRANSFER_ADVICE not in advice:
        return [*advice, TRANSFER_ADVICE]
    return advice


CHANCE_TOLERANCE = 0.05  # recent losses within 5 % of ln K: the model still guesses uniformly among K classes
CHANCE_ADVICE = [
    "A frozen backbone with random weights (model.backbone.weights: null, trainable: false) gives the head random "
    "features it cannot learn from: use weights: imagenet, or let it train (trainable: true, or train.fine_tune).",
    "Lower the learning rate about 10x (train.optimizer.learning_rate): a rate far too high keeps a network at "
    "chance; with a pretrained backbone's large features, a BatchNormalization at the start of the head helps.",
    "Check the data: labels match the examples (shuffled labels also train to chance).",
]


def _at_chance(
    train: _Curve,
    val: Optional[_Curve],
    num_classes: Optional[int],
    measured: Optional[tuple[float, str]],
    baseline: Optional[float],
) -> Optional[tuple[str, str, list[str]]]:
    """Training and validation loss flat at ln K (the cross-entropy of a uniform guess among K classes) and an
    accuracy no better than guessing: the model learned nothing, which no slope rule should call a good fit or
    "still improving"."""
    if not num_classes or num_classes < 2 or len(train) < MIN_EPOCHS:
        return None
    chance = math.log(num_classes)
    k = _recent_window(len(train))
    curves = [curve for curve in (train, val) if curve is not None and len(curve) >= MIN_EPOCHS]
    if not all(abs(curve.recent(k) - chance) <= CHANCE_TOLERANCE * chance for curve in curves):
        return None
    if measured is not None and baseline is not None and not _near_baseline(measured, baseline):
        return None
    losses = " and ".join(
        f"{name} {_num(curve.recent(k))}"
        for name, curve in (("training loss", train), ("validation loss", val))
        if curve is not None
    )
    return (
        "underfitting",
        f"Underfitting: at chance: {losses} sit at ln {num_classes} = {_num(chance)}, the loss of guessing "
        f"uniformly among {num_classes} classes, after {len(train)} epochs; the model has learned nothing.",
        list(CHANCE_ADVICE),
    )


def _learned_little(train: _Curve, val: Optional[_Curve], near: str) -> tuple[str, str, list[str]]:
    curve, name = (val, "validation loss") if val is not None else (train, "training loss")
    ended = f"{name} ended at {_at(curve.last, curve.epochs[-1])}"
    if curve.best_epoch != curve.epochs[-1]:
        ended += f", lowest {_at(curve.minimum, curve.best_epoch)}"
    return ("underfitting", f"Underfitting: {near}, so the model has learned little ({ended}).", list(BASELINE_ADVICE))


def _stuck_high(
    train: _Curve, val: Optional[_Curve], k: int, train_accuracy: Optional[float]
) -> Optional[tuple[str, str, list[str]]]:
    if train.recent(k) <= UNDERFIT_LOSS_RATIO * train.first or (
        train_accuracy is not None and train_accuracy >= CONFIDENT_ACCURACY
    ):
        return None
    first, last = _at(train.first, train.epochs[0]), _at(train.last, train.epochs[-1])
    moved = (
        f"only fell from {first} to {last}, {_percent(1 - train.last / train.first)} lower"
        if train.last < train.first
        else f"did not fall, from {first} to {last}"
    )
    closeness = f" and validation loss ended at {_at(val.last, val.epochs[-1])}" if val is not None else ""
    return (
        "underfitting",
        f"Underfitting: training loss {moved}{closeness}; the model is too weak or trained too little.",
        list(UNDERFIT_ADVICE),
    )


def _good_fit(train: _Curve, val: Optional[_Curve], split: Optional[str]) -> tuple[str, str, list[str]]:
    advice = [
        "To do better, try a bigger model with more regularisation or augmentation and compare the runs "
        "(cnnctl compare)."
    ]
    if split != "test":
        advice.insert(0, "Keep this run; evaluate it on the test split (cnnctl evaluate RUN --split test).")
    curve, name = (val, "validation loss") if val is not None else (train, "training loss")
    if curve.best_epoch == curve.epochs[-1]:
        where = f"{name} was lowest at the last epoch, {_at(curve.last, curve.epochs[-1])}"
    else:
        rise = (curve.last - curve.minimum) / abs(curve.minimum)
        where = (
            f"{name} ended at {_at(curve.last, curve.epochs[-1])}, {_percent(rise)} above its lowest, "
            f"{_at(curve.minimum, curve.best_epoch)}"
        )
    close = f", close to training loss, {_at(train.last, train.epochs[-1])}" if val is not None else ""
    return "good fit", f"Good fit: {where}{close}.", advice


def _diverged(
    train: _Curve, val: Optional[_Curve], raw_loss: np.ndarray, epochs: np.ndarray
) -> tuple[str, str, list[str]]:
    finite = np.isfinite(raw_loss)
    # The first epoch of the final run of NaNs: where training blew up for good.
    last_good = np.flatnonzero(finite)
    blown = last_good[-1] + 1 if len(last_good) else 0
    became = "NaN" if math.isnan(raw_loss[blown]) else "infinite"
    advice = [
        "Lower the learning rate by 10x (train.optimizer.learning_rate).",
        "Clip gradients: add clipnorm: 1.0 to train.optimizer.",
        "Check the data: inputs normalized (data.normalize: true), labels valid class indices.",
    ]
    if not len(train):
        where, keep = "from the first epoch", ""
    else:
        curve, name = (val, "validation") if val is not None and len(val) else (train, "training")
        where = f"at epoch {int(epochs[blown])}"
        keep = (
            f" and use the epoch-{curve.best_epoch} weights (lowest {name} loss, "
            f"{_at(curve.minimum, curve.best_epoch)})"
        )
    return (
        "underfitting",
        f"Underfitting: training diverged, the loss became {became} {where}, so the final model fits nothing; "
        f"lower the learning rate{keep}.",
        advice,
    )


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


def _at(value: Optional[float], epoch: int) -> str:
    """`0.188 at epoch 2`: every loss a summary states comes with the epoch where history.csv has it."""
    return f"{_num(value)} at epoch {int(epoch)}"


def _percent(fraction: float) -> str:
    """A change as a percentage of a value named next to it; a decimal only below 1%."""
    return f"{fraction:.0%}" if abs(fraction) >= 0.01 else f"{fraction:.1%}"


def _epoch_list(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
