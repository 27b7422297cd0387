"""Faults and unsafe input: a diverging loss, out-of-memory and a full disk become one error line naming the
run, with its status recorded and nothing deleted; a model file carrying code and YAML tags that build
objects are refused; run ids stay inside the runs folder; parallel trainings each get their own folder."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.loading import load_config
from cnnctl.errors import ConfigError, RunError
from cnnctl.runs.folder import Run, resolve_run
from cnnctl.training import checkpoint

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 2, "batch_size": 64, "early_stopping": False},
    "evaluate": {"top_k": [1, 3]},
}


# What a new user's shell has: no TF_CPP_MIN_LOG_LEVEL or other setting that would hide TensorFlow's own logs.
NEW_USER_ENVIRONMENT = {
    name: value for name, value in os.environ.items() if not name.startswith(("TF_", "KERAS_", "CUDA_", "ABSL", "GLOG"))
}
# TensorFlow's C++ log lines (I0000 00:00:... cudart_stub.cc:31] ..., E0000 ... failed call to cuInit) and banners.
TENSORFLOW_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::|cuInit|cudart|cpu_feature_guard|oneDNN custom operations|"
    r"This TensorFlow binary"
)


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def environment(run: Path) -> dict:
    return json.loads((run / "environment.json").read_text())


def train_with_fault(tmp_path, monkeypatch, fault: BaseException, at_epoch: int = 1):
    """Train TINY with `fault` raised at the start of epoch `at_epoch` (after earlier epochs are saved)."""
    import keras

    from cnnctl.training import loop

    class Fault(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == at_epoch:
                raise fault

    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [Fault()])
    result = runner.invoke(app, ["train", str(write_config(tmp_path, TINY)), "--runs-dir", str(tmp_path / "runs")])
    (run,) = (tmp_path / "runs").iterdir()
    return result, run


def test_diverging_loss_marks_the_run_failed_with_a_hint(tmp_path):
    """Huge pixel values and normalize: false overflow float32 in the first batch: TerminateOnNaN stops."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "huge.npz", x_train=(rng.random((100, 8, 8)) * 3e38).astype(np.float32), y_train=np.arange(100) % 2
    )
    config = {
        **TINY,
        "data": {"source": "npz", "path": "huge.npz", "normalize": False, "validation_split": 0.2, "test_split": 0.2},
        "model": {"layers": ["Flatten", {"Dense": {"units": 2, "activation": "softmax"}}]},
    }
    result = runner.invoke(app, ["train", str(write_config(tmp_path, config)), "--runs-dir", str(tmp_path / "runs")])
    (run,) = (tmp_path / "runs").iterdir()
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {run}: training stopped: the loss became NaN or infinite; lower train.optimizer.learning_rate "
        "or keep data.normalize: true"
    )
    env = environment(run)
    assert (env["status"], env["error"], env["epochs_run"]) == ("failed", "loss became NaN or infinite", 0)
    assert env["hint"] == "lower train.optimizer.learning_rate or keep data.normalize: true"
    assert checkpoint.read_state(Run(run)) is None  # no diverged state was saved to resume from
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 2 and "cannot resume: its loss became NaN or infinite" in resumed.output


