"""Training: TrainingBackup, the callback that saves a run's training state after every epoch and restores it on
resume (what the state holds, and how it is committed, is in cnnctl/training/checkpoint.py)."""

from __future__ import annotations

import math
import zipfile
from typing import Any, Optional

import keras
import numpy as np

from cnnctl.data.limits import check_npz
from cnnctl.errors import DataError, RunError, first_line
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runs.model_file import check_weights_file
from cnnctl.runtime import memory_bytes
from cnnctl.training.averaging import averaged_weights
from cnnctl.training.callbacks import BestModelCheckpoint
from cnnctl.training.checkpoint import CALLBACK_STATE, METADATA, folder, plain_value, read_state
from cnnctl.training.signals import signals_deferred

# The callbacks whose state TrainingBackup keeps, under the names in checkpoint.CALLBACK_STATE. BestModelCheckpoint
# is saved as "ModelCheckpoint", the name its state had when it was a ModelCheckpoint subclass: older runs resume.
STATEFUL_CALLBACKS = {
    "EarlyStopping": keras.callbacks.EarlyStopping,
    "ReduceLROnPlateau": keras.callbacks.ReduceLROnPlateau,
    "ModelCheckpoint": BestModelCheckpoint,
}


class TrainingBackup(keras.callbacks.Callback):
    """Saves the training state of `run` after every completed epoch, and restores it when the run is resumed.

    Ours rather than `keras.callbacks.BackupAndRestore`, which saves the model and optimizer weights and the
    epoch count but (1) writes them in place, so a kill mid-save leaves a torn file; (2) saves a diverged (NaN)
    state just the same; (3) knows nothing of the other callbacks, so a resumed EarlyStopping would forget its
    patience count and best weights, ReduceLROnPlateau its wait and cooldown, BestModelCheckpoint its best value.
    The state's files and their commit order are described in cnnctl/training/checkpoint.py; it is written in the
    format BackupAndRestore subclasses of older cnnctl versions wrote, so their runs resume too.

    Use: the weights are loaded before fit and fit is told where the epoch count stands; the other callbacks'
    state is restored in `on_train_begin`. Put it last in the list: it must restore after the others have reset
    themselves in their own `on_train_begin`, and save after they have updated in their `on_epoch_end`.

    ```python
    backup = TrainingBackup(run, callbacks)
    model.fit(x, y, epochs=10, initial_epoch=backup.restore(model), callbacks=callbacks + [backup])
    ```

    Args:
        run: the run whose `checkpoints/` folder holds the state.
        callbacks: the fit's other callbacks; the state of the EarlyStopping, ReduceLROnPlateau and
            BestModelCheckpoint among them is saved and restored.
        fine_tune_from: in the fine-tuning phase, the epoch it began after (saved in the state, so a resume
            knows to unfreeze before it loads the weights); None in the first phase.
    """

    def __init__(self, run: Run, callbacks: list, fine_tune_from: Optional[int] = None):
        super().__init__()
        self.run = run
        self.fine_tune_from = fine_tune_from  # the epoch the fine-tuning phase began after; None in phase 1
        self.checkpoints = folder(run)
        self.tracked = {
            name: next((callback for callback in callbacks if isinstance(callback, cls)), None)
            for name, cls in STATEFUL_CALLBACKS.items()
        }
        self.averaged = averaged_weights(callbacks)  # train.ema: the average swapped in between epochs
        self.restored: Optional[dict[str, Any]] = None
        self.best_weights: Optional[list] = None

    def restore(self, model: Any) -> int:
        """Load the last committed model and optimizer weights into `model` (built and compiled); returns the
        number of epochs they completed, fit's `initial_epoch` (0 when the run has no state yet)."""
        self.restored = state = read_state(self.run)
        if state is None:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its slots must exist to be loaded
        weights = check_weights_file(readable_file(self.checkpoints / state["weights"], max_bytes=memory_bytes()))
        try:
            model.load_weights(str(weights))
        except (ValueError, OSError, KeyError) as exc:
            raise RunError(
                f"{weights}: does not fit the model built from {self.run.file(contract.CONFIG)} "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); the "
                "checkpoint cannot be resumed"
            ) from None
        self.best_weights = self.read_best_weights(state.get("best_weights"), model)
        if self.averaged is not None:
            self.averaged.resumed(bool(state.get("averaged_in_model")))
        return state["epoch"]

    def read_best_weights(self, name: Optional[str], model: Any) -> Optional[list]:
        """EarlyStopping's best weights, read now so that a damaged file stops a resume before it begins."""
        if not name:
            return None
        path = readable_file(self.checkpoints / name, max_bytes=memory_bytes())
        try:
            check_npz(path, str(path))  # an array header claiming 40 GiB is refused before numpy allocates it
            with np.load(path, allow_pickle=False) as archive:
                arrays = [archive[f"w{i}"] for i in range(len(archive.files))]
        except DataError as exc:
            raise RunError(f"{exc}; the checkpoint cannot be resumed") from None
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise RunError(
                f"{path}: not the early-stopping weights cnnctl saves ({first_line(exc)}); the "
                "checkpoint cannot be resumed"
            ) from None
        shapes = [tuple(weight.shape) for weight in model.weights]
        if [array.shape for array in arrays] != shapes:
            raise RunError(
                f"{path}: its {len(arrays)} arrays do not fit the model built from "
                f"{self.run.file(contract.CONFIG)} ({len(shapes)} weights); the checkpoint cannot "
                "be resumed"
            )
        return arrays

    def on_train_begin(self, logs=None):
        state = self.restored
        if state is None:
            return
        for name, values in state.get("callbacks", {}).items():
            callback = self.tracked.get(name)
            if callback is not None:  # only the attributes that carry state: the rest come from the config
                for key in CALLBACK_STATE.get(name, ()):
                    if key in values:
                        setattr(callback, key, values[key])
        stopping = self.tracked["EarlyStopping"]
        if stopping is not None and self.best_weights is not None:
            stopping.best_weights = self.best_weights

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return  # TerminateOnNaN is stopping the run: keep the last finite state
        with signals_deferred():  # the writes of one epoch are one unit: a signal waits until they are committed
            self.commit(epoch + 1)
        if self.averaged is not None and (self.model.stop_training or epoch + 1 >= self.params.get("epochs", 0)):
            self.averaged.settle()  # the last epoch of this fit: it must end with the average in the model

    def commit(self, epochs: int) -> None:
        """Write the state after `epochs` completed epochs: weights first, training_metadata.json last."""
        previous = read_state(self.run) or {}
        # Fine-tuning's weights carry another optimizer (slots for the unfrozen layers): another name, so the
        # first phase's file of the same epoch is kept until the new state is committed.
        weights = f"epoch-{epochs:04d}{'' if self.fine_tune_from is None else '-fine-tune'}.weights.h5"
        with atomic_path(self.checkpoints / weights) as temp:
            self.model.save_weights(str(temp))
        state = {
            "epoch": epochs,
            "batch": 0,
            "weights": weights,
            "finished": False,
            "callbacks": {
                name: {key: plain_value(getattr(callback, key, None)) for key in CALLBACK_STATE[name]}
                for name, callback in self.tracked.items()
                if callback is not None
            },
        }
        stopping = self.tracked["EarlyStopping"]
        if stopping is not None and stopping.best_weights is not None:
            best = f"best-epoch-{stopping.best_epoch + 1:04d}.npz"
            if best != previous.get("best_weights") or not (self.checkpoints / best).exists():
                with atomic_path(self.checkpoints / best) as temp:
                    np.savez(temp, **{f"w{i}": w for i, w in enumerate(stopping.best_weights)})
            state["best_weights"] = best
        if self.fine_tune_from is not None:
            state["fine_tune_from"] = self.fine_tune_from
        if self.averaged is not None:
            state["averaged_in_model"] = self.averaged.average_in_model
        Run(self.checkpoints).write_json(METADATA, state)
        # environment.json says how far the run got even when its process is killed before it can say more
        # (kill -9, a power cut, the --processes launcher killed).
        self.run.update_json(contract.ENVIRONMENT, epochs_run=epochs)
        keep = {METADATA, weights, state.get("best_weights")}
        for path in self.checkpoints.iterdir():
            if path.name not in keep and path.suffix in (".h5", ".npz") and not path.name.startswith("."):
                path.unlink(missing_ok=True)
