"""Never lose a run: kill -9, Ctrl-C and SIGTERM during training, then `cnnctl train --resume` finishes the
same run folder with every epoch in history.csv exactly once; finished runs are left alone or extended;
the state of early stopping and the learning-rate schedule survives a resume."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.errors import Interrupted, RunError
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run
from cnnctl.runs.status import held_lock, is_training
from cnnctl.training import checkpoint
from cnnctl.training.backup import TrainingBackup
from cnnctl.training.callbacks import BestModelCheckpoint, higher_is_better
from cnnctl.training.signals import signals_deferred, signals_interrupt

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

# Six short epochs (~0.3 s each): slow enough to be stopped after the first, without early stopping ending it.
SLOW_TINY = {
    "name": "tiny",
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 6, "batch_size": 16, "early_stopping": False},
    "evaluate": {"top_k": [1, 3]},
}
FINAL_FILES = [
    "config.yaml",
    "environment.json",
    "data.json",
    "model.keras",
    "history.csv",
    "metrics.json",
    "classification_report.txt",
    "confusion_matrix.csv",
    "predictions.npz",
    "loss_curve.png",
    "accuracy_curve.png",
    "confusion_matrix.png",
]


def history_epochs(run: Path) -> list[int]:
    with open(run / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def environment(run: Path) -> dict:
    return json.loads((run / "environment.json").read_text())


def start_training(tmp_path: Path, args: list[str], after_epoch: int = 0) -> tuple[subprocess.Popen, Path]:
    """`cnnctl ARGS` in a subprocess; returns once it has completed an epoch past `after_epoch` (its state
    committed), with the run folder. history.csv gets the epoch's row a moment before the commit: a kill in
    between is the resume's business (the row is dropped and the epoch trained again)."""
    runs_dir = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for state in runs_dir.glob(f"*/{contract.CHECKPOINTS}/{checkpoint.METADATA}"):
            run = state.parent.parent
            if checkpoint.completed_epochs(Run(run)) > after_epoch:
                return process, run
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    pytest.fail("no epoch completed within 120 s")


