"""The backend's start-up: which Keras backend (TensorFlow unless KERAS_BACKEND says jax), TensorFlow's quiet
import, devices, seeds, precision, versions.

Only commands that need TensorFlow call into this module, so `cnnctl --help` never pays for the import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import platform
import random
import sys
from typing import Any, Iterator, Optional

from cnnctl import __version__
from cnnctl.errors import ConfigError


@contextlib.contextmanager
def _silence_native_stderr() -> Iterator[None]:
    # TensorFlow's C++ start-up logs (CUDA probing, CPU features) go straight to file descriptor 2 before
    # TF_CPP_MIN_LOG_LEVEL is read by every component, so they are silenced at the descriptor during import.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def native_logs_silenced() -> Iterator[None]:
    """Silence what C++ code writes to file descriptor 2 for a while, and only that: Python's sys.stderr (warnings,
    cnnctl's own messages) keeps writing to where descriptor 2 went before."""
    python_stderr = sys.stderr
    try:
        writes_to_fd_2 = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a notebook's or a test's stream: not descriptor 2
        writes_to_fd_2 = False
    kept = None
    if writes_to_fd_2:
        python_stderr.flush()
        kept = open(os.dup(2), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
        sys.stderr = kept
    try:
        with _silence_native_stderr():
            yield
    finally:
        if kept is not None:
            sys.stderr = python_stderr
            kept.close()


def prepare_tensorflow_environment() -> None:
    """Settings TensorFlow reads once, at import; a value the user exported wins.

    TF_ENABLE_ONEDNN_OPTS: TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512
    VNNI/BF16 or AMX. Elsewhere (AVX2 machines, AMD EPYC included) training falls back to Eigen kernels whose
    convolution and max-pooling gradients are far slower: on the 2-core AVX2 machine oneDNN cut a training step
    of the article's CNN from 27 to 20 ms (benchmarks/RESULTS.md). It only touches CPU kernels, so GPU runs are
    unaffected.
    """
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def import_tensorflow(verbose: bool = False) -> Any:
    """Import TensorFlow once; without `verbose`, its C++ and Python log noise is silenced. ImportError when it
    is not installed (see `require_tensorflow` for a user's error, `tensorflow_installed` to ask)."""
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    prepare_tensorflow_environment()
    if verbose:
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _silence_native_stderr():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported (it is then imported, quietly). On the JAX backend it is optional: the
    tf.data pipelines, image decoding, TensorBoard and export use it; in-memory training and scoring do not."""
    try:
        import_tensorflow()
    except ImportError:
        return False
    return True


def require_tensorflow(what: str) -> Any:
    """TensorFlow for `what` ("data.source: folder", ...), or one error line saying it is not installed."""
    try:
        return import_tensorflow()
    except ImportError:
        raise ConfigError(
            f"{what} needs TensorFlow, which is not installed here (backend {backend()}): pip install tensorflow"
        ) from None


def require_package(module: str, what: str, install: str) -> None:
    """One error line when `what` ("train.mlflow", ...) needs a package that is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what}: needs {module}, which is not installed here; {install}")


def quiet_backend_import() -> None:
    """Call before Keras is imported: TensorFlow first and quietly (Keras would import it with pages of C++
    start-up logs) when it is the backend or installed beside another; nothing when JAX runs alone. A backend
    cnnctl does not train on, or one that is not installed, is one error line here rather than Keras' traceback."""
    check_backend()
    if backend() == "tensorflow":
        import_tensorflow()
    elif "tensorflow" not in sys.modules and tensorflow_installed():
        # TensorFlow only feeds tf.data batches to JAX here: hidden from the GPUs (once, at its import), it neither
        # takes their memory nor logs its CUDA probing (`failed call to cuInit`) when its runtime starts.
        tf = import_tensorflow()
        with contextlib.suppress(RuntimeError), _silence_native_stderr():  # RuntimeError: TensorFlow had started
            tf.config.set_visible_devices([], "GPU")


SUPPORTED_BACKENDS = ("tensorflow", "jax")
BACKEND_PACKAGES = {"tensorflow": "pip install tensorflow", "jax": "pip install 'cnnctl[jax]'"}


