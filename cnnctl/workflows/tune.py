"""Workflows: hyperparameter search — Optuna trials of one config, a run folder per trial, the best config.

`cnnctl tune CONFIG --trials N` reads the config's `tune:` section (config path → search space) and makes
`runs/<id>-<name>-tune/` holding config.yaml (the config as given, `tune:` included), study.db (Optuna's SQLite
storage), `trial-0/`, `trial-1/`, ... and, at the end, tune_summary.json, best.yaml, the figures and
tune_report.html. Each trial folder is a complete run folder of the config with the trial's values applied.

Every choice is made on the validation split: each trial runs with `evaluate.split: val`, its Keras
`val_accuracy` is reported to a MedianPruner after every epoch, and its score is metrics.json's `accuracy` on the
val split (the model the run keeps: early stopping's best weights when they are restored). The test split is
never scored during a search; best.yaml puts evaluate.split back, so `cnnctl train best.yaml` scores the winner
once on test.

A pruned trial stops after the epoch the pruner named and is still evaluated on val, so its folder holds every
file of a run; environment.json says `status: pruned` and `pruned_after_epoch`. Pruned trials never win.

Trials are counted in the study, not in a process: `--workers W` runs W processes on the same study.db, each
taking the next trial under a file lock (study.lock), so the search stops at N whoever runs it, and `--resume`
continues a stopped search up to N (trials stopped by Ctrl-C are recorded as failed and not counted).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import keras
import optuna
import sqlalchemy

from cnnctl import runtime
from cnnctl.config.loading import (
    load_config,
)
from cnnctl.config.schema import Config
from cnnctl.config.sources import BUILTIN_SOURCES, FILE_SOURCES
from cnnctl.errors import CnnctlError, ConfigError, Interrupted, RunError, first_line
from cnnctl.reporting import report
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run, create_run
from cnnctl.runs.status import finish_run, is_training
from cnnctl.training import distribute
from cnnctl.training.prepare import prepare
from cnnctl.training.signals import signals_interrupt
from cnnctl.workflows.tracking import Tracker, tune_parent
from cnnctl.workflows.train import Announce, train_run
from cnnctl.workflows.tune_space import build_model_ends, check_search_space, distributions, trial_config
from cnnctl.workflows.tune_study import (  # noqa: F401 - open_study is also read from here (tests, the worker)
    STUDY_NAME,
    check_study_file,
    check_trial_folders_free,
    counts_toward_total,
    open_study,
    sampler_for,
    study_lock,
    trial_folder_name,
)
from cnnctl.workflows.tune_summary import (
    OBJECTIVE,
    REPORTED,
    objective_of,
    trial_line,
    write_results,
)

OnTrial = Callable[[dict[str, Any]], None]


class PruningCallback(keras.callbacks.Callback):
    """Reports `val_accuracy` to an Optuna trial after every epoch and stops training when the pruner says so.

    Optuna's own Keras integration lives in a separate package (optuna-integration) and raises from inside fit;
    this one sets `model.stop_training`, so the run ends like an early-stopped one: its state saved, the model
    evaluated, every file written.

    Args:
        trial: the Optuna trial being trained.
        monitor: the logged value reported each epoch. Defaults to `"val_accuracy"`.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = REPORTED):
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.pruned_after_epoch: Optional[int] = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return  # train.metrics without accuracy: nothing to compare, no pruning
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned_after_epoch = epoch + 1
            self.model.stop_training = True


def tune(
    config: Config,
    runs_dir: Any,
    trials: int,
    *,
    workers: int = 1,
    origin: str = "",
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_trial: Optional[OnTrial] = None,
) -> tuple[Path, dict[str, Any]]:
    """Search `config.tune` over `trials` trials in a new tune folder in `runs_dir`; returns the folder and the
    summary written there. `announce` is told when each trial's run starts, `on_trial(line)` when it ends."""
    check_arguments(config, trials, workers, origin)
    check_search_space(config, origin)
    # The config with its own values is prepared before any folder exists: data and model mistakes leave nothing.
    prepared = prepare(trial_config(config, {}, split=config.evaluate.split), origin)
    if "val" not in prepared.dataset.splits:
        raise ConfigError(
            f"{origin or 'config'}: data.validation_split: cnnctl tune scores every trial on the "
            "validation split and this data has none; set data.validation_split: 0.1 (or give a "
            "val split)"
        )
    build_model_ends(config, prepared.dataset, origin)
    del prepared
    keras.backend.clear_session()
    tune_run = create_run(runs_dir, f"{config.name or 'run'}-tune")
    write_text_atomic(tune_run.file(contract.CONFIG), config.to_yaml())
    open_study(tune_run.path, config, create=True)
    return run_search(tune_run.path, config, trials, workers, origin, verbose, announce, on_trial)


