"""Training: `cnnctl train CONFIG --processes N --ray ADDRESS` — the same N data-parallel JAX processes as
`--processes N` (one `cnnctl train` each, joined by jax.distributed; cnnctl/training/distribute.py), placed on a Ray
cluster instead of this machine: one Ray actor per process, each holding one CPU of a placement group spread over the
cluster's nodes, each starting its `cnnctl train` with the three JAX_* variables. Process 0's node and a free port
there are the coordinator's address; process 0 owns the run folder, so the runs dir must be on storage every node
shares (the others train in scratch folders, as with --processes).

Process 0's output comes back line by line (a streaming actor method) and is printed here as it comes; of the
others', the last lines are shown when one fails. When one process fails, the others are stopped at once and the run
is recorded as failed for that reason, as the local launcher does; `cnnctl train --resume RUN --processes N --ray
ADDRESS` continues from the last committed epoch. Ctrl-C gives every process time to record the run as interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Optional

from cnnctl.errors import ConfigError, first_line
from cnnctl.runs.folder import Run
from cnnctl.training.distribute import COORDINATOR, PROCESS_COUNT, PROCESS_ID
from cnnctl.training.processes import NOISE, RUN_PATH_FILE, USER_ERROR, die_with_launcher, how, report_death

PLACEMENT_TIMEOUT_S = 120  # for the cluster to find N free CPUs before the launch is given up
TAIL_LINES = 20  # of a failed process's output, shown by the launcher
INTERRUPT_GRACE_S = 30.0  # after Ctrl-C, for each process to record its run as interrupted
QUIET = tuple(noise.decode() for noise in NOISE)  # what the collectives print as the processes connect
TO_STDERR = ("error:", "warning:")


RAY_ADDRESSES = "auto (a cluster this node belongs to), ray://HOST:10001, HOST:6379 or local"
PROBE_TIMEOUT_S = 5.0  # a head node answers a TCP connection at once; Ray's own client retries for minutes


def check_ray_address(address: str) -> None:
    """An address Ray can be given, where something answers: a malformed one (`ray://`, a port that is not a
    number or past 65535) or one where nothing listens made Ray retry for minutes with its own log lines."""
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray {address}: not a Ray address; give {RAY_ADDRESSES}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray {address}: nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__}); start the "
            f"cluster there (ray start --head), or give {RAY_ADDRESSES}"
        ) from None


def launch_on_ray(worker_args: list[str], count: int, address: str) -> int:
    """Run `cnnctl train WORKER_ARGS` as `count` processes on the Ray cluster at `address` ("local" starts one on
    this machine for the call); the exit code for the command line."""
    check_ray_address(address)
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    try:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,  # process 0's lines come back as a stream, printed here without Ray's prefix
        )
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError: no cluster there
        raise ConfigError(
            f"--ray {address}: cannot join a Ray cluster there ({first_line(exc)}); give {RAY_ADDRESSES}"
        ) from None
    try:
        group = placement_group([{"CPU": 1}] * count, strategy="SPREAD")
        ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
        if not ready:
            raise ConfigError(
                f"--ray {address}: the cluster did not offer {count} free CPUs within {PLACEMENT_TIMEOUT_S} s "
                f"(it has {int(ray.cluster_resources().get('CPU', 0))}); give fewer --processes or add nodes"
            )
        worker = ray.remote(num_cpus=1, max_concurrency=2)(TrainingProcess)  # a second thread for stop()
        actors = [
            worker.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)
            ).remote()
            for index in range(count)
        ]
        coordinator = ray.get(actors[0].coordinator_address.remote())
        job = (worker_args, count, coordinator)
        chief = actors[0].stream.options(num_returns="streaming").remote(*job)
        others = {actor.run.remote(*job, index): index for index, actor in enumerate(actors) if index}
        failures: list[tuple[int, int, list[str]]] = []
        other_died = threading.Event()  # from then on, what process 0 prints (a collective's error) is not shown
        watcher = threading.Thread(target=_watch_others, args=(ray, actors, others, failures, other_died), daemon=True)
        watcher.start()
        held: list[str] = []  # a traceback of process 0's, shown only if no other process caused it
        run_path = None
        try:
            for reference in chief:
                item = ray.get(reference)
                if not isinstance(item, str):
                    code, tail, run_path = item
                    if code != 0:
                        failures.append((0, code, tail))
                elif other_died.is_set() or item.startswith(QUIET):
                    continue
                elif held or item.startswith("Traceback (most recent call last)"):
                    held.append(item)
                else:  # its stderr comes merged in: error lines go back there
                    print(item, end="", flush=True, file=sys.stderr if item.startswith(TO_STDERR) else sys.stdout)
        except KeyboardInterrupt:  # Ctrl-C: every process records its run as interrupted, resumable
            ray.get([actor.stop.remote(INTERRUPT_GRACE_S) for actor in actors])
            return 130
        if any(failure[0] == 0 for failure in failures):
            ray.get([actor.stop.remote() for actor in actors])
        watcher.join()
    finally:
        ray.shutdown()  # a cluster started for the call ("local") goes with it; the placement group with the job
    return _report(failures, count, held, run_path, f"--processes {count} --ray {address}")


def _watch_others(ray: Any, actors: list, others: dict, failures: list, other_died: threading.Event) -> None:
    """Wait for processes 1..N-1; on the first failure, stop every process at once (the others would wait for
    the dead one in their next collective; the checkpoint is committed atomically) and keep what failed."""
    while others:
        done, _ = ray.wait(list(others), num_returns=1)
        index = others.pop(done[0])
        code, tail = ray.get(done[0])
        if code != 0 and not failures:
            if code != USER_ERROR:  # a mistake every process meets is process 0's to say
                other_died.set()
            failures.append((index, code, tail))
            ray.get([actor.stop.remote() for actor in actors])


def _report(failures: list, count: int, held: list[str], run_path: Optional[str], again: str) -> int:
    """The job's exit code, said as the local launcher says it: another process's death first (process 0 then
    failed in a collective because of it); else process 0's own failure, already shown with its error line."""
    other = next((failure for failure in failures if failure[0] != 0 and failure[1] != USER_ERROR), None)
    if other is not None:
        index, code, tail = other
        run = Run(Path(run_path)) if run_path else None
        if run is None:
            return _say_tail(index, code, count, tail, 1)
        return report_death(index, code, count, run, again, "the processes' output: ray logs")
    sys.stderr.write("".join(held))
    chief = next((failure for failure in failures if failure[0] == 0), None)
    if chief is not None:
        return chief[1] if chief[1] > 0 else 1
    if failures:  # a mistake only another process met
        index, code, tail = failures[0]
        return _say_tail(index, code, count, tail, code)
    return 0


