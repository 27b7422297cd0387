"""Training, step 4d: one run from start to finish — run folder, fit, evaluation, figures, report, status.

The order of one `cnnctl train`: config → data → model (all validated before any folder is made, so a mistake
leaves nothing behind) → run folder (config.yaml, environment.json, data.json) → fit (model.keras,
history.csv) → evaluate (metrics.json, reports, predictions.npz) → figures (*.png) → report.html.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Optional

from cnnctl.config.schema import Config
from cnnctl.errors import RunError
from cnnctl.evaluation.metrics import write_evaluation
from cnnctl.evaluation.scoring import load_model, predict_probabilities
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, create_run, write_text_atomic
from cnnctl.runs.status import finish_run, now
from cnnctl.training.callbacks import TrainingBackup, make_callbacks, save_model
from cnnctl.training.guard import NAN_ERROR, guarded
from cnnctl.training.prepare import Prepared, class_weights, prepare


def write_run_start(run: Run, prepared: Prepared) -> None:
    from cnnctl import runtime

    config = prepared.config
    write_text_atomic(run.file(contract.CONFIG), config.to_yaml())
    run.write_json(contract.DATA, prepared.dataset.summary())
    run.write_json(contract.ENVIRONMENT, {
        "status": "running",
        "versions": runtime.versions(),
        "devices": prepared.devices,
        "precision": prepared.policy,
        "seed": config.seed,
        "started": now(),
        "started_unix": time.time(),
        "ended": None,
        "epochs_run": 0,
        "pid": os.getpid(),
    })


def fit(run: Run, prepared: Prepared, verbose: int = 2, extra_callbacks: Optional[list] = None) -> dict[str, list]:
    """model.fit with early stopping, best checkpoint, CSV history and a checkpoint of the training state every
    epoch; continues from that checkpoint when there is one. Returns the Keras history of this call."""
    from cnnctl import runtime
    from cnnctl.model.build import build_augmenter
    from cnnctl.model.compile import needs_one_hot
    from cnnctl.training import checkpoint

    config, dataset, model = prepared.config, prepared.dataset, prepared.model
    train_cfg = config.train
    one_hot = needs_one_hot(train_cfg.loss_name)
    augmenter = build_augmenter(config.data.augment)
    start = checkpoint.completed_epochs(run)
    if start:
        # A resumed run must not replay the first epoch's shuffle and augmentation: seed them for where it resumes.
        runtime.seed_everything(config.seed + start)
    train_data = dataset.pipeline("train", train_cfg.batch_size, one_hot=one_hot, shuffle=True,
                                  seed=config.seed + start, augment=augmenter)
    val_data = (dataset.pipeline("val", runtime.inference_batch_size(train_cfg.batch_size), one_hot=one_hot)
                if "val" in dataset.splits else None)
    warnings.filterwarnings("ignore", message=".*shuffle=True.* was passed")  # our pipeline shuffles itself
    callbacks = make_callbacks(run, config, has_validation=val_data is not None) + list(extra_callbacks or [])
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=train_cfg.epochs,
        callbacks=callbacks + [TrainingBackup(run, callbacks)],  # last: it saves the others' state
        class_weight=class_weights(train_cfg.class_weight, dataset),
        verbose=verbose,
    )
    if not _has_nan(history.history):  # a diverged model must not replace the best one saved before
        save_model(model, run.file(contract.MODEL))
    return history.history


def train_run(config: Config, origin: str, runs_dir: Any, verbose: int = 2, *, prepared: Optional[Prepared] = None,
              into: Optional[Run] = None) -> tuple[Run, dict[str, Any]]:
    """The whole `cnnctl train`: returns the run and its test metrics. The run's status is always recorded.

    `prepared` skips loading and building when the caller has done it; `into` is an empty folder to use
    instead of a new run in `runs_dir` (cross-validation puts each fold's run inside its own folder)."""
    from cnnctl.model.summary import describe
    from cnnctl.reporting import display

    prepared = prepared or prepare(config, origin)
    run = into or create_run(runs_dir, config.name or "run")
    with guarded(run):  # status recorded however it ends; signals, out-of-memory, disk full handled
        write_run_start(run, prepared)
        display.header(origin, config, prepared.dataset.summary(), prepared.devices, prepared.policy, run.path,
                       describe(prepared.model))
        metrics = complete_run(run, prepared, verbose)
    return run, metrics


def complete_run(run: Run, prepared: Prepared, verbose: int = 2, train: bool = True) -> dict[str, Any]:
    """Fit (from the run's checkpoint, if any), evaluate, draw the figures, mark the run completed. With
    `train=False` (a resumed run whose training had finished) the saved model.keras is evaluated."""
    from cnnctl.reporting import figures, report
    from cnnctl.training import checkpoint

    config, dataset = prepared.config, prepared.dataset
    if train:
        history = fit(run, prepared, verbose=verbose)
        if _has_nan(history):
            finish_run(run, "failed", epochs_run=checkpoint.completed_epochs(run), error=NAN_ERROR,
                       hint="lower train.optimizer.learning_rate or keep data.normalize: true")
            raise TrainingFailed(f"{run.path}: training stopped: the loss became NaN or infinite; lower "
                                 "train.optimizer.learning_rate or keep data.normalize: true")
        checkpoint.mark_finished(run)
        model = prepared.model
    else:
        model = load_model(run)
    split = dataset.evaluation_split(config.evaluate.split)
    y_prob = predict_probabilities(model, dataset, split, config.train.batch_size, config.evaluate.tta)
    data = dataset.splits[split]
    metrics = write_evaluation(run, split, data.y, y_prob, dataset.class_names, config.evaluate.top_k,
                                        x=data.x, tta=config.evaluate.tta)
    figures.draw_run_figures(run, model)
    # Completed only once every file is written: a run stopped during evaluation resumes into evaluation.
    finish_run(run, "completed", epochs_run=checkpoint.completed_epochs(run))
    report.write_report(run)  # after the status, so the page says completed; `cnnctl report` rewrites it
    return metrics


def _has_nan(history: dict[str, list]) -> bool:
    return any(not math.isfinite(value) for value in history.get("loss", []))


class TrainingFailed(RunError):
    pass
