"""A quiet console in a new user's shell (issue 30, part 8): a sample of error paths that get as far as importing
TensorFlow and building a model print only cnnctl's own lines: no absl, cudart, cpu_feature_guard or retracing
line, and an error is the one `error:` line on stderr with nothing before it.

Each case runs `python -m cnnctl` in a fresh process with no TF_*/KERAS_* setting that would hide TensorFlow's own
logs: TensorFlow prints its C++ log lines once per process, so only a fresh process shows whether they leak.
(`train --resume` is checked in tests/test_console.py and `train` in tests/test_faults.py with the same marks; `cv`
in tests/test_crossval.py's fixture and `tune` in tests/test_multilabel.py with `new_user_runs`.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_console import FOREIGN
from test_faults import NEW_USER_ENVIRONMENT, TENSORFLOW_LOG_LINE

OPTUNA_LOG_LINE = "[I 20"  # Optuna's own logger: "[I 2026-12-07 23:22:03,123] Trial 0 finished ..."


def new_user_runs(*args: object, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess:
    """`cnnctl ARGS` in a fresh process with a new user's environment (a terminal `columns` wide), asserting that
    it printed no line cnnctl did not write."""
    done = subprocess.run(
        [sys.executable, "-m", "cnnctl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**NEW_USER_ENVIRONMENT, "COLUMNS": str(columns)},
        timeout=300,
    )
    lines = (done.stdout + done.stderr).splitlines()
    foreign = [
        line
        for line in lines
        if TENSORFLOW_LOG_LINE.search(line) or any(mark in line for mark in (*FOREIGN, OPTUNA_LOG_LINE))
    ]
    assert foreign == [], f"cnnctl {args[0]} printed lines it did not write: {foreign}"
    return done


def tiny_config(folder: Path, **changes) -> Path:
    """80 random 6×6 examples of two classes, one small Conv2D: quick to build and to train for one epoch."""
    rng = np.random.default_rng(0)
    np.savez(folder / "tiny.npz", x_train=rng.random((80, 6, 6, 1), np.float32), y_train=np.arange(80) % 2)
    config = {
        "name": "tiny",
        "data": {"source": "npz", "path": "tiny.npz", "validation_split": 0.25, "test_split": 0.25},
        "model": {
            "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 2}}],
        },
        "train": {"epochs": 1, "batch_size": 16, "early_stopping": False},
        **changes,
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def bad_layer(folder: Path) -> list:
    config = tiny_config(folder, model={"layers": [{"Conv2D": {"filters": 2, "kernel_siz": 3}}, "Flatten"]})
    return ["train", config, "--runs-dir", folder / "runs"]


def damaged_model(folder: Path, run: Path) -> list:
    (run / "model.keras").write_bytes(b"PK\x03\x04 not a zip archive" * 10)
    return ["evaluate", run]


ERROR_PATHS = {
    # case: (how to make it, what its one line says)
    "a misspelt layer argument": (bad_layer, "unknown argument 'kernel_siz' (did you mean 'kernel_size'?)"),
    "a damaged model.keras": (damaged_model, "model.keras: not a Keras model file (a .keras file is a zip archive)"),
}


@pytest.mark.parametrize("case", ERROR_PATHS)
def test_an_error_is_its_one_line_with_nothing_before_it(case, tmp_path, trained_digits_run):
    make, says = ERROR_PATHS[case]
    if make is bad_layer:
        args = make(tmp_path)
    else:
        run = tmp_path / "run"
        shutil.copytree(trained_digits_run.path, run)
        args = make(tmp_path, run)
    done = new_user_runs(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
