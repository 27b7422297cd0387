"""The `cnnctl` command line: a shell over `cnnctl.api`. It parses arguments, calls the API, prints with
cli/console.py, maps errors to exit codes and turns signals into interrupts; the library itself is silent.

Commands: cli/training.py (train, cv, tune), cli/runs.py (evaluate, plot, report, predict, export, runs, compare)
and cli/tools.py (check, data, filter, schema), all on the app and options of cli/base.py.
"""

# Importing them registers their commands on `app`, in this order in `cnnctl --help`.
from cnnctl.cli import training  # noqa: F401, I001 - train, cv, tune first
from cnnctl.cli import runs  # noqa: F401
from cnnctl.cli import tools  # noqa: F401
from cnnctl.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
