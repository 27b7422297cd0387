"""Commands that read or use trained runs: `evaluate`, `plot`, `report`, `sync`, `predict`, `export`, `runs`, `compare`.
Each is one call into `cnnctl.api`; what it prints is cli/console.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnctl import api
from cnnctl.cli.base import OverwriteOption, RunArg, RunsDirOption, app, user_errors
from cnnctl.errors import ConfigError, os_errors


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def evaluate(
    run: RunArg,
    split: Annotated[
        Optional[str],
        typer.Option("--split", help="test or val (default: test, or val when the data has no test split)"),
    ] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Recompute metrics and report files from the run's saved model.

    Example: cnnctl evaluate last --split val
    """
    if split not in (None, "test", "val"):
        raise ConfigError(f"--split {split}: must be test or val")
    resolved = api.find_run(run, runs_dir)  # a wrong RUN is reported before TensorFlow's start-up
    from cnnctl.cli import console

    metrics = api.evaluate(resolved, split)
    console.console.print(console.metrics_table(metrics))
    console.diagnosis_line(metrics.get("diagnosis"))
    console.say(f"run folder: {resolved.path}")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def plot(
    run: RunArg,
    feature_maps: Annotated[
        Optional[Path],
        typer.Option(
            "--feature-maps",
            help="Also draw feature_maps.png: each conv/pool layer's output for this image "
            "(or the first example of an .npz)",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Redraw every figure of a run from its files (history.csv, predictions.npz), and its report.html.

    Example: cnnctl plot last --feature-maps digit.png
    """
    from cnnctl.cli import console

    result = api.plot(run, feature_maps=feature_maps, runs_dir=runs_dir)
    for note in result.notes:
        console.warn(note)
    if result.feature_maps:
        console.say("feature maps: " + ", ".join(f"{name} {shape}" for name, shape in result.feature_maps))
    for path in result.paths:
        console.say(str(path))


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def report(run: RunArg, runs_dir: RunsDirOption = None) -> None:
    """Write the run's report.html: one self-contained page with config, data, metrics, diagnosis and figures.

    Example: cnnctl report last
    """
    from cnnctl.cli import console

    console.say(str(api.report(run, runs_dir=runs_dir)))


@app.command()
@user_errors
def sync(run: RunArg, runs_dir: RunsDirOption = None) -> None:
    """Send a run's MLflow tracking (train.mlflow) what the server missed while it was down; nothing twice.

    Example: cnnctl sync last
    """
    from cnnctl.cli import console

    sent = api.sync(run, runs_dir=runs_dir)
    parts = [f"{sent['epochs_sent']} epochs"]
    parts += ["the parameters"] * bool(sent["params_sent"]) + ["the final metrics and files"] * bool(sent["final_sent"])
    console.say(f"sent {', '.join(parts)} to MLflow run {sent['run_id']} at {sent['tracking_uri']} ({sent['status']})")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def predict(
    run: RunArg,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files, folders of images, or .npz files (examples under x or x_test)", show_default=False
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per input")] = 3,
    min_confidence: Annotated[
        Optional[float],
        typer.Option(
            "--min-confidence",
            help="Abstain below this top probability (0..1): such inputs are marked not answered "
            "(an `answered` column in --out)",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Write every prediction to this CSV file", show_default=False)
    ] = None,
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Classify new inputs with a trained run, preprocessed as its training data were (size, colour, scale).

    Example: cnnctl predict last digit.png more_digits/ --top-k 3 --out preds.csv --min-confidence 0.9
    """
    from cnnctl.cli import console

    predictions = api.predict(
        run, inputs, out=out, top_k=top_k, min_confidence=min_confidence, overwrite=overwrite, runs_dir=runs_dir
    )
    for note in predictions.notes:
        console.warn(note)
    console.console.print(console.predictions_table(predictions, min(top_k, len(predictions.class_names))))
    if min_confidence is not None:
        answered = int(predictions.answered.sum())
        console.say(
            f"answered {answered} of {len(predictions.labels)} inputs (top probability ≥ "
            f"{min_confidence:g}); {len(predictions.labels) - answered} not answered"
        )
    if out is not None:
        console.say(f"wrote {out} ({len(predictions.labels)} inputs)")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def explain(
    run: RunArg,
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files, folders of images, or .npz/.npy files", show_default=False)
    ],
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer",
            help="The layer to read (default: the last convolution; `backbone/name` inside a pretrained backbone)",
            show_default=False,
        ),
    ] = None,
    class_name: Annotated[
        Optional[str],
        typer.Option(
            "--class",
            help="Explain this class (a name or an index) instead of each input's prediction",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Folder for the overlays and explain.npz (default: RUN/explain)", show_default=False
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Show where the model looked: a Grad-CAM heat map over each input, as a PNG, and every map in explain.npz.

    Example: cnnctl explain last cat.jpg photos/ --out explained/
    """
    from cnnctl.cli import console

    explanation = api.explain(
        run, inputs, layer=layer, class_name=class_name, out=out, overwrite=overwrite, runs_dir=runs_dir
    )
    for note in explanation.notes:
        console.warn(note)
    console.console.print(console.explanation_table(explanation))
    console.say(f"heat maps of layer {explanation.layer}: {explanation.npz}")


@app.command()
@user_errors
def export(
    run: RunArg,
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="saved_model (a TensorFlow SavedModel folder), onnx or tflite (LiteRT)",
            show_default=False,
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Where the artefact goes (default: RUN/export/"
            "saved_model, model.onnx or model.tflite); never overwritten",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Export the run's model for serving without cnnctl, with <artefact>.json beside it (class names, input
    shape, dtype and value range, output meaning), then check it: reloaded with its own runtime, its
    probabilities on the run's test split must match model.keras's.

    ONNX needs the optional packages: pip install "cnnctl[export]"

    Example: cnnctl export last --format onnx
    """
    from cnnctl.cli import console

    result = api.export(run, export_format, out=out, runs_dir=runs_dir)
    console.say(f"{result.format}: {result.path}")
    console.say(f"serving info: {result.info_path}")
    console.say(
        f"checked with {result.runtime} on {result.examples} {result.split} examples: largest probability "
        f"difference from model.keras {result.max_abs_diff:.2g} (tolerance {result.tolerance:g})"
    )


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def runs(runs_dir: RunsDirOption = None) -> None:
    """List the runs with their headline metrics, newest first.

    Example: cnnctl runs --runs-dir runs
    """
    from cnnctl.cli import console, tables

    base = api.default_runs_dir(runs_dir)
    summaries, collections = api.list_runs(base), api.list_collections(base)
    if not summaries and not collections:
        console.say(f"no runs in {base}; train one with: cnnctl train configs/digits.yaml")
        return
    if summaries:
        console.console.print(tables.runs_table(summaries, base))
    if collections:
        console.console.print(tables.collections_table(collections, base))
    for summary in [*summaries, *collections]:
        for problem in summary.problems:
            console.warn(problem)


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def compare(
    run_specs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN RUN...",
            help="Two or more runs: folders, run ids in the runs dir, or `last`",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the overlaid loss curves go")] = Path("compare.png"),
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Compare runs: metrics side by side and their loss curves overlaid in one PNG.

    Example: cnnctl compare RUN_A RUN_B --out compare.png
    """
    from cnnctl.cli import console, tables

    comparison = api.compare(run_specs, out=out, overwrite=overwrite, runs_dir=runs_dir)
    console.console.print(tables.compare_table(comparison))
    for note in comparison.notes:
        console.warn(note)
    if comparison.figure_path is not None:
        console.say(f"loss curves: {comparison.figure_path}")
