"""Training: how a run ends when training does not end normally — an interrupt, out-of-memory, a full
disk, a crash.

A KeyboardInterrupt (Ctrl-C, or a SIGTERM turned into one by cnnctl/training/signals.py) stops training at
once, mid-epoch: nothing is lost but the unfinished epoch, because the state of the last completed epoch is
already committed in checkpoints/ (cnnctl/training/checkpoint.py). The run is marked `interrupted` with the
epochs completed and the resume command is part of the error. A kill -9 leaves status `running` and the same
checkpoint, which `--resume` continues from. Out-of-memory and disk-full errors become one line naming the
run folder; nothing written is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import shlex
import signal
from typing import Any, Iterator, Optional

from cnnctl.errors import CnnctlError, Interrupted, RunError, first_line
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.runs.status import finish_run, held_lock
from cnnctl.training.checkpoint import completed_epochs

NAN_ERROR = "loss became NaN or infinite"  # environment.json `error` of a diverged run; resume refuses it


def resume_command(run: Run) -> str:
    return f"cnnctl train --resume {shlex.quote(str(run.path))}"


@contextlib.contextmanager
def guarded(run: Run) -> Iterator[None]:
    """Train `run` inside: one process at a time, and however the block ends the run's status is recorded in
    environment.json (failed / interrupted; the block itself records completed). An interrupt — Ctrl-C in a
    notebook, or a signal the command line turned into `Interrupted` — comes out as `Interrupted` whose
    message says what was saved and how to resume."""
    with held_lock(run):
        try:
            yield
        except KeyboardInterrupt as raw:
            exc = raw if isinstance(raw, Interrupted) else Interrupted(signal.SIGINT)
            epochs = _quietly(completed_epochs, run) or 0
            _record(run, "interrupted", epochs_run=epochs, signal=exc.signal_name)
            if not epochs:  # no epoch was committed: there is no state to resume from
                raise Interrupted(
                    exc.signum,
                    f"interrupted ({exc.signal_name}): {run.path} stopped before its first epoch ended; nothing "
                    f"to resume from: train anew with cnnctl train {run.file(contract.CONFIG)}",
                ) from None
            raise Interrupted(
                exc.signum,
                f"interrupted ({exc.signal_name}): {run.path} stopped after "
                f"{epochs} completed epoch{'s' if epochs != 1 else ''}; its state is "
                f"saved in {run.file(contract.CHECKPOINTS)}\n"
                f"resume with: {resume_command(run)}",
            ) from None
        except CnnctlError as exc:
            if _status(run) != "failed":  # a diverged run is recorded with its hint where it is detected
                _record(run, "failed", error=str(exc))
            raise
        except BaseException as exc:
            message = failure_message(exc, run)
            _record(run, "failed", error=f"{type(exc).__name__}: {first_line(exc)}")
            if message:
                raise RunError(message) from None
            raise


def failure_message(exc: BaseException, run: Run) -> Optional[str]:
    """Out of memory and disk full: one line naming the run folder and the way on; None for anything else."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return (
            f"{run.path}: out of memory ({type(exc).__name__}: {first_line(exc)}); lower train.batch_size "
            f"or use a smaller model, then continue: {resume_command(run)} --set train.batch_size=16"
        )
    if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left on device" in str(exc)):
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (
            f"{run.path}: disk full{where}; nothing written was deleted; free some space, then continue: "
            f"{resume_command(run)}"
        )
    return None


def _record(run: Run, status: str, **extra: Any) -> None:
    """Record the status without masking the error being raised (on a full disk this write may fail too)."""
    with contextlib.suppress(OSError, CnnctlError):
        finish_run(run, status, **extra)


def _status(run: Run) -> Optional[str]:
    return _quietly(lambda r: r.read_json(contract.ENVIRONMENT).get("status"), run)


def _quietly(function: Any, run: Run) -> Any:
    try:
        return function(run)
    except (OSError, CnnctlError):
        return None
