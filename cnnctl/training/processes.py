"""Training: the launcher of `cnnctl train CONFIG --processes N`, N training processes on this machine joined over
loopback as a multi-host JAX job would be (jax.distributed, Keras' DataParallel; see cnnctl/training/distribute.py).
For trying a multi-process run on one machine; on several hosts, the same `cnnctl train` is started on each with
the three JAX_* variables (docs/scaling-out.md).

The launcher only starts, watches and reports: process 0's output is shown (and logged), every process's output
is kept in the run's logs/process-K.log. When a process dies the others are stopped at once (they would wait for
it in their next collective), the run is recorded as failed, and one `error:` line says how to resume it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional

from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run
from cnnctl.runs.status import finish_run
from cnnctl.training import checkpoint
from cnnctl.training.distribute import COORDINATOR, PROCESS_COUNT, PROCESS_ID
from cnnctl.training.guard import resume_command

# The chief writes its run folder's path here once the folder exists (tell_launcher), so the launcher knows
# where the logs go and which run to mark failed.
RUN_PATH_FILE = "CNNCTL_RUN_PATH_FILE"

LOGS = "logs"
CHIEF_GRACE_S = 3.0  # after another process fails with a user error: time for the chief to say it (all meet it)
USER_ERROR = 2  # the command line's exit code for a mistake in the config, data or arguments


def launched_by() -> bool:
    """Whether this process is a worker started by `launch`."""
    return bool(os.environ.get(RUN_PATH_FILE))


def tell_launcher(run: Run, prepared: Any) -> None:
    """In process 0 of a launched job: tell the launcher where the run folder is, once it exists (the launcher
    keeps the processes' logs there and marks the run failed when a process dies)."""
    notice = os.environ.get(RUN_PATH_FILE)
    if notice and prepared.placement.chief:
        write_text_atomic(Path(notice), str(run.path.resolve()))


def launch(worker_args: list[str], count: int, resumed: Optional[Run] = None) -> int:
    """Run `cnnctl train WORKER_ARGS` in `count` local processes; the exit code for the command line.
    `resumed`: the run being resumed (known before it starts)."""
    scratch = Path(tempfile.mkdtemp(prefix="cnnctl-processes-"))
    # The workers' temporary files (a non-chief process's run folder, TensorFlow's) go in here and are removed with
    # it, also those of a process that was killed and could not remove its own.
    (scratch / "tmp").mkdir()
    port = _free_port()
    processes: list[subprocess.Popen] = []
    logs: list[IO[bytes]] = []
    relays: list[_Relay] = []
    quiet = threading.Event()
    try:
        for index in range(count):
            env = {
                **os.environ,
                COORDINATOR: f"127.0.0.1:{port}",
                PROCESS_COUNT: str(count),
                PROCESS_ID: str(index),
                RUN_PATH_FILE: str(scratch / "run"),
                "TMPDIR": str(scratch / "tmp"),
            }
            log = open(scratch / f"process-{index}.log", "wb")
            logs.append(log)
            command = [sys.executable, "-m", "cnnctl", "train", *worker_args]
            if index == 0:  # shown as it comes, and logged
                process = subprocess.Popen(
                    command,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    preexec_fn=die_with_launcher(os.getpid()),
                )
                relays += [
                    _Relay(process.stdout, sys.stdout, log, quiet),
                    _Relay(process.stderr, sys.stderr, log, quiet),
                ]
            else:
                process = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_launcher(os.getpid())
                )
            processes.append(process)
        failed = _watch(processes, quiet)
    except KeyboardInterrupt:  # Ctrl-C reached every process of the terminal's group: let them record it
        _stop(processes, grace_s=30.0)
        failed = None
        interrupted = True
    else:
        interrupted = False
    for relay in relays:
        relay.finish()
    for log in logs:
        log.close()
    run = resumed or _announced_run(scratch)
    if run is not None:
        _keep_logs(scratch, run, count)
    shutil.rmtree(scratch, ignore_errors=True)
    if interrupted:
        return 130
    if failed is None:
        return 0
    index, code = failed
    if index == 0 and code > 0:
        return code  # the chief ended by itself and said why (its error line was shown)
    if processes[0].returncode == 0:  # the run was finished and written before the other process failed
        print(
            f"warning: process {index} of {count} {how(code)} after process 0 finished the run; its output is "
            f"in {run.file(LOGS) if run else 'its log'}",
            file=sys.stderr,
        )
        return 0
    return report_death(index, code, count, run, f"--processes {count}", f"logs in {run.file(LOGS) if run else ''}/")


