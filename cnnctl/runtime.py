"""TensorFlow start-up: quiet import, devices, seeds, precision, versions.

Only commands that need TensorFlow call into this module, so `cnnctl --help` never pays for the import.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from typing import Any, Iterator

from cnnctl import __version__


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
    """Import TensorFlow once; without `verbose`, its C++ and Python log noise is silenced."""
    if "tensorflow" in sys.modules:
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


def devices() -> list[str]:
    """GPU names when TensorFlow sees one, else the CPU: what training will run on."""
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:  # allocate as needed, so two runs can share a card
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)
        return [_gpu_name(tf, gpu) for gpu in gpus]
    return [f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"]


def _gpu_name(tf: Any, gpu: Any) -> str:
    try:
        details = tf.config.experimental.get_device_details(gpu)
        return f"GPU {details.get('device_name', gpu.name)}"
    except Exception:  # details are cosmetic; never fail a run over them
        return f"GPU {gpu.name}"


def has_gpu() -> bool:
    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def resolve_precision(mixed_precision: str) -> str:
    """`train.mixed_precision` → a Keras dtype policy name: `auto` = mixed_float16 on a GPU, float32 on a CPU."""
    if mixed_precision == "auto":
        return "mixed_float16" if has_gpu() else "float32"
    return "float32" if mixed_precision == "off" else mixed_precision


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
    """`train.jit_compile`: auto = XLA on a GPU, not on a CPU."""
    return has_gpu() if setting == "auto" else bool(setting)


def resolve_steps_per_execution(setting: Any) -> int:
    return CPU_STEPS_PER_EXECUTION if setting == "auto" else int(setting)


def seed_everything(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def versions() -> dict[str, str]:
    import keras
    import numpy

    tf = import_tensorflow()
    return {"cnnctl": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "platform": platform.platform()}
