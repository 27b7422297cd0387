"""What the console shows during training: a progress bar that never counts past the epoch, learning rates written
as the config writes them, and history.csv numbering epochs as the console does."""

from __future__ import annotations

import csv

import keras
import numpy as np

from cnnctl.training.callbacks import (
    HistoryLogger,
    LearningRateLog,
    Progress,
    readable_rate,
)


def test_the_progress_bar_stops_at_the_epochs_last_step():
    # steps_per_execution 8 over 41 steps: Keras reports the last chunk as ending at step 47 ("48/41").
    progress = Progress()
    progress.set_params({"verbose": 1, "epochs": 1, "steps": 41})
    progress.on_epoch_begin(0)
    progress.progbar.update = lambda current, values=None, finalize=None: seen.append(current)
    seen: list[int] = []
    for last_step_of_chunk in (7, 15, 23, 31, 39, 47):
        progress.on_train_batch_end(last_step_of_chunk, {})
    assert seen == [8, 16, 24, 32, 40, 41]


def test_learning_rates_read_as_written():
    assert readable_rate(np.float32(0.001)) == 0.001 and str(readable_rate(np.float32(0.001))) == "0.001"
    assert readable_rate(np.float32(3e-4)) == 3e-4
    assert float(np.float32(0.001)) == 0.0010000000474974513  # what Keras' own message prints


def _model(learning_rate: float) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def test_a_changed_learning_rate_is_announced_once_in_short_form(capsys):
    model = _model(0.001)
    log = LearningRateLog(announce=True)
    log.set_model(model)
    logs: list[dict] = []
    for epoch, rate in enumerate([0.001, 0.001, 0.0005, 0.0005]):
        model.optimizer.learning_rate = rate  # what ReduceLROnPlateau does between epochs
        log.on_epoch_begin(epoch)
        logs.append({})
        log.on_epoch_end(epoch, logs[-1])
    assert capsys.readouterr().out == "Epoch 3: learning rate 0.001 → 0.0005\n"
    assert [entry["learning_rate"] for entry in logs] == [0.001, 0.001, 0.0005, 0.0005]


def test_history_counts_epochs_from_1_and_keeps_an_older_files_columns(tmp_path):
    x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
    path = tmp_path / "history.csv"
    _model(0.01).fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateLog(), HistoryLogger(str(path), append=True)])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert [row["learning_rate"] for row in rows] == ["0.01", "0.01"]

    older = tmp_path / "older.csv"  # written before history.csv had a learning_rate column
    older.write_text("epoch,loss\n1,0.5\n")
    _model(0.01).fit(
        x,
        y,
        epochs=2,
        initial_epoch=1,
        verbose=0,
        callbacks=[LearningRateLog(), HistoryLogger(str(older), append=True)],
    )
    lines = older.read_text().splitlines()
    assert lines[0] == "epoch,loss" and lines[1] == "1,0.5"
    assert lines[2].startswith("2,") and len(lines[2].split(",")) == 2  # as many fields as the header


# Lines that TensorFlow, absl or Keras print on their own; cnnctl's console never shows them.
FOREIGN = (
    "WARNING: All log messages",
    "I0000",
    "W0000",
    "E0000",
    "cpu_feature_guard",
    "cudart_stub",
    "oneDNN custom operations",
    "To enable the following instructions",
    "retracing",
)


def test_resuming_in_a_fresh_process_prints_only_cnnctls_own_lines(digits_run_copy):
    """`train --resume` of a finished run, and extended by one epoch, as a new user's shell runs it."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith(("TF_", "KERAS_"))}
    for extra in ([], ["--set", "train.epochs=3"]):
        done = subprocess.run(
            [sys.executable, "-m", "cnnctl", "train", "--resume", str(digits_run_copy), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        foreign = [line for line in (done.stdout + done.stderr).splitlines() if any(mark in line for mark in FOREIGN)]
        assert foreign == []