def test_kill_9_and_ctrl_c_then_resume_finish_the_same_run(tmp_path):
    """One run lives through both: kill -9 (nothing recorded), resume, Ctrl-C (recorded, exit 130, the resume
    command printed), resume to the end. Each epoch is in history.csv exactly once."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(SLOW_TINY))
    process, run = start_training(tmp_path, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert environment(run)["status"] == "running"  # nobody could record anything
    listing = runner.invoke(app, ["runs", "--runs-dir", str(run.parent)])
    row = next(line for line in listing.output.splitlines() if run.name in line)
    assert "stopped" in row and "running" not in row  # `runs` sees the trainer is gone
    assert "stopped = its process died mid-training: cnnctl train --resume <id> continues it" in " ".join(
        listing.output.replace("│", " ").split()
    )
    killed_at = checkpoint.completed_epochs(Run(run))
    assert 1 <= killed_at < 6

    process, _ = start_training(tmp_path, ["train", "--resume", str(run)], after_epoch=killed_at)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    env = environment(run)
    assert env["status"] == "interrupted" and env["signal"] == "SIGINT"
    interrupted_at = env["epochs_run"]
    assert interrupted_at == checkpoint.completed_epochs(Run(run)) > killed_at
    lines = stderr.strip().splitlines()
    assert (
        f"interrupted (SIGINT): {run} stopped after {interrupted_at} completed epochs; its state is saved in "
        f"{run}/checkpoints"
    ) in lines
    printed = next(line for line in lines if line.startswith("resume with: "))
    assert printed == f"resume with: cnnctl train --resume {run}"
    assert "Traceback" not in stderr

    command = shlex.split(printed.removeprefix("resume with: "))
    assert command[0] == "cnnctl"
    result = runner.invoke(app, command[1:])  # the printed command, as printed
    assert result.exit_code == 0, result.output
    assert history_epochs(run) == list(range(1, 7))  # each epoch exactly once, none lost, none repeated
    missing = [name for name in FINAL_FILES if not (run / name).exists()]
    assert not missing
    env = environment(run)
    assert env["status"] == "completed" and env["epochs_run"] == 6
    assert [(r["after_epoch"], r["previous_status"]) for r in env["resumed"]] == [
        (killed_at, "running"),
        (interrupted_at, "interrupted"),
    ]
    assert len(list(run.parent.iterdir())) == 1  # the same folder throughout, no new run


def test_sigterm_stops_after_saving_state_and_exits_143(tmp_path, monkeypatch):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    import keras

    from cnnctl.training import loop

    class TermAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [TermAtSecondEpoch()])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(SLOW_TINY))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    (run,) = (tmp_path / "runs").iterdir()
    assert result.exit_code == 143, result.output
    assert result.output.strip().splitlines()[-1] == f"resume with: cnnctl train --resume {run}"
    env = environment(run)
    assert (env["status"], env["epochs_run"], env["signal"]) == ("interrupted", 1, "SIGTERM")
    assert history_epochs(run) == [1]
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the handler is gone once training ends


def test_finished_run_is_left_alone_unless_asked_for_more_epochs(digits_run_copy):
    run = digits_run_copy
    before = {path.name: path.stat().st_mtime_ns for path in run.iterdir() if path.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "already completed (2 epochs of 2); nothing to do" in " ".join(result.output.split())
    assert {path.name: path.stat().st_mtime_ns for path in run.iterdir() if path.is_file()} == before

    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    assert history_epochs(run) == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    assert environment(run)["status"] == "completed" and environment(run)["epochs_run"] == 3
    assert json.loads((run / "metrics.json").read_text())["num_examples"] == 360
    assert (run / "model.keras").stat().st_mtime_ns > before["model.keras"]


def test_a_pruned_tuning_trial_is_left_alone_like_a_completed_run(digits_run_copy):
    run = digits_run_copy
    env = environment(run)
    (run / "environment.json").write_text(json.dumps({**env, "status": "pruned", "pruned_after_epoch": 2}))
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "already pruned (2 epochs of 2); nothing to do" in " ".join(result.output.split())
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_resume_refuses_a_run_another_process_is_training(digits_run_copy):
    run = Run(digits_run_copy)
    with held_lock(run):
        assert is_training(run)
        result = runner.invoke(app, ["train", "--resume", str(run.path), "--set", "train.epochs=3"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {run.path}: another cnnctl process is training this run right now; "
        "wait for it to finish or stop it (Ctrl-C) first"
    )
    assert environment(run.path)["status"] == "completed"  # the other process's run is not touched
    assert not is_training(run)


def test_runs_tells_a_live_training_from_one_whose_process_died(digits_run_copy):
    from cnnctl.reporting.compare import summarize_run

    run = Run(digits_run_copy)
    run.write_json(contract.ENVIRONMENT, {**environment(run.path), "status": "running", "duration_s": None})
    with held_lock(run):
        assert summarize_run(run).status == "running"
    assert summarize_run(run).status == "stopped"  # lock file left behind, nobody holds it


def test_backup_restores_early_stopping_plateau_and_best_model_state(tmp_path):
    """Stopped after 3 epochs, early stopping (patience 3) has waited 2 and the plateau schedule (patience 3)
    too: on resume, both act at the very next epoch, early stopping restores the best weights it kept, and the
    best-model checkpoint starts from the best loss it had seen."""
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)).astype("float32"), rng.integers(0, 3, 64)
    run = Run(tmp_path)

    def training():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        # mode=max on a falling loss: only epoch 0 is ever "best", so both callbacks count waits from there.
        stopping = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=3, restore_best_weights=True)
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", mode="max", patience=3, factor=0.5)
        return model, [stopping, plateau, BestModelCheckpoint(tmp_path / "model.keras", monitor="loss")]

    weights_after, losses, best_loss_at_resume = [], [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after.append(self.model.get_weights())
            losses.append(logs["loss"])

    model, callbacks = training()
    backup = TrainingBackup(run, callbacks)
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        verbose=0,
        initial_epoch=backup.restore(model),
        callbacks=callbacks + [Record(), backup],
    )
    assert checkpoint.read_state(run)["callbacks"]["EarlyStopping"]["wait"] == 2
    assert checkpoint.read_state(run)["callbacks"]["ReduceLROnPlateau"]["wait"] == 2
    assert checkpoint.read_state(run)["callbacks"]["ModelCheckpoint"]["best"] == pytest.approx(min(losses))

    class BestLossAtResume(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            best_loss_at_resume.append(callbacks[2].best)

    resumed, callbacks = training()
    backup = TrainingBackup(run, callbacks)
    history = resumed.fit(
        x,
        y,
        epochs=20,
        batch_size=16,
        verbose=0,
        initial_epoch=backup.restore(resumed),
        callbacks=callbacks + [BestLossAtResume(), backup],
    )
    assert best_loss_at_resume == [pytest.approx(min(losses))]
    assert history.epoch == [3]  # early stopping's patience ran out at once: its wait was restored
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.005)  # the plateau halved the rate
    assert int(resumed.optimizer.iterations) == 4 * 4  # optimizer state continued: 4 epochs of 4 steps
    for restored, best in zip(resumed.get_weights(), weights_after[0]):
        np.testing.assert_allclose(restored, best)  # the best weights (epoch 1) survived the restart


@pytest.mark.parametrize("monitor, pick", [("loss", np.argmin), ("accuracy", np.argmax)])
def test_best_model_is_the_epoch_keras_calls_best(tmp_path, monitor, pick):
    """Loss is best when lowest, accuracy when highest (Keras' mode="auto" rule): model.keras holds the weights
    of that epoch."""
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)).astype("float32"), rng.integers(0, 3, 64)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    values, weights = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            values.append(logs[monitor])
            weights.append(self.model.get_weights())

    best_model = BestModelCheckpoint(tmp_path / "model.keras", monitor=monitor)
    model.fit(x, y, epochs=6, batch_size=16, verbose=0, callbacks=[Record(), best_model])
    best = int(pick(values))
    assert best_model.best == pytest.approx(values[best]), values
    for saved, expected in zip(keras.saving.load_model(tmp_path / "model.keras").get_weights(), weights[best]):
        np.testing.assert_allclose(saved, expected)
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left behind


def test_direction_of_a_monitored_value_is_keras_own():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy", "auc", "precision", "mae"])
    model.fit(np.zeros((4, 4)), np.array([0, 1, 0, 1]), verbose=0)  # Keras names the metrics once they are built
    cases = [
        ("loss", False),
        ("val_loss", False),
        ("accuracy", True),
        ("val_accuracy", True),
        ("auc", True),
        ("val_precision", True),
        ("mae", False),
    ]
    assert [(name, higher_is_better(model, name)) for name in dict(cases)] == cases
    with pytest.raises(ValueError, match="monitor=val_f1"):
        higher_is_better(model, "val_f1")


def test_a_crash_while_saving_the_best_model_keeps_the_previous_one(tmp_path, monkeypatch):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    path = tmp_path / "model.keras"
    best_model = BestModelCheckpoint(path, monitor="loss")
    best_model.set_model(model)
    best_model.on_epoch_end(0, {"loss": 1.0})
    saved = path.read_bytes()

    def crash_mid_save(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a mod")
        raise OSError(errno.EIO, "Input/output error", str(filepath))

    monkeypatch.setattr(keras.Model, "save", crash_mid_save)
    with pytest.raises(OSError):
        best_model.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes() == saved
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left behind


def test_history_keeps_one_complete_row_per_checkpointed_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\r\n1,1.5\r\n2,1.2\r\n2,1.2\r\n3,1.1\r\n4,0.9")  # repeated row, torn last line
    assert checkpoint.kept_history(path, 2) == "epoch,loss\r\n1,1.5\r\n2,1.2\r\n"
    # An older cnnctl's file counted from 0: renumbered, so the rows the resumed run appends continue it.
    path.write_bytes(b"epoch,loss\r\n0,1.5\r\n1,1.2\r\n2,1.1\r\n")
    assert checkpoint.kept_history(path, 2) == "epoch,loss\r\n1,1.5\r\n2,1.2\r\n"
    path.write_bytes(b"epo")  # torn header
    assert checkpoint.kept_history(path, 2) == ""
    assert checkpoint.kept_history(tmp_path / "none.csv", 2) is None


@pytest.mark.parametrize(
    "text, error",
    [
        ("epoch,loss\n1,abc\n", "history.csv, line 2, column loss: 'abc' is not a number"),
        ("epoch,loss\n-5,1.0\n1,1.0\n", "history.csv, line 2: epoch '-5' is not a whole number; the file was edited"),
        ("epoch,loss\n1,1.0,3\n", "history.csv, line 2: 3 values for 2 columns; the file was edited"),
        (
            "epoch,accuracy\n1,0.5\n",
            "history.csv: the header is not Keras' CSVLogger's (`epoch` first, a `loss` column)",
        ),
        ("loss,epoch\n1.0,1\n", "history.csv: the header is not Keras' CSVLogger's"),
    ],
    ids=["not-a-number", "negative-epoch", "extra-value", "no-loss", "epoch-not-first"],
)
def test_a_history_damaged_by_hand_is_refused_not_cut(tmp_path, text, error):
    """Rows a crash cannot leave were dropped without a word when a run resumed (the history then lacked epochs)."""
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(RunError, match=re.escape(error)):
        checkpoint.kept_history(path, 2)


def test_a_signal_during_a_checkpoint_waits_for_the_commit(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    finished = []
    with pytest.raises(Interrupted) as caught:
        with signals_interrupt():
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                finished.append(True)  # the block completes before the interrupt is raised
    assert finished == [True] and caught.value.exit_code == 130


def test_atomic_weights_keep_their_double_suffix(tmp_path):
    with atomic_path(tmp_path / "epoch-0001.weights.h5") as temp:
        assert temp.name.endswith(".weights.h5") and temp.parent == tmp_path
        temp.write_bytes(b"x")
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.weights.h5"]


def test_a_signal_swallowed_by_a_finalizer_is_sent_again():
    """Python discards an exception raised inside a garbage-collector callback or __del__ (JAX registers one):
    a Ctrl-C landing there let `cnnctl tune` run every trial and exit 0, and ignored every later signal."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs here, inside __del__, and its exception is discarded
                pass

    with pytest.raises(Interrupted) as caught, signals_interrupt():
        Finalized()  # collected at once
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the signal sent again arrives here
            time.sleep(0.01)
    assert caught.value.signum == signal.SIGINT


def test_a_run_stopped_before_its_first_epoch_says_to_train_anew(tmp_path):
    """It said "its state is saved ... resume with: cnnctl train --resume RUN", which then refused: no state."""
    import keras

    from cnnctl.config.schema import Config
    from cnnctl.workflows.train import train_run

    class StopAtOnce(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise Interrupted(signal.SIGINT)

    config = Config.model_validate(
        {
            "data": {"source": "digits", "validation_split": 0.1},
            "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
            "train": {"epochs": 2},
        }
    )
    with pytest.raises(Interrupted) as caught:
        train_run(config, tmp_path / "runs", extra_callbacks=[StopAtOnce()])
    (run,) = (tmp_path / "runs").iterdir()
    assert str(caught.value) == (
        f"interrupted (SIGINT): {run} stopped before its first epoch ended; nothing to resume from: train anew with "
        f"cnnctl train {run / 'config.yaml'}"
    )
    assert json.loads((run / "environment.json").read_text())["status"] == "interrupted"


def test_sigterm_to_a_command_outside_training_says_what_it_left(trained_digits_run, monkeypatch):
    """SIGTERM killed plot, export or explain without a word (Python's default), and Ctrl-C said only
    "interrupted (SIGINT)"."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    from cnnctl import api

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(api, "plot", killed)
    result = CliRunner().invoke(app, ["plot", str(trained_digits_run.path)])
    assert result.exit_code == 143, result.output
    assert result.output.strip() == (
        "interrupted (SIGTERM): every file written so far is whole, the others are as they were; run the command "
        "again to finish"
    )
