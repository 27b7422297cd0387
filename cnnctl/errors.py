"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""

import difflib
import errno
import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence


class CnnctlError(Exception):
    """Base class: the message is complete and meant for the user as it is."""


class ConfigError(CnnctlError):
    """The YAML file, a `--set` override or the network it describes is wrong."""


class DataError(CnnctlError):
    """The data named by the config cannot be loaded or split as asked."""


@contextmanager
def in_config_file(origin: str, set_by: Optional[Callable[[str], Optional[str]]] = None) -> Iterator[None]:
    """Config and data mistakes found while acting on a config file start with that file's path, so the
    message says which file to edit (`c.yaml: data.path: ... does not exist`). No origin, no prefix. `set_by`
    (cnnctl.config.loading.set_by) names the `--set` line that wrote the value a message is about: that line is
    named instead of the file."""
    try:
        yield
    except (ConfigError, DataError) as exc:
        culprit = set_by(str(exc)) if set_by is not None else None
        if culprit:
            raise type(exc)(f"--set {culprit}: {exc}") from None
        if not origin:
            raise
        raise type(exc)(f"{origin}: {exc}") from None


class RunError(CnnctlError):
    """A run folder is missing, incomplete or cannot be written."""


# What the user can do about the operating system's refusals that are theirs to fix.
_OS_ADVICE = {
    errno.ENOSPC: "no space left on device; free some space and run the command again (nothing already written "
    "is lost)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the command again (nothing already written is lost)",
    errno.EACCES: "permission denied; make the folder writable or choose another path",
    errno.EPERM: "operation not permitted; make the folder writable or choose another path",
    errno.EROFS: "read-only file system; choose a path on a writable disk",
    errno.ENAMETOOLONG: "file name too long (at most 255 bytes per name); choose a shorter name",
    errno.EISDIR: "is a folder; give a file name",
    errno.ELOOP: "too many levels of symbolic links (a link that points to itself?)",
}


def printable(text: object) -> str:
    """`text` as one printable line: a newline or tab in a file name becomes `\\n` or `\\t`, and bytes that
    are not UTF-8 (a name made on another system) become `\\xff`, so an error message stays one line and can
    always be printed."""
    text = str(text)
    if text.isprintable():
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def shown_value(value: object, limit: int = 60) -> str:
    """A value passed from Python, for an error message: its repr, printable and cut to `limit` characters (an
    array is shown by its type: its repr spans lines)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<{type(value).__name__}>"
    return printable(repr(value))[:limit]


def shown_path(path: object, limit: int = 120) -> str:
    """A path for an error message: printable, and a name of hundreds of characters shortened in the middle."""
    text = printable(path)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}…{text[-limit // 4 :]} ({len(text)} characters)"


def os_error_line(exc: OSError) -> str:
    """An OSError as `path: what went wrong; what to do`, one line, naming the file the user knows."""
    # atomic_path has already put the file the user knows in place of its temporary name
    filename = os.fsdecode(exc.filename) if exc.filename is not None else None
    reason = _OS_ADVICE.get(exc.errno) or (exc.strerror or first_line(exc)).lower()
    return f"{shown_path(filename)}: {reason}" if filename is not None else printable(reason)


@contextmanager
def os_errors() -> Iterator[None]:
    """The operating system's refusals (disk full, read-only folder, a name too long, --out a folder) become one
    RunError line instead of a traceback. Usable as a decorator on a command."""
    try:
        yield
    except OSError as exc:
        raise RunError(os_error_line(exc)) from None


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
