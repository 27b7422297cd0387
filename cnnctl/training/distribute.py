"""Training: where training runs — one device; every device of one machine through TensorFlow's
MirroredStrategy; or Keras' DataParallel on JAX, over the devices of one process or of several (jax.distributed).

`train.distribute` chooses (auto | none | mirrored | data_parallel); `train.batch_size` stays the global batch,
split evenly over the devices. Several processes are joined from the standard environment, read by
`jax.distributed.initialize` itself: JAX_COORDINATOR_ADDRESS (process 0's host:port), JAX_NUM_PROCESSES and
JAX_PROCESS_ID (what `cnnctl train --processes N` sets for its local workers, and Kubeflow Trainer's JAX runtime for
its pods), Keras' KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID, or a SLURM job's own variables.
Process 0 is the chief: it alone writes the run folder (see cnnctl/workflows/train.py).

Not used, on purpose: TensorFlow's MultiWorkerMirroredStrategy fails inside Keras 3's fit
(tensorflow/tensorflow#72388, keras-team/keras#20585); Ray Train's TensorflowTrainer forces legacy tf-keras; Horovod
has no Keras 3 support.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from cnnctl import runtime
from cnnctl.config.schema import TrainConfig
from cnnctl.data.shard import Shard
from cnnctl.errors import ConfigError, RunError, first_line
from cnnctl.runtime import memory_bytes

# What `cnnctl train --processes N` sets for each local worker, and what a launcher (Kubeflow's JAX runtime, a
# hand-written script) sets on every host; JAX reads the address itself, cnnctl passes the other two.
COORDINATOR = "JAX_COORDINATOR_ADDRESS"
PROCESS_COUNT = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"
# Keras' own launcher variables (keras.distribution.initialize): every process's host:port, comma-separated, process 0
# first; read when the JAX_* ones are not set.
KERAS_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
KERAS_PROCESS_COUNT = "KERAS_DISTRIBUTION_NUM_PROCESSES"
KERAS_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
# Every variable cnnctl reads to join a job (SLURM's are read by jax.distributed.initialize itself).
JOB_VARIABLES = (COORDINATOR, PROCESS_COUNT, PROCESS_ID, KERAS_ADDRESSES, KERAS_PROCESS_COUNT, KERAS_PROCESS_ID)


@dataclass(frozen=True)
class JobEnvironment:
    """Where a job's processes meet, as the environment says: process 0's host:port, how many, which one this is
    (None where unset), and the variables it came from."""

    coordinator: Optional[str]
    count: Optional[int]
    index: Optional[int]
    names: tuple[str, str, str] = (COORDINATOR, PROCESS_COUNT, PROCESS_ID)


def job_environment() -> JobEnvironment:
    """The JAX_* variables, else Keras' KERAS_DISTRIBUTION_* ones (the first job address is process 0's)."""
    jax_set = any(os.environ.get(name, "").strip() for name in (COORDINATOR, PROCESS_COUNT, PROCESS_ID))
    keras_set = any(
        os.environ.get(name, "").strip() for name in (KERAS_ADDRESSES, KERAS_PROCESS_COUNT, KERAS_PROCESS_ID)
    )
    if keras_set and not jax_set:
        addresses = [part.strip() for part in os.environ.get(KERAS_ADDRESSES, "").split(",") if part.strip()]
        return JobEnvironment(
            addresses[0] if addresses else None,
            _env_int(KERAS_PROCESS_COUNT),
            _env_int(KERAS_PROCESS_ID),
            (KERAS_ADDRESSES, KERAS_PROCESS_COUNT, KERAS_PROCESS_ID),
        )
    return JobEnvironment(os.environ.get(COORDINATOR) or None, _env_int(PROCESS_COUNT), _env_int(PROCESS_ID))


def _several_processes_asked() -> bool:
    slurm_tasks = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or "1"
    environment = job_environment()
    return (
        bool(environment.coordinator)
        or (environment.count or 1) > 1
        or (slurm_tasks.isdigit() and int(slurm_tasks) > 1 and "SLURM_JOB_ID" in os.environ)
    )


MAX_JOB_PROCESSES = 65536  # far beyond any cluster a config trains on; a larger number is a typo
PROCESS_MEMORY_BYTES = 3 * 2**30  # what one training process (Python, TensorFlow or JAX, data, model) may take
PROCESSES_PER_CORE = 4
JOIN_TIMEOUT_S = 90  # how long to wait for the other processes (JAX's own default, 300 s, looks like a hang)


def _env_int(name: str, default: Optional[int] = None) -> Optional[int]:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) > MAX_JOB_PROCESSES:
        raise ConfigError(f"{name}={value[:40]!r}: must be a whole number from 0 to {MAX_JOB_PROCESSES}")
    return int(value)


def local_process_limit() -> int:
    """How many training processes this machine can hold at once: each loads the data and the model (about
    PROCESS_MEMORY_BYTES), and more than PROCESSES_PER_CORE a core only wait for one another."""
    return max(1, min(PROCESSES_PER_CORE * (os.cpu_count() or 1), memory_bytes() // PROCESS_MEMORY_BYTES))


def check_local_processes(option: str, count: int) -> None:
    """`--processes N` or `--workers N`: refused past what this machine holds (local_process_limit)."""
    limit = local_process_limit()
    if count > limit:
        raise ConfigError(
            f"{option} {count}: this machine ({os.cpu_count()} cores) holds at most {limit} training "
            "processes, each with its own copy of the data and the model; across machines, start one "
            "per host (docs/scaling-out.md)"
        )


def _check_coordinator(address: str, name: str = COORDINATOR) -> None:
    """Process 0's address must be host:port before JAX sees it (a malformed one crashes its C++ client)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or not address.isprintable() or " " in address:
        raise ConfigError(
            f"{name}={address[:80]!r}: must be host:port, e.g. 10.0.0.1:1234, the address of "
            "process 0 that every process reaches"
        )


