"""The front door, checking a config and using a trained run: check, describe_data, evaluate, predict, explain,
export, plot, report, list_runs, list_collections, compare."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from cnnctl import runtime
from cnnctl.errors import ConfigError, in_config_file, shown_value
from cnnctl.runs import contract
from cnnctl.runs.folder import default_runs_dir
from cnnctl.runs.output import check_output_path, check_png_name

if TYPE_CHECKING:  # for annotations only: importing them would load pydantic, numpy or TensorFlow
    from cnnctl.config.schema import Config
    from cnnctl.evaluation.explain import Explanation
    from cnnctl.evaluation.export import ExportResult
    from cnnctl.evaluation.predictions import Predictions
    from cnnctl.reporting.compare import CollectionSummary, Comparison, RunSummary
    from cnnctl.training.prepare import Prepared


from cnnctl.api.common import (
    ConfigLike,
    PathLike,
    RunLike,
    _origin,
    expect,
    find_run,
    load,
)
from cnnctl.runs.model_file import load_model

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
    if out is not None:
        expect(out, (str, os.PathLike), "--out", "a PNG's path, e.g. --out samples.png")
    out = Path(out) if out is not None else Path(f"{resolved.name}-samples.png")
    check_png_name(out, "the sample grid")
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
    from cnnctl.evaluation.scoring import evaluate_run
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
        Predictions: `inputs` (each input's name), `predicted` (each input's class name), `probabilities`
            (N, classes), `class_names`, `top_k(k)` (class indices) and `top_k_names(k)`; `labels` is `inputs`.
    """
    from cnnctl.evaluation.predict import predict_run
    from cnnctl.evaluation.predictions import check_min_confidence, check_top_k, write_predictions_csv

    check_top_k(top_k)
    check_min_confidence(min_confidence)
    if out is not None:  # before the model runs: a mistake costs nothing
        check_output_path(out, overwrite=overwrite, example="predictions.csv")
    resolved = find_run(run, runs_dir)
    if (
        min_confidence is not None
        and resolved.has(contract.DATA)
        and resolved.read_json(contract.DATA).get("multi_label")
    ):
        raise ConfigError(
            "--min-confidence: does not apply to a multi-label run: each label is present when its probability "
            "reaches its own decision threshold (metrics.json thresholds); drop --min-confidence"
        )
    paths, arrays = _paths_or_array(inputs)
    predictions = predict_run(resolved, paths, arrays=arrays)
    predictions.min_confidence = min_confidence
    if out is not None:
        write_predictions_csv(out, predictions, min(top_k, len(predictions.class_names)), overwrite)
    return predictions


def _paths_or_array(inputs: Any) -> tuple[list, Any]:
    """`inputs` of predict and explain → (paths, None) or ([], an array of examples); else one ConfigError line."""
    if hasattr(inputs, "shape") and hasattr(inputs, "dtype"):  # a numpy array of examples
        return [], inputs
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs], None
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(item, (str, os.PathLike)) for item in inputs):
        return list(inputs), None
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(item, (list, tuple)) for item in inputs):
        return [], inputs  # nested lists of numbers, as x.tolist() gives: checked as an array
    raise ConfigError(
        f"inputs: {type(inputs).__name__} {shown_value(inputs)}: give a path, a list of paths or a numpy "
        "array of examples, e.g. predict(run, ['cat.png'])"
    )


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
    from cnnctl.reporting.explanation_files import write_explanation

    paths, arrays = _paths_or_array(inputs)
    if layer is not None:
        expect(layer, (str,), "--layer", "a layer's name, e.g. --layer conv2d_1")
    return write_explanation(
        explain_run(resolved, paths, arrays, layer=layer, class_name=class_name, out=out, overwrite=overwrite)
    )


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

    expect(format, (str,), "--format", "saved_model, onnx or tflite, e.g. --format onnx")
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
        expect(feature_maps, (str, os.PathLike), "--feature-maps", "an image or .npz file's path")
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


def sync(run: RunLike, *, runs_dir: Optional[PathLike] = None) -> dict[str, Any]:
    """Send a run's train.mlflow tracking what the server lacks (what a server that was down missed): parameters,
    epochs, the final metrics and files, the status. Nothing is sent twice; run folders of tune searches too.

    Returns:
        dict: `run_id`, `tracking_uri`, `epochs_sent` (this call), `params_sent`, `final_sent`, `status`.
    """
    from cnnctl.config.loading import load_config
    from cnnctl.workflows.tracking import sync_run

    resolved = find_run(run, runs_dir)
    resolved.require(contract.CONFIG)
    return sync_run(resolved, load_config(resolved.file(contract.CONFIG)))


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
