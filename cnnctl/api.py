"""cnnctl from Python: `train`, `resume`, `evaluate`, `predict`, and data sources of your own.

The same pipeline as the command line, minus the console: nothing is printed unless `verbose` asks for Keras'
progress, no signal handler is installed, and mistakes raise `cnnctl.ConfigError`, `DataError` or `RunError`
with the one-line message the command line would print.

Example:

    import cnnctl

    result = cnnctl.train("configs/digits.yaml", overrides=["train.epochs=3"])
    print(result.metrics["accuracy"], result.path)          # runs/<id>-digits/
    result = cnnctl.train({"model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}},
                          arrays={"x_train": x, "y_train": y})
    predictions = cnnctl.predict(result.run, ["digit.png"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from cnnctl.config.loading import load_config
from cnnctl.config.schema import Config
from cnnctl.data.raw import ARRAY_KEYS, ARRAYS_SOURCE, arrays_source, raw_from_mapping
from cnnctl.errors import ConfigError, RunError
from cnnctl.evaluation.export import ExportResult, export_run
from cnnctl.evaluation.predict import Predictions, predict_run
from cnnctl.evaluation.scoring import evaluate_run, load_model
from cnnctl.reporting import figures, report
from cnnctl.runs.folder import (
    Run,
    atomic_path,
    create_run,
    default_runs_dir,
    resolve_run,
)
from cnnctl.training.loop import TrainResult, train_run
from cnnctl.training.prepare import prepare
from cnnctl.training.resume import resume_run

ConfigLike = Union[str, Path, Mapping[str, Any], Config]
RunLike = Union[str, Path, Run, TrainResult]
ARRAYS_FILE = "arrays.npz"  # a run trained on arrays keeps them here, so evaluate and resume can reload them


def train(config: ConfigLike, *, arrays: Optional[Mapping[str, Any]] = None, overrides: Sequence[str] = (),
          runs_dir: Union[str, Path, None] = None, verbose: int = 0) -> TrainResult:
    """Train a config into a new run folder, evaluate it, draw its figures and report; return the result.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`.
        arrays: numpy arrays to train on instead of `data.source`: x_train, y_train and optionally x_val,
            y_val, x_test, y_test (labels: class indices or names). The run keeps a copy (arrays.npz), so
            `evaluate` and `resume` work later from the folder alone. Defaults to None.
        overrides: `--set` style changes, applied in order, e.g. ["train.epochs=3"]. Defaults to ().
        runs_dir: where the run folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress: 0 silent, 1 a bar, 2 a line per epoch. Defaults to 0.

    Returns:
        TrainResult with `run` / `path`, `model`, `history` (every epoch) and `metrics` (metrics.json).
    """
    resolved = load_config(config, overrides)
    if arrays is None:
        return train_run(resolved, runs_dir, origin=_origin(config), verbose=verbose)
    return _train_on_arrays(resolved, arrays, runs_dir, verbose)


def tune(config: ConfigLike, trials: int, *, overrides: Sequence[str] = (), workers: int = 1,
         runs_dir: Union[str, Path, None] = None, verbose: int = 0) -> tuple[Path, dict[str, Any]]:
    """Search the config's `tune:` section with Optuna, every trial a run folder scored on the val split.

    Args:
        config: a YAML file, a dict shaped like one, or a `Config`, with a `tune:` section.
        trials: how many trials the search runs in all.
        overrides: `--set` style changes, applied in order. Defaults to ().
        workers: processes sharing the search (extras are new processes: a built-in or file data source).
            Defaults to 1.
        runs_dir: where the `<id>-<name>-tune` folder goes. Defaults to $CNNCTL_RUNS_DIR, else ./runs.
        verbose: Keras' progress: 0 silent, 1 a bar, 2 a line per epoch. Defaults to 0.

    Returns:
        The tune folder and tune_summary.json as a dict (`trials`, `best` with its params; best.yaml beside it).
    """
    from cnnctl.training.tune import tune as run_tune

    return run_tune(load_config(config, overrides), default_runs_dir(runs_dir), trials, workers=workers,
                    origin=_origin(config), verbose=verbose)


def _train_on_arrays(config: Config, arrays: Mapping[str, Any], runs_dir: Any, verbose: int) -> TrainResult:
    if config.data.source != ARRAYS_SOURCE and "source" in config.data.model_fields_set:
        raise ConfigError(f"data.source: {config.data.source}, but arrays were passed too; leave data.source out "
                          f"(or set it to {ARRAYS_SOURCE}) to train on the arrays")
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
    return train_run(prepared.config, prepared=prepared, into=run, verbose=verbose)


def resume(run: RunLike, *, epochs: Optional[int] = None, batch_size: Optional[int] = None,
           fine_tune_epochs: Optional[int] = None, runs_dir: Union[str, Path, None] = None,
           verbose: int = 0) -> TrainResult:
    """Continue a stopped run from its last completed epoch (or train a completed one for more `epochs`, or more
    `fine_tune_epochs` when it has a fine-tuning phase). When there is nothing to do, the result has no model and
    its `note` says why."""
    overrides = [f"train.{key}={value}" for key, value in (("epochs", epochs), ("batch_size", batch_size),
                                                            ("fine_tune.epochs", fine_tune_epochs))
                 if value is not None]
    return resume_run(_run(run, runs_dir), runs_dir, overrides, verbose=verbose)


def evaluate(run: RunLike, split: Optional[str] = None, *, runs_dir: Union[str, Path, None] = None) -> dict[str, Any]:
    """Recompute a run's metrics, report files, figures and report.html from its folder; returns metrics.json.
    `split` is "test" or "val" (default: the run's evaluate.split, else test)."""
    if split not in (None, "test", "val"):
        raise ConfigError(f"split: {split!r} must be 'test' or 'val'")
    resolved = _run(run, runs_dir)
    model = load_model(resolved)
    metrics = evaluate_run(resolved, split, model)
    figures.draw_run_figures(resolved, model)
    report.write_report(resolved)
    return metrics


def predict(run: RunLike, inputs: Union[str, Path, Sequence[Union[str, Path]], np.ndarray], *,
            runs_dir: Union[str, Path, None] = None) -> Predictions:
    """Classify image files, folders of images, .npz files, or a numpy array of examples with a trained run.

    Image files are read as 8-bit pictures and brought to the run's training units; an array (or .npz) is
    taken in the units of the training data, one example per row. Returns Predictions: `labels` (one per
    example), `probabilities` (N, classes), `class_names`, `top_k(k)`.
    """
    resolved = _run(run, runs_dir)
    if isinstance(inputs, np.ndarray):
        return predict_run(resolved, [], arrays=inputs)
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return predict_run(resolved, paths)


def export(run: RunLike, format: str, *, out: Union[str, Path, None] = None,
           runs_dir: Union[str, Path, None] = None) -> ExportResult:
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
    return export_run(_run(run, runs_dir), format, out)


def _run(run: RunLike, runs_dir: Union[str, Path, None]) -> Run:
    if isinstance(run, TrainResult):
        return run.run
    if isinstance(run, Run):
        return run
    if not isinstance(run, (str, Path)):
        raise RunError(f"run: {run!r} is not a run; give a run folder, a run id, `last` or a TrainResult")
    return resolve_run(str(run), runs_dir)


def _origin(config: ConfigLike) -> str:
    """The file named in data and config errors, when the config came from one."""
    return str(config) if isinstance(config, (str, Path)) else ""
