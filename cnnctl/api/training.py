"""The front door, training: train, resume, several processes, cross-validation, tuning."""

from __future__ import annotations

import contextlib
import json
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from cnnctl import runtime
from cnnctl.errors import CnnctlError, ConfigError
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run, create_run, default_runs_dir
from cnnctl.runs.output import check_output_path, check_png_name, write_output_bytes, write_output_text

if TYPE_CHECKING:  # for annotations only: importing them would load pydantic, numpy or TensorFlow
    from cnnctl.config.schema import Config
    from cnnctl.training.prepare import Prepared
    from cnnctl.workflows.train import Announce, TrainResult


from cnnctl.api.common import (
    ARRAYS_FILE,
    ConfigLike,
    PathLike,
    RunLike,
    _origin,
    _use_run_backend,
    expect,
    find_run,
    load,
)
from cnnctl.config.sources import ARRAYS_SOURCE, arrays_source

# ---------------------------------------------------------------- training


def train(
    config: ConfigLike,
    *,
    arrays: Optional[Mapping[str, Any]] = None,
    overrides: Sequence[str] = (),
    name: Optional[str] = None,
    runs_dir: Optional[PathLike] = None,
    verbose: int = 0,
    announce: Optional[Announce] = None,
) -> TrainResult:
    """Train a config into a new run folder, evaluate it, draw its figures and report; return the result.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`.
        arrays: numpy arrays to train on instead of `data.source`: x_train, y_train and optionally x_val,
            y_val, x_test, y_test (labels: class indices or names). The run keeps a copy (arrays.npz), so
            `evaluate` and `resume` work later from the folder alone. Defaults to None.
        overrides: `--set` style changes, applied in order, e.g. ["train.epochs=3"]. Defaults to ().
        name: the run's name (`--name`), instead of the config's. Defaults to None.
        runs_dir: where the run folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress: 0 silent, 1 a bar, 2 a line per epoch. Defaults to 0.
        announce: called with (run, prepared, note) once the run folder exists, before the first epoch (the
            command line prints its header there). Defaults to None.

    Returns:
        TrainResult with `run` / `path`, `model`, `history` (every epoch), `metrics` (metrics.json) and
        `warnings` (figures or report.html that could not be drawn: the run is complete; `plot` draws them again).
    """
    resolved = load(config, overrides, name)
    runtime.quiet_backend_import()  # before the training modules import Keras (and TensorFlow's start-up logs)
    from cnnctl.workflows.train import train_run

    announce = _tell_launcher(announce)
    if arrays is None:
        return train_run(
            resolved, default_runs_dir(runs_dir), origin=_origin(config), verbose=verbose, announce=announce
        )
    return _train_on_arrays(resolved, arrays, runs_dir, verbose, announce)


def _train_on_arrays(
    config: Config, arrays: Mapping[str, Any], runs_dir: Optional[PathLike], verbose: int, announce: Optional[Announce]
) -> TrainResult:
    import numpy as np

    from cnnctl.data.raw import ARRAY_KEYS, raw_from_mapping
    from cnnctl.training.prepare import prepare
    from cnnctl.workflows.train import train_run

    if config.data.source != ARRAYS_SOURCE and "source" in config.data.model_fields_set:
        raise ConfigError(
            f"data.source: {config.data.source}, but arrays were passed too; leave data.source out "
            f"(or set it to {ARRAYS_SOURCE}) to train on the arrays"
        )
    config.data.source = ARRAYS_SOURCE
    checked = raw_from_mapping(arrays, "arrays passed to cnnctl.train")
    with arrays_source(checked):
        prepared = prepare(config)
    run = create_run(default_runs_dir(runs_dir), config.name or "run")
    saved = {key: value for key, value in vars(checked).items() if key in ARRAY_KEYS and value is not None}
    if checked.class_names is not None:
        saved["class_names"] = np.array(checked.class_names)
    with atomic_path(run.file(ARRAYS_FILE)) as temp:
        np.savez(temp, **saved)
    # The run's config.yaml reads the saved copy (relative to the run folder), so the folder rebuilds the run.
    prepared.config = config.model_copy(deep=True)
    prepared.config.data = config.data.model_copy(update={"source": "npz", "path": ARRAYS_FILE})
    return train_run(prepared.config, prepared=prepared, into=run, verbose=verbose, announce=announce)


