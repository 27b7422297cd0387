"""The command line's frame: the Typer app, the options every command shares, and how a command ends (a user
mistake → one `error:` line and exit code 2; Ctrl-C or SIGTERM → what was saved and 128 + the signal number).

Commands live in cli/training.py, cli/runs.py and cli/tools.py; each is a thin call into `cnnctl.api` and
prints with cli/console.py. The console module loads rich and is imported inside the commands, so `cnnctl --help`
answers at once.
"""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperGroup

from cnnctl import api
from cnnctl.errors import CnnctlError, Interrupted, os_error_line, printable

try:  # Typer 0.2x carries its own copy of click; older ones use click itself
    from typer._click import exceptions as CLICK_EXCEPTIONS
except ImportError:
    from click import exceptions as CLICK_EXCEPTIONS

# `cnnctl` alone shows the help (click ≥ 8.2 raises this for it; older clicks print the help themselves).
NO_ARGS_IS_HELP = getattr(CLICK_EXCEPTIONS, "NoArgsIsHelpError", ())
# click's Abort (Ctrl-C at a prompt); Typer's own copy of click has none, and names it in an `except` only if it exists.
CLICK_ABORT = getattr(CLICK_EXCEPTIONS, "Abort", ())


class OneLineUsageErrors(TyperGroup):
    """click prints a usage mistake (an unknown option or command, `--processes two`) as a usage block and an
    `Error:` line; cnnctl says every mistake in one `error:` line, exit code 2, naming the help to read."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as exc:  # `cnnctl` alone: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except CLICK_EXCEPTIONS.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "cnnctl"
            typer.echo(f"error: {printable(exc.format_message()).rstrip('.')}; see {where} --help", err=True)
            sys.exit(2)
        except CLICK_EXCEPTIONS.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except CLICK_ABORT:
            typer.echo("interrupted (SIGINT)", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
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


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config value, e.g. --set train.epochs=3 (repeatable)", show_default=False),
]


OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace existing files at --out (regular files only: never a link, a device, a run's own file)",
    ),
]


RunsDirOption = Annotated[
    Optional[Path],
    typer.Option("--runs-dir", help="Where runs live (default: $CNNCTL_RUNS_DIR, else ./runs)", show_default=False),
]


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors")] = False,
) -> None:
    _debug["on"] = debug
    api.prepare_environment()  # before any command's imports can pull TensorFlow in


def _stopped(signal_name: str) -> str:
    """What a signal outside training leaves: every file is written under a temporary name and renamed, so each one
    is the old file or the new one, whole."""
    return (
        f"interrupted ({signal_name}): every file written so far is whole, the others are as they were; run the "
        "command again to finish"
    )


def user_errors(command: Callable) -> Callable:
    """Print a user mistake as one `error:` line on stderr and exit 2 (`--debug` shows the traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with api.signals_interrupt():  # SIGTERM too says it stopped the command (Python's default: die silently)
                return command(*args, **kwargs)
        except CnnctlError as exc:
            if _debug["on"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            # A name the file system refuses (a config path, RUN or --out past 255 bytes a name) is the user's to
            # shorten, wherever a command first touches it: one line, like every other mistake.
            if exc.errno != errno.ENAMETOOLONG or _debug["on"]:
                raise
            typer.echo(f"error: {os_error_line(exc)}", err=True)
            raise typer.Exit(code=2) from None
        except Interrupted as exc:  # Ctrl-C / SIGTERM: what was saved and how to go on; 128 + signal number
            _end_progress_line()
            typer.echo(str(exc) or _stopped(exc.signal_name), err=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (loading data, drawing figures): nothing to save
            _end_progress_line()
            typer.echo(_stopped("SIGINT"), err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _end_progress_line() -> None:
    # In a terminal the progress bar redraws one line without ending it (and the terminal echoes ^C there):
    # the message starts on a line of its own.
    if sys.stdout.isatty():
        sys.stdout.write("\n")
        sys.stdout.flush()


def verbosity() -> int:
    """Keras' progress: a bar that redraws is for terminals; logs and CI get one line per epoch."""
    return 1 if sys.stdout.isatty() else 2


def overrides_of(overrides: Optional[list[str]]) -> list[str]:
    return list(overrides or [])
