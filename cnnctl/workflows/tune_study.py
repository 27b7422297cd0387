"""Workflows: `cnnctl tune`'s study file — study.db opened (or refused, damaged or foreign, before SQLite reads it),
the TPE sampler, the lock that lets workers share it, and the trial-<n> folders its trial numbers name."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import optuna

from cnnctl.config.schema import Config
from cnnctl.errors import RunError
from cnnctl.files import not_regular_reason
from cnnctl.runs import contract
from cnnctl.workflows.tune_summary import PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS

try:
    import fcntl
except ImportError:  # not POSIX: one worker, no lock needed
    fcntl = None

STUDY_NAME = "cnnctl-tune"


def open_study(tune_path: Path, config: Config, create: bool = False) -> optuna.Study:
    """The study in `tune_path`/study.db (made when `create`); maximises the val accuracy."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library is silent; the console is the CLI's
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tune_path / contract.TUNE_STUDY}", engine_kwargs={"connect_args": {"timeout": 60}}
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    if create:
        return optuna.create_study(
            storage=storage, study_name=STUDY_NAME, direction="maximize", pruner=pruner, sampler=sampler_for(config, 0)
        )
    path = tune_path / contract.TUNE_STUDY
    try:
        return optuna.load_study(storage=storage, study_name=STUDY_NAME, pruner=pruner, sampler=sampler_for(config, 0))
    except KeyError:  # Optuna's "Record does not exist": a study of another name
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        raise RunError(
            f"{path}: holds no study named {STUDY_NAME} (it holds {', '.join(names) or 'none'}); it was not written "
            "by cnnctl tune"
        ) from None


def check_study_file(tune_path: Path) -> None:
    """Before SQLite opens study.db on --resume: a regular, non-empty SQLite file. A FIFO would block the open, a
    folder or /dev/zero would reach SQLite as an error it reports in its own words. Raises RunError."""
    path = tune_path / contract.TUNE_STUDY
    reason = not_regular_reason(path)
    if reason is not None:
        raise RunError(f"{path}: {reason}; a tune folder's {contract.TUNE_STUDY} is the SQLite file of its study")
    with open(path, "rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        what = "is empty" if not header else "is not an SQLite database"
        raise RunError(f"{path}: {what}; the study cannot be resumed (start a new search with cnnctl tune CONFIG)")


def sampler_for(config: Config, trials_so_far: int) -> optuna.samplers.TPESampler:
    """TPE seeded by the config's seed and the trial's number: a search is repeatable, and no two workers or
    resumed processes draw the same random start-up values. constant_liar keeps parallel workers apart."""
    return optuna.samplers.TPESampler(seed=config.seed + trials_so_far, constant_liar=True)


@contextlib.contextmanager
def study_lock(tune_path: Path) -> Iterator[None]:
    """Held while a worker counts the trials and asks for the next, so W workers start exactly N trials."""
    if fcntl is None:
        yield
        return
    lock = tune_path / contract.TUNE_LOCK
    reason = not_regular_reason(lock)
    if reason is not None and reason != "does not exist":  # a FIFO would block the open for ever
        raise RunError(f"{lock}: {reason}; it is the search's lock file: remove it, then resume")
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def counts_toward_total(trial: optuna.trial.FrozenTrial) -> bool:
    """Every trial counts except one stopped by an interrupt or a dead process (a failed trial without an
    `error`): a resumed search runs a fresh trial in its place."""
    return trial.state != optuna.trial.TrialState.FAIL or "error" in trial.user_attrs


def check_trial_folders_free(tune_path: Path, next_number: int) -> None:
    """Before a resume touches the study: a trial-<n> folder the study has not made yet (n at or past its next
    trial number) would stop the search at that trial, after the study had counted it."""
    for folder in tune_path.glob(f"{contract.TUNE_TRIAL_PREFIX}*"):
        number = folder.name[len(contract.TUNE_TRIAL_PREFIX) :]
        if number.isdigit() and int(number) >= next_number:
            raise RunError(
                f"{folder}: already exists, but the study's trial {int(number)} is new; move the folder away, then "
                "resume"
            )


def trial_folder_name(number: int) -> str:
    return f"{contract.TUNE_TRIAL_PREFIX}{number}"