def check_backend() -> None:
    """The Keras backend (KERAS_BACKEND, else ~/.keras/keras.json) is one cnnctl trains on, and is installed."""
    if "keras" in sys.modules:
        return  # Keras chose already
    chosen = backend()
    where = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "the Keras backend in ~/.keras/keras.json"
    if chosen not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f"{where} is {chosen!r}; cnnctl trains on tensorflow or jax: set KERAS_BACKEND=jax, or unset it for "
            "TensorFlow"
        )
    if importlib.util.find_spec(chosen) is None:
        raise ConfigError(f"{where} is {chosen}, which is not installed here; {BACKEND_PACKAGES[chosen]}")


def backend() -> str:
    """The Keras backend of this process: `tensorflow` unless KERAS_BACKEND (or Keras' own ~/.keras/keras.json)
    names another, e.g. `jax`. Read as Keras reads it, so the answer is the same before and after its import."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    settings = os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "keras.json")
    try:
        with open(settings, encoding="utf-8") as handle:
            return str(json.load(handle).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def use_backend(chosen: Optional[str]) -> None:
    """A config's `backend:` for this process: sets KERAS_BACKEND, which Keras reads once, when it is imported
    (the commands load the config first). A one-line error when KERAS_BACKEND names another backend, or when
    this process already runs Keras on another (a Python caller that imported Keras first)."""
    if chosen is None:
        return
    exported = os.environ.get("KERAS_BACKEND")
    if exported and exported != chosen:
        raise ConfigError(
            f"backend: {chosen}, but KERAS_BACKEND={exported} is set; unset KERAS_BACKEND or change "
            "backend: in the config"
        )
    if "keras" in sys.modules and backend() != chosen:
        raise ConfigError(
            f"backend: {chosen}, but this Python process already runs Keras on {backend()} (Keras "
            f"chooses its backend once, when it is imported); set KERAS_BACKEND={chosen} before "
            "importing keras or cnnctl's training"
        )
    os.environ["KERAS_BACKEND"] = chosen


def devices() -> list[str]:
    """GPU names when the backend sees one, else the CPU: what training will run on."""
    if backend() == "jax":
        gpus = _jax_gpus()
        if gpus:
            return [f"GPU {getattr(gpu, 'device_kind', gpu)}" for gpu in gpus]
        return [_cpu_name()]
    tf = import_tensorflow()
    gpus = _gpus(tf)
    if gpus:
        for gpu in gpus:  # allocate as needed, so two runs can share a card
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)
        return [_gpu_name(tf, gpu) for gpu in gpus]
    return [_cpu_name()]


def _cpu_name() -> str:
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _gpu_name(tf: Any, gpu: Any) -> str:
    try:
        details = tf.config.experimental.get_device_details(gpu)
        return f"GPU {details.get('device_name', gpu.name)}"
    except Exception:  # details are cosmetic; never fail a run over them
        return f"GPU {gpu.name}"


def has_gpu() -> bool:
    if backend() == "jax":
        return bool(_jax_gpus())
    return bool(_gpus(import_tensorflow()))


def _jax_gpus() -> list:
    import jax

    return [device for device in jax.devices() if device.platform == "gpu"]


def _gpus(tf: Any) -> list:
    # The first query initializes CUDA; without a driver TensorFlow's C++ logs `failed call to cuInit` straight to
    # file descriptor 2 (seen once in a test; absl's logging ignores TF_CPP_MIN_LOG_LEVEL before it is set up).
    with _silence_native_stderr():
        return tf.config.list_physical_devices("GPU")


# CPU instructions that compute bfloat16 natively (Linux /proc/cpuinfo names). With one of them TensorFlow's oneDNN
# kernels run mixed_bfloat16 ~1.6x faster than float32 (an AMX Xeon, fashion_mnist_best: 50-52 s an epoch instead of
# 78-84 s); without them bfloat16 is emulated and 4-8x slower, so `auto` chooses it on these flags alone.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU (Linux: /proc/cpuinfo), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def resolve_precision(mixed_precision: str) -> str:
    """`train.mixed_precision` → a Keras dtype policy name (precision_reason says why for `auto`)."""
    return _precision_choice(mixed_precision)[0]


def precision_reason(mixed_precision: str) -> str:
    """Why `train.mixed_precision` gives its policy, as the run header and environment.json say it."""
    return _precision_choice(mixed_precision)[1]


def _precision_choice(mixed_precision: str) -> tuple[str, str]:
    if mixed_precision != "auto":
        return ("float32" if mixed_precision == "off" else mixed_precision), "train.mixed_precision"
    if has_gpu():
        return "mixed_float16", "auto: a GPU"
    flags = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    if flags and backend() == "tensorflow":  # XLA on JAX gives bfloat16 no such kernels: measured on TensorFlow only
        return "mixed_bfloat16", f"auto: the CPU has {', '.join(flags)}"
    return "float32", "auto: a CPU without bfloat16 instructions (amx_bf16, avx512_bf16)" if not flags else (
        "auto: bfloat16 is measured faster on TensorFlow only"
    )


@contextlib.contextmanager
def precision_policy(mixed_precision: str) -> Iterator[str]:
    """Keras' global dtype policy for the layers built inside the block, put back afterwards. Each layer keeps
    the policy it was built with (and model.keras records it), so nothing after building needs the global one,
    and a Python caller's own Keras code is not switched to mixed precision behind its back."""
    import keras

    previous = keras.mixed_precision.global_policy()
    policy = resolve_precision(mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)


