"""Shared fixtures. Training is the expensive part of most end-to-end tests, so one tiny digits run is trained
once per test session (per xdist worker) and shared; tests that change a run work on a copy."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

# Small enough to train in seconds on one CPU core, big enough to have two conv layers and a pooling layer
# for feature maps and filters. Two epochs: the metrics are far from perfect, so errors exist to be shown.
TINY_DIGITS_CONFIG = {
    "name": "tiny-digits",
    "seed": 7,
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.003}},
    "evaluate": {"top_k": [1, 3]},
}


# JAX processes started by the tests share a persistent compilation cache: each compiles the same small models, and
# a warm cache halves a JAX process's CPU time here (24 s → 13 s for the digits slice on a 2-core EPYC). JAX's cache
# is safe for concurrent processes and keyed by versions and flags; it lives in the system's temporary folder.
JAX_TEST_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": str(Path(tempfile.gettempdir()) / "cnnctl-tests-jax-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


@dataclass(frozen=True)
class TrainedRun:
    path: Path  # the run folder
    runs_dir: Path  # the folder it lives in (it is the only run there)
    config: Path  # the YAML it was trained from
    output: str  # what `cnnctl train` printed


@pytest.fixture(scope="session")
def trained_digits_run(tmp_path_factory) -> TrainedRun:
    """`cnnctl train` of TINY_DIGITS_CONFIG (digits, 2 epochs, seed 7). Shared by the whole session: read it,
    don't change it (use `digits_run_copy` to run evaluate/plot/predict commands that write into it)."""
    from typer.testing import CliRunner

    from cnnctl.cli.app import app

    base = tmp_path_factory.mktemp("trained-digits")
    config = base / "tiny-digits.yaml"
    config.write_text(yaml.safe_dump(TINY_DIGITS_CONFIG, sort_keys=False))
    runs_dir = base / "runs"
    result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0, result.output
    (path,) = list(runs_dir.iterdir())
    return TrainedRun(path=path, runs_dir=runs_dir, config=config, output=result.output)


@pytest.fixture
def digits_run_copy(trained_digits_run, tmp_path) -> Path:
    """A private copy of the trained run folder, inside tmp_path/runs, free to be rewritten."""
    target = tmp_path / "runs" / trained_digits_run.path.name
    shutil.copytree(trained_digits_run.path, target)
    return target
