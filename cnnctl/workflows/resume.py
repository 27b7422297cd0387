"""Workflows: `cnnctl train --resume RUN`: continue a run in its own folder, from its last completed epoch, with its own
config.yaml, and finish it with the same files a straight run writes.

A completed run is left alone unless `--set train.epochs=N` asks for more epochs than it was trained for.
Only settings that the saved training state does not depend on may change: the epoch count and the batch
size (a smaller batch is the way on after running out of memory).

Extending a completed (or pruned) run never loses it. Everything that can be checked is checked before a file
is written: the new config, the data and model (prepare), the checkpoint's state and its weights loaded into the
rebuilt model. What can only fail once training runs (a batch too big for memory fails at the first step) is
covered by keeping the files the extension rewrites (config.yaml, environment.json, data.json, history.csv,
model.keras, the checkpoint's metadata) in memory: until the first new epoch is committed, any failure puts
them back byte for byte and deletes what the extension made, so the run is again the completed run it was.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from cnnctl.config.loading import load_config
from cnnctl.errors import CnnctlError, ConfigError, Interrupted, RunError
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import FolderSnapshot, Run, resolve_run
from cnnctl.runs.history import read_history_csv
from cnnctl.runs.status import now
from cnnctl.training import checkpoint, distribute
from cnnctl.training.backup import TrainingBackup
from cnnctl.training.distribute import chief_only_folder
from cnnctl.training.guard import NAN_ERROR, guarded, resume_command
from cnnctl.training.prepare import prepare
from cnnctl.workflows.train import Announce, TrainResult, complete_run

RESUMABLE_SETTINGS = ("train.epochs", "train.batch_size", "train.fine_tune.epochs")


def resume_run(
    spec: Union[str, Path, Run],
    runs_dir: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    *,
    verbose: int = 0,
    announce: Optional[Announce] = None,
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Continue the run `spec` (a folder, a run id in `runs_dir`, or `last`) and finish it. When there is nothing
    to do (a completed run, no more epochs asked for) the result has no model and its `note` says so.
    `extra_callbacks` are added to the fit (see `fit`)."""
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key not in RESUMABLE_SETTINGS:
            raise ConfigError(
                f"--set {override}: a resumed run keeps its config; only "
                f"{', '.join(RESUMABLE_SETTINGS[:-1])} and {RESUMABLE_SETTINGS[-1]} can change "
                "(e.g. --set train.epochs=20)"
            )
    distribute.join_processes()  # before the chief is known: it alone resumes the run's own folder
    run = spec if isinstance(spec, Run) else resolve_run(str(spec), runs_dir)
    with chief_only_folder() as scratch:  # the job's other processes resume a copy, removed afterwards
        if scratch is not None:
            run = Run(Path(shutil.copytree(run.path, Path(scratch) / run.path.name)))
        return _resume(run, overrides, verbose, announce, extra_callbacks)


