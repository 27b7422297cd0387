"""Training: Ctrl-C and SIGTERM as `Interrupted` exceptions, and a way to hold them back while a state
is being committed.

The command line installs the handlers (`signals_interrupt`) around a training; the library never changes a
process's signal handlers, so a notebook keeps its own. The shell's convention applies: the CLI exits
128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from typing import Any, Iterator

from cnnctl.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESEND_AFTER_S = 0.05  # long enough for a garbage-collector callback to return


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
    previous_hook = sys.unraisablehook
    _signals.update(deferring=0, pending=None, raised=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    sys.unraisablehook = functools.partial(_resend_swallowed, previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _resend_swallowed(previous_hook: Any, unraisable: Any) -> None:
    """An `Interrupted` raised while the main thread ran a garbage-collector callback (JAX registers one) or a
    __del__ is discarded by Python ("Exception ignored in ..."): the command went on to the end and ignored every
    later signal. The signal is sent again a moment later, from another thread, when the callback has returned."""
    if not isinstance(unraisable.exc_value, Interrupted):
        previous_hook(unraisable)
        return
    _signals["raised"] = False
    threading.Timer(RESEND_AFTER_S, os.kill, (os.getpid(), unraisable.exc_value.signum)).start()


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
