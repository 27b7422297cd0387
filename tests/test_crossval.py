"""`cnnctl cv`: stratified K-fold over the training data, one complete run folder per fold, mean ± std."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_quiet_console import new_user_runs
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.loading import load_config
from cnnctl.config.schema import Config
from cnnctl.data.dataset import load_data
from cnnctl.workflows.crossval import fold_config

# Its module-scoped training runs once: every test of this file on the same xdist worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group(__name__)

runner = CliRunner()

RUN_FILES = [
    "config.yaml",
    "environment.json",
    "data.json",
    "model.keras",
    "history.csv",
    "metrics.json",
    "confusion_matrix.csv",
    "predictions.npz",
    "loss_curve.png",
]


def write_data(tmp_path: Path) -> Path:
    """Three learnable classes of 6×6 images (a bright row at 0, 2 or 4), 60 train and 15 test examples."""
    rng = np.random.default_rng(0)

    def examples(count):
        y = np.arange(count) % 3
        x = rng.integers(0, 80, (count, 6, 6), dtype=np.uint8)
        x[np.arange(count), 2 * y, :] = 255
        return x, np.array(["a", "b", "c"])[y]

    (x_train, y_train), (x_test, y_test) = examples(60), examples(15)
    path = tmp_path / "rows.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = tmp_path / "rows.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "rows",
                "seed": 3,
                "data": {"source": "npz", "path": "rows.npz", "validation_split": 0.2},
                "model": {
                    "layers": [
                        {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
                        "Flatten",
                        {"Dense": {"units": 3, "activation": "softmax"}},
                    ]
                },
                "train": {"epochs": 2, "batch_size": 16, "early_stopping": False, "optimizer": {"learning_rate": 0.01}},
                "evaluate": {"top_k": [1, 2]},
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cv")
    """`cnnctl cv` as a new user's shell runs it: several models built in one process print only cnnctl's own
    lines (no TensorFlow log or retracing warning; new_user_runs checks)."""
    config = write_data(tmp_path)
    done = new_user_runs("cv", config, "--folds", "2", "--runs-dir", tmp_path / "runs", cwd=tmp_path, columns=200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (cv_path,) = list((tmp_path / "runs").iterdir())
    return config, cv_path, done.stdout


def test_every_fold_is_a_complete_run_folder(cv_run):
    config, cv_path, output = cv_run
    assert cv_path.name.endswith("-rows-cv")
    assert sorted(path.name for path in cv_path.iterdir()) == ["config.yaml", "cv_summary.json", "fold-1", "fold-2"]
    for index in (1, 2):
        fold = cv_path / f"fold-{index}"
        assert not [name for name in RUN_FILES if not (fold / name).exists()]
        saved = yaml.safe_load((fold / "config.yaml").read_text())
        assert saved["data"]["fold"] == {"index": index, "folds": 2}
        assert json.loads((fold / "environment.json").read_text())["status"] == "completed"
        data = json.loads((fold / "data.json").read_text())
        assert data["sizes"] == {"train": 24, "val": 6, "test": 30}  # the held-out fold: 60 / 2; val from the rest
        assert any("the 15 test examples are left out" in note for note in data["notes"])


def test_folds_partition_the_training_data_and_leave_the_test_split_out(cv_run):
    config, _, _ = cv_run
    base = load_config(config)
    plain = load_data(base)
    pool = {row.tobytes() for name in ("train", "val") for row in plain.splits[name].x}
    test = {row.tobytes() for row in plain.splits["test"].x}
    held_out = []
    for index in (1, 2, 3):
        fold = load_data(fold_config(base, index, 3))
        rows = [row.tobytes() for row in fold.splits["test"].x]
        held_out += rows
        assert sorted(np.bincount(fold.splits["test"].y).tolist()) == [6, 7, 7]  # stratified: 20 of 20 + 20 + 20
        trained = {row.tobytes() for name in ("train", "val") for row in fold.splits[name].x}
        assert not trained & set(rows) and not trained & test
    assert len(held_out) == len(set(held_out)) == 60 and set(held_out) == pool


def test_summary_is_the_mean_and_std_of_the_folds(cv_run):
    _, cv_path, output = cv_run
    from sklearn.metrics import accuracy_score

    summary = json.loads((cv_path / "cv_summary.json").read_text())
    assert summary["status"] == "completed" and summary["folds"] == 2 and summary["folds_completed"] == 2
    accuracies = []
    for fold in summary["per_fold"]:
        with np.load(cv_path / fold["run"] / "predictions.npz") as predictions:
            accuracy = accuracy_score(predictions["y_true"], predictions["y_prob"].argmax(axis=1))
        assert fold["accuracy"] == pytest.approx(accuracy)
        assert fold["epochs_run"] == 2 and fold["examples"] == 30
        accuracies.append(accuracy)
    assert summary["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["std"]["accuracy"] == pytest.approx(np.std(accuracies))
    assert summary["metrics"][:2] == ["accuracy", "top_2_accuracy"]
    mean, std = summary["mean"]["accuracy"], summary["std"]["accuracy"]
    flat = " ".join(output.split())  # rich wraps long lines at the terminal width
    assert f"{mean:.4f} ± {std:.4f}" in flat
    assert "cross-validation" in flat and "2/2" in flat
    assert f"cv folder: {cv_path}" in flat


def test_evaluate_on_a_fold_rebuilds_the_same_held_out_fold(cv_run):
    _, cv_path, _ = cv_run
    fold = cv_path / "fold-2"
    before = json.loads((fold / "metrics.json").read_text())
    result = runner.invoke(app, ["evaluate", str(fold)])
    assert result.exit_code == 0, result.output
    after = json.loads((fold / "metrics.json").read_text())
    assert after["num_examples"] == 30 and after["accuracy"] == pytest.approx(before["accuracy"])


@pytest.mark.parametrize(
    "folds, message",
    [
        ("1", "error: --folds 1: cross-validation needs at least 2 folds (5 or 10 are usual)"),
        (
            "21",
            "error: {config}: data.fold: 21 folds need at least 21 training examples of every class, "
            "but class 'a' has 20; use fewer folds (--folds 20) or more data",
        ),
    ],
)
def test_impossible_fold_counts_are_errors_that_leave_nothing_behind(tmp_path, folds, message):
    config = write_data(tmp_path)
    result = runner.invoke(app, ["cv", str(config), "--folds", folds, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == message.format(config=config)
    assert not (tmp_path / "runs").exists()


def test_fold_index_is_validated_in_the_config():
    from cnnctl.config.loading import validate_config

    with pytest.raises(Exception, match=r"x.yaml: data.fold: index must be 1..3 \(got 4\)"):
        validate_config({"data": {"fold": {"index": 4, "folds": 3}}, "model": {"layers": ["Flatten"]}}, "x.yaml")
    assert isinstance(
        validate_config({"data": {"fold": {"index": 1, "folds": 3}}, "model": {"layers": ["Flatten"]}}, "x.yaml"),
        Config,
    )
