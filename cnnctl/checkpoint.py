"""Training state saved at the end of every epoch in `<run>/checkpoints/`, so `cnnctl train --resume` can
continue a run from its last completed epoch.

Keras' BackupAndRestore saves the model and optimizer weights (learning rate and step count included) and the
epoch number, but not the state of the other callbacks: EarlyStopping would forget its patience count and
best weights, ReduceLROnPlateau its wait and cooldown, and the best-model checkpoint its best value. Those
are saved here beside it, in the same commit.

Files, all written to a temporary name and renamed:
    checkpoints/training_metadata.json   {"epoch": completed epochs, "weights": ..., "callbacks": {...}}
    checkpoints/epoch-0003.weights.h5    model + optimizer weights after 3 completed epochs
    checkpoints/best-epoch-0002.npz      EarlyStopping's best weights (restore_best_weights)
training_metadata.json is renamed into place last and names the other files, so a crash at any moment
leaves either the previous epoch's state or the new one, never a mixture. Stale files are deleted after.
"""

from __future__ import annotations

import csv
import math
import numbers
from pathlib import Path
from typing import Any, Optional

from cnnctl import faults, runs
from cnnctl.errors import RunError
from cnnctl.runs import Run

METADATA = "training_metadata.json"  # BackupAndRestore's own name, extended with our keys

# Callback attributes that carry state from one epoch to the next, by the Keras class that holds them.
# Everything else (monitor, patience, ...) comes from the config on resume.
CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": ("best",),
}


def folder(run: Run) -> Path:
    return run.file(runs.CHECKPOINTS)


def read_state(run: Run) -> Optional[dict[str, Any]]:
    """The last committed training state, or None when the run never finished an epoch under cnnctl's care."""
    path = folder(run) / METADATA
    if not path.is_file():
        return None
    state = Run(folder(run)).read_json(METADATA)
    if not isinstance(state.get("epoch"), int) or not state.get("weights"):
        raise RunError(f"{path}: not a cnnctl training state (no epoch and weights); it cannot be resumed")
    return state


def completed_epochs(run: Run) -> int:
    state = read_state(run)
    return state["epoch"] if state else 0


def mark_finished(run: Run, finished: bool = True) -> None:
    """Recorded once fit() has returned and model.keras holds the final model: a resume then only evaluates."""
    state = read_state(run)
    if state is not None:
        state["finished"] = finished
        Run(folder(run)).write_json(METADATA, state)


def reopen(run: Run) -> None:
    """Training a finished run for more epochs: early stopping starts counting its patience afresh, else a run
    that stopped early would stop again after one epoch."""
    state = read_state(run)
    if state is None:
        return
    state["finished"] = False
    stopping = state.get("callbacks", {}).get("EarlyStopping")
    if stopping:
        stopping.update(wait=0, stopped_epoch=0)
    Run(folder(run)).write_json(METADATA, state)


def truncate_history(path: Path, epochs: int) -> int:
    """Keep the header and one complete row for each of the first `epochs` epochs of history.csv.

    CSVLogger appends a row before the epoch's state is committed, and a kill can tear the last line: rows past
    the checkpoint, torn rows and repeated epochs are dropped so the resumed run appends each epoch once.
    Returns the number of rows kept.
    """
    if not path.exists():
        return 0
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
    kept: list[str] = []
    seen: set[int] = set()
    if lines and lines[0].endswith("\n"):
        header = next(csv.reader([lines[0]]))
        if header and header[0] == "epoch":
            kept.append(lines[0])
            for line in lines[1:]:
                if not line.endswith("\n"):
                    continue  # torn by a crash mid-write
                fields = next(csv.reader([line]), [])
                try:
                    epoch = int(fields[0])
                except (ValueError, IndexError):
                    continue
                if len(fields) == len(header) and 0 <= epoch < epochs and epoch not in seen:
                    seen.add(epoch)
                    kept.append(line)
    runs.write_text_atomic(path, "".join(kept))
    return len(kept) - 1 if kept else 0


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
                raise RunError(f"{weights}: does not fit the model built from {run.file(runs.CONFIG)} "
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
            with faults.signals_deferred():
                self._commit(self._current_epoch)

        def _commit(self, epoch: int) -> None:
            previous = read_state(run) or {}
            weights = f"epoch-{epoch:04d}.weights.h5"
            with runs.atomic_path(checkpoints / weights) as temp:
                self.model.save_weights(str(temp))
            state = {"epoch": epoch, "batch": 0, "weights": weights, "finished": False,
                     "callbacks": {name: {key: _plain(getattr(callback, key, None))
                                          for key in CALLBACK_STATE[name]}
                                   for name, callback in tracked.items() if callback is not None}}
            stopping = tracked["EarlyStopping"]
            if stopping is not None and stopping.best_weights is not None:
                best = f"best-epoch-{stopping.best_epoch + 1:04d}.npz"
                if best != previous.get("best_weights") or not (checkpoints / best).exists():
                    with runs.atomic_path(checkpoints / best) as temp:
                        np.savez(temp, **{f"w{i}": w for i, w in enumerate(stopping.best_weights)})
                state["best_weights"] = best
            Run(checkpoints).write_json(METADATA, state)
            keep = {METADATA, weights, state.get("best_weights")}
            for path in checkpoints.iterdir():
                if path.name not in keep and path.suffix in (".h5", ".npz") and not path.name.startswith("."):
                    path.unlink(missing_ok=True)

    return _TrainingBackup()


def _plain(value: Any) -> Any:
    """numpy scalars → Python numbers, so the state is plain JSON (infinities as JSON's Infinity)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
