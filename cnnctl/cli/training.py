"""Commands that train: `train` (and `--resume`, `--processes`), `cv` and `tune`. Each is one call into
`cnnctl.api`, wrapped in the signal handlers that turn Ctrl-C and SIGTERM into a saved, resumable stop."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from cnnctl import api
from cnnctl.cli.base import (
    ConfigArg,
    OverwriteOption,
    RunsDirOption,
    SetOption,
    app,
    overrides_of,
    user_errors,
    verbosity,
)
from cnnctl.errors import ConfigError, os_errors


@app.command()
@user_errors
def train(
    config: Annotated[
        Optional[Path], typer.Argument(help="YAML config file (not needed with --resume)", show_default=False)
    ] = None,
    overrides: SetOption = None,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Run name (default: config `name`, else the file's stem)")
    ] = None,
    runs_dir: RunsDirOption = None,
    resume: Annotated[
        Optional[str],
        typer.Option(
            "--resume",
            help="Continue a stopped run (folder, run id or `last`) from its last completed epoch, "
            "with its own config; --set train.epochs=N extends a finished one",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            help="Train in N processes on this machine, joined as a multi-host job is (JAX backend: "
            "KERAS_BACKEND=jax); each batch is split over them",
            min=1,
        ),
    ] = 1,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            help="Run the --processes on a Ray cluster instead: its address (auto, ray://HOST:10001, HOST:6379) or "
            "local (one started for this command); --runs-dir must be on storage every node shares",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a model from a YAML config, then evaluate it and draw its figures into a new run folder.

    Example: cnnctl train configs/digits.yaml --set train.epochs=3

    Ctrl-C stops at once and keeps every completed epoch: cnnctl train --resume last
    """
    from cnnctl.cli import console

    if processes > 1 or ray is not None:
        raise typer.Exit(
            code=api.launch_processes(
                processes,
                config=config,
                overrides=overrides_of(overrides),
                name=name,
                runs_dir=runs_dir,
                resume=resume,
                ray=ray,
            )
        )
    if resume is not None:
        if config is not None:
            raise ConfigError(
                f"train: give CONFIG or --resume RUN, not both; a resumed run uses its own config.yaml (drop {config})"
            )
        if name is not None:
            raise ConfigError("--name: a resumed run keeps its folder and name; drop --name")
        result = api.resume(
            resume,
            overrides=overrides_of(overrides),
            runs_dir=runs_dir,
            verbose=verbosity(),
            announce=announce(None),
        )
    else:
        if config is None:
            raise ConfigError("train: give a config file, e.g. cnnctl train configs/digits.yaml, or --resume RUN")
        result = api.train(
            config,
            overrides=overrides_of(overrides),
            name=name,
            runs_dir=runs_dir,
            verbose=verbosity(),
            announce=announce(str(config)),
        )
    if result.note:  # nothing to do (a completed run), or another process of a job: process 0 evaluates
        console.say(result.note)
        return
    console.console.print(console.metrics_table(result.metrics))
    console.diagnosis_line(result.metrics.get("diagnosis"))
    for warning in result.warnings:
        console.warn(warning)
    console.say(f"run folder: {result.path}")


def announce(config_path: Optional[str]) -> Callable:
    """The run header, printed when a run's folder is ready and before its first epoch (`config_path`: the
    config file given; a resumed run shows its own config.yaml)."""
    from cnnctl.cli import console

    def header(run, prepared, note: str) -> None:
        console.header(
            config_path or str(run.file(api.contract.CONFIG)),
            prepared.config,
            prepared.dataset.summary(),
            prepared.devices,
            f"{prepared.policy} ({prepared.policy_reason})" if prepared.policy_reason else prepared.policy,
            run.path,
            api.describe_model(prepared.model),
        )
        for model_note in prepared.notes:  # e.g. layers reused from another run (model.from_run)
            console.say(f"[yellow]note:[/] {model_note}")
        if prepared.placement.describe():  # several devices or processes: how each batch is split
            console.say(f"split    {prepared.placement.describe()}")
        if prepared.fine_tune:
            console.say(f"phases   {prepared.fine_tune.describe(prepared.config)}")
        if note:
            console.say(note)

    return header


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
    from cnnctl.cli import console, tables

    header = announce(str(config))
    with contextlib.ExitStack() as stack:
        progress = []

        def announce_fold(run, prepared, note: str) -> None:
            if not progress:  # the bar opens with the first fold, so a mistake found before it prints alone
                progress.append(stack.enter_context(console.fold_progress(folds)))
            header(run, prepared, note)

        cv_path, summary = api.cross_validate(
            config,
            folds,
            overrides=overrides_of(overrides),
            runs_dir=runs_dir,
            verbose=2,
            announce=announce_fold,
            on_fold=lambda index, metrics: progress[0](f"fold {index}: {fold_score(metrics)}"),
        )
    console.console.print(tables.cv_table(summary))
    console.say(f"cv folder: {cv_path} (summary in {api.contract.CV_SUMMARY})")


