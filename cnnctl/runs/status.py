"""Runs: the run's status in environment.json (running → completed | interrupted | failed) and its training lock."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

from cnnctl.errors import RunError
from cnnctl.runs import contract
from cnnctl.runs.folder import Run

try:
    import fcntl
except ImportError:  # not POSIX (Windows): runs are not locked there
    fcntl = None


def finish_run(run: Run, status: str, **extra: Any) -> None:
    """Record the run's final status (and `extra` facts such as epochs_run or error) in environment.json."""
    environment = run.read_json(contract.ENVIRONMENT) if run.has(contract.ENVIRONMENT) else {}
    started = environment.get("started_unix")
    changes: dict[str, Any] = {"status": status, "ended": now(), **extra}
    if started:
        changes["duration_s"] = round(time.time() - started, 1)
    run.update_json(contract.ENVIRONMENT, **changes)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _lock_path(run: Run) -> Path:
    return run.file(contract.CHECKPOINTS) / contract.LOCK


@contextlib.contextmanager
def held_lock(run: Run) -> Iterator[None]:
    """An exclusive lock on checkpoints/lock while training, so two processes never train one run folder.
    The kernel drops it when the process dies, even by kill -9, so a crashed run is never locked out."""
    if fcntl is None:  # not POSIX: no lock, as before
        yield
        return
    path = _lock_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunError(
                f"{run.path}: another cnnctl process is training this run right now; wait for it "
                "to finish or stop it (Ctrl-C) first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def abandoned(run: Run) -> bool:
    """A run whose training lock was taken once and is held by no process now: its trainer is gone."""
    return (_lock_path(run)).exists() and not is_training(run)


def is_training(run: Run) -> bool:
    """Whether a live process holds the run's training lock; a run left `running` by a kill is not."""
    if fcntl is None:
        return False
    path = _lock_path(run)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