@pytest.mark.parametrize(
    "make_fault, expected",
    [
        (
            lambda: __import__("tensorflow").errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
            "error: {run}: out of memory (ResourceExhaustedError: OOM when allocating tensor); lower train.batch_size "
            "or use a smaller model, then continue: cnnctl train --resume {run} --set train.batch_size=16",
        ),
        (
            lambda: MemoryError("Unable to allocate 3.2 GiB"),
            "error: {run}: out of memory (MemoryError: Unable to allocate 3.2 GiB); lower train.batch_size or use a "
            "smaller model, then continue: cnnctl train --resume {run} --set train.batch_size=16",
        ),
        (
            lambda: OSError(errno.ENOSPC, "No space left on device", "/data/runs/x/history.csv"),
            "error: {run}: disk full while writing /data/runs/x/history.csv; nothing written was deleted; free some "
            "space, then continue: cnnctl train --resume {run}",
        ),
    ],
    ids=["tf-out-of-memory", "host-out-of-memory", "disk-full"],
)
def test_resource_errors_are_one_line_naming_the_run(tmp_path, monkeypatch, make_fault, expected):
    result, run = train_with_fault(tmp_path, monkeypatch, make_fault())
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == expected.format(run=run)
    assert "Traceback" not in result.output
    env = environment(run)
    assert env["status"] == "failed" and env["error"].startswith(type(make_fault()).__name__)
    for name in ("config.yaml", "data.json", "history.csv", "model.keras"):  # nothing written is deleted
        assert (run / name).stat().st_size > 0
    assert checkpoint.completed_epochs(Run(run)) == 1  # the epoch before the fault can be resumed


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_state(tmp_path, monkeypatch):
    """The second epoch's weights cannot be written: the first epoch's state stays whole and no temporary
    file is left behind."""
    import keras

    save_weights = keras.Model.save_weights
    calls = []

    def full_disk_on_second_save(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:
            Path(filepath).write_bytes(b"half a weights fi")
            raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return save_weights(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_disk_on_second_save)
    result = runner.invoke(app, ["train", str(write_config(tmp_path, TINY)), "--runs-dir", str(tmp_path / "runs")])
    (run,) = (tmp_path / "runs").iterdir()
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {run}: disk full while writing {run}/checkpoints/epoch-0002.weights.h5; nothing written was "
        f"deleted; free some space, then continue: cnnctl train --resume {run}"
    )
    state = checkpoint.read_state(Run(run))
    assert state["epoch"] == 1
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == [
        "epoch-0001.weights.h5",
        "lock",
        "training_metadata.json",
    ]
    assert environment(run)["status"] == "failed"


def test_evaluate_refuses_a_model_file_that_carries_code(tmp_path):
    """A model.keras with a Lambda layer, written with Keras into a run folder that is otherwise valid."""
    import keras

    run = tmp_path / "runs" / "20260101-000000-trojan"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(TINY))
    (run / "environment.json").write_text(json.dumps({"status": "completed"}))
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(run / "model.keras")
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {run}/model.keras: refused: the model contains code (a Lambda layer), "
        "which cnnctl never loads; rebuild it from a config"
    )
    assert not (run / "metrics.json").exists()


def test_yaml_tags_that_build_objects_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        "model: {layers: [Flatten, {Dense: {units: 10}}]}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"line 1, column 7: invalid YAML: the tag "
        r"!!python/object/apply:os.system is refused",
    ):
        load_config(config)
    assert not marker.exists()


def test_run_ids_cannot_leave_the_runs_folder(tmp_path, monkeypatch):
    """`runs/../outside` is a valid run, but `../outside` given as a run id must not reach it."""
    runs_dir = tmp_path / "project" / "runs"
    for folder in (tmp_path / "project" / "outside", runs_dir / "20260101-000000-a"):
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(TINY))
        (folder / "environment.json").write_text("{}")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where none of the specs below is a folder path
    for spec in ("../outside", "20260101-000000-a/../../outside", "./../outside", "..", "."):
        with pytest.raises(RunError) as caught:
            resolve_run(spec, runs_dir)
        assert str(caught.value).startswith(f"{spec}: ")
    assert resolve_run("20260101-000000-a", runs_dir).path == runs_dir / "20260101-000000-a"


def smallest_config(folder: Path) -> Path:
    """40 random 4×4 examples of two classes and one Dense layer: for tests of what happens around training
    (processes, logs), where the size of the work does not matter."""
    rng = np.random.default_rng(0)
    np.savez(folder / "tiny.npz", x_train=rng.random((40, 4, 4, 1), np.float32), y_train=np.arange(40) % 2)
    return write_config(
        folder,
        {
            "name": "tiny",
            "data": {"source": "npz", "path": "tiny.npz", "validation_split": 0.0, "test_split": 0.25},
            "model": {"layers": ["Flatten", {"Dense": {"units": 2, "activation": "softmax"}}]},
            "train": {"epochs": 1, "batch_size": 16, "early_stopping": False},
        },
    )


