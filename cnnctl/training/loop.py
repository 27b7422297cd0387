"""Training: one run from start to finish — run folder, fit, evaluation, figures, report, status.

The order of one `cnnctl train`: config → data → model (all validated before any folder is made, so a mistake
leaves nothing behind) → run folder (config.yaml, environment.json, data.json) → fit (model.keras,
history.csv) → evaluate (metrics.json, reports, predictions.npz) → figures (*.png) → report.html.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from cnnctl import runtime
from cnnctl.config.schema import Config
from cnnctl.data.dataset import scaled_outside_model
from cnnctl.errors import RunError, in_config_file
from cnnctl.evaluation.calibration import as_class_probabilities
from cnnctl.evaluation.gradcam import write_evaluation_gradcam
from cnnctl.evaluation.metrics import write_evaluation
from cnnctl.evaluation.scoring import load_model, predict_probabilities
from cnnctl.evaluation.temperature import calibrate_model, with_split_effect
from cnnctl.model.backbone import locate_from_run
from cnnctl.model.build import build_augmenter
from cnnctl.model.compile import needs_one_hot
from cnnctl.reporting import figures, report
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, create_run, default_runs_dir, write_text_atomic
from cnnctl.runs.history import read_history_csv
from cnnctl.runs.status import finish_run, now
from cnnctl.training import checkpoint
from cnnctl.training.callbacks import TrainingBackup, make_callbacks, save_model
from cnnctl.training.distribute import chief_only_folder
from cnnctl.training.guard import NAN_ERROR, guarded
from cnnctl.training.prepare import Prepared, class_weights, prepare
from cnnctl.training.signals import signals_deferred


@dataclass
class TrainResult:
    """What a training leaves: its run folder, the trained model, every epoch's history and the metrics.

    `model` is the model that was evaluated (with early stopping's best weights when they were restored); it
    is None only when nothing was trained or evaluated (`note` says why, e.g. a completed run resumed without
    more epochs)."""

    run: Run
    model: Any
    history: dict[str, list[float]]  # history.csv as columns: epoch, loss, val_loss, accuracy, epoch_time_s, ...
    metrics: dict[str, Any]  # metrics.json: the evaluation split's numbers and the diagnosis
    note: Optional[str] = None

    @property
    def path(self) -> Path:
        return self.run.path


# Called once the run folder holds config.yaml and data.json, before the first epoch: the command line prints
# its header here. The note says what kind of start it is ("resuming ... after epoch 3"), or is empty.
Announce = Callable[[Run, Prepared, str], None]


def write_run_start(run: Run, prepared: Prepared) -> None:
    config = prepared.config
    write_text_atomic(run.file(contract.CONFIG), config.to_yaml())
    run.write_json(contract.DATA, prepared.dataset.summary())
    run.write_json(
        contract.ENVIRONMENT,
        {
            "status": "running",
            "backend": runtime.backend(),
            "versions": runtime.versions(),
            "devices": prepared.devices,
            "distribute": prepared.placement.record(),
            "precision": prepared.policy,
            "seed": config.seed,
            "started": now(),
            "started_unix": time.time(),
            "ended": None,
            "epochs_run": 0,
            "pid": os.getpid(),
        },
    )


def fit(run: Run, prepared: Prepared, verbose: int = 0, extra_callbacks: Sequence[Any] = ()) -> dict[str, list]:
    """model.fit with early stopping, best checkpoint, CSV history and a checkpoint of the training state every
    epoch; continues from that checkpoint when there is one. With train.fine_tune, a second fit follows the
    first: the frozen layers unfrozen, recompiled at the lower learning rate (see cnnctl/model/unfreeze.py).
    Returns the Keras history of this call, both phases' epochs in order.
    `verbose` is Keras': 0 silent, 1 a progress bar, 2 one line per epoch. `extra_callbacks` run after cnnctl's
    own and before the training-state backup (cnnctl tune's pruning callback)."""
    with prepared.placement.scope():  # every device's copy of the weights restored, updated and saved
        return _fit_phases(run, prepared, verbose, extra_callbacks)


def _fit_phases(run: Run, prepared: Prepared, verbose: int, extra_callbacks: Sequence[Any]) -> dict[str, list]:
    config, model = prepared.config, prepared.model
    fine_tune = config.train.fine_tune
    phase_start = checkpoint.fine_tune_start(checkpoint.read_state(run))
    history: dict[str, list] = {}
    if phase_start is None:
        history = _fit_phase(run, prepared, config.train.epochs, 1 if fine_tune else None, verbose, extra_callbacks)
        # A tuning trial pruned in phase 1 is over: its search has no use for the fine-tuning of a bad candidate.
        pruned = any(getattr(callback, "pruned_after_epoch", None) for callback in extra_callbacks)
        if fine_tune is not None and not _has_nan(history) and not pruned:
            phase_start = _begin_fine_tune(run, prepared)
    elif fine_tune is not None:  # resuming inside the fine-tuning phase: its optimizer's slots must exist to load
        prepared.enter_fine_tune()
    if fine_tune is not None and phase_start is not None and not _has_nan(history):
        later = _fit_phase(run, prepared, phase_start + fine_tune.epochs, 2, verbose, extra_callbacks, phase_start)
        history = {key: history.get(key, []) + later.get(key, []) for key in {**history, **later}}
    if not _has_nan(history):  # a diverged model must not replace the best one saved before
        save_model(model, run.file(contract.MODEL))
    return history


def _fit_phase(
    run: Run,
    prepared: Prepared,
    last_epoch: int,
    phase: Optional[int],
    verbose: int,
    extra_callbacks: Sequence[Any],
    fine_tune_from: Optional[int] = None,
) -> dict[str, list]:
    """One model.fit up to `last_epoch`, from the run's checkpoint when it has one."""
    config, dataset, model = prepared.config, prepared.dataset, prepared.model
    train_cfg = config.train
    one_hot = needs_one_hot(train_cfg.loss_name)
    augmenter = build_augmenter(config.data.augment)
    callbacks = make_callbacks(run, config, has_validation="val" in dataset.splits, verbose=verbose, phase=phase)
    backup = TrainingBackup(run, callbacks, fine_tune_from=fine_tune_from)
    start = backup.restore(model)  # the saved model and optimizer weights: epochs already done, 0 for a new run
    if start:
        # A resumed run must not replay the first epoch's shuffle and augmentation: seed them for where it resumes.
        runtime.seed_everything(config.seed + start)
    shard = prepared.placement.shard  # Keras' DataParallel: this process's part of each batch
    train_data = dataset.pipeline(
        "train",
        train_cfg.batch_size,
        one_hot=one_hot,
        shuffle=True,
        seed=config.seed + start,
        augment=augmenter,
        shard=shard,
    )
    val_data = (
        dataset.pipeline("val", runtime.inference_batch_size(train_cfg.batch_size), one_hot=one_hot, shard=shard)
        if "val" in dataset.splits
        else None
    )
    warnings.filterwarnings("ignore", message=".*shuffle=True.* was passed")  # our pipeline shuffles itself
    with prepared.placement.quiet_fit():
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=last_epoch,
            initial_epoch=start,
            # backup last: it restores the others' state after they reset, saves it after they update
            callbacks=callbacks + list(extra_callbacks) + [backup],
            class_weight=class_weights(train_cfg.class_weight, dataset),
            verbose=verbose,
        )
    return history.history


def _begin_fine_tune(run: Run, prepared: Prepared) -> int:
    """Between the phases: unfreeze, recompile, and commit the fine-tuning phase's starting state, so a run
    stopped from here on resumes into fine-tuning. Early stopping starts its patience afresh but keeps the first
    phase's best value and weights (the model holds them now): fine-tuning that never beats the first phase ends
    with the first phase's best model. Returns the epoch the phase begins after."""
    config, model = prepared.config, prepared.model
    first = checkpoint.read_state(run) or {}
    done = first.get("epoch", 0)
    prepared.enter_fine_tune()
    callbacks = make_callbacks(run, config, has_validation="val" in prepared.dataset.splits, phase=2)
    backup = TrainingBackup(run, callbacks, fine_tune_from=done)
    carried = first.get("callbacks", {})
    for name, callback in backup.tracked.items():
        if callback is None:
            continue
        callback.set_model(model)
        callback.on_train_begin()  # the state a fresh fit starts from: no wait, no cooldown
        if name in ("EarlyStopping", "ModelCheckpoint"):
            for key in ("best", "best_epoch"):
                if key in carried.get(name, {}):
                    setattr(callback, key, carried[name][key])
    backup.set_model(model)
    stopping = backup.tracked.get("EarlyStopping")
    if stopping is not None and stopping.restore_best_weights and stopping.best is not None:
        stopping.best_weights = model.get_weights()
    with signals_deferred():
        backup.commit(done)
    return done


def train_run(
    config: Config,
    runs_dir: Union[str, Path, None] = None,
    *,
    origin: str = "",
    verbose: int = 0,
    announce: Optional[Announce] = None,
    prepared: Optional[Prepared] = None,
    into: Optional[Run] = None,
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    """The whole `cnnctl train`, silent unless `verbose`: a new run folder in `runs_dir` (default: the usual runs
    dir), trained, evaluated, drawn and reported. The run's status is recorded however it ends.

    `origin` is the config file, named in data and config errors; `announce` is told when the run starts;
    `prepared` skips loading and building when the caller has done it; `into` is an empty folder to use
    instead of a new run (cross-validation puts each fold's run inside its own folder); `extra_callbacks` are
    added to the fit (see `fit`)."""
    if prepared is None and config.model.from_run and runs_dir is not None:
        with in_config_file(origin):  # `last` or a run id: in the runs dir this run goes to
            locate_from_run(config.model.from_run, runs_dir)
    prepared = prepared or prepare(config, origin)
    with chief_only_folder() as scratch:  # a job's other processes train in a scratch folder, removed after
        run = (
            into
            if into is not None and scratch is None
            else create_run(scratch or default_runs_dir(runs_dir), config.name or "run")
        )
        with guarded(run):  # status recorded however it ends; interrupts, out-of-memory, disk full handled
            write_run_start(run, prepared)
            if announce is not None:
                announce(run, prepared, "")
            return complete_run(run, prepared, verbose, extra_callbacks=extra_callbacks)


def complete_run(
    run: Run, prepared: Prepared, verbose: int = 0, train: bool = True, extra_callbacks: Sequence[Any] = ()
) -> TrainResult:
    """Fit (from the run's checkpoint, if any), evaluate, draw the figures, mark the run completed. With
    `train=False` (a resumed run whose training had finished) the saved model.keras is evaluated."""
    config, dataset = prepared.config, prepared.dataset
    # True for a run begun by an older cnnctl: its model.keras takes examples already divided by pixel_scale.
    scale_outside = scaled_outside_model(run.read_json(contract.DATA))
    seconds: dict[str, float] = {}  # where this command's time went, in environment.json (benchmarks read it)
    clock = time.perf_counter()
    if train:
        if scale_outside:  # prepared.model scales its own inputs, as will the model.keras this fit saves
            run.write_json(contract.DATA, dataset.summary())
            scale_outside = False
        history = fit(run, prepared, verbose=verbose, extra_callbacks=extra_callbacks)
        if _has_nan(history):
            finish_run(
                run,
                "failed",
                epochs_run=checkpoint.completed_epochs(run),
                error=NAN_ERROR,
                hint="lower train.optimizer.learning_rate or keep data.normalize: true",
            )
            raise TrainingFailed(
                f"{run.path}: training stopped: the loss became NaN or infinite; lower "
                "train.optimizer.learning_rate or keep data.normalize: true"
            )
        checkpoint.mark_finished(run)
        seconds["fit"], clock = _lap(clock)
        if not prepared.placement.chief:  # process 0 evaluates and writes the run's files; the others are done
            return TrainResult(
                run,
                None,
                read_history_csv(run.file(contract.HISTORY)),
                {},
                note=f"process {prepared.placement.process_index}: training done",
            )
        # Trained on several devices (the weights on each, inputs split over them): the chief evaluates the saved
        # model on one device, without the other processes and without splitting batches that do not divide.
        model = prepared.model if prepared.placement.strategy == "none" else load_model(run)
    else:
        model = load_model(run)
    split = dataset.evaluation_split(config.evaluate.split)
    temperature, before = None, None
    if train and config.evaluate.calibrate == "temperature":  # a completed run's model.keras has it already
        before = predict_probabilities(
            model, dataset, split, config.train.batch_size, config.evaluate.tta, scale_outside=scale_outside
        )
        temperature = calibrate(run, model, dataset, config, scale_outside)
    y_prob = predict_probabilities(
        model, dataset, split, config.train.batch_size, config.evaluate.tta, scale_outside=scale_outside
    )
    data = dataset.splits[split]
    extra = {}
    if temperature is not None:
        extra["temperature"] = with_split_effect(
            temperature, data.y, as_class_probabilities(before), as_class_probabilities(y_prob)
        )
    metrics = write_evaluation(
        run,
        split,
        data.y,
        y_prob,
        dataset.class_names,
        config.evaluate.top_k,
        x=data.x,
        tta=config.evaluate.tta,
        extra=extra,
    )
    write_evaluation_gradcam(run, model, dataset, split, y_prob, scale_outside=scale_outside)
    seconds["evaluate"], clock = _lap(clock)
    figures.draw_run_figures(run, model)
    seconds["figures"], clock = _lap(clock)
    # Completed only once every file is written: a run stopped during evaluation resumes into evaluation.
    finish_run(run, "completed", epochs_run=checkpoint.completed_epochs(run), phase_seconds=seconds)
    report.write_report(run)  # after the status, so the page says completed; `cnnctl report` rewrites it
    return TrainResult(run, model, read_history_csv(run.file(contract.HISTORY)), metrics)


def calibrate(run: Run, model: Any, dataset: Any, config: Config, scale_outside: bool) -> dict[str, Any]:
    """evaluate.calibrate: temperature: fit T on the validation split, fold it into the model's output layer and
    save model.keras again; returns metrics.json's record of it."""
    p_val = predict_probabilities(model, dataset, "val", config.train.batch_size, scale_outside=scale_outside)
    record = calibrate_model(model, dataset.splits["val"].y, as_class_probabilities(p_val))
    save_model(model, run.file(contract.MODEL))
    return record


def _lap(started: float) -> tuple[float, float]:
    now_ = time.perf_counter()
    return round(now_ - started, 3), now_


def _has_nan(history: dict[str, list]) -> bool:
    return any(not math.isfinite(value) for value in history.get("loss", []))


class TrainingFailed(RunError):
    pass