def join_processes() -> None:
    """Join the job's other processes (jax.distributed.initialize) when the environment describes several; once,
    before JAX's first device query. Nothing for one process, or on TensorFlow — where several processes are
    refused, since Keras 3's fit cannot train across them there."""
    if not _several_processes_asked():
        return
    environment = job_environment()
    if runtime.backend() != "jax":
        raise ConfigError(
            f"{environment.names[0]} / {environment.names[1]} describe several training processes, which cnnctl "
            f"runs on the JAX backend only (TensorFlow's MultiWorkerMirroredStrategy does not work "
            f"with Keras 3): KERAS_BACKEND=jax; pip install 'cnnctl[jax]'"
        )
    import jax

    if jax.distributed.is_initialized():
        return
    count, index = environment.count, environment.index
    address_name, count_name, index_name = environment.names
    if count is not None and index is not None and not 0 <= index < count:
        raise ConfigError(f"{index_name}={index}: must be 0..{count - 1} ({count_name}={count})")
    if environment.coordinator:
        _check_coordinator(environment.coordinator, address_name)
    where = f"cannot join the other training processes at {address_name}={environment.coordinator or '(not set)'}"
    with _given_up_after(
        JOIN_TIMEOUT_S,
        f"{where} within {JOIN_TIMEOUT_S} s: check that {f'all {count}' if count else 'all'} processes run and reach "
        "that address (process 0's)",
    ):
        try:
            jax.distributed.initialize(
                coordinator_address=environment.coordinator,
                num_processes=count,
                process_id=index,
                # JAX aborts the process when its own timeout passes (a C++ fatal error and a stack trace, exit 134):
                # ours comes first, with one line.
                initialization_timeout=int(4 * JOIN_TIMEOUT_S),
            )
        except (RuntimeError, ValueError) as exc:
            raise RunError(f"{where}: {first_line(exc)}") from None


