"""Runs: model.keras read back — checked before Keras opens it (a regular file, a zip that does not inflate past
memory, a bounded config), then loaded in Keras' safe mode, so a file that carries code or names a class that is not
Keras' own is refused with one line. Every command that uses a trained run loads its model here.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from cnnctl import runtime
from cnnctl.errors import RunError, first_line
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runtime import memory_bytes


def load_model(run: Run) -> Any:
    """model.keras in Keras' safe mode: a file that carries code (a Lambda layer) or names a class that is not
    Keras' own (`module: os`) is refused with one line."""
    runtime.quiet_backend_import()  # before Keras, which would import TensorFlow with its start-up noise
    import keras

    run.require(contract.MODEL)
    path = check_model_file(run.file(contract.MODEL))  # and the weights its config describes
    if not zipfile.is_zipfile(path):  # else Keras answers "File not found" for a file that is there
        raise RunError(
            f"{path}: not a Keras model file (a .keras file is a zip archive); it is damaged or was "
            "never finished; train the run again or resume it"
        ) from None
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise RunError(
                f"{path}: refused: the model contains code (a Lambda layer), which cnnctl never "
                "loads; rebuild it from a config"
            ) from None
        raise RunError(f"{path}: cannot load the model ({text.splitlines()[0] if text else 'ValueError'})") from None
    except TypeError as exc:
        # Keras' answer to a config naming a class it does not know: `module: os`, a numpy type, a class
        # someone registered elsewhere. In safe mode nothing of it was imported or run.
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(exc))
        named = f" ({unknown.group(1)!r})" if unknown else ""
        raise RunError(
            f"{path}: refused: its config names a class that is not one of Keras' own{named}, which "
            "cnnctl never loads; rebuild it from a config"
        ) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RunError(
            f"{path}: cannot load the model ({type(exc).__name__}: {first_line(exc)}); the file may be damaged"
        ) from None
    except RecursionError:
        raise RunError(f"{path}: refused: its config is nested too deeply to be a model cnnctl wrote") from None
    except Exception as exc:
        if runtime.out_of_memory(exc):
            raise RunError(f"{path}: refused: its layers do not fit in this machine's memory") from None
        raise


def _check_described_weights(path: Path, config_text: bytes) -> None:
    """Count the weights model.keras's config.json describes, without allocating them, and refuse a model whose
    weights alone exceed this machine's memory: Keras would build every layer (allocate its weights) before reading
    a single weight from the file. Each layer is deserialized alone (Keras builds it on its saved input shape)."""
    import keras

    try:
        config = json.loads(config_text)
    except (ValueError, RecursionError):
        return  # load_model says what is wrong with the file
    weights = 0
    for entry in _saved_layers(config):
        weights += runtime.weights_without_allocating(
            lambda entry=entry: keras.saving.deserialize_keras_object(entry, safe_mode=True)
        )
        if weights * 4 > memory_bytes():
            raise RunError(
                f"{path}: refused: its config describes {weights:,} weights ({_amount(weights * 4)} as float32), "
                f"more than this machine's {_amount(memory_bytes())} of memory"
            )


def _amount(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.0f} MiB"


def _saved_layers(config: Any) -> Iterator[dict]:
    """The leaf layers of a saved model's config (nested models opened) that were built (saved with their input
    shape), each as Keras serialized it."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    for entry in layers if isinstance(layers, list) else []:
        if not isinstance(entry, dict):
            continue
        nested = entry.get("config")
        if isinstance(nested, dict) and isinstance(nested.get("layers"), list):
            yield from _saved_layers(entry)
            continue
        build = entry.get("build_config")
        shape = build.get("input_shape") if isinstance(build, dict) else None
        if isinstance(shape, list) and all(size is None or isinstance(size, int) for size in shape):
            yield entry


# A .keras file is a zip of config.json, metadata.json and model.weights.h5. Keras reads config.json whole and builds
# every layer it names before any weight is read, so both are bounded before Keras sees the file.
MAX_MODEL_CONFIG_BYTES = 64 * 2**20


def check_model_file(path: Path) -> Path:
    """model.keras (or any .keras file cnnctl is asked to load), checked before Keras opens it: a regular file, a zip
    whose members do not inflate past this machine's memory, with a config of at most MAX_MODEL_CONFIG_BYTES that
    describes no more weights than memory holds. Raises RunError naming the file."""
    readable_file(path, max_bytes=memory_bytes())
    if not zipfile.is_zipfile(path):
        return path  # load_model says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive.infolist())
            config_text = archive.read("config.json") if "config.json" in archive.namelist() else None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RunError(f"{path}: not a readable Keras model file ({first_line(exc)})") from None
    if config_text is not None:
        _check_described_weights(path, config_text)
    return path


def _check_members(path: Path, members: list) -> None:
    total = sum(member.file_size for member in members)
    if total > memory_bytes():
        raise RunError(
            f"{path}: refused: its members inflate to {total / 2**30:,.1f} GiB, more than this machine's "
            f"{memory_bytes() / 2**30:,.1f} GiB of memory"
        )
    config = next((member for member in members if member.filename == "config.json"), None)
    if config is not None and config.file_size > MAX_MODEL_CONFIG_BYTES:
        raise RunError(
            f"{path}: refused: its config.json is {config.file_size / 2**20:,.0f} MiB; a model's config "
            f"is at most {MAX_MODEL_CONFIG_BYTES // 2**20} MiB"
        )


def check_weights_file(path: Path) -> Path:
    """A .weights.h5 file (a checkpoint, a backbone's weights), checked before Keras reads it: HDF5 datasets may be
    stored compressed, and Keras reads each one whole before it compares its shape with the layer's, so a small file
    can inflate past memory. Their stored sizes (shape × item size) must fit in memory. Raises RunError naming the
    file; one h5py cannot open is left to Keras' own error."""
    import h5py

    total = 0

    def count(name: str, item: Any) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += int(item.size) * item.dtype.itemsize

    try:
        with h5py.File(path, "r") as weights:
            weights.visititems(count)
    except (OSError, ValueError, TypeError):
        return path
    if total > memory_bytes():
        raise RunError(
            f"{path}: refused: its arrays hold {_amount(total)} once decompressed, more than this machine's "
            f"{_amount(memory_bytes())} of memory"
        )
    return path