def resume_tune(
    folder: Union[str, Path],
    trials: int,
    *,
    workers: int = 1,
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_trial: Optional[OnTrial] = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue the search in `folder` until it holds `trials` trials; finished trials are kept as they are."""
    tune_path = Path(folder)
    tune_run = Run(tune_path)
    if not (tune_run.has(contract.TUNE_STUDY) and tune_run.has(contract.CONFIG)):
        raise RunError(
            f"{tune_path}: not a cnnctl tune folder (it needs {contract.CONFIG} and "
            f"{contract.TUNE_STUDY}); give the runs/<id>-<name>-tune folder"
        )
    origin = str(tune_run.file(contract.CONFIG))
    config = load_config(tune_run.file(contract.CONFIG))
    check_arguments(config, trials, workers, origin)
    check_search_space(config, origin)
    check_study_file(tune_path)
    try:
        study = open_study(tune_path, config)
        study.get_trials(deepcopy=False)  # a damaged file fails here, not in the middle of the search
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise RunError(
            f"{tune_path / contract.TUNE_STUDY}: damaged ({first_line(exc.orig or exc)}); the study cannot be resumed"
        ) from None
    check_trial_folders_free(tune_path, len(study.get_trials(deepcopy=False)))
    with study_lock(tune_path):
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            folder_run = Run(tune_path / trial_folder_name(trial.number))
            if not is_training(folder_run):  # its process is gone (kill -9, power cut): it will not finish
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return run_search(tune_path, config, trials, workers, origin, verbose, announce, on_trial)


def check_arguments(config: Config, trials: int, workers: int, origin: str) -> None:
    if trials < 1:
        raise ConfigError(f"--trials {trials}: must be at least 1 (20 to 100 are usual)")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    distribute.check_local_processes("--workers", workers)
    if workers > 1 and config.data.source not in (*BUILTIN_SOURCES, *FILE_SOURCES):
        raise ConfigError(
            f"--workers {workers}: data.source '{config.data.source}' exists only in this process; "
            "extra workers are new processes and need a built-in or file source (npz, npy, ...)"
        )


def run_search(
    tune_path: Path,
    config: Config,
    trials: int,
    workers: int,
    origin: str,
    verbose: int,
    announce: Optional[Announce],
    on_trial: Optional[OnTrial],
) -> tuple[Path, dict[str, Any]]:
    """Start `workers - 1` extra processes, work in this one too, wait for them, then write the results."""
    parent = tune_parent(Run(tune_path), config)  # train.mlflow: the trials become its child runs
    extra = [start_worker(tune_path, trials, index) for index in range(2, workers + 1)]
    failures = []
    try:
        work(tune_path, config, trials, worker=1, origin=origin, verbose=verbose, announce=announce, on_trial=on_trial)
    except BaseException as exc:
        for process in extra:
            process.terminate()  # SIGTERM: each records its running trial as interrupted
        for process in extra:
            process.wait()
        with contextlib.suppress(Exception):  # the summary of what finished; never hide why the search stopped
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            summary = write_results(tune_path, open_study(tune_path, config), config, trials, status=status)
            if parent is not None:
                parent.finish_search(summary)
        if isinstance(exc, Interrupted):
            raise Interrupted(
                exc.signum,
                f"interrupted ({exc.signal_name}): the search in {tune_path} stopped; "
                f"its finished trials are kept in {contract.TUNE_STUDY}\n"
                f"resume with: cnnctl tune --resume {tune_path} --trials {trials}",
            ) from None
        raise
    for index, process in enumerate(extra, start=2):
        if process.wait() != 0:
            failures.append(
                f"worker {index} exited with {process.returncode}; see "
                f"{tune_path / contract.TUNE_WORKER_LOG.format(index=index)}"
            )
    summary = write_results(
        tune_path, open_study(tune_path, config), config, trials, status="completed", notes=failures
    )
    if parent is not None:
        parent.finish_search(summary)
    return tune_path, summary


def start_worker(tune_path: Path, trials: int, index: int) -> subprocess.Popen:
    log = open(tune_path / contract.TUNE_WORKER_LOG.format(index=index), "ab")
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "cnnctl.workflows.tune", str(tune_path), str(trials), str(index)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def work(
    tune_path: Path,
    config: Config,
    trials: int,
    *,
    worker: int = 1,
    origin: str = "",
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_trial: Optional[OnTrial] = None,
) -> None:
    """Take and train the study's next trial until it holds `trials` counted trials."""
    study = open_study(tune_path, config)
    spaces = distributions(config)
    while True:
        with study_lock(tune_path):
            every = study.get_trials(deepcopy=False)
            if sum(counts_toward_total(trial) for trial in every) >= trials:
                return
            study.sampler = sampler_for(config, len(every))
            trial = study.ask(spaces)
            trial.set_user_attr("worker", worker)
        keras.backend.clear_session()  # the previous trial's model is saved; free its graph
        line = run_trial(study, trial, config, tune_path, origin, verbose, announce)
        if on_trial is not None:
            on_trial({**line, "objective_name": objective_of(config)[1]})


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    config: Config,
    tune_path: Path,
    origin: str,
    verbose: int,
    announce: Optional[Announce],
) -> dict[str, Any]:
    """Train one trial into trial-<n>/ and tell the study how it ended; returns its summary line."""
    states = optuna.trial.TrialState
    params = dict(trial.params)
    run = Run(tune_path / trial_folder_name(trial.number))
    trial.set_user_attr("run", run.path.name)
    try:
        try:
            prepared = prepare(trial_config(config, params), origin)
        except CnnctlError as exc:  # values that make no model (a kernel larger than its input, ...): a bad trial
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=states.FAIL)
            return trial_line(study, trial.number)
        if run.path.exists():  # trial numbers are the study's: a folder of that name was not made by this search
            raise RunError(
                f"{run.path}: already exists, but the study's trial {trial.number} is new; move the folder away, "
                "then resume"
            )
        run.path.mkdir()
        pruning = PruningCallback(trial)
        try:
            result = train_run(
                prepared.config,
                origin=origin,
                verbose=verbose,
                announce=announce,
                prepared=prepared,
                into=run,
                extra_callbacks=[pruning],
            )
        except RunError as exc:  # a diverged loss (NaN): the run says failed, the search goes on
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=states.FAIL)
            return trial_line(study, trial.number)
        value = float(result.metrics[objective_of(config)[0]])
        trial.set_user_attr(OBJECTIVE, value)  # the attribute every study keeps its scores under
        if pruning.pruned_after_epoch is not None:
            finish_run(run, "pruned", pruned_after_epoch=pruning.pruned_after_epoch)
            report.write_report(run)  # the page shows the pruned status
            if prepared.config.train.mlflow is not None:
                Tracker(run, prepared.config).retag("pruned")
            trial.set_user_attr("pruned_after_epoch", pruning.pruned_after_epoch)
            study.tell(trial, state=states.PRUNED)
        else:
            study.tell(trial, value)
    except BaseException:  # Ctrl-C, SIGTERM, out of memory: not a verdict on the values; resume runs another
        study.tell(trial, state=states.FAIL)
        raise
    return trial_line(study, trial.number)


def _worker_main(argv: list[str]) -> int:
    """`python -m cnnctl.workflows.tune TUNEFOLDER TRIALS INDEX`: an extra worker started by run_search."""
    tune_path, trials, index = Path(argv[0]), int(argv[1]), int(argv[2])
    runtime.prepare_tensorflow_environment()
    config = load_config(tune_path / contract.CONFIG)
    try:
        with signals_interrupt():
            work(tune_path, config, trials, worker=index, origin=str(tune_path / contract.CONFIG))
    except Interrupted as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
