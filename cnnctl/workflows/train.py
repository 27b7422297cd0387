"""Workflows: one `cnnctl train` from start to finish — run folder, fit, evaluation, figures, report, status.

The order: config → data → model (all validated before any folder is made, so a mistake leaves nothing behind) →
run folder (config.yaml, environment.json, data.json) → fit (model.keras, history.csv; cnnctl/training/loop.py) →
evaluate (metrics.json, reports, predictions.npz) → figures (*.png) → report.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from cnnctl.config.schema import Config
from cnnctl.data.dataset import scaled_outside_model
from cnnctl.errors import RunError, first_line, in_config_file
from cnnctl.evaluation.calibration import as_class_probabilities
from cnnctl.evaluation.scoring import predict_probabilities, write_split_evaluation
from cnnctl.evaluation.temperature import calibrate_model, with_split_effect
from cnnctl.model.backbone import locate_from_run
from cnnctl.reporting import figures, report
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, create_run, default_runs_dir
from cnnctl.runs.history import read_history_csv
from cnnctl.runs.model_file import load_model
from cnnctl.runs.status import finish_run
from cnnctl.training import checkpoint
from cnnctl.training.callbacks import save_model
from cnnctl.training.distribute import chief_only_folder
from cnnctl.training.guard import NAN_ERROR, guarded
from cnnctl.training.loop import fit, has_nan, write_run_start
from cnnctl.training.prepare import Prepared, prepare
from cnnctl.workflows.tracking import Tracker


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
    warnings: list[str] = field(default_factory=list)  # a figure or report.html that could not be drawn, and why

    @property
    def path(self) -> Path:
        return self.run.path


# Called once the run folder holds config.yaml and data.json, before the first epoch: the command line prints
# its header here. The note says what kind of start it is ("resuming ... after epoch 3"), or is empty.
Announce = Callable[[Run, Prepared, str], None]


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
    `train=False` (a resumed run whose training had finished) the saved model.keras is evaluated. With
    train.mlflow, process 0 also logs it all to MLflow (cnnctl/workflows/tracking.py)."""
    if prepared.config.train.mlflow is None or not prepared.placement.chief:
        return _complete_run(run, prepared, verbose, train, extra_callbacks)
    tracker = Tracker(run, prepared.config)
    tracker.start()
    try:
        result = _complete_run(run, prepared, verbose, train, [*extra_callbacks, tracker.callback()])
    except BaseException as exc:
        tracker.stopped("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    tracker.finish()
    return result


def _complete_run(
    run: Run, prepared: Prepared, verbose: int, train: bool, extra_callbacks: Sequence[Any]
) -> TrainResult:
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
        if has_nan(history):
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
    metrics = write_split_evaluation(run, model, dataset, config, split, y_prob, scale_outside, extra)
    seconds["evaluate"], clock = _lap(clock)
    warnings = _drawn("the figures", "plot", run, lambda: figures.draw_run_figures(run, model))
    seconds["figures"], clock = _lap(clock)
    # Completed once model.keras and the evaluation's files are written: a run stopped during evaluation resumes
    # into evaluation. The figures and the page are views of those files, redrawn by `cnnctl plot` / `report`.
    finish_run(
        run,
        "completed",
        epochs_run=checkpoint.completed_epochs(run),
        phase_seconds=seconds,
        **({"figures_error": warnings[0]} if warnings else {}),
    )
    # After the status, so the page says completed; `cnnctl report` rewrites it.
    warnings += _drawn("report.html", "report", run, lambda: report.write_report(run))
    return TrainResult(run, model, read_history_csv(run.file(contract.HISTORY)), metrics, warnings=warnings)


def _drawn(what: str, command: str, run: Run, draw: Callable[[], Any]) -> list[str]:
    """Draw the run's figures or its page → [] or the one warning saying why they could not be drawn. A trained
    and evaluated run is not failed for a view of its files: model.keras and metrics.json stay, and
    `cnnctl plot` / `cnnctl report` draws again once the cause is fixed (a full disk, a font, a bug of ours)."""
    try:
        draw()
    except Exception as exc:  # MemoryError and OSError included; Ctrl-C and SIGTERM still stop the command
        return [
            f"{what} could not be drawn ({type(exc).__name__}: {first_line(exc)}); the run is complete: "
            f"cnnctl {command} {run.path}"
        ]
    return []


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


class TrainingFailed(RunError):
    pass
