"""Training: the Keras callbacks of a run — NaN stop, epoch times, CSV history, best model, early stopping,
learning-rate plateaus, and the training state saved after every epoch.

cnnctl's own callbacks, and its subclasses of Keras' ones, each exist for a reason given in the docstring. They use
only public Keras API (the `on_*` hooks and public attributes, `fit(initial_epoch=...)`, `load_weights`/
`save_weights`), so no Keras release can break them by renaming a private method.
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from typing import Any, Optional

import keras
import numpy as np

from cnnctl.config.schema import Config
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run
from cnnctl.training.averaging import AveragedWeights


def monitored(name: str, has_validation: bool) -> str:
    """Without a validation split, `val_*` metrics do not exist: watch the training metric instead."""
    return name if has_validation or not name.startswith("val_") else name[len("val_") :]


def make_callbacks(
    run: Run, config: Config, has_validation: bool, verbose: int = 0, phase: Optional[int] = None
) -> list:
    """The callbacks of one fit; with `verbose`, early stopping and learning-rate changes say when they act.
    `phase` (1 or 2, for a run with train.fine_tune) is written in history.csv's `phase` column; each phase has
    callbacks of its own, so early stopping and plateaus count afresh. The fit adds a TrainingBackup of these
    after them, and with train.ema they begin with AveragedWeights."""
    train_cfg = config.train
    stopping = train_cfg.early_stopping
    callbacks = [
        # first: every callback after it sees the moving average in the model at the end of an epoch
        *([AveragedWeights()] if train_cfg.ema else []),
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),  # before HistoryLogger, so history.csv gets an epoch_time_s column
        LearningRateLog(announce=bool(verbose)),  # and a learning_rate column
        *([PhaseLog(phase)] if phase else []),  # and a phase column
        HistoryLogger(str(run.file(contract.HISTORY)), append=True),
        BestModelCheckpoint(
            run.file(contract.MODEL), monitor=monitored(stopping.monitor if stopping else "val_loss", has_validation)
        ),
    ]
    if train_cfg.tensorboard:
        # After EpochTimer, so epoch_time_s is a scalar too; before ReduceLROnPlateau, so the learning rate logged
        # for an epoch (Keras adds `learning_rate` to its epoch scalars) is the one the epoch trained with.
        callbacks.append(
            EpochBoard(
                log_dir=str(run.file(contract.TENSORBOARD)),
                histogram_freq=train_cfg.tensorboard.histogram_freq,
                write_graph=True,
                update_freq="epoch",
            )
        )
    if stopping:
        callbacks.append(
            SaidEarlyStopping(
                monitor=monitored(stopping.monitor, has_validation),
                patience=stopping.patience,
                min_delta=stopping.min_delta,
                restore_best_weights=stopping.restore_best_weights,
                announce=bool(verbose),
                first_of_two_phases=phase == 1,
            )
        )
    plateau = train_cfg.reduce_lr_on_plateau
    if plateau:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitored(plateau.monitor, has_validation),
                factor=plateau.factor,
                # LearningRateLog says when the rate changed, with the number as the config would write it
                patience=plateau.patience,
                min_lr=plateau.min_lr,
                verbose=0,
            )
        )
    if verbose == 1:
        callbacks.append(Progress())
    return callbacks


class SaidEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping, saying in one line what it did and what comes next.

    Keras prints "Epoch 7: early stopping" and, at the end of every fit, "Restoring model weights from the end of
    the best epoch": with train.fine_tune the first phase's stop read as the end of training (which went on) and
    the restoring line came twice. Here the stop names the monitor and its patience, and the first of two phases
    says that fine-tuning follows, from which epoch's weights."""

    def __init__(self, *args: Any, announce: bool = False, first_of_two_phases: bool = False, **kwargs: Any):
        super().__init__(*args, verbose=0, **kwargs)
        self.announce, self.first_of_two_phases = announce, first_of_two_phases

    def on_train_end(self, logs=None):
        super().on_train_end(logs)  # restores the best weights, silently
        if not self.announce or self.stopped_epoch <= 0:
            return
        stopped = self.stopped_epoch + 1
        kept = self.best_epoch + 1 if self.restore_best_weights and self.best_weights is not None else stopped
        why = f"{self.monitor} did not improve for {self.patience} epoch{'s' if self.patience != 1 else ''}"
        if self.first_of_two_phases:
            print(
                f"Epoch {stopped}: the first phase stops early ({why}); fine-tuning starts from epoch {kept}'s weights"
            )
        else:
            print(f"Epoch {stopped}: early stopping ({why}); the model keeps epoch {kept}'s weights")


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall seconds of the epoch, validation included) to the epoch's logs.

    Ours because Keras logs no epoch time. Put it before CSVLogger, which writes the logs it is given.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = round(time.perf_counter() - self.epoch_started, 3)


