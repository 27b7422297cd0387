"""The `cnnctl` command line: parse, call the library, print, map errors to exit codes, turn signals into
interrupts. The library (cnnctl.train, cnnctl.evaluate, ...) is silent; everything the console shows is here
or in cnnctl/reporting/display.py.

Modules that load heavy libraries (TensorFlow, Keras, scikit-learn, matplotlib, pydantic, numpy) are imported
inside the commands that need them, so `cnnctl --help` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from cnnctl import runtime
from cnnctl.errors import (
    CnnctlError,
    ConfigError,
    Interrupted,
    in_config_file,
    os_errors,
)
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, default_runs_dir, resolve_run, write_text_atomic
from cnnctl.runs.output import check_output_path, write_output_bytes, write_output_text
from cnnctl.training.signals import signals_interrupt

app = typer.Typer(
    name="cnnctl",
    help="Train, evaluate and explain convolutional neural networks from YAML files.\n\n"
         "Example: cnnctl train configs/digits.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rendering it with rich costs ~0.15 s of start-up (issue 6: --help ≤ 0.3 s)
    context_settings={"help_option_names": ["-h", "--help"]},
)


_debug = {"on": False}


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file, e.g. configs/digits.yaml", show_default=False)]


RunArg = Annotated[str, typer.Argument(help="Run folder, run id in the runs dir, or `last`", show_default=False)]


SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value, e.g. --set train.epochs=3 (repeatable)", show_default=False)]


OverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="Replace --out when it is an existing regular file (never a link, a device, a run's own "
    "file)")]


RunsDirOption = Annotated[Optional[Path], typer.Option(
    "--runs-dir", help="Where runs live (default: $CNNCTL_RUNS_DIR, else ./runs)", show_default=False)]


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors")] = False,
) -> None:
    _debug["on"] = debug
    runtime.prepare_tensorflow_environment()  # before any command's imports can pull TensorFlow in


def user_errors(command: Callable) -> Callable:
    """Print a user mistake as one `error:` line on stderr and exit 2 (`--debug` shows the traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CnnctlError as exc:
            if _debug["on"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except Interrupted as exc:  # Ctrl-C / SIGTERM: what was saved and how to go on; 128 + signal number
            _end_progress_line()
            typer.echo(str(exc) or f"interrupted ({exc.signal_name})", err=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (loading data, drawing figures): nothing to save
            _end_progress_line()
            typer.echo("interrupted (SIGINT)", err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _end_progress_line() -> None:
    # In a terminal the progress bar redraws one line without ending it (and the terminal echoes ^C there):
    # the message starts on a line of its own.
    if sys.stdout.isatty():
        sys.stdout.write("\n")
        sys.stdout.flush()


def _verbosity() -> int:
    # A progress bar that redraws is for terminals; logs and CI get one line per epoch.
    return 1 if sys.stdout.isatty() else 2


@app.command()
@user_errors
def train(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config file (not needed with --resume)",
                                                     show_default=False)] = None,
    overrides: SetOption = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default: config `name`, "
                                                "else the file's stem)")] = None,
    runs_dir: RunsDirOption = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", help="Continue a stopped run (folder, run id or `last`) from its last completed epoch, "
        "with its own config; --set train.epochs=N extends a finished one", show_default=False)] = None,
    processes: Annotated[int, typer.Option(
        "--processes", help="Train in N processes on this machine, joined as a multi-host job is (JAX backend: "
        "KERAS_BACKEND=jax); each batch is split over them", min=1)] = 1,
) -> None:
    """Train a model from a YAML config, then evaluate it and draw its figures into a new run folder.

    Example: cnnctl train configs/digits.yaml --set train.epochs=3

    Ctrl-C stops at once and keeps every completed epoch: cnnctl train --resume last
    """
    from cnnctl.config.loading import load_config
    from cnnctl.reporting import display

    if processes > 1:
        raise typer.Exit(code=_launch_processes(config, overrides, name, runs_dir, resume, processes))

    if resume is not None:
        if config is not None:
            raise ConfigError(f"train: give CONFIG or --resume RUN, not both; a resumed run uses its own "
                              f"config.yaml (drop {config})")
        if name:
            raise ConfigError("--name: a resumed run keeps its folder and name; drop --name")
        _use_run_backend(resume, runs_dir)
        from cnnctl.training.resume import resume_run

        with signals_interrupt():
            result = resume_run(resume, runs_dir, list(overrides or []), verbose=_verbosity(),
                                announce=_announce(None))
        if result.note:
            display.say(result.note)
            return
    else:
        if config is None:
            raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml, or "
                              "--resume RUN")
        overrides = list(overrides or [])
        if name:
            overrides.append(f"name={name}")
        cfg = load_config(config, overrides)  # before TensorFlow is imported: a typo is reported at once
        runtime.use_backend(cfg.backend)  # before Keras is imported: it reads KERAS_BACKEND once
        from cnnctl.training.loop import train_run

        with signals_interrupt():
            result = train_run(cfg, default_runs_dir(runs_dir), origin=str(config), verbose=_verbosity(),
                               announce=_announce(str(config)))
    if result.note:  # a multi-process job's other processes: training done, process 0 evaluates
        display.say(result.note)
        return
    display.console.print(display.metrics_table(result.metrics))
    display.diagnosis_line(result.metrics.get("diagnosis"))
    display.say(f"run folder: {result.path}")


