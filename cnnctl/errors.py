"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""

import difflib
import signal
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence


class CnnctlError(Exception):
    """Base class: the message is complete and meant for the user as it is."""


class ConfigError(CnnctlError):
    """The YAML file, a `--set` override or the network it describes is wrong."""


class DataError(CnnctlError):
    """The data named by the config cannot be loaded or split as asked."""


@contextmanager
def in_config_file(origin: str) -> Iterator[None]:
    """Config and data mistakes found while acting on a config file start with that file's path, so the
    message says which file to edit (`c.yaml: data.path: ... does not exist`). No origin, no prefix."""
    try:
        yield
    except (ConfigError, DataError) as exc:
        if not origin:
            raise
        raise type(exc)(f"{origin}: {exc}") from None


class RunError(CnnctlError):
    """A run folder is missing, incomplete or cannot be written."""


class Interrupted(KeyboardInterrupt):
    """A signal (Ctrl-C, SIGTERM) stopped a command. The CLI prints the message and exits 128 + the signal
    number, the shell's convention (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages), else its class name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def closest(name: str, choices: Sequence[str]) -> Optional[str]:
    """The choice a misspelt `name` most likely meant: a case-insensitive exact match first (`conv2d` →
    `Conv2D`), then the nearest spelling; None when nothing is close."""
    for choice in choices:
        if choice.lower() == name.lower():
            return choice
    lowered = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def did_you_mean(name: str, choices: Sequence[str], quote: bool = True) -> str:
    """`; did you mean 'x'?` for the `closest` choice, to end an error message with; "" when none is close.

    Args:
        name: what the user wrote.
        choices: the names that exist.
        quote: put the suggestion in quotes; layer classes and run ids are shown bare. Defaults to True.
    """
    suggestion = closest(name, choices)
    if suggestion is None:
        return ""
    return f"; did you mean '{suggestion}'?" if quote else f"; did you mean {suggestion}?"
