"""Workflows: what a search leaves once trials are done — tune_summary.json (every trial, the best, the parameters'
importances), best.yaml, the figures and tune_report.html — and what the search optimises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import optuna

from cnnctl.config.schema import Config
from cnnctl.errors import CnnctlError
from cnnctl.reporting.tune_report import draw_tune_figures, write_tune_report
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run
from cnnctl.workflows.tune_space import trial_config

# What each epoch reports to the pruner (a Keras log key) and what scores a finished trial (a metrics.json key,
# measured on the val split).
REPORTED = "val_accuracy"
OBJECTIVE = "accuracy"  # also the trial attribute a trial's score is kept under, whatever the objective (see below)
# Multi-label data has no single accuracy: its trials are scored on micro-averaged F1 (every label decision counts).
MULTI_LABEL_OBJECTIVE = "f1_micro"


def objective_of(config: Config) -> tuple[str, str]:
    """(the metrics.json key a trial is scored on, how it reads): accuracy, or micro F1 for multi-label data."""
    if config.data.multi_label:
        return MULTI_LABEL_OBJECTIVE, "val F1 (micro)"
    return OBJECTIVE, "val accuracy"


# MedianPruner: prune a trial whose val_accuracy after an epoch is below the median of earlier trials at the same
# epoch, once PRUNER_STARTUP_TRIALS trials have finished and from the epoch after PRUNER_WARMUP_EPOCHS on.
PRUNER_STARTUP_TRIALS = 2
PRUNER_WARMUP_EPOCHS = 1


def trial_line(study: optuna.Study, number: int) -> dict[str, Any]:
    """One trial of tune_summary.json."""
    trial = study.get_trials(deepcopy=False)[number]
    attrs = trial.user_attrs
    line = {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "value": attrs.get(OBJECTIVE),
        "run": attrs.get("run"),
        "worker": attrs.get("worker"),
        "epochs": len(trial.intermediate_values) or None,
    }
    if trial.state == optuna.trial.TrialState.FAIL:
        line["state"] = "failed" if "error" in attrs else "interrupted"
        line["error"] = attrs.get("error")
    if "pruned_after_epoch" in attrs:
        line["pruned_after_epoch"] = attrs["pruned_after_epoch"]
    if trial.datetime_start and trial.datetime_complete:
        line["duration_s"] = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
    return line


def write_results(
    tune_path: Path, study: optuna.Study, config: Config, trials: int, status: str, notes: Optional[list[str]] = None
) -> dict[str, Any]:
    """tune_summary.json, best.yaml (when a trial completed), the figures and tune_report.html."""
    tune_run = Run(tune_path)
    every = study.get_trials(deepcopy=False)
    overrides = list(config._overrides) or _saved_overrides(tune_run)  # a resumed search reads its first ones
    summary: dict[str, Any] = {
        "name": config.name,
        "seed": config.seed,
        "status": status,
        "trials_wanted": trials,
        "objective": f"metrics.json {objective_of(config)[0]} on the val split (maximised)",
        "objective_name": objective_of(config)[1],
        "pruning": f"MedianPruner on Keras {REPORTED} per epoch (n_startup_trials={PRUNER_STARTUP_TRIALS}, "
        f"n_warmup_steps={PRUNER_WARMUP_EPOCHS})",
        "search_space": {path: space.to_yaml() for path, space in config.tune.items()},
        "trials": [trial_line(study, trial.number) for trial in every],
        "best": None,
        "notes": list(notes or []),
        "set": overrides,  # the --set lines the search ran with (best.yaml keeps them)
    }
    complete = [trial for trial in every if trial.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda trial: (trial.value, -trial.number))  # ties: the earlier trial
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run": best.user_attrs.get("run"),
            "config": contract.TUNE_BEST,
        }
        best_config = trial_config(config, dict(best.params), split=config.evaluate.split)
        write_text_atomic(
            tune_run.file(contract.TUNE_BEST),
            f"# cnnctl tune {tune_path}: trial {best.number}, {objective_of(config)[1]} {best.value:.4f}\n"
            f"# cnnctl train {tune_run.file(contract.TUNE_BEST)} scores it once on the test split\n"
            + _kept_overrides_comment(overrides)
            + best_config.to_yaml(),
        )
    elif every:
        summary["notes"].append("no trial completed (all pruned, failed or interrupted): no best.yaml")
    summary["importances"] = param_importances(study, complete, config)
    tune_run.write_json(contract.TUNE_SUMMARY, summary)
    draw_tune_figures(
        tune_run, summary, log_params=[path for path, space in config.tune.items() if space.kind == "log_uniform"]
    )
    write_tune_report(tune_run, summary)
    return summary


def param_importances(study: optuna.Study, complete: list, config: Config) -> Optional[dict[str, float]]:
    """Optuna's fANOVA importance of each tuned path, when ≥ 2 trials completed and more than one path varies."""
    if len(complete) < 2 or len(config.tune) < 2:
        return None
    try:
        return {path: float(value) for path, value in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError):  # too few distinct values for a forest to split on
        return None


def _saved_overrides(tune_run: Run) -> list[str]:
    try:
        saved = tune_run.read_json(contract.TUNE_SUMMARY).get("set") if tune_run.has(contract.TUNE_SUMMARY) else None
    except CnnctlError:
        return []
    return [str(line) for line in saved] if isinstance(saved, list) else []


def _kept_overrides_comment(overrides: list[str]) -> str:
    """best.yaml's word on the `--set` lines of the search: a search often runs shortened (`train.epochs=3`), and
    the config below keeps what it ran with."""
    if not overrides:
        return ""
    shown = " ".join(f"--set {line}" for line in overrides)
    return (
        f"# the search ran with {shown}; the values below keep them: a search often runs shortened, so give the\n"
        "# final run its own (e.g. cnnctl train best.yaml --set train.epochs=30)\n"
    )