def _resume(
    run: Run,
    overrides: Sequence[str],
    verbose: int,
    announce: Optional[Announce],
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    config_path = run.file(contract.CONFIG)
    saved = load_config(config_path)
    config = load_config(config_path, overrides)
    environment = run.read_json(contract.ENVIRONMENT)
    status = environment.get("status")
    extend = config.train.total_epochs > saved.train.total_epochs
    # A pruned tuning trial (cnnctl tune stopped it early) is finished as far as its search is concerned.
    if status in ("completed", "pruned") and not extend:
        longer = (
            f"train.fine_tune.epochs={saved.train.fine_tune.epochs * 2}"
            if saved.train.fine_tune
            else f"train.epochs={saved.train.epochs * 2}"
        )
        note = (
            f"{run.path}: already {status} ({environment.get('epochs_run', '?')} epochs of "
            f"{saved.train.total_epochs}); nothing to do. To train it longer: "
            f"{resume_command(run)} --set {longer}"
        )
        history = read_history_csv(run.file(contract.HISTORY)) if run.has(contract.HISTORY) else {}
        metrics = run.read_json(contract.METRICS) if run.has(contract.METRICS) else {}
        return TrainResult(run, None, history, metrics, note=note)
    if status == "failed" and environment.get("error") == NAN_ERROR:
        raise RunError(
            f"{run.path}: cannot resume: its loss became NaN or infinite and would again; train "
            f"anew with a lower learning rate: cnnctl train {config_path} "
            f"--set train.optimizer.learning_rate={saved.train.optimizer.learning_rate / 10:g}"
        )
    state = checkpoint.read_state(run)
    if state is None:
        raise RunError(
            f"{run.path}: no training state in {contract.CHECKPOINTS}/ to resume from (the run stopped "
            f"before its first epoch ended, or an older cnnctl made it); train it anew: "
            f"cnnctl train {config_path}"
        )
    done = state["epoch"]
    if done > saved.train.total_epochs:  # config.yaml records every extension: no state gets past it
        raise RunError(
            f"{checkpoint.folder(run) / checkpoint.METADATA}: epoch {done} is past the {saved.train.total_epochs} "
            f"epochs of {config_path}; the checkpoint was edited or is another run's, and cannot be resumed"
        )
    phase_start = checkpoint.fine_tune_start(state)
    fine_tuning = phase_start is not None
    if fine_tuning and config.train.epochs != saved.train.epochs:
        raise ConfigError(
            f"--set train.epochs={config.train.epochs}: {run.path} is fine-tuning; its first phase "
            f"ended after epoch {phase_start}; extend the fine-tuning with "
            f"--set train.fine_tune.epochs=N"
        )
    last = config.train.total_epochs if fine_tuning else config.train.epochs
    if last < done:
        key = "train.fine_tune.epochs" if fine_tuning else "train.epochs"
        value = config.train.fine_tune.epochs if fine_tuning else config.train.epochs
        before = phase_start or 0  # the epochs --set no longer counts
        raise ConfigError(
            f"--set {key}={value}: {run.path} has already trained {done} epochs"
            f"{f' ({done - before} of them fine-tuning)' if fine_tuning else ''}; give more than "
            f"{done - before} to extend it"
        )
    # What the resume reads later (data.json at evaluation, history.csv after the last epoch) is read now: a damaged
    # file is refused while the folder is as it was, not after an epoch has been trained and files rewritten.
    run.read_json(contract.DATA)
    history = checkpoint.kept_history(run.file(contract.HISTORY), done)
    # The checkpoint holds every weight: the run it started from (model.from_run) and the backbone's weights
    # file or download are not needed again, and may be gone.
    prepared = prepare(config, str(config_path), starting_weights=False)
    if fine_tuning:  # the fine-tuning phase's weights load only into the unfrozen, recompiled model
        prepared.enter_fine_tune()
    # The checkpoint must load into the model the config builds (and its early-stopping weights be readable)
    # before anything is written: a run that cannot be resumed is refused as it is.
    with prepared.placement.scope():
        TrainingBackup(run, []).restore(prepared.model)
    finished_run = status in ("completed", "pruned")
    # Extending a finished run is all or nothing: until its first new epoch is committed, a failure (out of
    # memory at the first step of a bigger batch, Ctrl-C, a full disk) puts back every file as it was.
    snapshot = FolderSnapshot.take(run, EXTENSION_TOUCHES) if finished_run else None
    locked = False
    try:
        with guarded(run):
            locked = True
            if config != saved:
                write_text_atomic(config_path, config.to_yaml())
            if extend and state.get("finished"):
                checkpoint.reopen(run)
            train = extend or not state.get("finished")
            if history is not None:  # one row per epoch up to the checkpoint (see kept_history)
                write_text_atomic(run.file(contract.HISTORY), history)
            _mark_resumed(run, environment, done)
            if announce is not None:
                phase = " (fine-tuning)" if fine_tuning else ""
                announce(
                    run,
                    prepared,
                    f"resuming {run.path} after epoch {done} of {config.train.total_epochs}{phase}"
                    if train
                    else f"resuming {run.path}: training had finished; evaluating the saved model",
                )
            return complete_run(run, prepared, verbose, train=train, extra_callbacks=extra_callbacks)
    except BaseException as exc:
        if snapshot is None or not locked or (_committed_epochs(run) or 0) > done:
            raise
        try:
            snapshot.restore(in_place=(LOCK_FILE,))
        except OSError:  # e.g. the disk is still full: the failure stands as guarded() recorded it
            raise exc from None
        left = f"{run.path} is left as it was ({status} after {done} epochs; nothing of this extension was kept)"
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(
                getattr(exc, "signum", signal.SIGINT),
                f"interrupted: extending {run.path} stopped before its first new epoch ended; {left}",
            ) from None
        if isinstance(exc, CnnctlError):
            raise RunError(f"{exc}; {left}; add --set train.epochs={config.train.epochs} to extend it") from None
        raise


# What extending a finished run writes before its first new epoch is committed. Files it makes (new weights,
# TensorBoard events) are deleted by the restore; none is deleted before the commit.
LOCK_FILE = f"{contract.CHECKPOINTS}/{contract.LOCK}"
EXTENSION_TOUCHES = (
    contract.CONFIG,
    contract.ENVIRONMENT,
    contract.DATA,
    contract.HISTORY,
    contract.MODEL,
    f"{contract.CHECKPOINTS}/{checkpoint.METADATA}",
    LOCK_FILE,
)


def _committed_epochs(run: Run) -> Optional[int]:
    try:
        return checkpoint.completed_epochs(run)
    except (OSError, CnnctlError):
        return None


def _mark_resumed(run: Run, environment: dict[str, Any], done: int) -> None:
    for stale in ("error", "hint", "signal", "figures_error"):
        environment.pop(stale, None)
    resumes = environment.get("resumed", [])
    resumes.append({"at": now(), "after_epoch": done, "previous_status": environment.get("status")})
    environment.update(status="running", ended=None, epochs_run=done, pid=os.getpid(), resumed=resumes)
    run.write_json(contract.ENVIRONMENT, environment)