def _say_tail(index: int, code: int, count: int, tail: list[str], exit_code: int) -> int:
    shown = "\n".join(f"  {line}" for line in tail)
    print(f"error: process {index} of {count} {how(code)}; its output ended:\n{shown}", file=sys.stderr)
    return exit_code


class TrainingProcess:
    """One process of the job, as a Ray actor: finds the coordinator's address (process 0) and runs `cnnctl train`
    with the JAX_* variables, its output relayed (process 0) or kept (the others)."""

    def __init__(self):
        self.process: Optional[subprocess.Popen] = None

    def coordinator_address(self) -> str:
        import ray

        with socket.socket() as probe:  # a port free now on this node; jax.distributed binds it moments later
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return f"{ray.util.get_node_ip_address()}:{port}"

    def stream(self, worker_args: list[str], count: int, coordinator: str) -> Iterator[Any]:
        """Process 0: each line of its output as it comes, then (exit code, last lines, its run folder's path)."""
        notice = Path(tempfile.mkdtemp(prefix="cnnctl-ray-")) / "run"
        process = self.start(worker_args, 0, count, coordinator, {RUN_PATH_FILE: str(notice)})
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            yield line
        code = process.wait()
        run_path = notice.read_text(encoding="utf-8") if notice.exists() else None
        shutil.rmtree(notice.parent, ignore_errors=True)
        yield code, list(tail), run_path

    def run(self, worker_args: list[str], count: int, coordinator: str, index: int) -> tuple[int, list[str]]:
        """Processes 1..N-1: (exit code, last lines of output)."""
        process = self.start(worker_args, index, count, coordinator)
        tail = deque((line.rstrip("\n") for line in process.stdout), maxlen=TAIL_LINES)
        return process.wait(), list(tail)

    def start(
        self, worker_args: list[str], index: int, count: int, coordinator: str, extra: Optional[dict] = None
    ) -> subprocess.Popen:
        environment = {
            **os.environ,
            **(extra or {}),
            COORDINATOR: coordinator,
            PROCESS_COUNT: str(count),
            PROCESS_ID: str(index),
            "KERAS_BACKEND": "jax",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnctl", "train", *worker_args],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=die_with_launcher(os.getpid()),  # the actor killed: its process goes too
        )
        return self.process

    def stop(self, grace_s: float = 0.0) -> None:
        """SIGTERM (the process records its run as interrupted), then SIGKILL after `grace_s`: a process whose
        peer died can hang in JAX's shutdown, waiting for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
