"""Training: Ctrl-C and SIGTERM as `Interrupted` exceptions, and a way to hold them back while a state
is being committed.

The command line installs the handlers (`signals_interrupt`) around a training; the library never changes a
process's signal handlers, so a notebook keeps its own. The shell's convention applies: the CLI exits
128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from cnnctl.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_signals = {"deferring": 0, "pending": None, "raised": False}


def _on_signal(signum: int, frame: Any) -> None:
    if _signals["raised"]:
        return  # already stopping: let the run record its status and print the resume command
    if _signals["deferring"]:
        _signals["pending"] = signum
        return
    _signals["raised"] = True
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` inside the block (Python's default is to die on SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    _signals.update(deferring=0, pending=None, raised=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A signal arriving inside the block is raised when the block ends, so its writes finish together."""
    _signals["deferring"] += 1
    try:
        yield
    finally:
        _signals["deferring"] -= 1
    pending = _signals["pending"]
    if pending is not None and not _signals["deferring"]:
        _signals.update(pending=None, raised=True)
        raise Interrupted(pending)