@contextlib.contextmanager
def _given_up_after(seconds: float, message: str) -> Iterator[None]:
    """Ends the process with `error: message` (exit code 2) if the block has not finished after `seconds`. For a
    wait inside C++ that Python cannot interrupt: the main thread is stuck in JAX's client, so only leaving the
    process ends it; the launcher of a job sees the exit code and stops the other processes."""
    finished = threading.Event()

    def give_up() -> None:
        if not finished.wait(seconds):
            sys.stderr.write(f"error: {message}\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=give_up, name="cnnctl-join-timeout", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


def job() -> tuple[int, int]:
    """(this process's number, how many processes) in a multi-process job; (0, 1) alone. Process 0, the chief,
    writes the run folder."""
    if runtime.backend() != "jax" or "jax" not in sys.modules:  # joining imports JAX before anything else does
        return 0, 1
    import jax

    return (jax.process_index(), jax.process_count()) if jax.distributed.is_initialized() else (0, 1)


@dataclass
class Placement:
    """Where one training runs: the strategy, the devices a batch is split over, and the engine behind it
    (a tf.distribute.MirroredStrategy or a keras.distribution.DataParallel; None on one device)."""

    strategy: str = "none"
    devices: tuple[str, ...] = ()
    batch_size: int = 0
    processes: int = 1
    process_index: int = 0
    engine: Any = field(default=None, repr=False)

    @property
    def replicas(self) -> int:
        return max(1, len(self.devices)) if self.strategy != "none" else 1

    @property
    def shard(self) -> Optional[Shard]:
        """How the in-memory batches are cut for Keras' DataParallel; None when Keras splits them itself."""
        if self.strategy != "data_parallel":
            return None
        return Shard(self.process_index, self.processes, self.replicas)

    @property
    def chief(self) -> bool:
        return self.process_index == 0

    def scope(self) -> Any:
        """Build, compile, restore and fit inside: the model's variables are created and updated on every device."""
        return self.engine.scope() if self.engine is not None else contextlib.nullcontext()

    def quiet_fit(self) -> Any:
        """Around fit. MirroredStrategy's per-device input pipelines make TensorFlow's C++ runtime log `W0000 ...
        dataset.cc] Input of GeneratorDatasetOp::Dataset will not be optimized ...` on descriptor 2 (absl logging,
        which TF_CPP_MIN_LOG_LEVEL does not reach); Python's own messages still show, errors still raise."""
        return runtime.native_logs_silenced() if self.strategy == "mirrored" else contextlib.nullcontext()

    def describe(self) -> str:
        """`mirrored over 2 devices (CPU:0, CPU:1): batch 64 = 2 × 32 per device`; empty on one device."""
        if self.strategy == "none":
            return ""
        names = ", ".join(self.devices)
        processes = f" in {self.processes} processes" if self.processes > 1 else ""
        return (
            f"{self.strategy} over {self.replicas} device{'s' if self.replicas != 1 else ''}{processes} "
            f"({names}): batch {self.batch_size} = {self.replicas} × {self.batch_size // self.replicas} "
            "per device"
        )

    def record(self) -> dict[str, Any]:
        """environment.json's `distribute`."""
        return {
            "strategy": self.strategy,
            "devices": list(self.devices),
            "processes": self.processes,
            "global_batch": self.batch_size,
            "per_device_batch": self.batch_size // self.replicas,
        }

    def steps_per_execution(self, setting: Any) -> int:
        # MirroredStrategy with several steps per compiled call fails in Keras 3.15's TensorFlow trainer ("You must
        # feed a value for placeholder tensor ... while/cond/Placeholder"), so it runs one step per call.
        return 1 if self.strategy == "mirrored" else runtime.resolve_steps_per_execution(setting)


def _short(name: str) -> str:
    """`/job:localhost/replica:0/task:0/device:GPU:1` → `GPU:1`, as JAX names its devices."""
    return name.rsplit("/device:", 1)[-1]


def place(train: TrainConfig, in_memory: bool = True) -> Placement:
    """Resolve train.distribute on this machine (and job). `in_memory`: the data is held as arrays (Keras'
    DataParallel is fed cnnctl's own batches, cut per process; a folder source streams through tf.data)."""
    setting = train.distribute
    index, count = job()
    if runtime.backend() == "jax":
        return _place_jax(train, setting, in_memory, index, count)
    if setting == "data_parallel":
        raise ConfigError(
            "train.distribute: data_parallel is Keras' distribution API on the JAX backend; on "
            "TensorFlow use mirrored (every device of this machine) or auto, or run with "
            "KERAS_BACKEND=jax"
        )
    if setting == "none":
        return Placement(batch_size=train.batch_size)
    devices = _tensorflow_devices()
    if setting == "auto" and len(devices) < 2:
        return Placement(batch_size=train.batch_size)
    if train.steps_per_execution not in ("auto", 1):
        raise ConfigError(
            f"train.steps_per_execution: {train.steps_per_execution} does not work with "
            "TensorFlow's MirroredStrategy in Keras 3 (the multi-step loop fails); use auto or 1, "
            "or train.distribute: none"
        )
    _check_split(train, len(devices), setting)
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Placement("mirrored", tuple(_short(name) for name in devices), train.batch_size, engine=strategy)


def _tensorflow_devices() -> list[str]:
    """Every GPU; without one, the CPU's logical devices (several only where a program configured them, e.g.
    tf.config.set_logical_device_configuration — how the tests try two devices on one CPU)."""
    tf = runtime.import_tensorflow()
    runtime.devices()  # memory growth is set before the devices are listed (listing initializes them)
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def _place_jax(train: TrainConfig, setting: str, in_memory: bool, index: int, count: int) -> Placement:
    if setting == "mirrored":
        raise ConfigError(
            "train.distribute: mirrored is TensorFlow's MirroredStrategy; on the JAX backend use data_parallel or auto"
        )
    if setting == "none":
        if count > 1:
            raise ConfigError(
                f"train.distribute: none trains on one device, but this job has {count} processes; "
                "use auto or data_parallel"
            )
        return Placement(batch_size=train.batch_size)
    import jax

    devices = jax.devices()
    if setting == "auto" and len(devices) < 2:
        return Placement(batch_size=train.batch_size)
    if not in_memory:
        if setting == "auto" and count == 1:
            return Placement(batch_size=train.batch_size)  # streamed folders train on one device (see below)
        raise ConfigError(
            "train.distribute: data_parallel on JAX needs data held in memory (npz, npy, idx, csv, "
            "built-in datasets); a folder source streams through tf.data, which cnnctl does not split "
            "over devices yet; use train.distribute: none, or KERAS_BACKEND=tensorflow with mirrored"
        )
    _check_split(train, len(devices), setting)
    import keras

    # cnnctl cuts each process's part of the batches itself (cnnctl/data/batches.py): Keras' own sharding works on
    # tf.data only and needs TensorFlow, which a JAX machine may lack.
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    names = tuple(f"{device.platform.upper()}:{device.id}" for device in devices)
    return Placement("data_parallel", names, train.batch_size, count, index, distribution)


def _check_split(train: TrainConfig, devices: int, setting: str) -> None:
    if train.batch_size % devices:
        lower = train.batch_size - train.batch_size % devices
        higher = lower + devices
        choices = f"{lower} or {higher}" if lower else f"{higher}"
        raise ConfigError(
            f"train.batch_size: {train.batch_size} does not split evenly over the {devices} devices "
            f"train.distribute: {setting} uses; use {choices}, or train.distribute: none"
        )


@contextlib.contextmanager
def chief_only_folder(prefix: str = "cnnctl-process-") -> Iterator[Optional[str]]:
    """A scratch folder for a process that is not the chief (its run folder goes there and is removed
    afterwards); None in the chief, which writes the real run folder."""
    index, _ = job()
    if index == 0:
        yield None
        return
    scratch = tempfile.mkdtemp(prefix=f"{prefix}{index}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
