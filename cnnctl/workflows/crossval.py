"""Workflows: stratified K-fold cross-validation: K full trainings of one config, a run folder per fold, one summary.

`cnnctl cv CONFIG --folds K` makes `runs/<id>-<name>-cv/` holding the resolved config.yaml, `fold-1/` ...
`fold-K/` and cv_summary.json. Each fold folder is a complete run folder (every file `cnnctl train` writes):
its config.yaml carries `data.fold: {index, folds}`, so `cnnctl evaluate` on it rebuilds the same split, and
its test split is the held-out fold. The folds are carved from the training data only: the source's test
split (or the one carved from train first) is left out of every fold, untouched for a final check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from cnnctl.config.schema import Config, FoldConfig
from cnnctl.errors import ConfigError
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run, create_run
from cnnctl.training.prepare import prepare
from cnnctl.workflows.train import Announce, train_run

# metrics.json keys summarised over folds, besides the top-k accuracies; contract.metric_rows orders them
SUMMARY_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
    # multi-label folds (data.multi_label); a summary lists the metrics its folds have
    "f1_micro",
    "f1_samples",
    "subset_accuracy",
    "hamming_loss",
    "mean_average_precision",
)


def fold_config(config: Config, index: int, folds: int) -> Config:
    """The config of fold `index` (1-based): the same config with data.fold set."""
    fold = config.model_copy(deep=True)
    fold.data.fold = FoldConfig(index=index, folds=folds)
    return fold


def cross_validate(
    config: Config,
    runs_dir: Any,
    folds: int,
    *,
    origin: str = "",
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_fold: Optional[Callable[[int, dict[str, Any]], None]] = None,
) -> tuple[Path, dict[str, Any]]:
    """Train every fold into its own run folder; returns the cv folder and the summary written there.
    `announce` is told when each fold's run starts, `on_fold(index, metrics)` when it ends."""
    import keras

    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds (5 or 10 are usual)")
    if config.data.fold is not None:
        raise ConfigError(f"{origin}: data.fold is set; cnnctl cv chooses the folds itself, remove data.fold")
    # Fold 1 is prepared before any folder exists, so a data or model mistake leaves nothing behind.
    prepared = prepare(fold_config(config, 1, folds), origin)
    cv_run = create_run(runs_dir, f"{config.name or 'run'}-cv")
    write_text_atomic(cv_run.file(contract.CONFIG), config.to_yaml())
    summary: dict[str, Any] = {
        "config": origin,
        "name": config.name,
        "folds": folds,
        "seed": config.seed,
        # sklearn's StratifiedKFold needs one class per example; multi-label folds are stratified on a stand-in
        "stratified_by": "each example's rarest label (multi-label)" if config.data.multi_label else "class",
        "status": "running",
        "per_fold": [],
    }
    cv_run.write_json(contract.CV_SUMMARY, summary)
    try:
        for index in range(1, folds + 1):
            if prepared is None:
                keras.backend.clear_session()  # the previous fold's model is saved; free its graph
                prepared = prepare(fold_config(config, index, folds), origin)
            fold_run = Run(cv_run.path / f"fold-{index}")
            fold_run.path.mkdir()
            result = train_run(
                prepared.config, origin=origin, verbose=verbose, announce=announce, prepared=prepared, into=fold_run
            )
            summary["per_fold"].append(fold_result(index, result.run, result.metrics))
            cv_run.write_json(contract.CV_SUMMARY, summarise(summary))
            if on_fold is not None:
                on_fold(index, result.metrics)
            prepared = None
    except BaseException as exc:
        summary["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        cv_run.write_json(contract.CV_SUMMARY, summarise(summary))
        raise
    summary["status"] = "completed"
    cv_run.write_json(contract.CV_SUMMARY, summarise(summary))
    return cv_run.path, summary


def fold_result(index: int, run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
    """One fold's line of the summary: its held-out metrics, flattened (top-k as `top_3_accuracy`)."""
    result: dict[str, Any] = {"fold": index, "run": run.path.name, "examples": metrics.get("num_examples")}
    for metric in contract.metric_rows(SUMMARY_METRICS, metrics.get("top_k_accuracy", {})):
        result[metric.key] = metric.value(metrics)
    environment = run.read_json(contract.ENVIRONMENT) if run.has(contract.ENVIRONMENT) else {}
    result["epochs_run"] = environment.get("epochs_run")
    return result


def metric_names(per_fold: list[dict[str, Any]]) -> list[str]:
    ks = {key.split("_")[1] for fold in per_fold for key in fold if key.startswith("top_")}  # top_<k>_accuracy
    return [
        metric.key
        for metric in contract.metric_rows(SUMMARY_METRICS, ks)
        if any(fold.get(metric.key) is not None for fold in per_fold)
    ]


def summarise(summary: dict[str, Any]) -> dict[str, Any]:
    """Add mean and std (population, numpy's default) of each metric over the folds that have it."""
    per_fold = summary["per_fold"]
    summary["metrics"] = metric_names(per_fold)
    summary["mean"], summary["std"] = {}, {}
    for name in summary["metrics"]:
        values = np.array([fold[name] for fold in per_fold if fold.get(name) is not None], dtype=float)
        if values.size:
            summary["mean"][name] = float(values.mean())
            summary["std"][name] = float(values.std())
    summary["folds_completed"] = len(per_fold)
    return summary