@app.command("lr-find")
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def lr_find(
    config: ConfigArg,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="The PNG (a JSON of the same name goes beside it); default <name>-lr_find.png"),
    ] = None,
    min_lr: Annotated[float, typer.Option("--min-lr", help="Where the ramp starts")] = 1e-7,
    max_lr: Annotated[float, typer.Option("--max-lr", help="Where the ramp ends")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="Batches in the ramp (at most one epoch)")] = 100,
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """The learning-rate range test: the loss of a fresh model as its learning rate rises, and a suggested rate.

    Nothing is trained for keeps and no run folder is made: the plot and its JSON are the answer.

    Example: cnnctl lr-find configs/digits.yaml --set train.batch_size=32
    """
    from cnnctl.cli import console

    finding, png, record = api.lr_find(
        config,
        overrides=overrides_of(overrides),
        out=out,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        overwrite=overwrite,
    )
    for note in finding.notes:
        console.warn(note)
    diverged = f", diverged at {finding.diverged_at:.3g}" if finding.diverged_at is not None else ""
    console.say(
        f"suggested learning rate {finding.suggestion:.3g} (lowest loss at {finding.lowest_loss_at:.3g}{diverged}): "
        f"--set train.optimizer.learning_rate={finding.suggestion:.3g}"
    )
    console.say(f"wrote {png} and {record}")


@app.command()
@user_errors
def tune(
    config: Annotated[
        Optional[Path],
        typer.Argument(help="YAML config with a `tune:` section (not needed with --resume)", show_default=False),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", "-n", help="Trials in the whole search (with --resume: the total to reach)")
    ] = 20,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes sharing the search")] = 1,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            "--resume", help="Continue a stopped search in its runs/<id>-<name>-tune folder", show_default=False
        ),
    ] = None,
    overrides: SetOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Search the config's `tune:` values with Optuna (TPE, median pruning), every trial scored on the val split.

    Each trial is a complete run folder (runs/<id>-<name>-tune/trial-0, ...); the test split is never scored.
    The tune folder gets tune_summary.json, best.yaml (ready for cnnctl train), figures and tune_report.html.

    Example: cnnctl tune search.yaml --trials 20 --workers 2

    (search.yaml: a config with e.g. `tune: {train.batch_size: {choice: [32, 64]}}`; docs/tuning.md)
    """
    from cnnctl.cli import console, tables

    def on_trial(line: dict) -> None:
        value = "n/a" if line.get("value") is None else f"{line['value']:.4f}"
        why = f" ({line['error']})" if line.get("error") else ""  # in tune_summary.json too, whole
        console.say(
            f"trial {line['number']}: {line['state']}, {line.get('objective_name', 'val accuracy')} {value}"
            f"{why[:300]}{'…)' if len(why) > 300 else ''}"
        )

    if resume is not None:
        if config is not None or overrides:
            raise ConfigError("tune: a resumed search uses its own config.yaml; drop CONFIG and --set")
        tune_path, summary = api.resume_tune(resume, trials, workers=workers, verbose=verbosity(), on_trial=on_trial)
    else:
        if config is None:
            raise ConfigError("tune: give a config file with a `tune:` section, or --resume TUNEFOLDER")
        tune_path, summary = api.tune(
            config,
            trials,
            overrides=overrides_of(overrides),
            workers=workers,
            runs_dir=runs_dir,
            verbose=verbosity(),
            on_trial=on_trial,
        )
    console.console.print(tables.tune_table(summary))
    for note in summary.get("notes", []):
        console.warn(note)
    if summary.get("best"):
        console.say(
            f"best: trial {summary['best']['number']}, {summary.get('objective_name', 'val accuracy')} "
            f"{summary['best']['value']:.4f}; "
            f"train it on test with: cnnctl train {tune_path / api.contract.TUNE_BEST}"
        )
    console.say(f"tune folder: {tune_path} (summary in {api.contract.TUNE_SUMMARY}, page {api.contract.TUNE_REPORT})")


def fold_score(metrics: dict) -> str:
    """A fold's headline as the progress line shows it: accuracy, or micro F1 for multi-label data."""
    key = "f1_micro" if metrics.get("multi_label") else "accuracy"
    value = metrics.get(key)
    return f"{key.replace('_', ' ')} {'n/a' if value is None else format(value, '.4f')}"