def resume(
    run: RunLike,
    *,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    fine_tune_epochs: Optional[int] = None,
    overrides: Sequence[str] = (),
    runs_dir: Optional[PathLike] = None,
    verbose: int = 0,
    announce: Optional[Announce] = None,
) -> TrainResult:
    """Continue a stopped run from its last completed epoch (or train a completed one for more `epochs`, or more
    `fine_tune_epochs` when it has a fine-tuning phase). When there is nothing to do, the result has no model and
    its `note` says why.

    Args:
        run: a run folder, run id, "last" or a TrainResult.
        epochs, batch_size, fine_tune_epochs: the settings a resumed run may change. Default to None (as saved).
        overrides: the same as `--set` lines (train.epochs, train.batch_size, train.fine_tune.epochs only),
            applied before the keyword arguments. Defaults to ().
        runs_dir: where a run id or "last" is looked up. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress. Defaults to 0.
        announce: as for `train`. Defaults to None.
    """
    changes = list(overrides) + [
        f"train.{key}={value}"
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("fine_tune.epochs", fine_tune_epochs))
        if value is not None
    ]
    # Found quietly first, for its backend: a wrong RUN is reported by resume_run, in its order (a --set that
    # cannot change comes first).
    with contextlib.suppress(CnnctlError):
        _use_run_backend(find_run(run, runs_dir))
    runtime.quiet_backend_import()
    from cnnctl.workflows.resume import resume_run

    target = run if isinstance(run, (str, Path)) else find_run(run, runs_dir)
    return resume_run(target, runs_dir, changes, verbose=verbose, announce=_tell_launcher(announce))


def launch_processes(
    count: int,
    *,
    config: Optional[PathLike] = None,
    overrides: Sequence[str] = (),
    name: Optional[str] = None,
    runs_dir: Optional[PathLike] = None,
    resume: Optional[RunLike] = None,
    ray: Optional[str] = None,
) -> int:
    """`cnnctl train --processes N`: train one config (or resume one run) in `count` processes on this machine,
    joined as a multi-host JAX job is; returns the job's exit code. Process 0's output is shown on this process's
    stdout and stderr (see cnnctl/training/processes.py). With `ray` (a cluster's address, or "local"), the
    processes run on that Ray cluster instead (cnnctl/training/ray_launch.py); the runs dir must be on storage its
    nodes share."""
    from cnnctl.training.distribute import check_local_processes

    if ray is None:
        check_local_processes("--processes", count)
    else:
        runtime.require_package("ray", f"--ray {ray}", "pip install 'cnnctl[ray]'")
    args: list[str] = []
    resumed = None
    if resume is not None:
        if config is not None or name is not None:
            raise ConfigError("train: a resumed run uses its own config.yaml and name; give --resume RUN alone")
        resumed = find_run(resume, runs_dir)
        load(resumed.file(contract.CONFIG))
        args += ["--resume", str(resumed.path.resolve())]
    else:
        if config is None:
            raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml --processes 2")
        load(config, overrides, name)  # a typo is reported once, here, before any process starts
        args.append(str(Path(config).resolve()))
        if name is not None:
            args += ["--name", name]
        args += ["--runs-dir", str(default_runs_dir(runs_dir).resolve())]
    if runtime.backend() != "jax":
        raise ConfigError(
            "--processes: several training processes run on the JAX backend (Keras' DataParallel; "
            "TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3): KERAS_BACKEND=jax "
            f"cnnctl train ... --processes {count} (pip install 'cnnctl[jax]'); on one machine with "
            "several GPUs, TensorFlow trains on all of them in one process (train.distribute: auto)"
        )
    for override in overrides:
        args += ["--set", override]
    if ray is not None:
        from cnnctl.training.ray_launch import launch_on_ray

        return launch_on_ray(args, count, ray)
    from cnnctl.training.processes import launch

    return launch(args, count, resumed)


def _tell_launcher(announce: Optional[Announce]) -> Optional[Announce]:
    """In a worker of `--processes N`, process 0 tells the launcher where its run folder is, then announces."""
    from cnnctl.training.processes import launched_by, tell_launcher

    if not launched_by():
        return announce

    def told(run: Run, prepared: Prepared, note: str) -> None:
        tell_launcher(run, prepared)
        if announce is not None:
            announce(run, prepared, note)

    return told