def readable_rate(value: Any) -> float:
    """A learning rate as the float32 the optimizer holds, written with the fewest digits that give it back:
    0.001, not 0.0010000000474974513."""
    return float(str(np.float32(value)))


class LearningRateLog(keras.callbacks.Callback):
    """Adds `learning_rate` (the rate the epoch trained with) to the epoch's logs, and with `announce` prints a
    line when it changed since the epoch before (ReduceLROnPlateau's own message prints 20 digits).

    Ours because Keras logs the learning rate only when a callback changes it. Put it before HistoryLogger.
    """

    def __init__(self, announce: bool = False):
        super().__init__()
        self.announce = announce
        self.previous: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None):
        self.rate = readable_rate(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self.announce and self.previous is not None and self.rate != self.previous:
            print(f"Epoch {epoch + 1}: learning rate {self.previous:g} → {self.rate:g}", flush=True)
        self.previous = self.rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.rate


class PhaseLog(keras.callbacks.Callback):
    """Adds `phase` (1: the frozen first phase, 2: fine-tuning) to the epoch's logs. Put it before HistoryLogger."""

    def __init__(self, phase: int):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = self.phase


class HistoryLogger(keras.callbacks.CSVLogger):
    """Keras' CSVLogger, numbering epochs from 1 as the console, the figures and the report do, and keeping the
    columns of the history.csv it appends to (a run resumed by an older cnnctl's file gets no new column, so
    every row has as many fields as the header)."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        header = _csv_header(self.filename) if self.append else None
        if header and header[0] == "epoch":
            self.keys = header[1:]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def _csv_header(path: str) -> Optional[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


class EpochBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, its epoch scalars and histograms at steps 1, 2, ... (Keras writes the 0-based
    epoch index), so a step in TensorBoard is the epoch history.csv, the console and the figures call it."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class Progress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, which with steps_per_execution > 1 counts past the end of the epoch ("48/41": the
    last chunk of steps is reported as if it were whole); the step shown is capped at the epoch's steps."""

    def on_train_batch_end(self, batch, logs=None):
        if self.target:
            batch = min(batch, self.target - 1)
        super().on_train_batch_end(batch, logs)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the whole model to `filepath` at the end of every epoch whose `monitor` value is the best so far.

    Ours rather than `keras.callbacks.ModelCheckpoint(save_best_only=True)` because that one writes the file in
    place, so a crash mid-save leaves a truncated model.keras, and it offers no public way to change how the file
    is written. Here the model is written to a temporary file and renamed over `filepath`.

    Args:
        filepath: where the model is saved; it must end in `.keras`.
        monitor: the logged value to watch, e.g. `"val_loss"` or `"val_accuracy"`. Whether higher or lower is
            better is decided by Keras' own `mode="auto"` rule (see `higher_is_better`), so the best model is
            the one early stopping on the same value calls best. Defaults to `"val_loss"`.

    `best` is the best value seen (None before the first epoch); the training state saves and restores it.
    """

    def __init__(self, filepath, monitor: str = "val_loss"):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.best: Optional[float] = None
        self.higher_is_better: Optional[bool] = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:  # as Keras' ModelCheckpoint does: say so, and keep the latest model
            warnings.warn(
                f"Can save best model only with {self.monitor} available. Available values are: "
                f"{', '.join(logs or {})}",
                stacklevel=2,
            )
            save_model(self.model, self.filepath)
            return
        current = float(current)
        if not math.isfinite(current):
            return  # a diverged model is never the best one
        if self.higher_is_better is None:  # decided once the model's metrics exist, as Keras does
            self.higher_is_better = higher_is_better(self.model, self.monitor)
        # A restored infinite best (the start value of older Keras' ModelCheckpoint) counts as no best yet.
        if (
            self.best is None
            or not math.isfinite(self.best)
            or (current > self.best if self.higher_is_better else current < self.best)
        ):
            self.best = current
            save_model(self.model, self.filepath)


def higher_is_better(model: Any, monitor: str) -> bool:
    """Whether a larger `monitor` value is an improvement, by the rule Keras' callbacks follow in `mode="auto"`:
    `loss` goes down, and a metric goes the way Keras declares for it (accuracy, AUC, precision, recall, F1 up;
    errors and crossentropies down). An unknown name raises Keras' own ValueError.

    Keras keeps each metric's direction in a private attribute; rather than read it, a throwaway EarlyStopping
    applies the rule through its public hooks and its public `monitor_op` is asked which way it compares.
    """
    probe = keras.callbacks.EarlyStopping(monitor=monitor)
    probe.set_model(model)
    probe.on_train_begin()
    probe.on_epoch_end(0, {monitor: 0.0})
    return bool(probe.monitor_op(1.0, 0.0))


def save_model(model: Any, path) -> None:
    with atomic_path(path) as temp:
        model.save(temp)
