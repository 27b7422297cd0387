"""Train a configured network into a run folder: callbacks, device, seed, then evaluation and figures.

The order of one `cnnctl train`: config → data → model (all validated before any folder is made, so a mistake
leaves nothing behind) → run folder (config.yaml, environment.json, data.json) → fit (model.keras,
history.csv) → evaluate (metrics.json, reports, predictions.npz) → figures (*.png).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

from cnnctl import faults, runs
from cnnctl.config import Config
from cnnctl.data import Dataset, load_data
from cnnctl.errors import ConfigError, RunError, in_config_file
from cnnctl.runs import Run


@dataclass
class Prepared:
    """Everything validated and built, before a run folder exists."""

    config: Config
    dataset: Dataset
    model: Any
    policy: str
    devices: list[str]


def prepare(config: Config, origin: str = "") -> Prepared:
    """Load data and build + compile the model; config and data mistakes are raised with `origin` (the file)
    in front."""
    from cnnctl import evaluate, runtime

    runtime.import_tensorflow()
    runtime.seed_everything(config.seed)
    policy = runtime.set_precision(config.train.mixed_precision)
    with in_config_file(origin):
        dataset = load_data(config)
        class_weights(config.train.class_weight, dataset)  # checked now, not after the run folder exists
        dataset.evaluation_split(config.evaluate.split)  # a split the data lacks: said now, not after training
        if config.evaluate.tta == "flip":
            evaluate.mirror_axis(dataset.input_shape)  # flat examples cannot be mirrored: said before training
        model = build_and_compile(config, dataset.input_shape, dataset.num_classes,
                                  train_examples=len(dataset.splits["train"]))
    return Prepared(config, dataset, model, policy, runtime.devices())


def build_and_compile(config: Config, input_shape: tuple, num_classes: int, train_examples: int = 0) -> Any:
    from cnnctl import runtime
    from cnnctl.model import build_augmenter, build_model, compile_model

    build_augmenter(config.data.augment)  # augmentation mistakes are config mistakes: report them before training
    model = build_model(config.model, input_shape, num_classes, name=config.name or "cnn")
    return compile_model(model, config.train, jit_compile=runtime.resolve_jit_compile(config.train.jit_compile),
                         steps_per_execution=runtime.resolve_steps_per_execution(config.train.steps_per_execution),
                         steps_per_epoch=math.ceil(train_examples / config.train.batch_size))


def write_run_start(run: Run, prepared: Prepared) -> None:
    from cnnctl import runtime

    config = prepared.config
    runs.write_text_atomic(run.file(runs.CONFIG), config.to_yaml())
    run.write_json(runs.DATA, prepared.dataset.summary())
    run.write_json(runs.ENVIRONMENT, {
        "status": "running",
        "versions": runtime.versions(),
        "devices": prepared.devices,
        "precision": prepared.policy,
        "seed": config.seed,
        "started": _now(),
        "started_unix": time.time(),
        "ended": None,
        "epochs_run": 0,
        "pid": os.getpid(),
    })


def fit(run: Run, prepared: Prepared, verbose: int = 2, extra_callbacks: Optional[list] = None) -> dict[str, list]:
    """model.fit with early stopping, best checkpoint, CSV history and a checkpoint of the training state every
    epoch; continues from that checkpoint when there is one. Returns the Keras history of this call."""
    from cnnctl import checkpoint, runtime
    from cnnctl.model import build_augmenter, needs_one_hot

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
        callbacks=callbacks + [checkpoint.TrainingBackup(run, callbacks)],  # last: it saves the others' state
        class_weight=class_weights(train_cfg.class_weight, dataset),
        verbose=verbose,
    )
    if not _has_nan(history.history):  # a diverged model must not replace the best one saved before
        save_model(model, run.file(runs.MODEL))
    return history.history


def monitored(name: str, has_validation: bool) -> str:
    """Without a validation split, `val_*` metrics do not exist: watch the training metric instead."""
    return name if has_validation or not name.startswith("val_") else name[len("val_"):]


def make_callbacks(run: Run, config: Config, has_validation: bool) -> list:
    import keras

    train_cfg = config.train
    stopping = train_cfg.early_stopping
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),  # before CSVLogger, so history.csv gets an epoch_time_s column
        keras.callbacks.CSVLogger(str(run.file(runs.HISTORY)), append=True),
        BestModelCheckpoint(str(run.file(runs.MODEL)),
                            monitor=monitored(stopping.monitor if stopping else "val_loss", has_validation)),
    ]
    if stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitored(stopping.monitor, has_validation), patience=stopping.patience,
            min_delta=stopping.min_delta, restore_best_weights=stopping.restore_best_weights, verbose=1))
    plateau = train_cfg.reduce_lr_on_plateau
    if plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitored(plateau.monitor, has_validation), factor=plateau.factor,
            patience=plateau.patience, min_lr=plateau.min_lr, verbose=1))
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
    with runs.atomic_path(path) as temp:
        model.save(temp)


def class_weights(setting: Any, dataset: Dataset) -> Optional[dict[int, float]]:
    if setting is None:
        return None
    if setting == "balanced":
        import numpy as np
        from sklearn.utils.class_weight import compute_class_weight

        y = dataset.splits["train"].y
        classes = np.arange(dataset.num_classes)
        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        mapping = dict(zip(present.tolist(), weights.tolist()))
        return {int(c): float(mapping.get(int(c), 1.0)) for c in classes}
    unknown = [k for k in setting if not 0 <= k < dataset.num_classes]
    if unknown:
        raise ConfigError(f"train.class_weight: class index {unknown[0]} is out of range; the data has "
                          f"{dataset.num_classes} classes (0..{dataset.num_classes - 1})")
    return {c: float(setting.get(c, 1.0)) for c in range(dataset.num_classes)}


def finish_run(run: Run, status: str, **extra: Any) -> None:
    """Record the run's final status (and `extra` facts such as epochs_run or error) in environment.json."""
    environment = run.read_json(runs.ENVIRONMENT) if run.has(runs.ENVIRONMENT) else {}
    started = environment.get("started_unix")
    changes: dict[str, Any] = {"status": status, "ended": _now(), **extra}
    if started:
        changes["duration_s"] = round(time.time() - started, 1)
    run.update_json(runs.ENVIRONMENT, **changes)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def train_run(config: Config, origin: str, runs_dir: Any, verbose: int = 2, *, prepared: Optional[Prepared] = None,
              into: Optional[Run] = None) -> tuple[Run, dict[str, Any]]:
    """The whole `cnnctl train`: returns the run and its test metrics. The run's status is always recorded.

    `prepared` skips loading and building when the caller has done it; `into` is an empty folder to use
    instead of a new run in `runs_dir` (cross-validation puts each fold's run inside its own folder)."""
    from cnnctl import display
    from cnnctl.model import describe

    prepared = prepared or prepare(config, origin)
    run = into or runs.create_run(runs_dir, config.name or "run")
    with faults.guarded(run):  # status recorded however it ends; signals, out-of-memory, disk full handled
        write_run_start(run, prepared)
        display.header(origin, config, prepared.dataset.summary(), prepared.devices, prepared.policy, run.path,
                       describe(prepared.model))
        metrics = complete_run(run, prepared, verbose)
    return run, metrics