def die_with_launcher(launcher: int) -> Optional[Callable[[], None]]:
    """Linux: a function for Popen's preexec_fn that makes the kernel kill the worker when the launcher dies, even
    by SIGKILL (prctl PR_SET_PDEATHSIG): a worker left alone would wait for its peers in a collective forever.
    The run keeps its last committed epoch (environment.json's epochs_run is written with each checkpoint).
    None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:  # runs in the child between fork and exec
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != launcher:  # the launcher died before the request took effect
            os._exit(1)

    return arrange


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch(processes: list[subprocess.Popen], quiet: threading.Event) -> Optional[tuple[int, int]]:
    """Wait for every process; on the first failure, stop the rest. None when all succeeded, else the failed
    process's index and exit code (negative: killed by that signal). `quiet` is set once another process died:
    what process 0 prints about it from then on (a collective's traceback) goes to its log only."""
    while True:
        codes = [process.poll() for process in processes]
        failures = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
        if failures:
            break
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.05)
    # Another process's death first: process 0 may have failed already in a collective, because of it.
    index, code = next((failure for failure in failures if failure[0] != 0 and failure[1] != USER_ERROR), failures[0])
    if index != 0 and code == USER_ERROR:  # a mistake every process meets: process 0 is saying it now
        deadline = time.monotonic() + CHIEF_GRACE_S
        while processes[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        chief = processes[0].poll()
        if chief is not None and chief > 0:
            index, code = 0, chief
    elif index != 0:
        quiet.set()
    _stop(processes, grace_s=0.0)
    return index, code


def _stop(processes: list[subprocess.Popen], grace_s: float) -> None:
    """Kill what still runs (after `grace_s`): a process left alone would wait for the dead one in its next
    collective until JAX's heartbeat gives up. The checkpoint is committed atomically, so nothing is torn."""
    deadline = time.monotonic() + grace_s
    for process in processes:
        if process.poll() is None:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def report_death(index: int, code: int, count: int, run: Optional[Run], again: str, logs: str) -> int:
    """Say that process `index` died and the others were stopped, and record the run as failed for that reason;
    `again`: the launch options a resume repeats ("--processes 2"); `logs`: where the processes' output is."""
    what = f"process {index} of {count} {how(code)}"
    if run is None:
        print(
            f"error: {what} before the run folder was made; its output: run again with --processes 1 to see it",
            file=sys.stderr,
        )
        return 1
    epochs = _quietly(checkpoint.completed_epochs, run)
    environment = _quietly(lambda r: r.read_json(contract.ENVIRONMENT), run) or {}
    if environment.get("status") != "completed":  # the cause, rather than process 0's failed collective
        detail = {"detail": f"process 0: {environment['error']}"} if environment.get("error") else {}
        _quietly(lambda r: finish_run(r, "failed", epochs_run=epochs or 0, error=what, **detail), run)
    after = f" after {epochs} completed epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    print(
        f"error: {what}; the other processes were stopped; {run.path} keeps its state{after} ({logs}); "
        f"continue: {resume_command(run)} {again}",
        file=sys.stderr,
    )
    return 1


def how(code: int) -> str:
    """How a process ended, from Popen's return code (negative: the signal that killed it)."""
    if code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    return f"exited with code {code}"


def _quietly(function, run: Run):
    try:
        return function(run)
    except Exception:  # noqa: BLE001 - a half-written run folder: report what can be read
        return None


# Lines the collectives library prints when the processes connect: kept in the log, not shown.
NOISE = (b"[Gloo] ",)


class _Relay(threading.Thread):
    """Copies process 0's stdout or stderr to the console and its log, line by line. A traceback is held back
    (`held`) until the launcher knows whether process 0 failed by itself (then it is shown) or because another
    process died (a collective's error: only logged) — process 0 notices a dead peer before the launcher does."""

    def __init__(self, source: IO[bytes], target: IO[str], log: IO[bytes], quiet: threading.Event):
        super().__init__(daemon=True)
        self.source, self.target, self.log, self.quiet = source, target, log, quiet
        self.held: list[bytes] = []
        self.start()

    def run(self) -> None:
        for line in iter(self.source.readline, b""):
            self.log.write(line)
            self.log.flush()
            if line.startswith(NOISE) or self.quiet.is_set():
                continue
            if self.held or line.startswith(b"Traceback (most recent call last)"):
                self.held.append(line)
                continue
            self.show(line)
        self.source.close()

    def show(self, line: bytes) -> None:
        if hasattr(self.target, "buffer"):
            self.target.buffer.write(line)
        else:
            self.target.write(line.decode(errors="replace"))
        self.target.flush()

    def finish(self) -> None:
        """After the process ended: show a held traceback unless another process's death caused it."""
        self.join()
        if not self.quiet.is_set():
            for line in self.held:
                self.show(line)


def _announced_run(scratch: Path) -> Optional[Run]:
    path = scratch / "run"
    if not path.is_file():
        return None
    return Run(Path(path.read_text(encoding="utf-8").strip()))


def _keep_logs(scratch: Path, run: Run, count: int) -> None:
    """Each process's output in RUN/logs/process-K.log; a resumed run's logs grow (one section per start)."""
    folder = run.file(LOGS)
    try:
        folder.mkdir(exist_ok=True)
        for index in range(count):
            source = scratch / f"process-{index}.log"
            with open(folder / f"process-{index}.log", "ab") as target:
                target.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} process {index} of {count}\n".encode())
                target.write(source.read_bytes() if source.exists() else b"")
    except OSError as exc:
        print(f"warning: could not keep the processes' logs in {folder} ({exc.strerror})", file=sys.stderr)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