def _use_run_backend(resume: str, runs_dir: Optional[Path]) -> None:
    """The resumed run's `backend:`, applied before Keras is imported. A run that cannot be found or read is
    reported by resume_run, in its order (a --set that cannot change first)."""
    from cnnctl.config.loading import load_config

    with contextlib.suppress(CnnctlError):
        chosen = load_config(resolve_run(resume, runs_dir).file(contract.CONFIG)).backend
        runtime.use_backend(chosen)


def _launch_processes(config: Optional[Path], overrides: Optional[list[str]], name: Optional[str],
                      runs_dir: Optional[Path], resume: Optional[str], count: int) -> int:
    """`--processes N`: check what can be checked here (backend, arguments, the config's schema), then start the
    N workers (cnnctl/cli/processes.py); the exit code of the job."""
    from cnnctl.cli.processes import launch
    from cnnctl.config.loading import load_config

    args: list[str] = []
    resumed = None
    if resume is not None:
        if config is not None or name:
            raise ConfigError("train: a resumed run uses its own config.yaml and name; give --resume RUN alone")
        resumed = resolve_run(resume, runs_dir)
        runtime.use_backend(load_config(resumed.file(contract.CONFIG)).backend)
        args += ["--resume", str(resumed.path.resolve())]
    else:
        if config is None:
            raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml --processes 2")
        # A typo is reported once, here, before any process starts.
        runtime.use_backend(load_config(config, list(overrides or [])).backend)
        args.append(str(config.resolve()))
        if name:
            args += ["--name", name]
        args += ["--runs-dir", str(default_runs_dir(runs_dir).resolve())]
    if runtime.backend() != "jax":
        raise ConfigError("--processes: several training processes run on the JAX backend (Keras' DataParallel; "
                          "TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3): KERAS_BACKEND=jax "
                          f"cnnctl train ... --processes {count} (pip install 'cnnctl[jax]'); on one machine with "
                          "several GPUs, TensorFlow trains on all of them in one process (train.distribute: auto)")
    for override in overrides or []:
        args += ["--set", override]
    return launch(args, count, resumed)