# Measured on the 2-core CPU machine (benchmarks/RESULTS.md): forcing XLA (jit_compile: true) made CPU training
# of the article's CNN about 3.5x slower than TensorFlow's own kernels; Keras' own "auto" also keeps XLA off on
# CPU-only machines. On GPUs XLA is the usual win.
CPU_STEPS_PER_EXECUTION = 16  # batches per compiled call: amortizes Python and callback overhead per step
# (within the machine's noise on the article's CNN: its steps are compute-bound, not overhead-bound)


def inference_batch_size(train_batch_size: int) -> int:
    """Batch for validation, evaluation and predict: results do not depend on it, speed does. Inference keeps
    no activations for a backward pass, so 4x the training batch (up to 256) fits wherever training fits; on
    the article's CNN, batch 256 evaluates ~40% more images/s than batch 64 (benchmarks/RESULTS.md)."""
    return max(train_batch_size, min(4 * train_batch_size, 256))


def resolve_jit_compile(setting: Any) -> bool:
    """`train.jit_compile`: auto = XLA on a GPU, not on a CPU, with TensorFlow; always with JAX, which without jit
    runs every op eagerly from Python (digits: 161 ms a step instead of ~10)."""
    if setting == "auto":
        return True if backend() == "jax" else has_gpu()
    return bool(setting)


def resolve_steps_per_execution(setting: Any) -> int:
    return CPU_STEPS_PER_EXECUTION if setting == "auto" else int(setting)


def seed_everything(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def versions() -> dict[str, str]:
    import keras
    import numpy

    found = {"cnnctl": __version__, "python": platform.python_version(), "backend": backend()}
    if backend() == "tensorflow" or "tensorflow" in sys.modules:
        found["tensorflow"] = import_tensorflow().__version__
    if backend() == "jax":
        import jax

        found["jax"] = jax.__version__
    return {**found, "keras": keras.__version__, "numpy": numpy.__version__, "platform": platform.platform()}


def memory_bytes() -> int:
    """This machine's physical memory in bytes (a generous 1 TiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def weights_without_allocating(create: Any) -> int:
    """How many weights the layer that `create()` makes and builds would have, counted without allocating them: it
    runs in a keras.StatelessScope that leaves variables uninitialised (shapes only). Neither Python's random
    generator (Keras seeds initializers from it: seeded runs must keep their weights) nor Keras' list of variables
    to initialise later (the next scope to close would allocate them after all) keeps a trace of it. A layer that
    cannot be made so counts 0: the real build reports why."""
    import keras
    from keras.src.backend.common import global_state  # where Keras lists variables to initialise later

    state = random.getstate()
    pending = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    before = list(pending)
    try:
        with keras.StatelessScope(initialize_variables=False):
            return sum(math.prod(variable.shape) for variable in create().weights)
    except Exception:  # noqa: BLE001 - any failure is the real build's to report
        return 0
    finally:
        random.setstate(state)
        pending[:] = before


def out_of_memory(exc: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED, Python's MemoryError: weights too big."""
    return isinstance(exc, MemoryError) or "ResourceExhausted" in type(exc).__name__ or "RESOURCE_EXHAUSTED" in str(exc)
