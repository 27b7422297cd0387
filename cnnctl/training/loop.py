"""Training: the fit of one run — its first files (config.yaml, data.json, environment.json), then model.fit with
early stopping, the best checkpoint, history.csv and a training-state checkpoint every epoch, and with
train.fine_tune a second phase. What comes after the fit (evaluation, figures, report) is cnnctl/workflows/train.py's.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Optional, Sequence

from cnnctl import runtime
from cnnctl.model.build import build_augmenter
from cnnctl.model.compile import one_hot_labels
from cnnctl.model.mixing import build_mixer
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run
from cnnctl.runs.status import now
from cnnctl.training import checkpoint
from cnnctl.training.backup import TrainingBackup
from cnnctl.training.callbacks import make_callbacks, save_model
from cnnctl.training.prepare import Prepared, class_weights
from cnnctl.training.signals import signals_deferred


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
            "precision_reason": prepared.policy_reason,
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
        if fine_tune is not None and not has_nan(history) and not pruned:
            phase_start = _begin_fine_tune(run, prepared)
    elif fine_tune is not None:  # resuming inside the fine-tuning phase: its optimizer's slots must exist to load
        prepared.enter_fine_tune()
    if fine_tune is not None and phase_start is not None and not has_nan(history):
        last = phase_start + fine_tune.epochs
        if verbose and checkpoint.completed_epochs(run) < last:  # Keras' counter now runs to the new last epoch
            print(
                f"Fine-tuning: epochs {phase_start + 1} to {last} at learning rate "
                f"{config.train.fine_tune_learning_rate:g}; early stopping counts afresh from the first phase's best",
                flush=True,
            )
        later = _fit_phase(run, prepared, last, 2, verbose, extra_callbacks, phase_start)
        history = {key: history.get(key, []) + later.get(key, []) for key in {**history, **later}}
    if not has_nan(history):  # a diverged model must not replace the best one saved before
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
    one_hot = one_hot_labels(config)
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
        mix=build_mixer(config.data.mix, dataset.input_shape, config.seed + start),
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


def has_nan(history: dict[str, list]) -> bool:
    return any(not math.isfinite(value) for value in history.get("loss", []))
