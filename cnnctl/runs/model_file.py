"""Runs: model.keras read back — checked before Keras opens it (a regular file, a zip that does not inflate past
memory, a bounded config), then loaded in Keras' safe mode, so a file that carries code or names a class that is not
Keras' own is refused with one line. Every command that uses a trained run loads its model here.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

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
    path = check_model_file(run.file(contract.MODEL))
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


# A .keras file is a zip of config.json, metadata.json and model.weights.h5. Keras reads config.json whole and builds
# every layer it names before any weight is read, so both are bounded before Keras sees the file.
MAX_MODEL_CONFIG_BYTES = 64 * 2**20


def check_model_file(path: Path) -> Path:
    """model.keras (or any .keras file cnnctl is asked to load), checked before Keras opens it: a regular file, a zip
    whose members do not inflate past this machine's memory, with a config of at most MAX_MODEL_CONFIG_BYTES.
    Raises RunError naming the file."""
    readable_file(path, max_bytes=memory_bytes())
    if not zipfile.is_zipfile(path):
        return path  # load_model says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RunError(f"{path}: not a readable Keras model file ({first_line(exc)})") from None
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
    return path
