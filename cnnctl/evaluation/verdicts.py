"""Evaluation: the verdicts of the diagnosis — what each rule concludes from the loss curves, in words, with the
advice that goes with it; the thresholds the rules use; the smoothed curve they read (`_Curve`)."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from cnnctl.evaluation.backbone_advice import Backbone, chance_advice, underfitting_advice

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
    backbone: Optional[Backbone],
    evidence: dict[str, Any],
    diverged: bool,
) -> list[str]:
    """Near the baseline, or underfitting on a small dataset trained from scratch: use a pretrained backbone
    (with the config lines). A run that has one is told what to change about its backbone instead."""
    if train_examples is not None:
        evidence["train_examples"] = int(train_examples)
    if backbone is not None:
        evidence["backbone"] = backbone.name
        return [underfitting_advice(backbone) if line == TRANSFER_ADVICE else line for line in advice]
    small = train_examples is not None and train_examples < SMALL_DATASET
    if verdict == "underfitting" and small and not diverged and TRANSFER_ADVICE not in advice:
        return [*advice, TRANSFER_ADVICE]
    return advice


CHANCE_TOLERANCE = 0.05  # recent losses within 5 % of ln K: the model still guesses uniformly among K classes


def _at_chance(
    train: _Curve,
    val: Optional[_Curve],
    num_classes: Optional[int],
    measured: Optional[tuple[float, str]],
    baseline: Optional[float],
    backbone: Optional[Backbone] = None,
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
        chance_advice(backbone),
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
