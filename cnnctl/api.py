"""cnnctl's front door: every command of the command line is one call here, and so is every use from Python.

The same pipeline as the command line, minus the console: nothing is printed unless `verbose` asks for Keras'
progress, no signal handler is installed (the command line wraps these calls in `signals_interrupt`), and
mistakes raise `cnnctl.ConfigError`, `DataError` or `RunError` with the one-line message the command line prints.

Importing this module is cheap (the standard library and a few small cnnctl modules): TensorFlow, Keras, numpy
and the stages are imported by the calls that need them, so `cnnctl --help` stays fast.

Example:

    import cnnctl

    result = cnnctl.train("configs/digits.yaml", overrides=["train.epochs=3"])
    print(result.metrics["accuracy"], result.path)          # runs/<id>-digits/
    result = cnnctl.train({"model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}},
                          arrays={"x_train": x, "y_train": y})
    predictions = cnnctl.predict(result.run, ["digit.png"])
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

from cnnctl import runtime
from cnnctl.errors import CnnctlError, ConfigError, RunError, in_config_file
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, atomic_path, create_run, default_runs_dir, resolve_run
from cnnctl.runs.output import check_output_path, write_output_bytes, write_output_text
from cnnctl.training.signals import signals_interrupt

if TYPE_CHECKING:  # for annotations only: importing them would load pydantic, numpy or TensorFlow
    from cnnctl.config.schema import Config
    from cnnctl.evaluation.explain import Explanation
    from cnnctl.evaluation.export import ExportResult
    from cnnctl.evaluation.predict import Predictions
    from cnnctl.reporting.compare import CollectionSummary, Comparison, RunSummary
    from cnnctl.training.loop import Announce, TrainResult
    from cnnctl.training.prepare import Prepared

__all__ = [
    "ARRAYS_FILE",
    "CheckResult",
    "FilterResult",
    "PlotResult",
    "check",
    "compare",
    "config_reference",
    "contract",
    "cross_validate",
    "default_runs_dir",
    "describe_data",
    "describe_model",
    "evaluate",
    "explain",
    "export",
    "filter_image",
    "find_run",
    "launch_processes",
    "list_collections",
    "list_runs",
    "load",
    "plot",
    "predict",
    "prepare_environment",
    "report",
    "resume",
    "resume_tune",
    "schema",
    "signals_interrupt",
    "train",
    "tune",
]

ConfigLike = Union[str, Path, Mapping[str, Any], "Config"]
RunLike = Union[str, Path, Run, "TrainResult"]
PathLike = Union[str, Path]
ARRAYS_FILE = "arrays.npz"  # a run trained on arrays keeps them here, so evaluate and resume can reload them


# ---------------------------------------------------------------- configs and runs


def prepare_environment() -> None:
    """Settings TensorFlow reads once, at its import (quiet logs, oneDNN kernels on x86 CPUs); a value the user
    exported wins. The command line calls it first; a Python program may, before it imports TensorFlow."""
    runtime.prepare_tensorflow_environment()


def describe_model(model: Any) -> Any:
    """The layer table of a Keras model: per layer its output shape, parameters, receptive field and FLOPs."""
    from cnnctl.model.summary import describe

    return describe(model)


def load(config: ConfigLike, overrides: Sequence[str] = ()) -> Config:
    """Read a config (a YAML file, a dict shaped like one, or a `Config`) with `--set` style overrides, and put
    Keras on the config's `backend:` before anything imports it. The one way every command reads a config.

    Args:
        config: the config.
        overrides: changes such as "train.epochs=3", applied in order. Defaults to ().

    Returns:
        The validated Config, every default filled in.
    """
    from cnnctl.config.loading import load_config

    resolved = load_config(config, list(overrides))
    runtime.use_backend(resolved.backend)
    return resolved


def find_run(run: RunLike, runs_dir: Optional[PathLike] = None) -> Run:
    """A run folder, a run id in `runs_dir`, "last", a `Run` or a `TrainResult` → the Run. Temporary files a
    killed writer left in it are removed on the way."""
    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        return resolve_run(str(run), runs_dir)
    if hasattr(run, "run") and isinstance(run.run, Run):  # a TrainResult
        return run.run
    raise RunError(f"run: {run!r} is not a run; give a run folder, a run id, `last` or a TrainResult")


def _use_run_backend(run: Run) -> None:
    """A run's own `backend:`, applied before Keras is imported."""
    from cnnctl.config.loading import load_config

    runtime.use_backend(load_config(run.file(contract.CONFIG)).backend)


