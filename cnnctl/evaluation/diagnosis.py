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

import math
from typing import Any, Optional, Union

import numpy as np

from cnnctl.evaluation.backbone_advice import Backbone, as_backbone
from cnnctl.evaluation.verdicts import (  # noqa: F401 - thresholds and advice, importable from here as before
    BASELINE_ADVICE,
    CONFIDENT_ACCURACY,
    GAP_SCALE,
    LARGE_GAP,
    MIN_EPOCHS,
    NOISE_FACTOR,
    RISE_TOLERANCE,
    SMALL_DATASET,
    STILL_FALLING,
    TRANSFER_ADVICE,
    TRANSFER_LINES,
    UNDERFIT_HEADROOM,
    UNDERFIT_LOSS_RATIO,
    _at,
    _at_chance,
    _columns,
    _Curve,
    _diverged,
    _epoch_list,
    _good_fit,
    _large_gap,
    _learned_little,
    _near_baseline,
    _noise,
    _num,
    _percent,
    _recent_window,
    _smooth,
    _stuck_high,
    _transfer_advice,
    _turned,
)
from cnnctl.runs import contract
from cnnctl.runs.history import read_history_csv  # noqa: F401 - its old home


def diagnose(
    history: dict[str, list[float]],
    baseline_accuracy: Optional[float] = None,
    accuracy_key: str = "accuracy",
    accuracy: Optional[float] = None,
    split: Optional[str] = None,
    train_examples: Optional[int] = None,
    backbone: Union[str, Backbone, None] = None,
    num_classes: Optional[int] = None,
    mixed_labels: bool = False,
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
        backbone: the run's backbone, if it has one: its advice is about the backbone instead, worded from what
            a `Backbone` says (frozen or trained on, its weights, a normalizing head); a name alone says only
            which. Defaults to None.
        mixed_labels: the run trained on MixUp/CutMix batches (data.mix), so its training loss and accuracy
            are those of mixed examples and soft labels, above what the unmixed data would give by design: rule 7
            (stuck high) and the training accuracy are left out when there is validation loss to judge by, and a
            note says so. Defaults to False.

    Returns:
        A JSON-serializable dict: `verdict` (one of contract.VERDICTS), `summary` (one sentence), `advice` (list of
        suggestions), `epochs` (rows), `monitor` ("val_loss", or "loss" without validation), `best_epoch`
        (1-based epoch of the minimum monitored loss), `turn_epoch` (1-based epoch where validation loss turned
        upward, else None), `first_train_loss`, `final_train_loss`, `final_val_loss`, `min_val_loss`,
        `val_loss_rise` ((final - min) / min validation loss), `generalization_gap` (`absolute`: final
        validation minus final training loss; `relative`: that as a fraction of the final validation loss, so
        0.5 means validation loss is twice training loss), `nan_epochs`, `notes` (caveats); plus
        `final_train_accuracy` / `final_val_accuracy` when those columns exist, `baseline_accuracy` when given,
        and `accuracy` / `split` when `accuracy` is given; `fine_tuning` (also among the notes) when a fine-tuning
        phase never beat the first phase's lowest validation loss.
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

    fine_tune_note = _fine_tuning_never_won(columns, epochs)
    if fine_tune_note:
        notes.append(fine_tune_note)
    if mixed_labels and monitored is not None:
        notes.append(
            "training loss and accuracy were measured on mixed batches (data.mix: soft labels), so they sit above "
            "the validation values by design: judged by validation loss"
        )
        evidence.pop("final_train_accuracy", None)
    verdict, summary, advice = _judge(
        train,
        monitored,
        columns["loss"],
        epochs,
        evidence,
        measured,
        baseline_accuracy,
        split,
        judge_training_loss=not (mixed_labels and monitored is not None),
    )
    backbone = as_backbone(backbone)
    chance = _at_chance(train, monitored, num_classes, measured, baseline_accuracy, backbone)
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
        **({"fine_tuning": fine_tune_note} if fine_tune_note else {}),
    }


def _fine_tuning_never_won(columns: dict[str, np.ndarray], epochs: np.ndarray) -> Optional[str]:
    """With a `phase` column (train.fine_tune): a note when no fine-tuning epoch beat the first phase's lowest
    validation loss, so the run ends with the first phase's model (early stopping's best weights)."""
    if "phase" not in columns or "val_loss" not in columns:
        return None
    phase, val = columns["phase"], columns["val_loss"]
    first, second = (phase == 1) & np.isfinite(val), (phase == 2) & np.isfinite(val)
    if not first.any() or not second.any() or val[second].min() < val[first].min():
        return None
    best = int(np.argmin(np.where(first, val, np.inf)))
    start, end = int(epochs[second][0]), int(epochs[second][-1])
    return (
        f"fine-tuning (epoch{'s' if end > start else ''} {start}{f'–{end}' if end > start else ''}) never beat the "
        f"first phase's lowest validation loss, {_at(val[best], epochs[best])}: with restore_best_weights the model "
        "is the first phase's; try a lower train.fine_tune.learning_rate or unfreeze fewer layers"
    )


def _judge(
    train: _Curve,
    val: Optional[_Curve],
    raw_loss: np.ndarray,
    epochs: np.ndarray,
    evidence: dict[str, Any],
    measured: Optional[tuple[float, str]],
    baseline: Optional[float],
    split: Optional[str],
    judge_training_loss: bool = True,
) -> tuple[str, str, list[str]]:
    """Apply the rules of `diagnose` in order; fills `evidence["turn_epoch"]`. Without `judge_training_loss`
    (mixed training batches), rule 7 is skipped."""
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
        stuck = _stuck_high(train, val, k, evidence.get("final_train_accuracy")) if judge_training_loss else None
        judged = stuck or _good_fit(train, val, split)
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
