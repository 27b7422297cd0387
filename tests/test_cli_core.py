"""End to end through the CLI: train → run folder read back → evaluate and plot reproduce it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

# Its module-scoped training runs once: every test of this file on the same xdist worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group(__name__)

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "configs" / "digits.yaml"
FAST = ["--set", "train.epochs=2"]
CORE_FILES = [
    "config.yaml",
    "environment.json",
    "data.json",
    "model.keras",
    "history.csv",
    "metrics.json",
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "predictions.npz",
    "loss_curve.png",
    "accuracy_curve.png",
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
]

runner = CliRunner()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", str(DIGITS), *FAST, "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0, result.output
    (run,) = list(runs_dir.iterdir())
    return run, result.output


def test_train_writes_the_whole_run_folder(digits_run):
    run, output = digits_run
    missing = [name for name in CORE_FILES if not (run / name).exists()]
    assert not missing
    assert f"run folder: {run}" in output
    environment = json.loads((run / "environment.json").read_text())
    assert environment["status"] == "completed" and environment["epochs_run"] == 2
    phases = environment["phase_seconds"]
    assert set(phases) == {"fit", "evaluate", "figures"} and all(seconds > 0 for seconds in phases.values())
    rows = csv.DictReader((run / "history.csv").read_text().splitlines())
    epoch_seconds = sum(float(row["epoch_time_s"]) for row in rows)
    assert epoch_seconds <= phases["fit"] <= environment["duration_s"] + 1  # the epochs happen inside the fit
    assert environment["seed"] == 42 and environment["versions"]["keras"].startswith("3.")
    data = json.loads((run / "data.json").read_text())
    assert data["sizes"] == {"train": 1293, "val": 144, "test": 360}
    assert sum(data["counts"]["test"].values()) == 360
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]  # as the console counts them
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"} <= set(rows[0])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert [float(row["learning_rate"]) for row in rows] == [config["train"]["optimizer"]["learning_rate"]] * 2
    assert all(row["learning_rate"] == str(config["train"]["optimizer"]["learning_rate"]) for row in rows)


def test_saved_config_rebuilds_the_run(digits_run):
    from cnnctl.config.loading import load_config

    run, _ = digits_run
    saved = load_config(run / "config.yaml")
    original = load_config(DIGITS, ["train.epochs=2"])
    assert saved.to_dict() == original.to_dict()


def test_metrics_agree_with_sklearn_on_the_saved_predictions(digits_run):
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        roc_auc_score,
        top_k_accuracy_score,
    )

    run, output = digits_run
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = np.load(run / "predictions.npz")
    y_true, y_prob = predictions["y_true"], predictions["y_prob"]
    assert metrics["split"] == "test" and len(y_true) == 360
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_prob.argmax(1)))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, y_prob.argmax(1), average="macro"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y_true, y_prob, multi_class="ovr"), rel=1e-6)
    assert metrics["top_k_accuracy"]["3"] == pytest.approx(top_k_accuracy_score(y_true, y_prob, k=3))
    assert f"{metrics['accuracy']:.4f}" in output  # the console agrees with the file
    assert metrics["accuracy"] > 0.8  # two epochs on digits already learn something
    with open(run / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [str(i) for i in range(10)]
    matrix = np.array(rows[1:], dtype=int)
    assert matrix.trace() == round(metrics["accuracy"] * 360)
    assert "macro avg" in (run / "classification_report.txt").read_text()


def test_evaluate_and_plot_rewrite_the_same_numbers_from_the_folder(digits_run):
    run, _ = digits_run
    before = json.loads((run / "metrics.json").read_text())
    (run / "loss_curve.png").unlink()
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    after = json.loads((run / "metrics.json").read_text())
    assert after["accuracy"] == pytest.approx(before["accuracy"])
    for name, numbers in before["per_class"].items():
        assert after["per_class"][name] == pytest.approx(numbers)
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "loss_curve.png").stat().st_size > 10_000


def test_evaluate_split_val_scores_validation_and_keeps_the_test_set_out(tmp_path, trained_digits_run):
    """While tuning, `evaluate.split: val` makes train (and a later evaluate) score the validation split."""
    result = runner.invoke(
        app,
        [
            "train",
            str(trained_digits_run.config),
            "--set",
            "train.epochs=1",
            "--set",
            "evaluate.split=val",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = list(tmp_path.iterdir())
    sizes = json.loads((run / "data.json").read_text())["sizes"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["num_examples"] == sizes["val"] != sizes["test"]
    with np.load(run / "predictions.npz") as saved:
        assert str(saved["split"]) == "val" and len(saved["y_true"]) == sizes["val"]
    assert runner.invoke(app, ["evaluate", str(run), "--split", "test"]).exit_code == 0  # scored beside it
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["other_splits"]["test"]["num_examples"] == sizes["test"]
    assert runner.invoke(app, ["evaluate", str(run)]).exit_code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and "test" in metrics["other_splits"]  # the config's choice, the other kept


def test_last_resolves_to_the_run(digits_run, monkeypatch):
    run, _ = digits_run
    monkeypatch.setenv("CNNCTL_RUNS_DIR", str(run.parent))
    result = runner.invoke(app, ["report", "last"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")


def test_check_prints_the_layer_table():
    result = runner.invoke(app, ["check", str(DIGITS)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "receptive field" in result.output
    # digits.yaml: two 3×3 convs (5×5), a 2×2 pool (6×6, jump 2), a 3×3 conv (10×10, jump 2) — see test_model
    rows = [line for line in result.output.splitlines() if "(Conv2D)" in line]
    assert [[cell.strip() for cell in row.split("│")][5:7] for row in rows] == [
        ["3×3", "1×1"],
        ["5×5", "1×1"],
        ["10×10", "2×2"],
    ]
    assert "total params 62,250 (trainable 62,250) · 1.87M FLOPs per example" in result.output
    assert f"ok: {DIGITS} is valid" in result.output


def test_user_errors_are_one_line_exit_2_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  layers: [Flatten, {Dense: {units: 10}}]\ntrain: {epochs: -1}\n")
    result = runner.invoke(app, ["train", str(bad), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}: train.epochs: must be greater than 0 (got -1)"
    assert not (tmp_path / "runs").exists()  # nothing is created for a config that cannot run


def test_model_errors_name_the_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  layers: [{Conv2D: {filters: 4, kernel_size: 3, stride: 2}}, Flatten, {Dense: {units: 10}}]\n"
    )
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert result.output.startswith(
        f"error: {bad}: model.layers[0] (Conv2D): unknown argument 'stride' (did you mean 'strides'?)"
    )


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from cnnctl.cli.app import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib', 'typer.rich_utils') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_commands_that_need_no_model_do_not_import_tensorflow(digits_run_copy, tmp_path):
    """One Python process runs them in turn (as many separate `cnnctl` starts would), and says after each whether
    TensorFlow or Keras has been imported."""
    from PIL import Image

    image = tmp_path / "picture.png"
    Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)).save(image)
    commands = [
        ["train", str(tmp_path / "missing.yaml")],  # argument mistakes of any command
        ["evaluate", str(tmp_path / "no-such-run")],
        ["train", str(DIGITS), "--set", "train.epochz=2"],
        ["filter", str(image), "--out", str(tmp_path / "demo.png")],  # no model at all
        ["report", str(digits_run_copy)],  # from the run's saved files
        ["plot", str(digits_run_copy)],  # every figure, filters included, from saved files
    ]
    code = (
        "import sys; from typer.testing import CliRunner; from cnnctl.cli.app import app\n"
        f"for args in {commands!r}:\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    print(args[0], r.exit_code, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.stdout.strip().splitlines() == [
        "train 2 []",
        "evaluate 2 []",
        "train 2 []",
        "filter 0 []",
        "report 0 []",
        "plot 0 []",
    ], out.stdout + out.stderr


@pytest.mark.parametrize(
    "machine, exported, expected",
    [
        ("x86_64", None, "1"),  # TensorFlow's oneDNN kernels, which it leaves off on AVX2-only CPUs
        ("x86_64", "0", "0"),  # the user's choice wins
        ("aarch64", None, None),  # not an x86 CPU: TensorFlow's own default
    ],
)
def test_onednn_kernels_are_turned_on_for_x86_cpus(monkeypatch, machine, exported, expected):
    import platform

    from cnnctl import runtime

    monkeypatch.setattr(platform, "machine", lambda: machine)
    if exported is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", exported)
    runtime.prepare_tensorflow_environment()
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == expected


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "cnnctl", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    assert "train" in out.stdout and "evaluate" in out.stdout


def test_config_yaml_in_run_is_plain_yaml(digits_run):
    run, _ = digits_run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["source"] == "digits"
    assert saved["model"]["layers"][5] == "Flatten"
