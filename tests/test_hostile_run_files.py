"""Run folders from elsewhere (issue 30, parts 2 and 7): a named pipe or a link to /dev/zero in place of a run file,
JSON nested 100,000 deep, a model.keras whose members inflate past memory or whose config is huge, names with a
newline. Each is one `error:` line in bounded time (or, in `cnnctl runs`, one warning while the other runs are
listed), and nothing in the folder changes."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_hostile_inputs_more import digest, npy_header, one_error
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.errors import shown_path
from cnnctl.runs.folder import Run

runner = CliRunner()


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def replace_with_zero_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make", [replace_with_fifo, replace_with_zero_link], ids=["fifo", "dev-zero"])
@pytest.mark.parametrize(
    "name, command",
    [
        ("model.keras", "evaluate"),
        ("model.keras", "plot"),  # its hash, to know whether filters.png is current, blocked on a FIFO
        ("metrics.json", "plot"),
        ("history.csv", "plot"),
        ("predictions.npz", "plot"),
        ("checkpoints/training_metadata.json", "resume"),
    ],
)
def test_special_files_in_a_run_are_one_line(digits_run_copy, make, name, command):
    make(digits_run_copy / name)
    before = {path: os.lstat(path).st_mode for path in digits_run_copy.rglob("*")}
    resume = ["train", "--resume", digits_run_copy, "--set", "train.epochs=4"]  # extending reads the checkpoint
    args = resume if command == "resume" else [command, digits_run_copy]
    error = one_error(*args)
    assert f"{shown_path(digits_run_copy / name)}: is a " in error and ", not a regular file;" in error, error
    assert {path: os.lstat(path).st_mode for path in digits_run_copy.rglob("*")} == before


def test_one_damaged_run_does_not_hide_the_others(trained_digits_run, tmp_path):
    runs = tmp_path / "runs"
    good, bad = runs / "20260101-000000-good", runs / "20260101-000001-bad"
    shutil.copytree(trained_digits_run.path, good)
    shutil.copytree(trained_digits_run.path, bad)
    replace_with_fifo(bad / "metrics.json")
    (bad / "data.json").write_text("[" * 100_000 + "]" * 100_000)  # nested past Python's recursion limit
    (bad / "config.yaml").write_text("[" * 100_000 + "]" * 100_000)  # YAML too: it once hid every run
    result = runner.invoke(app, ["runs", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert good.name in result.output and bad.name in result.output
    assert f"warning: {bad / 'metrics.json'}: is a named pipe (FIFO), not a regular file" in " ".join(
        result.output.split()
    )
    assert "nested too deeply" in result.output


def test_a_model_file_that_inflates_too_far_or_has_a_huge_config_is_refused(digits_run_copy, monkeypatch):
    from cnnctl.runs import model_file

    model = digits_run_copy / "model.keras"
    # The model's own members plus 64 MiB of zeros that deflate to almost nothing: a small file, a large inflation.
    bomb = digits_run_copy.parent / "bomb.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member, source.read(member))
        target.writestr("padding.bin", bytes(64 * 2**20))
    shutil.move(bomb, model)
    before = digest(digits_run_copy)
    limit = 32 * 2**20
    assert model.stat().st_size < limit  # the file itself passes; only what it inflates to is refused
    monkeypatch.setattr(model_file, "memory_bytes", lambda: limit)
    error = one_error("evaluate", digits_run_copy)
    assert error.startswith(f"error: {model}: refused: its members inflate to ")
    assert "more than this machine's" in error
    assert digest(digits_run_copy) == before
    monkeypatch.undo()

    with zipfile.ZipFile(model) as archive:
        config_size = archive.getinfo("config.json").file_size
    monkeypatch.setattr(model_file, "MAX_MODEL_CONFIG_BYTES", config_size - 1)
    error = one_error("evaluate", digits_run_copy)
    assert error.startswith(f"error: {model}: refused: its config.json is")
    assert digest(digits_run_copy) == before


def test_newlines_in_names_stay_on_one_line(trained_digits_run, tmp_path):
    error = one_error("train", trained_digits_run.config, "--name", "a\nb", "--runs-dir", tmp_path)
    assert error.startswith("error: --name a\\nb: must be letters, digits")
    error = one_error("evaluate", "la\nst", "--runs-dir", tmp_path)
    assert error.startswith("error: la\\nst: no such run")
    error = one_error("check", trained_digits_run.config, "--set", "train.epochs=3\n4")
    assert error.startswith("error: --set train.epochs=3\\n4: train.epochs: must be an integer")
    assert not any(tmp_path.iterdir())


def test_an_idx_gzip_bomb_inflates_no_further_than_its_header_says(tmp_path):
    """A gzip stream of 200 MB of zeros behind a header that claims 16 bytes: one line, without inflating it."""
    import gzip
    import resource

    from test_hostile_inputs_more import LAYERS

    folder = tmp_path / "idx"
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as handle:
        handle.write(bytes([0, 0, 8, 3]) + (1).to_bytes(4, "big") + (4).to_bytes(4, "big") * 2)
        for _ in range(200):
            handle.write(bytes(2**20))
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (1).to_bytes(4, "big") + bytes(1))
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: idx, path: {folder}}}\n" + LAYERS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = one_error("check", config)
    assert "train-images-idx3-ubyte.gz: damaged IDX file: header says [1, 4, 4] (16 bytes), found more data" in error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: far below the 200 MB inside


def test_a_model_whose_config_describes_more_weights_than_memory_is_refused_before_building(
    digits_run_copy, monkeypatch
):
    import json

    from cnnctl.runs import model_file

    # The run's own model.keras, its Dense layer given 100,000 units in config.json: 12.9 million weights (49 MiB),
    # against a machine of 32 MiB: Keras would allocate them all while building, before reading the weights file.
    model = digits_run_copy / "model.keras"
    crafted = digits_run_copy.parent / "crafted.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(crafted, "w") as target:
        config = json.loads(source.read("config.json"))
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["units"] = 100_000
        for member in source.infolist():
            target.writestr(member, json.dumps(config) if member.filename == "config.json" else source.read(member))
    shutil.move(crafted, model)
    before = digest(digits_run_copy)
    monkeypatch.setattr(model_file, "memory_bytes", lambda: 32 * 2**20)
    error = one_error("evaluate", digits_run_copy)
    assert error.startswith(f"error: {model}: refused: its config describes 12,900,")
    assert "weights (49 MiB as float32), more than this machine's 32 MiB of memory" in error
    assert digest(digits_run_copy) == before


def test_a_checkpoint_whose_arrays_inflate_past_memory_is_refused_before_keras_reads_it(digits_run_copy, monkeypatch):
    import h5py

    from cnnctl.runs import model_file
    from cnnctl.training import checkpoint

    # A few kB on disk: one gzip-compressed dataset of 100 million float32 zeros (400 MB), never written, so
    # stored as nothing but its fill value; Keras would read it whole before comparing its shape with the layer's.
    weights = digits_run_copy / "checkpoints" / checkpoint.read_state(Run(digits_run_copy))["weights"]
    weights.unlink()
    with h5py.File(weights, "w") as bomb:
        bomb.create_dataset("layers/dense/vars/0", shape=(10_000, 10_000), dtype="float32", compression="gzip")
    assert weights.stat().st_size < 64 * 2**10
    before = digest(digits_run_copy)
    monkeypatch.setattr(model_file, "memory_bytes", lambda: 64 * 2**20)
    error = one_error("train", "--resume", digits_run_copy, "--set", "train.epochs=4")
    assert error == (
        f"error: {weights}: refused: its arrays hold 381 MiB once decompressed, more than this "
        "machine's 64 MiB of memory"
    )
    assert digest(digits_run_copy) == before


def test_prediction_arrays_that_would_inflate_past_memory_are_refused_before_numpy_reads_them(digits_run_copy):
    """An .npy header of 128 bytes can claim 40 GiB: numpy would allocate it before reading a byte. `plot` read
    predictions.npz that way (and a resume the early-stopping weights, through the same check)."""
    bomb = npy_header((100_000, 100_000, 1))  # 40 GB of float32 claimed, no data behind it
    path = digits_run_copy / "predictions.npz"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("wrong_x.npy", bomb)
    before = path.read_bytes()
    error = one_error("plot", digits_run_copy)
    assert error.startswith(f"error: {path}: member wrong_x.npy claims shape [100000, 100000, 1]"), error
    assert path.read_bytes() == before


# ---------------------------------------------------------------- values of the wrong kind in data.json / environment.json


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "changes, command, expected",
    [
        ({"class_names": None}, "predict", "data.json: no class_names; the file was edited or is not cnnctl's"),
        ({"class_names": [{"a": 1}] * 10}, "plot", "data.json: class_names.0: Input should be a valid string"),
        ({"input_shape": [100000, 100000, 1]}, "predict", "data.json: input_shape: 10,000,000,000 values per example"),
        (
            {"input_shape": [16, 16, 3]},
            "predict",
            "data.json: input_shape [16, 16, 3], but model.keras takes [8, 8, 1]",
        ),
        ({"input_shape": [16, 16, 3]}, "export", "data.json: input_shape [16, 16, 3], but model.keras takes [8, 8, 1]"),
        ({"full_scale": float("nan")}, "predict", "data.json: full_scale: Input should be a finite number"),
        ({"full_scale": 0}, "predict", "data.json: full_scale: Input should be greater than 0"),
        ({"pixel_scale": "x"}, "explain", "data.json: pixel_scale: Input should be a valid number"),
        ({"class_names": ["a"] * 10}, "predict", "data.json: class_names: a class is named twice"),
        ({"sizes": {"train": "x"}}, "report", "data.json: sizes.train: Input should be a valid integer"),
    ],
    ids=[
        "no-classes",
        "dict-classes",
        "huge-shape",
        "other-shape",
        "other-shape-export",
        "nan-scale",
        "zero-scale",
        "text-scale",
        "twice-named",
        "text-size",
    ],
)
def test_data_json_values_of_the_wrong_kind_are_one_line(digits_run_copy, tmp_path, changes, command, expected):
    """Each was a traceback (KeyError, TypeError, Keras' shape error), a 120 GB allocation blamed on the input
    image, or NaN probabilities blamed on the image; now refused as data.json is read, by key."""
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    edit_json(digits_run_copy / "data.json", **changes)
    before = digest(digits_run_copy)
    args = {
        "predict": ["predict", digits_run_copy, image],
        "explain": ["explain", digits_run_copy, image],
        "export": ["export", digits_run_copy, "--format", "onnx"],
        "plot": ["plot", digits_run_copy],
        "report": ["report", digits_run_copy],
    }[command]
    error = one_error(*args)
    assert error.startswith(f"error: {digits_run_copy / expected}"), error
    assert digest(digits_run_copy) == before


@pytest.mark.parametrize(
    "changes",
    [{"duration_s": float("inf")}, {"status": ["x"]}, {"epochs_run": "x"}],
    ids=["infinite-duration", "list-status", "text-epochs"],
)
def test_environment_json_of_the_wrong_kind_is_one_warning_in_runs_and_one_line_elsewhere(
    trained_digits_run, tmp_path, changes
):
    runs = tmp_path / "runs"
    good, bad = runs / "20260101-000000-good", runs / "20260101-000001-bad"
    shutil.copytree(trained_digits_run.path, good)
    shutil.copytree(trained_digits_run.path, bad)
    edit_json(bad / "environment.json", **changes)
    (key,) = changes
    result = runner.invoke(app, ["runs", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert good.name in result.output and bad.name in result.output  # one damaged run hides no other
    assert f"warning: {bad / 'environment.json'}: {key}: Input should be" in " ".join(result.output.split())
    before = digest(bad)
    assert one_error("report", bad).startswith(f"error: {bad / 'environment.json'}: {key}: Input should be")
    assert digest(bad) == before


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda run: (run / "data.json").write_text("[1]"), "data.json: expected a JSON object ({...}), found a list"),
        (
            lambda run: edit_json(run / "data.json", input_shape="8x8"),
            "data.json: input_shape: Input should be a valid list",
        ),
        (
            lambda run: (run / "history.csv").write_text("epoch,accuracy,loss\n1,abc,xyz\n"),
            "history.csv, line 2, column accuracy: 'abc' is not a number",
        ),
    ],
    ids=["data-list", "data-shape-text", "history-text"],
)
def test_a_resume_refused_for_a_damaged_file_leaves_the_folder_as_it_was(digits_run_copy, damage, expected):
    """Before, the refusal came after the lock was taken and the status set to failed (data.json), or after an
    epoch had been trained and model.keras, history.csv and the checkpoints rewritten (history.csv)."""
    edit_json(digits_run_copy / "environment.json", status="interrupted")
    damage(digits_run_copy)
    before = digest(digits_run_copy)
    error = one_error("train", "--resume", digits_run_copy, "--set", "train.epochs=3")
    assert error.startswith(f"error: {digits_run_copy / expected}"), error
    assert digest(digits_run_copy) == before


def edit_metrics(run: Path, **changes) -> None:
    edit_json(run / "metrics.json", **changes)


@pytest.mark.parametrize(
    "changes, command, expected",
    [
        ({"top_k_accuracy": [0.1]}, "report", "top_k_accuracy: Input should be a valid dictionary"),
        ({"top_k_accuracy": {"x": 0.5}}, "plot", "top_k_accuracy: its keys are ranks k = 1, 2, ... (got x)"),
        ({"diagnosis": "bad"}, "plot", "diagnosis: Input should be a valid dictionary;"),
        ({"diagnosis": {"verdict": "great"}}, "report", "diagnosis.verdict: Input should be 'overfitting', "),
        ({"calibration": {"ece": 0.1, "bins": 5}}, "plot", "calibration: bins must be a list of"),
        ({"coverage": {"coverage": "x", "accuracy": []}}, "plot", "coverage.coverage: Input should be a valid list"),
        ({"accuracy": float("nan")}, "report", "accuracy: Input should be a finite number"),
    ],
    ids=["top-k-list", "top-k-key", "diagnosis-text", "unknown-verdict", "bins-number", "coverage-text", "nan"],
)
def test_metrics_json_values_of_the_wrong_kind_are_one_line(digits_run_copy, changes, command, expected):
    """Each was a traceback in plot, report or compare (AttributeError, ValueError, matplotlib's shape error)."""
    edit_metrics(digits_run_copy, **changes)
    before = digest(digits_run_copy)
    error = one_error(command, digits_run_copy)
    assert error.startswith(f"error: {digits_run_copy / 'metrics.json'}: {expected}"), error
    assert digest(digits_run_copy) == before


def test_wrong_kinds_in_summaries_are_warnings_that_hide_no_run(trained_digits_run, tmp_path):
    """`cnnctl runs` died on an accuracy of "0.9" (a format code), a cv mean that was a list or a tune `best` that
    was a list, hiding every run; an accuracy of 5.0 was shown as 5.0000."""
    runs = tmp_path / "runs"
    good, text, high = (runs / f"20260101-00000{i}-{name}" for i, name in enumerate(["good", "text", "high"]))
    for run in (good, text, high):
        shutil.copytree(trained_digits_run.path, run)
    edit_metrics(text, accuracy="0.9")
    edit_metrics(high, accuracy=5.0)
    cv, tune = runs / "20260101-000010-cv", runs / "20260101-000011-tune"
    cv.mkdir()
    (cv / "cv_summary.json").write_text(json.dumps({"status": "completed", "mean": [1, 2]}))
    tune.mkdir()
    (tune / "tune_summary.json").write_text(json.dumps({"status": "completed", "best": [1]}))
    (tune / "study.db").write_bytes(b"")
    result = runner.invoke(app, ["runs", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    for folder in (good, text, high, cv, tune):
        assert folder.name in said
    assert f"warning: {text / 'metrics.json'}: accuracy: Input should be a valid number" in said
    assert f"warning: {high / 'metrics.json'}: accuracy: Input should be less than or equal to 1" in said
    assert f"warning: {cv / 'cv_summary.json'}: mean: Input should be a valid dictionary" in said
    assert f"warning: {tune / 'tune_summary.json'}: best: Input should be a valid dictionary" in said
    assert "5.0000" not in said


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda a: a.update(y_prob=a["y_prob"][:, :5]),
            "y_prob must be numbers of shape (examples, 10), found float32 of shape (360, 5)",
        ),
        (lambda a: a.update(y_prob=-a["y_prob"]), "y_prob must hold probabilities, finite numbers from 0 to 1"),
        (lambda a: a.update(y_prob=np.full_like(a["y_prob"], np.nan)), "y_prob must hold probabilities"),
        (lambda a: a.update(y_true=a["y_true"] + 0.5), "y_true must be whole numbers of shape (360,), found float64"),
        (
            lambda a: a.update(y_true=a["y_true"][:100]),
            "y_true must be whole numbers of shape (360,), found int64 of shape (100,)",
        ),
        (lambda a: a.update(y_true=np.where(a["y_true"] == 0, 42, a["y_true"])), "y_true must hold values from 0 to 9"),
        (lambda a: a.update(class_names=a["class_names"][:3]), "y_prob must be numbers of shape (examples, 3)"),
        (lambda a: a.update(wrong_index=a["wrong_index"] + 10_000), "wrong_index must be row numbers of y_prob"),
        (lambda a: a.update(wrong_x=a["wrong_x"][:1]), "wrong_x and wrong_index must come together"),
    ],
    ids=[
        "fewer-classes",
        "negative",
        "nan",
        "float-labels",
        "fewer-labels",
        "label-42",
        "three-names",
        "index",
        "images",
    ],
)
def test_predictions_of_the_wrong_shape_are_refused_before_any_figure_is_redrawn(digits_run_copy, change, expected):
    """plot drew the two confusion matrices (rewriting their PNGs) before failing with a traceback, or drew ROC
    and PR curves from negative "probabilities" without a word."""
    path = digits_run_copy / "predictions.npz"
    with np.load(path) as archive:
        arrays = dict(archive)
    change(arrays)
    np.savez(path, **arrays)
    before = digest(digits_run_copy)
    error = one_error("plot", digits_run_copy)
    assert error.startswith(f"error: {path}: {expected}"), error
    assert error.endswith(f"; the file was edited; rewrite it with: cnnctl evaluate {digits_run_copy}"), error
    assert digest(digits_run_copy) == before


def test_evaluate_refuses_a_config_whose_data_the_model_does_not_take(digits_run_copy, tmp_path):
    """config.yaml's data section edited after training: Keras' shape error was a traceback."""
    data = tmp_path / "wide.npz"
    np.savez(data, x_train=np.zeros((400, 12, 12, 1), np.float32), y_train=np.arange(400) % 10)
    config = digits_run_copy / "config.yaml"
    edited = yaml.safe_load(config.read_text())
    edited["data"].update(source="npz", path=str(data), test_split=0.5)
    config.write_text(yaml.safe_dump(edited, sort_keys=False))
    before = digest(digits_run_copy)
    error = one_error("evaluate", digits_run_copy)
    assert error == (
        f"error: {config}: its data (npz: examples of shape [12, 12, 1], 10 classes) is not what model.keras takes "
        "([8, 8, 1], 10 outputs); config.yaml was edited after training: put back its data section"
    )
    assert digest(digits_run_copy) == before


def test_a_checkpoint_past_the_runs_epochs_names_the_checkpoint(digits_run_copy):
    edit_json(digits_run_copy / "environment.json", status="interrupted")
    state = digits_run_copy / "checkpoints" / "training_metadata.json"
    edit_json(state, epoch=10**12)
    error = one_error("train", "--resume", digits_run_copy)
    assert error == (
        f"error: {state}: epoch 1000000000000 is past the 2 epochs of {digits_run_copy / 'config.yaml'}; the "
        "checkpoint was edited or is another run's, and cannot be resumed"
    )


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_a_runs_dir_that_is_not_a_folder_is_said(tmp_path, monkeypatch, kind):
    """`cnnctl runs` answered "no runs in FILE" (exit 0) where train refused the same setting."""
    runs = tmp_path / "runs"
    runs.write_text("") if kind == "file" else os.mkfifo(runs)
    monkeypatch.setenv("CNNCTL_RUNS_DIR", str(runs))
    shown = "a file" if kind == "file" else "a named pipe (FIFO)"
    expected = (
        f"error: {runs}: the runs dir is {shown}, not a folder; give --runs-dir a folder (or set CNNCTL_RUNS_DIR "
        "to one)"
    )
    assert one_error("runs") == expected
    assert one_error("evaluate", "last") == expected