def complete_run(run: Run, prepared: Prepared, verbose: int = 2, train: bool = True) -> dict[str, Any]:
    """Fit (from the run's checkpoint, if any), evaluate, draw the figures, mark the run completed. With
    `train=False` (a resumed run whose training had finished) the saved model.keras is evaluated."""
    from cnnctl import checkpoint, evaluate, figures, report

    config, dataset = prepared.config, prepared.dataset
    if train:
        history = fit(run, prepared, verbose=verbose)
        if _has_nan(history):
            finish_run(run, "failed", epochs_run=checkpoint.completed_epochs(run), error=faults.NAN_ERROR,
                       hint="lower train.optimizer.learning_rate or keep data.normalize: true")
            raise TrainingFailed(f"{run.path}: training stopped: the loss became NaN or infinite; lower "
                                 "train.optimizer.learning_rate or keep data.normalize: true")
        checkpoint.mark_finished(run)
        model = prepared.model
    else:
        model = evaluate.load_model(run)
    split = dataset.evaluation_split(config.evaluate.split)
    y_prob = evaluate.predict_probabilities(model, dataset, split, config.train.batch_size, config.evaluate.tta)
    data = dataset.splits[split]
    metrics = evaluate.write_evaluation(run, split, data.y, y_prob, dataset.class_names, config.evaluate.top_k,
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