def lr_find(
    config: ConfigLike,
    *,
    overrides: Sequence[str] = (),
    out: Optional[PathLike] = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    overwrite: bool = False,
) -> tuple[Any, Path, Path]:
    """The learning-rate range test: the rate rises exponentially from `min_lr` to `max_lr` over at most one epoch
    of a fresh model of the config, and the loss against the rate shows where training is fast and where it breaks.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`.
        overrides: `--set` style changes. Defaults to ().
        out: the PNG; a JSON of the same name beside it holds the numbers. Defaults to `<name>-lr_find.png`.
        min_lr, max_lr: the ramp's ends. Defaults to 1e-7 and 10.
        steps: batches in the ramp, at most one epoch. Defaults to 100.
        overwrite: replace existing files (never a run's own). Defaults to False.

    Returns:
        (the finding: `suggestion`, `lowest_loss_at`, `diverged_at`, `learning_rates`, `losses`; the PNG; the JSON).
    """
    resolved = load(config, overrides)
    png = Path(out) if out is not None else Path(f"{resolved.name}-lr_find.png")
    check_png_name(png, "the loss curve")
    record = png.with_suffix(".json")
    for path in (png, record):  # both before any work: a mistake costs nothing
        check_output_path(path, overwrite=overwrite, example=f"{resolved.name}-lr_find.png")
    runtime.quiet_backend_import()
    from cnnctl.reporting import plots
    from cnnctl.reporting.curves import lr_find_figure
    from cnnctl.training.lr_find import find_learning_rate
    from cnnctl.training.prepare import prepare

    prepared = prepare(resolved, _origin(config))
    finding = find_learning_rate(prepared, min_lr=min_lr, max_lr=max_lr, steps=steps)
    write_output_bytes(png, plots.png_bytes(lr_find_figure(finding)), overwrite=overwrite)
    write_output_text(record, json.dumps(finding.record(), indent=2) + "\n", overwrite=overwrite)
    return finding, png, record


def cross_validate(
    config: ConfigLike,
    folds: int,
    *,
    overrides: Sequence[str] = (),
    runs_dir: Optional[PathLike] = None,
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_fold: Optional[Callable[[int, dict[str, Any]], None]] = None,
) -> tuple[Path, dict[str, Any]]:
    """Stratified K-fold cross-validation: `folds` trainings, each a run folder scored on its held-out fold.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`.
        folds: K.
        overrides: `--set` style changes. Defaults to ().
        runs_dir: where the `<id>-<name>-cv` folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress. Defaults to 0.
        announce: called when each fold's run starts. Defaults to None.
        on_fold: called with (fold index, its metrics) when each fold ends. Defaults to None.

    Returns:
        The cv folder and cv_summary.json as a dict (metrics per fold, mean and standard deviation).
    """
    folds = int(expect(folds, (numbers.Integral,), "--folds", "a whole number of folds, e.g. --folds 5"))
    resolved = load(config, overrides)
    runtime.quiet_backend_import()
    from cnnctl.workflows.crossval import cross_validate as run_folds

    return run_folds(
        resolved,
        default_runs_dir(runs_dir),
        folds,
        origin=_origin(config),
        verbose=verbose,
        announce=announce,
        on_fold=on_fold,
    )


def tune(
    config: ConfigLike,
    trials: int,
    *,
    overrides: Sequence[str] = (),
    workers: int = 1,
    runs_dir: Optional[PathLike] = None,
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_trial: Optional[Callable[[dict], None]] = None,
) -> tuple[Path, dict[str, Any]]:
    """Search the config's `tune:` section with Optuna, every trial a run folder scored on the val split.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`, with a `tune:` section.
        trials: how many trials the search runs in all.
        overrides: `--set` style changes, applied in order. Defaults to ().
        workers: processes sharing the search (extras are new processes: a built-in or file data source).
            Defaults to 1.
        runs_dir: where the `<id>-<name>-tune` folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress: 0 silent, 1 a bar, 2 a line per epoch. Defaults to 0.
        announce: called when each trial's run starts. Defaults to None.
        on_trial: called with each finished trial's line of tune_summary.json. Defaults to None.

    Returns:
        The tune folder and tune_summary.json as a dict (`trials`, `best` with its params; best.yaml beside it).
    """
    resolved = load(config, overrides)
    runtime.quiet_backend_import()
    from cnnctl.workflows import tune as search

    return search.tune(
        resolved,
        default_runs_dir(runs_dir),
        trials,
        workers=workers,
        origin=_origin(config),
        verbose=verbose,
        announce=announce,
        on_trial=on_trial,
    )


def resume_tune(
    folder: PathLike,
    trials: int,
    *,
    workers: int = 1,
    verbose: int = 0,
    announce: Optional[Announce] = None,
    on_trial: Optional[Callable[[dict], None]] = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue a stopped search in its `<id>-<name>-tune` folder until it holds `trials` counted trials.
    Arguments and result as for `tune`."""
    runtime.quiet_backend_import()
    from cnnctl.workflows import tune as search

    return search.resume_tune(folder, trials, workers=workers, verbose=verbose, announce=announce, on_trial=on_trial)