def _origin(config: ConfigLike) -> str:
    """The file named in data and config errors, when the config came from one."""
    return str(config) if isinstance(config, (str, Path)) else ""


# ---------------------------------------------------------------- training


def train(
    config: ConfigLike,
    *,
    arrays: Optional[Mapping[str, Any]] = None,
    overrides: Sequence[str] = (),
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
        runs_dir: where the run folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress: 0 silent, 1 a bar, 2 a line per epoch. Defaults to 0.
        announce: called with (run, prepared, note) once the run folder exists, before the first epoch (the
            command line prints its header there). Defaults to None.

    Returns:
        TrainResult with `run` / `path`, `model`, `history` (every epoch) and `metrics` (metrics.json).
    """
    resolved = load(config, overrides)
    runtime.quiet_backend_import()  # before the training modules import Keras (and TensorFlow's start-up logs)
    from cnnctl.training.loop import train_run

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

    from cnnctl.data.raw import ARRAY_KEYS, ARRAYS_SOURCE, arrays_source, raw_from_mapping
    from cnnctl.training.loop import train_run
    from cnnctl.training.prepare import prepare

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
    from cnnctl.training.resume import resume_run

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
) -> int:
    """`cnnctl train --processes N`: train one config (or resume one run) in `count` processes on this machine,
    joined as a multi-host JAX job is; returns the job's exit code. Process 0's output is shown on this process's
    stdout and stderr (see cnnctl/training/processes.py)."""
    from cnnctl.training.distribute import check_local_processes
    from cnnctl.training.processes import launch

    check_local_processes("--processes", count)
    args: list[str] = []
    resumed = None
    if resume is not None:
        if config is not None or name:
            raise ConfigError("train: a resumed run uses its own config.yaml and name; give --resume RUN alone")
        resumed = find_run(resume, runs_dir)
        load(resumed.file(contract.CONFIG))
        args += ["--resume", str(resumed.path.resolve())]
    else:
        if config is None:
            raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml --processes 2")
        load(config, overrides)  # a typo is reported once, here, before any process starts
        args.append(str(Path(config).resolve()))
        if name:
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
    resolved = load(config, overrides)
    runtime.quiet_backend_import()
    from cnnctl.training.crossval import cross_validate as run_folds

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
    from cnnctl.training import tune as search

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
    from cnnctl.training import tune as search

    return search.resume_tune(folder, trials, workers=workers, verbose=verbose, announce=announce, on_trial=on_trial)


# ---------------------------------------------------------------- checking a config and its data


@dataclass
class CheckResult:
    """What `cnnctl check` found: the prepared run (config, data, model) and its layer table."""

    prepared: Prepared
    layers: Any  # cnnctl.model.summary's description of the model: rows, totals, receptive fields

    @property
    def config(self) -> Config:
        return self.prepared.config


def check(config: ConfigLike, overrides: Sequence[str] = ()) -> CheckResult:
    """Validate a config, load its data, build its model and rehearse the first training step, as `train` does
    before it makes a run folder; nothing is written. A built-in dataset that is not downloaded is checked against
    zero images of its shape (`result.prepared.dataset.stand_in` says so)."""
    resolved = load(config, overrides)
    runtime.quiet_backend_import()
    from cnnctl.model.summary import describe
    from cnnctl.training.prepare import prepare

    prepared = prepare(resolved, _origin(config), stand_in_when_missing=True)  # checking needs no download
    return CheckResult(prepared, describe(prepared.model))


def describe_data(
    config: ConfigLike, out: Optional[PathLike] = None, *, overrides: Sequence[str] = (), overwrite: bool = False
) -> tuple[dict[str, Any], Path]:
    """Load a config's data as training would, and draw a grid of labelled samples; returns data.json's summary
    and the PNG's path.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`.
        out: the PNG. Defaults to `<name>-samples.png` in the current folder.
        overrides: `--set` style changes. Defaults to ().
        overwrite: replace `out` if it is an existing regular file (never a run's own file). Defaults to False.
    """
    from cnnctl.reporting.data_overview import describe_data as draw_samples

    resolved = load(config, overrides)
    out = Path(out) if out is not None else Path(f"{resolved.name}-samples.png")
    check_output_path(out, overwrite=overwrite, example=f"{resolved.name}-samples.png")  # not the config's mistake
    with in_config_file(_origin(config)):
        return draw_samples(resolved, out, overwrite=overwrite)


# ---------------------------------------------------------------- using a trained run


def evaluate(run: RunLike, split: Optional[str] = None, *, runs_dir: Optional[PathLike] = None) -> dict[str, Any]:
    """Recompute a run's metrics, report files, figures and report.html from its folder; returns metrics.json.
    `split` is "test" or "val" (default: the run's evaluate.split, else test)."""
    if split not in (None, "test", "val"):
        raise ConfigError(f"split: {split!r} must be 'test' or 'val'")
    resolved = find_run(run, runs_dir)  # a wrong RUN is reported before TensorFlow's start-up
    from cnnctl.evaluation.scoring import evaluate_run, load_model
    from cnnctl.reporting import figures
    from cnnctl.reporting import report as run_report

    model = load_model(resolved)
    metrics = evaluate_run(resolved, split, model)
    figures.draw_run_figures(resolved, model)
    run_report.write_report(resolved)
    return metrics


def predict(
    run: RunLike,
    inputs: Any,
    *,
    out: Optional[PathLike] = None,
    top_k: int = 3,
    min_confidence: Optional[float] = None,
    overwrite: bool = False,
    runs_dir: Optional[PathLike] = None,
) -> Predictions:
    """Classify image files, folders of images, .npz files, or a numpy array of examples with a trained run.

    Image files are read as 8-bit pictures and brought to the run's training units; an array (or .npz) is
    taken in the units of the training data, one example per row.

    Args:
        run: a run folder, run id, "last" or a TrainResult.
        inputs: a path, a list of paths, or a numpy array of examples.
        out: also write every prediction to this CSV (input, rank, class_index, class, probability), `top_k`
            rows per input. Defaults to None.
        top_k: ranks per input in `out`. Defaults to 3.
        min_confidence: the reject option: an input whose top probability is below this is not answered
            (`Predictions.answered`; an `answered` column in `out`). Defaults to None (answer everything).
        overwrite: replace `out` if it is an existing regular file. Defaults to False.
        runs_dir: where a run id or "last" is looked up. Defaults to $CNNCTL_RUNS_DIR, else ./runs.

    Returns:
        Predictions: `labels` (one per example), `probabilities` (N, classes), `class_names`, `top_k(k)`.
    """
    from cnnctl.evaluation.predict import check_min_confidence, check_top_k, predict_run, write_predictions_csv

    check_top_k(top_k)
    check_min_confidence(min_confidence)
    if out is not None:  # before the model runs: a mistake costs nothing
        check_output_path(out, overwrite=overwrite, example="predictions.csv")
    resolved = find_run(run, runs_dir)
    if hasattr(inputs, "shape") and hasattr(inputs, "dtype"):  # a numpy array of examples
        predictions = predict_run(resolved, [], arrays=inputs)
    else:
        predictions = predict_run(resolved, [inputs] if isinstance(inputs, (str, Path)) else list(inputs))
    predictions.min_confidence = min_confidence
    if out is not None:
        write_predictions_csv(out, predictions, min(top_k, len(predictions.class_names)), overwrite)
    return predictions


def explain(
    run: RunLike,
    inputs: Any,
    *,
    layer: Optional[str] = None,
    class_name: Optional[Union[str, int]] = None,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    runs_dir: Optional[PathLike] = None,
) -> Explanation:
    """Grad-CAM: where in each input the run's model found the evidence for its answer.

    Args:
        run: a run folder, run id, "last" or a TrainResult.
        inputs: image files, folders of images, .npz or .npy files (as `predict` takes them), or a numpy array of
            examples in the training data's units.
        layer: the layer whose maps are read: a name, or "backbone/name" inside a nested model. Defaults to None:
            the last convolution.
        class_name: explain this class (a name or an index) instead of each input's predicted one. Defaults to None.
        out: the folder for one overlay PNG per input and explain.npz. Defaults to RUN/explain.
        overwrite: replace existing files in `out`. Defaults to False.
        runs_dir: where a run id or "last" is looked up. Defaults to $CNNCTL_RUNS_DIR, else ./runs.

    Returns:
        Explanation: `heatmaps` (N, *the input's spatial shape, in [0, 1]), `y_pred`, `y_prob`, `class_index`,
        `y_true` (-1 where unknown), `inputs`, `layer`, `folder`, `figures` (the overlays) and `npz`.
    """
    resolved = find_run(run, runs_dir)
    runtime.quiet_backend_import()  # before Grad-CAM imports Keras
    from cnnctl.evaluation.explain import explain_run

    if hasattr(inputs, "shape") and hasattr(inputs, "dtype"):
        return explain_run(resolved, [], inputs, layer=layer, class_name=class_name, out=out, overwrite=overwrite)
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return explain_run(resolved, paths, layer=layer, class_name=class_name, out=out, overwrite=overwrite)


def export(
    run: RunLike, format: str, *, out: Optional[PathLike] = None, runs_dir: Optional[PathLike] = None
) -> ExportResult:
    """Export a run's model.keras for serving without cnnctl, and check the artefact against it.

    Args:
        run: a run folder, run id, "last" or a TrainResult.
        format: "saved_model" (a TensorFlow SavedModel folder), "onnx" or "tflite" (LiteRT). ONNX needs
            `pip install "cnnctl[export]"`.
        out: where the artefact goes; never overwritten. Defaults to RUN/export/saved_model, model.onnx or
            model.tflite.
        runs_dir: where a run id or "last" is looked up. Defaults to $CNNCTL_RUNS_DIR, else ./runs.

    Returns:
        ExportResult: `path`, `info_path` (<artefact>.json: class names, input spec, output meaning, the check),
        and `max_abs_diff`, the largest probability difference from model.keras on the run's test split.
    """
    from cnnctl.evaluation.export import export_format, export_run

    export_format(format)  # before TensorFlow is imported: a typo is reported at once
    return export_run(find_run(run, runs_dir), format, out)


@dataclass
class PlotResult:
    """What `plot` wrote, and what it has to say about a feature-maps input."""

    paths: list[Path]
    feature_maps: list[tuple[str, tuple]] = field(default_factory=list)  # (layer name, activation shape)
    notes: list[str] = field(default_factory=list)


def plot(run: RunLike, *, feature_maps: Optional[PathLike] = None, runs_dir: Optional[PathLike] = None) -> PlotResult:
    """Redraw every figure of a run from its files (history.csv, predictions.npz, ...) and its report.html;
    with `feature_maps` (an image, or an .npz whose first example is used) also feature_maps.png."""
    resolved = find_run(run, runs_dir)
    from cnnctl.reporting import figures
    from cnnctl.reporting import report as run_report

    result = PlotResult([])
    if feature_maps is not None:  # first: a wrong image is reported before minutes of redrawing
        from cnnctl.reporting.feature_maps import draw_feature_maps

        path, result.feature_maps, result.notes = draw_feature_maps(resolved, feature_maps)
        result.paths.append(path)
    result.paths = figures.draw_run_figures(resolved) + result.paths
    result.paths.append(run_report.write_report(resolved))
    return result


def report(run: RunLike, *, runs_dir: Optional[PathLike] = None) -> Path:
    """Write the run's report.html (one self-contained page) and return its path."""
    from cnnctl.reporting import report as run_report

    return run_report.write_report(find_run(run, runs_dir))


def list_runs(runs_dir: Optional[PathLike] = None) -> list[RunSummary]:
    """Every run in the runs dir with its headline numbers, newest first (`cnnctl runs`)."""
    from cnnctl.reporting.compare import summarize_runs

    return summarize_runs(default_runs_dir(runs_dir))


def list_collections(runs_dir: Optional[PathLike] = None) -> list[CollectionSummary]:
    """Every cross-validation and tuning folder in the runs dir (whose runs are inside them), newest first, with
    its status, folds or trials, and headline score (`cnnctl runs` lists them after the runs)."""
    from cnnctl.reporting.compare import summarize_collections

    return summarize_collections(default_runs_dir(runs_dir))


def compare(
    runs: Sequence[RunLike],
    *,
    out: PathLike = "compare.png",
    overwrite: bool = False,
    runs_dir: Optional[PathLike] = None,
) -> Comparison:
    """Metrics of two or more runs side by side, and their loss curves overlaid in the PNG `out` (replaced only
    with `overwrite`, never a run's own file)."""
    from cnnctl.reporting.compare import compare_runs

    return compare_runs([find_run(run, runs_dir) for run in runs], out, overwrite=overwrite)


# ---------------------------------------------------------------- tools that need no run


@dataclass
class FilterResult:
    """`filter_image`: the PNG written, each panel's title (original → convolution → ReLU → pooled), a note about
    the picture (e.g. it had an alpha channel)."""

    path: Path
    steps: list[str]
    note: Optional[str] = None


def filter_image(
    image: PathLike, *, kernel: str = "sharpen", pool: int = 2, out: Optional[PathLike] = None, overwrite: bool = False
) -> FilterResult:
    """What one convolutional layer does to a picture: convolution with `kernel` (sharpen, edge, blur, emboss,
    or a .npy / .txt / .csv file of numbers) → ReLU → max-pooling by `pool`, drawn side by side.

    Args:
        image: a picture (PNG, JPEG, ...), used as grayscale.
        kernel: a kernel's name or file. Defaults to "sharpen".
        pool: the max-pooling window and stride, in pixels. Defaults to 2.
        out: the PNG. Defaults to `<image stem>_filter.png` in the current folder.
        overwrite: replace `out` if it is an existing regular file. Defaults to False.
    """
    from cnnctl.reporting import grids, plots
    from cnnctl.reporting.convolution_demo import convolution_steps, load_kernel, read_grayscale

    out = Path(out) if out is not None else Path(f"{Path(image).stem}_filter.png")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the figure is a PNG; use a name ending in .png")
    check_output_path(out, overwrite=overwrite, example=f"{Path(image).stem}_filter.png")
    name, weights = load_kernel(kernel)
    pixels, note = read_grayscale(image)
    panels = convolution_steps(pixels, weights, pool=pool, kernel_name=name)
    path = write_output_bytes(out, plots.png_bytes(grids.filter_demo_figure(panels)), overwrite=overwrite)
    return FilterResult(path, [title for title, _ in panels], note)


def config_reference() -> str:
    """The configuration reference as Markdown (docs/configuration-reference.md): every config key with its
    default, the values it takes and its description, written from the schema itself. The layer names are in
    `schema`'s JSON Schema instead."""
    from cnnctl.config.reference import config_reference_markdown

    return config_reference_markdown()


def schema(out: Optional[PathLike] = None, *, overwrite: bool = False) -> str:
    """The config's JSON Schema (every key, every keras.layers class with its arguments), for editors; written to
    `out` when given (an existing file only with `overwrite`). Returns the text."""
    if out is not None:
        check_output_path(out, overwrite=overwrite, example="cnnctl.schema.json")
    runtime.quiet_backend_import()  # quietly, before the layer names are read from Keras
    from cnnctl.config.json_schema import config_schema_text

    text = config_schema_text()
    if out is not None:
        try:
            write_output_text(out, text, overwrite=overwrite)
        except OSError as exc:
            raise ConfigError(
                f"--out {out}: cannot write the schema there ({exc.strerror or exc}); "
                "give a file path in a writable folder, e.g. --out cnnctl.schema.json"
            ) from None
    return text