def test_two_trainings_started_at_once_get_two_complete_folders(tmp_path):
    config = smallest_config(tmp_path)
    command = [sys.executable, "-m", "cnnctl", "train", str(config), "--runs-dir", str(tmp_path / "runs")]
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=NEW_USER_ENVIRONMENT
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 2, outputs
    assert not [line for output in outputs for line in output.splitlines() if TENSORFLOW_LOG_LINE.search(line)]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and len({folder.name for folder in folders}) == 2
    stamps = {folder.name[: len("YYYYmmdd-HHMMSS")] for folder in folders}
    assert all(folder.name.startswith(tuple(f"{stamp}-tiny" for stamp in stamps)) for folder in folders)
    for folder in folders:
        env = environment(folder)
        assert env["status"] == "completed" and env["epochs_run"] == 1
        assert json.loads((folder / "metrics.json").read_text())["num_examples"] == 10
        assert (folder / "history.csv").read_text().count("\n") == 2
        assert (folder / "confusion_matrix.png").stat().st_size > 0
    assert resolve_run("last", tmp_path / "runs").path == folders[-1]
    assert not [path for path in (tmp_path / "runs").rglob(".*")]  # no temporary file left anywhere


def test_two_class_metrics_are_computed_not_crashed():
    """Found while cataloguing: top-k accuracy crashed scikit-learn on two-class runs (it wants one column)."""
    from sklearn.metrics import accuracy_score

    from cnnctl.evaluation.metrics import compute_metrics

    y_true = np.array([0, 1, 1, 0, 1])
    y_prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    metrics = compute_metrics(y_true, y_prob, ["cat", "dog"], top_k=[1, 5])
    assert metrics["top_k_accuracy"] == {"1": accuracy_score(y_true, y_prob.argmax(1))} == {"1": 0.6}


def test_a_figure_that_cannot_be_drawn_leaves_a_completed_run_and_a_warning(digits_run_copy, monkeypatch):
    """Figures and report.html are views of the run's files: a failure drawing them (here a figure raising, as a
    matplotlib bug or a full disk would) is a warning naming the command that draws again, not a failed run with a
    traceback. The run is resumed after its training finished, so it is evaluated and drawn without training."""
    from cnnctl.reporting import curves

    run = Run(digits_run_copy)
    run.update_json("environment.json", status="interrupted")
    for png in digits_run_copy.glob("*.png"):
        png.unlink()
    (digits_run_copy / "report.html").unlink()

    def broken(*args, **kwargs):
        raise ValueError("Image size of 1x[99999] pixels is too large")

    monkeypatch.setattr(curves, "loss_curve", broken)
    result = runner.invoke(app, ["train", "--resume", str(digits_run_copy)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warning = (
        "warning: the figures could not be drawn (ValueError: Image size of 1x[99999] pixels is too large); "
        f"the run is complete: cnnctl plot {digits_run_copy}"
    )
    assert warning in result.output.replace("\n", " ") or warning in result.stderr.replace("\n", " ")
    environment = json.loads((digits_run_copy / "environment.json").read_text())
    assert environment["status"] == "completed"
    assert environment["figures_error"] == warning.removeprefix("warning: ")
    assert (digits_run_copy / "report.html").is_file()  # the page is drawn from what exists
    assert not (digits_run_copy / "loss_curve.png").exists()

    monkeypatch.undo()
    result = runner.invoke(app, ["plot", str(digits_run_copy)])
    assert result.exit_code == 0, result.output
    assert (digits_run_copy / "loss_curve.png").is_file()
