"""The `cnnctl` command line: parse, call the library, print, map errors to exit codes.

Heavy modules (TensorFlow, Keras, scikit-learn, matplotlib) are imported inside the commands that need them,
so `cnnctl --help` answers at once.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from cnnctl.errors import CnnctlError

app = typer.Typer(
    name="cnnctl",
    help="Train, evaluate and explain convolutional neural networks from YAML files.\n\n"
         "Example: cnnctl train configs/digits.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": False}

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file, e.g. configs/digits.yaml", show_default=False)]
RunArg = Annotated[str, typer.Argument(help="Run folder, run id in the runs dir, or `last`", show_default=False)]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value, e.g. --set train.epochs=3 (repeatable)", show_default=False)]
RunsDirOption = Annotated[Optional[Path], typer.Option(
    "--runs-dir", help="Where runs live (default: $CNNCTL_RUNS_DIR, else ./runs)", show_default=False)]


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors")] = False,
) -> None:
    _debug["on"] = debug


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

    return wrapper


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
) -> None:
    """Train a model from a YAML config, then evaluate it and draw its figures into a new run folder.

    Example: cnnctl train configs/digits.yaml --set train.epochs=3
    """
    from cnnctl import display
    from cnnctl.config import load_config
    from cnnctl.errors import ConfigError
    from cnnctl.runs import default_runs_dir
    from cnnctl.train import train_run

    if config is None:
        raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml")
    overrides = list(overrides or [])
    if name:
        overrides.append(f"name={name}")
    cfg = load_config(config, overrides)
    run, metrics = train_run(cfg, str(config), default_runs_dir(runs_dir), verbose=_verbosity())
    display.console.print(display.metrics_table(metrics))
    display.diagnosis_line(metrics.get("diagnosis"))
    display.say(f"run folder: {run.path}")


@app.command()
@user_errors
def evaluate(
    run: RunArg,
    split: Annotated[Optional[str], typer.Option("--split", help="test or val (default: test, or val when the "
                                                 "data has no test split)")] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Recompute metrics and report files from the run's saved model.

    Example: cnnctl evaluate last --split val
    """
    from cnnctl import display, figures
    from cnnctl.errors import ConfigError
    from cnnctl.evaluate import evaluate_run
    from cnnctl.runs import resolve_run

    if split not in (None, "test", "val"):
        raise ConfigError(f"--split {split}: must be test or val")
    resolved = resolve_run(run, runs_dir)
    metrics = evaluate_run(resolved, split)
    figures.draw_run_figures(resolved)
    display.console.print(display.metrics_table(metrics))
    display.diagnosis_line(metrics.get("diagnosis"))
    display.say(f"run folder: {resolved.path}")


@app.command()
@user_errors
def plot(run: RunArg, runs_dir: RunsDirOption = None) -> None:
    """Redraw every figure of a run from its files (history.csv, predictions.npz).

    Example: cnnctl plot last
    """
    from cnnctl import display, figures
    from cnnctl.runs import resolve_run

    resolved = resolve_run(run, runs_dir)
    written = figures.draw_run_figures(resolved)
    for path in written:
        display.say(str(path))


@app.command()
@user_errors
def check(config: ConfigArg, overrides: SetOption = None) -> None:
    """Validate a config and build its model without training; print the layer table.

    Shows output shape, parameters, receptive field (size and jump) and FLOPs per layer.

    Example: cnnctl check configs/mnist.yaml --set model.layers[0].Conv2D.filters=16
    """
    from cnnctl import display
    from cnnctl.config import load_config
    from cnnctl.model import describe
    from cnnctl.train import prepare

    cfg = load_config(config, list(overrides or []))
    prepared = prepare(cfg, str(config))
    display.console.print(display.data_table(prepared.dataset.summary()))
    display.console.print(display.layer_table(describe(prepared.model), title=f"Model: {cfg.name}"))
    display.say(f"[green]ok[/]: {config} is valid")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
