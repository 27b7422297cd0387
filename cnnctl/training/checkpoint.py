"""Training: training state saved at the end of every epoch in `<run>/checkpoints/`, so `cnnctl train --resume` can
continue a run from its last completed epoch.

The state is the model and optimizer weights (learning rate and step count included), the number of completed
epochs, and the state of the callbacks that carry one from epoch to epoch: EarlyStopping's patience count and
best weights, ReduceLROnPlateau's wait and cooldown, and the best-model checkpoint's best value. The
TrainingBackup callback (cnnctl/training/backup.py) writes it; an epoch whose loss is NaN or infinite is not
saved, so a diverged run keeps its last finite state.

Files, all written to a temporary name and renamed:
    checkpoints/training_metadata.json   {"epoch": completed epochs, "weights": ..., "callbacks": {...}}
    checkpoints/epoch-0003.weights.h5    model + optimizer weights after 3 completed epochs
    checkpoints/best-epoch-0002.npz      EarlyStopping's best weights (restore_best_weights)
With train.fine_tune, the state of the second phase also holds "fine_tune_from" (the epoch it began after) and
its weights are named epoch-0005-fine-tune.weights.h5: they carry the fine-tuning optimizer's slots. With
train.ema, "averaged_in_model" says the weights file's model weights are the moving average and the optimizer's
average slots the trained weights (so they are between two epochs; see cnnctl/training/averaging.py).
training_metadata.json is renamed into place last and names the other files, so a crash at any moment
leaves either the previous epoch's state or the new one, never a mixture. Stale files are deleted after.
"""

from __future__ import annotations

import csv
import json
import numbers
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Optional

from cnnctl.errors import RunError, shown_path
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runs.history import parse_number

METADATA = "training_metadata.json"  # Keras BackupAndRestore's name and keys ("epoch", "batch"), plus ours


# Callback attributes that carry state from one epoch to the next, by the name they are saved under: the Keras
# class that holds them; "ModelCheckpoint" is cnnctl's BestModelCheckpoint (the name older runs saved it under).
# Everything else (monitor, patience, ...) comes from the config on resume.
CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": ("best",),
}


def folder(run: Run) -> Path:
    return run.file(contract.CHECKPOINTS)


def read_state(run: Run) -> Optional[dict[str, Any]]:
    """The last committed training state, or None when the run never finished an epoch under cnnctl's care."""
    path = folder(run) / METADATA
    if not path.is_file() and not path.is_symlink() and not path.exists():
        return None
    readable_file(path)  # a named pipe or a link to /dev/zero: one line naming it, never a wait
    state = Run(folder(run)).read_json(METADATA)
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0 or not state.get("weights"):
        raise RunError(f"{path}: not a cnnctl training state (no epoch and weights); it cannot be resumed")
    for key in ("weights", "best_weights"):
        if key in state and not (key == "best_weights" and state[key] is None):
            _check_file_name(path, key, state[key])
    callbacks = state.get("callbacks", {})
    if not isinstance(callbacks, dict) or not all(isinstance(values, dict) for values in callbacks.values()):
        raise RunError(
            f"{path}: `callbacks` must map each callback's name to an object of its state values; "
            f"found {json.dumps(callbacks)[:80]}; the checkpoint cannot be resumed"
        )
    for name, values in callbacks.items():
        for key in CALLBACK_STATE.get(name, ()):
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise RunError(
                    f"{path}: callbacks.{name}.{key} must be a number, not {json.dumps(value)[:40]}; "
                    "the checkpoint cannot be resumed"
                )
    phase_start = state.get("fine_tune_from")
    if phase_start is not None and (
        not isinstance(phase_start, int) or isinstance(phase_start, bool) or not 0 <= phase_start <= epoch
    ):
        raise RunError(
            f"{path}: `fine_tune_from` must be the epoch fine-tuning began after (0..{epoch}), not "
            f"{json.dumps(phase_start)[:40]}; the checkpoint cannot be resumed"
        )
    for key in ("finished", "averaged_in_model"):
        if not isinstance(state.get(key, False), bool):
            raise RunError(
                f"{path}: `{key}` must be true or false, not {json.dumps(state[key])[:40]}; "
                "the checkpoint cannot be resumed"
            )
    return state


def _check_file_name(path: Path, key: str, name: Any) -> None:
    # The state names files beside it; anything else (an absolute path, `..`, a sub-folder) would make a resume
    # read, and later delete, files outside the run folder.
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or PurePosixPath(name).name != name
        or PureWindowsPath(name).name != name
        or "\0" in name
    ):
        raise RunError(
            f"{path}: `{key}` must be the name of a file in {path.parent.name}/, not "
            f"{json.dumps(name)[:80]}; the checkpoint cannot be resumed"
        )


def fine_tune_start(state: Optional[dict[str, Any]]) -> Optional[int]:
    """The epoch the fine-tuning phase began after, when the state is in that phase; else None."""
    return None if state is None else state.get("fine_tune_from")


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


def kept_history(path: Path, epochs: int) -> Optional[str]:
    """What history.csv keeps when a run resumes after `epochs` epochs (None: there is no file).

    CSVLogger appends a row before the epoch's state is committed, and a kill can tear the last line: rows past
    the checkpoint, a torn last line (or a torn header, the first write) and repeated epochs are dropped so the
    resumed run appends each epoch once. A file from an older cnnctl, which counted epochs from 0, is renumbered
    from 1 (as the rows appended next are).

    Raises:
        RunError: damage no crash leaves — a header without `epoch` first and a `loss` column, or a complete row
            with another number of values, an epoch that is not a whole number, or a value that is not a number.
            A resumed run would otherwise drop those rows without a word.
    """
    if not path.exists():
        return None
    lines = readable_file(path).read_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
    if not lines or not lines[0].endswith("\n"):
        return ""  # nothing, or a header torn by a crash during the first epoch's write
    header = next(csv.reader([lines[0]]), [])
    if not header or header[0].strip() != "epoch" or "loss" not in [name.strip() for name in header]:
        raise RunError(
            f"{path}: the header is not Keras' CSVLogger's (`epoch` first, a `loss` column): "
            f"{shown_path(lines[0].strip(), limit=200)}; the file was edited or is not cnnctl's"
        )
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            continue  # torn by a crash mid-write: only the last line can be
        fields = next(csv.reader([line]), [])
        if not fields:
            continue
        where = f"{path}, line {line_number}"
        if len(fields) != len(header):
            raise RunError(f"{where}: {len(fields)} values for {len(header)} columns; the file was edited")
        if not fields[0].strip().isdigit():
            raise RunError(
                f"{where}: epoch {shown_path(fields[0], limit=40)!r} is not a whole number; the file was edited"
            )
        for name, cell in zip(header[1:], fields[1:]):
            parse_number(cell, f"{where}, column {name.strip()}")
        rows.append((int(fields[0]), line.split(",", 1)[1]))
    shift = 1 if rows and rows[0][0] == 0 else 0
    kept, seen = [lines[0]], set()
    for number, rest in rows:
        epoch = number + shift
        if 1 <= epoch <= epochs and epoch not in seen:
            seen.add(epoch)
            kept.append(f"{epoch},{rest}")
    return "".join(kept)


def plain_value(value: Any) -> Any:
    """numpy scalars → Python numbers, so the state is plain JSON (infinities as JSON's Infinity)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
