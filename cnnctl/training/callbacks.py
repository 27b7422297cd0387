"""Training, step 4b: the Keras callbacks of a run — NaN stop, epoch times, CSV history, best model, early stopping,
learning-rate plateaus, and the training state saved after every epoch.
"""
from __future__ import annotations

import math
import time
from typing import Any

from cnnctl.config.schema import Config
from cnnctl.errors import RunError
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, atomic_path
from cnnctl.training.checkpoint import (
    CALLBACK_STATE,
    METADATA,
    folder,
    plain_value,
    read_state,
)
from cnnctl.training.signals import signals_deferred


def monitored(name: str, has_validation: bool) -> str:
    """Without a validation split, `val_*` metrics do not exist: watch the training metric instead."""
    return name if has_validation or not name.startswith("val_") else name[len("val_"):]


def make_callbacks(run: Run, config: Config, has_validation: bool, verbose: int = 0) -> list:
    """The callbacks of one fit; with `verbose`, early stopping and learning-rate changes say when they act."""
    import keras

    train_cfg = config.train
    stopping = train_cfg.early_stopping
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),  # before CSVLogger, so history.csv gets an epoch_time_s column
        keras.callbacks.CSVLogger(str(run.file(contract.HISTORY)), append=True),
        BestModelCheckpoint(str(run.file(contract.MODEL)),
                            monitor=monitored(stopping.monitor if stopping else "val_loss", has_validation)),
    ]
    if stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitored(stopping.monitor, has_validation), patience=stopping.patience,
            min_delta=stopping.min_delta, restore_best_weights=stopping.restore_best_weights, verbose=int(bool(verbose))))
    plateau = train_cfg.reduce_lr_on_plateau
    if plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitored(plateau.monitor, has_validation), factor=plateau.factor,
            patience=plateau.patience, min_lr=plateau.min_lr, verbose=int(bool(verbose))))
    return callbacks


def EpochTimer():  # noqa: N802 - reads like the Keras callbacks beside it
    """Adds `epoch_time_s` (wall seconds of the epoch, validation included) to the epoch's logs."""
    import keras

    class _EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["epoch_time_s"] = round(time.perf_counter() - self._started, 3)

    return _EpochTimer()


def BestModelCheckpoint(filepath: str, monitor: str):  # noqa: N802 - reads like the Keras class it makes
    """ModelCheckpoint(save_best_only) whose writes are atomic, so a crash mid-save never leaves a truncated
    model.keras. Keras 3's ModelCheckpoint has no hook for this; its `_save_model` is the one place to change."""
    import keras

    class _AtomicBestCheckpoint(keras.callbacks.ModelCheckpoint):
        def _save_model(self, epoch, batch, logs):
            filepath = self._get_file_path(epoch, batch, logs)
            if self._should_save_model(epoch, batch, logs, filepath):
                save_model(self.model, filepath)

    return _AtomicBestCheckpoint(filepath, monitor=monitor, save_best_only=True, verbose=0)


def save_model(model: Any, path) -> None:
    with atomic_path(path) as temp:
        model.save(temp)


def TrainingBackup(run: Run, callbacks: list):  # noqa: N802 - reads like the Keras class it makes
    """keras.callbacks.BackupAndRestore for `run`, extended to save the state of `callbacks` too.

    Put it last in the callback list: its on_train_begin must restore after the others have reset themselves,
    and its on_epoch_end must save after they have updated.
    """
    import keras
    import numpy as np

    state_classes = {name: getattr(keras.callbacks, name) for name in CALLBACK_STATE}
    tracked = {name: next((cb for cb in callbacks if isinstance(cb, cls)), None)
               for name, cls in state_classes.items()}
    checkpoints = folder(run)

    class _TrainingBackup(keras.callbacks.BackupAndRestore):
        def __init__(self):
            # delete_checkpoint=False: a finished run keeps its state, so `--set train.epochs=N` can extend it.
            super().__init__(backup_dir=str(checkpoints), save_freq="epoch", delete_checkpoint=False)

        def _load_model(self):
            state = read_state(run)
            if state is None:
                return
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)  # its slots must exist to be loaded
            weights = checkpoints / state["weights"]
            try:
                self.model.load_weights(str(weights))
            except (ValueError, OSError, KeyError) as exc:
                raise RunError(f"{weights}: does not fit the model built from {run.file(contract.CONFIG)} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); the "
                               "checkpoint cannot be resumed") from None
            self.model._initial_epoch = state["epoch"]
            for name, values in state.get("callbacks", {}).items():
                callback = tracked.get(name)
                if callback is not None:
                    for key, value in values.items():
                        setattr(callback, key, value)
            stopping = tracked["EarlyStopping"]
            if stopping is not None and state.get("best_weights"):
                with np.load(checkpoints / state["best_weights"], allow_pickle=False) as archive:
                    stopping.best_weights = [archive[f"w{i}"] for i in range(len(archive.files))]

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                return  # TerminateOnNaN is stopping the run: keep the last finite state
            super().on_epoch_end(epoch, logs)

        def _save_model(self):
            # The writes of one epoch are one unit: a signal waits until the state is committed.
            with signals_deferred():
                self._commit(self._current_epoch)

        def _commit(self, epoch: int) -> None:
            previous = read_state(run) or {}
            weights = f"epoch-{epoch:04d}.weights.h5"
            with atomic_path(checkpoints / weights) as temp:
                self.model.save_weights(str(temp))
            state = {"epoch": epoch, "batch": 0, "weights": weights, "finished": False,
                     "callbacks": {name: {key: plain_value(getattr(callback, key, None))
                                          for key in CALLBACK_STATE[name]}
                                   for name, callback in tracked.items() if callback is not None}}
            stopping = tracked["EarlyStopping"]
            if stopping is not None and stopping.best_weights is not None:
                best = f"best-epoch-{stopping.best_epoch + 1:04d}.npz"
                if best != previous.get("best_weights") or not (checkpoints / best).exists():
                    with atomic_path(checkpoints / best) as temp:
                        np.savez(temp, **{f"w{i}": w for i, w in enumerate(stopping.best_weights)})
                state["best_weights"] = best
            Run(checkpoints).write_json(METADATA, state)
            keep = {METADATA, weights, state.get("best_weights")}
            for path in checkpoints.iterdir():
                if path.name not in keep and path.suffix in (".h5", ".npz") and not path.name.startswith("."):
                    path.unlink(missing_ok=True)

    return _TrainingBackup()
