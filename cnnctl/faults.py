"""What happens to a run when training does not end normally: a signal, out-of-memory, a full disk, a crash.

Ctrl-C (SIGINT) and SIGTERM stop training at once, mid-epoch: waiting for a long epoch to end would make a
user reach for kill -9. Nothing is lost but the unfinished epoch, because the state of the last completed
epoch is already committed in checkpoints/ (checkpoint.py); only that commit holds the signal back until
it is whole. The run is marked `interrupted` with the epochs completed, the resume command is printed, and
the command exits 128 + the signal number (130, 143). A kill -9 leaves status `running` and the same
checkpoint, which `--resume` continues from.

Out-of-memory and disk-full errors become one `error:` line naming the run folder; nothing written is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import threading
from typing import Any, Iterator, Optional

from cnnctl import runs
from cnnctl.errors import CnnctlError, Interrupted, RunError
from cnnctl.runs import Run

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NAN_ERROR = "loss became NaN or infinite"  # environment.json `error` of a diverged run; resume refuses it
LOCK = "lock"  # in checkpoints/: held while a process trains the run

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


def resume_command(run: Run) -> str:
    return f"cnnctl train --resume {shlex.quote(str(run.path))}"


@contextlib.contextmanager
def guarded(run: Run) -> Iterator[None]:
    """Train `run` inside: one process at a time, signals become `Interrupted`, and however the block ends the
    run's status is recorded in environment.json (failed / interrupted; the block itself records completed)."""
    from cnnctl.checkpoint import completed_epochs

    with held_lock(run), signals_interrupt():
        try:
            yield
        except Interrupted as exc:
            epochs = _quietly(completed_epochs, run) or 0
            _record(run, "interrupted", epochs_run=epochs, signal=exc.signal_name)
            raise Interrupted(exc.signum, f"interrupted ({exc.signal_name}): {run.path} stopped after "
                                          f"{epochs} completed epoch{'s' if epochs != 1 else ''}; its state is "
                                          f"saved in {run.file(runs.CHECKPOINTS)}\n"
                                          f"resume with: {resume_command(run)}") from None
        except CnnctlError as exc:
            if _status(run) != "failed":  # a diverged run is recorded with its hint where it is detected
                _record(run, "failed", error=str(exc))
            raise
        except BaseException as exc:
            message = failure_message(exc, run)
            _record(run, "failed", error=f"{type(exc).__name__}: {_first_line(exc)}")
            if message:
                raise RunError(message) from None
            raise


def failure_message(exc: BaseException, run: Run) -> Optional[str]:
    """Out of memory and disk full: one line naming the run folder and the way on; None for anything else."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return (f"{run.path}: out of memory ({type(exc).__name__}: {_first_line(exc)}); lower train.batch_size "
                f"or use a smaller model, then continue: {resume_command(run)} --set train.batch_size=16")
    if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left on device" in str(exc)):
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (f"{run.path}: disk full{where}; nothing written was deleted; free some space, then continue: "
                f"{resume_command(run)}")
    return None


@contextlib.contextmanager
def held_lock(run: Run) -> Iterator[None]:
    """An exclusive lock on checkpoints/lock while training, so two processes never train one run folder.
    The kernel drops it when the process dies, even by kill -9, so a crashed run is never locked out."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    path = run.file(runs.CHECKPOINTS) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunError(f"{run.path}: another cnnctl process is training this run right now; wait for it "
                           "to finish or stop it (Ctrl-C) first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def _record(run: Run, status: str, **extra: Any) -> None:
    """Record the status without masking the error being raised (on a full disk this write may fail too)."""
    from cnnctl.train import finish_run

    with contextlib.suppress(OSError, CnnctlError):
        finish_run(run, status, **extra)


def _status(run: Run) -> Optional[str]:
    return _quietly(lambda r: r.read_json(runs.ENVIRONMENT).get("status"), run)


def _quietly(function: Any, run: Run) -> Any:
    try:
        return function(run)
    except (OSError, CnnctlError):
        return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def abandoned(run: Run) -> bool:
    """A run whose training lock was taken once and is held by no process now: its trainer is gone."""
    return (run.file(runs.CHECKPOINTS) / LOCK).exists() and not is_training(run)


def is_training(run: Run) -> bool:
    """Whether a live process holds the run's training lock; a run left `running` by a kill is not."""
    try:
        import fcntl
    except ImportError:
        return False
    path = run.file(runs.CHECKPOINTS) / LOCK
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