def _announce(config_path: Optional[str]) -> Callable[[Run, object, str], None]:
    """The run header, printed when a run's folder is ready and before its first epoch (`config_path`: the
    config file given; a resumed run shows its own config.yaml)."""
    from cnnctl.model.summary import describe
    from cnnctl.reporting import display

    def announce(run: Run, prepared, note: str) -> None:
        from cnnctl.cli.processes import RUN_PATH_FILE

        notice = os.environ.get(RUN_PATH_FILE)
        if notice and prepared.placement.chief:  # a worker of `--processes N`: tell the launcher where the run is
            write_text_atomic(Path(notice), str(run.path.resolve()))
        display.header(config_path or str(run.file(contract.CONFIG)), prepared.config, prepared.dataset.summary(),
                       prepared.devices, prepared.policy, run.path, describe(prepared.model))
        for model_note in prepared.notes:  # e.g. layers reused from another run (model.from_run)
            display.say(f"[yellow]note:[/] {model_note}")
        if prepared.placement.describe():  # several devices or processes: how each batch is split
            display.say(f"split    {prepared.placement.describe()}")
        if prepared.fine_tune:
            display.say(f"phases   {prepared.fine_tune.describe(prepared.config)}")
        if note:
            display.say(note)

    return announce


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def evaluate(
    run: RunArg,
    split: Annotated[Optional[str], typer.Option("--split", help="test or val (default: test, or val when the "
                                                 "data has no test split)")] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Recompute metrics and report files from the run's saved model.

    Example: cnnctl evaluate last --split val
    """
    if split not in (None, "test", "val"):
        raise ConfigError(f"--split {split}: must be test or val")
    resolved = resolve_run(run, runs_dir)  # a wrong RUN is reported before TensorFlow's start-up
    from cnnctl import api
    from cnnctl.reporting import display

    metrics = api.evaluate(resolved, split)
    display.console.print(display.metrics_table(metrics))
    display.diagnosis_line(metrics.get("diagnosis"))
    display.say(f"run folder: {resolved.path}")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def plot(
    run: RunArg,
    feature_maps: Annotated[Optional[Path], typer.Option(
        "--feature-maps", help="Also draw feature_maps.png: each conv/pool layer's output for this image "
        "(or the first example of an .npz)", show_default=False)] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Redraw every figure of a run from its files (history.csv, predictions.npz), and its report.html.

    Example: cnnctl plot last --feature-maps digit.png
    """
    from cnnctl.reporting import display, figures
    from cnnctl.reporting.report import write_report

    resolved = resolve_run(run, runs_dir)
    written = []
    if feature_maps is not None:  # first: a wrong IMAGE is reported before minutes of redrawing
        from cnnctl.reporting.feature_maps import draw_feature_maps

        path, shapes, notes = draw_feature_maps(resolved, feature_maps)
        for note in notes:
            display.warn(note)
        display.say("feature maps: " + ", ".join(f"{name} {shape}" for name, shape in shapes))
        written.append(path)
    written = figures.draw_run_figures(resolved) + written
    written.append(write_report(resolved))
    for path in written:
        display.say(str(path))


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def report(run: RunArg, runs_dir: RunsDirOption = None) -> None:
    """Write the run's report.html: one self-contained page with config, data, metrics, diagnosis and figures.

    Example: cnnctl report last
    """
    from cnnctl.reporting import display
    from cnnctl.reporting.report import write_report

    display.say(str(write_report(resolve_run(run, runs_dir))))


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def predict(
    run: RunArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image files, folders of images, or .npz files (examples "
                                                 "under x or x_test)", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per input")] = 3,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write every prediction to this CSV file",
                                                show_default=False)] = None,
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Classify new inputs with a trained run, preprocessed as its training data were (size, colour, scale).

    Example: cnnctl predict last digit.png more_digits/ --top-k 3 --out preds.csv
    """
    from cnnctl.evaluation.predict import (
        check_out_path,
        check_top_k,
        predict_run,
        write_predictions_csv,
    )
    from cnnctl.reporting import display

    check_top_k(top_k)
    check_out_path(out, overwrite)
    predictions = predict_run(resolve_run(run, runs_dir), inputs)
    k = min(top_k, len(predictions.class_names))
    for note in predictions.notes:
        display.warn(note)
    display.console.print(display.predictions_table(predictions, k))
    if out is not None:
        display.say(f"wrote {write_predictions_csv(out, predictions, k, overwrite)} ({len(predictions.labels)} inputs)")


@app.command()
@user_errors
def export(
    run: RunArg,
    export_format: Annotated[str, typer.Option("--format", "-f", help="saved_model (a TensorFlow SavedModel "
                                               "folder), onnx or tflite (LiteRT)", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Where the artefact goes (default: RUN/export/"
                                                "saved_model, model.onnx or model.tflite); never overwritten",
                                                show_default=False)] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Export the run's model for serving without cnnctl, with <artefact>.json beside it (class names, input
    shape, dtype and value range, output meaning), then check it: reloaded with its own runtime, its
    probabilities on the run's test split must match model.keras's.

    ONNX needs the optional packages: pip install "cnnctl[export]"

    Example: cnnctl export last --format onnx
    """
    from cnnctl.evaluation.export import export_format as check_format
    from cnnctl.evaluation.export import export_run
    from cnnctl.reporting import display

    check_format(export_format)  # before TensorFlow is imported: a typo is reported at once
    result = export_run(resolve_run(run, runs_dir), export_format, out)
    display.say(f"{result.format}: {result.path}")
    display.say(f"serving info: {result.info_path}")
    display.say(f"checked with {result.runtime} on {result.examples} {result.split} examples: largest probability "
                f"difference from model.keras {result.max_abs_diff:.2g} (tolerance {result.tolerance:g})")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def runs(runs_dir: RunsDirOption = None) -> None:
    """List the runs with their headline metrics, newest first.

    Example: cnnctl runs --runs-dir runs
    """
    from cnnctl.reporting import display
    from cnnctl.reporting.compare import summarize_runs

    base = default_runs_dir(runs_dir)
    summaries = summarize_runs(base)
    if not summaries:
        display.say(f"no runs in {base}; train one with: cnnctl train configs/digits.yaml")
        return
    display.console.print(display.runs_table(summaries, base))
    for summary in summaries:
        for problem in summary.problems:
            display.warn(problem)


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def compare(
    run_specs: Annotated[list[str], typer.Argument(metavar="RUN RUN...", help="Two or more runs: folders, run "
                                                   "ids in the runs dir, or `last`", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Where the overlaid loss curves go")] = Path("compare.png"),
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Compare runs: metrics side by side and their loss curves overlaid in one PNG.

    Example: cnnctl compare RUN_A RUN_B --out compare.png
    """
    from cnnctl.reporting import display
    from cnnctl.reporting.compare import compare_runs

    comparison = compare_runs([resolve_run(spec, runs_dir) for spec in run_specs], out, overwrite=overwrite)
    display.console.print(display.compare_table(comparison))
    for note in comparison.notes:
        display.warn(note)
    if comparison.figure_path is not None:
        display.say(f"loss curves: {comparison.figure_path}")


@app.command("filter")
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def filter_image(
    image: Annotated[Path, typer.Argument(help="A picture (PNG, JPEG, ...); used as grayscale",
                                          show_default=False)],
    kernel: Annotated[str, typer.Option("--kernel", help="sharpen, edge, blur, emboss, or a kernel file "
                                        "(.npy, or .txt/.csv rows of numbers)")] = "sharpen",
    pool: Annotated[int, typer.Option("--pool", help="Max-pooling window and stride, in pixels")] = 2,
    out: Annotated[Optional[Path], typer.Option("--out", help="PNG to write (default: <image stem>_filter.png "
                                                "in the current folder)", show_default=False)] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Show what one convolutional layer does to a picture: convolution with a kernel → ReLU → max-pooling.

    Example: cnnctl filter photo.jpg --kernel edge --pool 2
    """
    from cnnctl.reporting import display, plots
    from cnnctl.reporting.convolution_demo import (
        convolution_steps,
        load_kernel,
        read_grayscale,
    )

    out = out if out is not None else Path(f"{image.stem}_filter.png")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the figure is a PNG; use a name ending in .png")
    check_output_path(out, overwrite=overwrite, example=f"{image.stem}_filter.png")
    name, weights = load_kernel(kernel)
    pixels, note = read_grayscale(image)
    if note:
        display.warn(note)
    panels = convolution_steps(pixels, weights, pool=pool, kernel_name=name)
    path = write_output_bytes(out, plots.png_bytes(plots.filter_demo_figure(panels)), overwrite=overwrite)
    display.say(" → ".join(title for title, _ in panels))
    display.say(str(path))


@app.command()
@user_errors
def check(config: ConfigArg, overrides: SetOption = None) -> None:
    """Validate a config and build its model without training; print the layer table.

    Shows output shape, parameters, receptive field (size and jump) and FLOPs per layer.

    Example: cnnctl check configs/mnist.yaml --set model.layers[0].Conv2D.filters=16
    """
    from cnnctl.config.loading import load_config

    cfg = load_config(config, list(overrides or []))  # before Keras is imported: a bad config fails in a second
    runtime.use_backend(cfg.backend)
    from cnnctl.model.summary import describe
    from cnnctl.reporting import display
    from cnnctl.training.prepare import prepare

    prepared = prepare(cfg, str(config), stand_in_when_missing=True)  # checking needs no download
    if prepared.dataset.stand_in:
        display.warn(f"{prepared.dataset.stand_in}; checked against zero images of its shape and classes instead "
                     "(`cnnctl train` needs the real data)")
    else:
        display.console.print(display.data_table(prepared.dataset.summary()))
    for note in prepared.notes:  # the backbone's weights not downloaded, layers reused from a run
        display.warn(note)
    display.console.print(display.layer_table(describe(prepared.model), title=f"Model: {cfg.name}"))
    if prepared.fine_tune:
        display.say(f"phases: {cfg.train.epochs} epochs as above, {prepared.fine_tune.describe(cfg)}")
    display.say(f"[green]ok[/]: {config} is valid")


@app.command()
@user_errors
def cv(
    config: ConfigArg,
    folds: Annotated[int, typer.Option("--folds", "-k", help="Number of folds K")] = 5,
    overrides: SetOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Stratified K-fold cross-validation: K full trainings, each scored on its held-out fold.

    Folds come from the training data; the test split is left out of all of them.

    Each fold is a complete run folder (runs/<id>-<name>-cv/fold-1, ...); cv_summary.json has mean ± std.

    Example: cnnctl cv configs/digits.yaml --folds 5 --set train.epochs=10
    """
    from cnnctl.config.loading import load_config
    from cnnctl.reporting import display
    cfg = load_config(config, list(overrides or []))  # before TensorFlow is imported: a typo is reported at once
    runtime.use_backend(cfg.backend)
    from cnnctl.training.crossval import cross_validate

    header = _announce(str(config))
    with signals_interrupt(), contextlib.ExitStack() as stack:
        progress = []

        def announce(run: Run, prepared, note: str) -> None:
            if not progress:  # the bar opens with the first fold, so a mistake found before it prints alone
                progress.append(stack.enter_context(display.fold_progress(folds)))
            header(run, prepared, note)

        cv_path, summary = cross_validate(
            cfg, default_runs_dir(runs_dir), folds, origin=str(config), verbose=2, announce=announce,
            on_fold=lambda index, metrics: progress[0](f"fold {index}: accuracy {metrics['accuracy']:.4f}"))
    display.console.print(display.cv_table(summary))
    display.say(f"cv folder: {cv_path} (summary in {contract.CV_SUMMARY})")


@app.command()
@user_errors
def tune(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config with a `tune:` section (not needed with "
                                                     "--resume)", show_default=False)] = None,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials in the whole search (with --resume: the "
                                        "total to reach)")] = 20,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes sharing the search")] = 1,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="Continue a stopped search in its runs/<id>-<name>-tune folder", show_default=False)] = None,
    overrides: SetOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Search the config's `tune:` values with Optuna (TPE, median pruning), every trial scored on the val split.

    Each trial is a complete run folder (runs/<id>-<name>-tune/trial-0, ...); the test split is never scored.
    The tune folder gets tune_summary.json, best.yaml (ready for cnnctl train), figures and tune_report.html.

    Example: cnnctl tune search.yaml --trials 20 --workers 2

    (search.yaml: a config with e.g. `tune: {train.batch_size: {choice: [32, 64]}}`; README, Tuning)
    """
    from cnnctl.config.loading import load_config
    from cnnctl.reporting import display

    def on_trial(line: dict) -> None:
        value = "n/a" if line.get("value") is None else f"{line['value']:.4f}"
        display.say(f"trial {line['number']}: {line['state']}, val accuracy {value}")

    if resume is not None:
        if config is not None or overrides:
            raise ConfigError("tune: a resumed search uses its own config.yaml; drop CONFIG and --set")
        from cnnctl.training import tune as tuning

        with signals_interrupt():
            tune_path, summary = tuning.resume_tune(resume, trials, workers=workers, verbose=_verbosity(),
                                                    on_trial=on_trial)
    else:
        if config is None:
            raise ConfigError("tune: give a config file with a `tune:` section, or --resume TUNEFOLDER")
        cfg = load_config(config, list(overrides or []))  # before TensorFlow is imported: a typo is reported at once
        runtime.use_backend(cfg.backend)
        from cnnctl.training import tune as tuning

        with signals_interrupt():
            tune_path, summary = tuning.tune(cfg, default_runs_dir(runs_dir), trials, workers=workers,
                                             origin=str(config), verbose=_verbosity(), on_trial=on_trial)
    display.console.print(display.tune_table(summary))
    for note in summary.get("notes", []):
        display.warn(note)
    if summary.get("best"):
        display.say(f"best: trial {summary['best']['number']}, val accuracy {summary['best']['value']:.4f}; "
                    f"train it on test with: cnnctl train {tune_path / contract.TUNE_BEST}")
    display.say(f"tune folder: {tune_path} (summary in {contract.TUNE_SUMMARY}, page {contract.TUNE_REPORT})")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def data(
    config: ConfigArg,
    overrides: SetOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Sample grid PNG to write (default: "
                                                "<name>-samples.png here)", show_default=False)] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Load and summarise a config's data without training, and draw a grid of labelled samples.

    Shows the source, example shape, dtype, value range, class counts per split and any skipped files.

    Example: cnnctl data configs/shapes_folder.yaml --out shapes.png
    """
    from cnnctl.config.loading import load_config
    from cnnctl.reporting import display
    from cnnctl.reporting.data_overview import describe_data

    cfg = load_config(config, list(overrides or []))
    out = out or Path(f"{cfg.name}-samples.png")
    check_output_path(out, overwrite=overwrite, example=f"{cfg.name}-samples.png")  # not the config file's mistake
    with in_config_file(str(config)):
        summary, path = describe_data(cfg, out, overwrite=overwrite)
    display.data_overview(summary)
    display.say(f"samples: {path}")


@app.command("schema")
@user_errors
def json_schema(
    out: Annotated[Optional[Path], typer.Option("--out", help="File to write (default: print it)",
                                                show_default=False)] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Write the config's JSON Schema, so editors complete and check config files as you type.

    VS Code with the YAML extension (any yaml-language-server) reads it from a config's first line:
    `# yaml-language-server: $schema=cnnctl.schema.json` (a path relative to the config file).

    Example: cnnctl schema --out configs/cnnctl.schema.json
    """
    if out is not None:
        check_output_path(out, overwrite=overwrite, example="cnnctl.schema.json")
    runtime.quiet_backend_import()  # quietly, before the layer names are read from Keras
    from cnnctl.config.json_schema import config_schema_text

    text = config_schema_text()
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        write_output_text(out, text, overwrite=overwrite)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the schema there ({exc.strerror or exc}); "
                          "give a file path in a writable folder, e.g. --out cnnctl.schema.json") from None
    typer.echo(f"schema: {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
