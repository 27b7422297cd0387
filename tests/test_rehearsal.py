"""Mistakes Keras finds only when it runs a step are found by `check` and by `train` before any run folder exists:
one `error:` line naming the config key, exit code 2, no folder left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

CONFIG = {
    "name": "rehearsal",
    "data": {"source": "digits", "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 1, "batch_size": 64},
}

# --set override → the start of the one error line, after "error: <config file>: "
MISTAKES = {
    "binary-loss-for-ten-classes": (
        "train.loss=binary_crossentropy",
        "train.loss: binary_crossentropy cannot score the model's output (10,) against the labels () (",
    ),
    "precision-on-integer-labels": (
        "train.metrics=[accuracy, precision]",
        "train.metrics[1]: precision cannot be computed on the model's output (10,) with integer class labels () (",
    ),
    "auc-on-integer-labels": (
        "train.metrics=[auc]",
        "train.metrics[0]: auc cannot be computed on the model's output (10,) with integer class labels () (",
    ),
    "dense-layer-as-augmentation": (
        "data.augment=[{Dense: {units: 3}}]",
        "data.augment: the augmentation layers turn an example of shape (8, 8, 1) into (8, 8, 3); augmentation "
        "must keep the shape",
    ),
    "optimizer-setting-of-the-wrong-type": (
        "train.optimizer.beta_1=x",
        "train.optimizer (adam): cannot take a step with learning_rate: 0.001, beta_1: 'x' (",
    ),
    "abstract-loss": (
        "train.loss=Loss",
        "train.loss: Loss cannot score the model's output (10,) against the labels () (",
    ),
}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rehearsal") / "rehearsal.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


@pytest.mark.parametrize("override, message", MISTAKES.values(), ids=MISTAKES.keys())
def test_check_finds_what_a_training_step_would(config_file, override, message):
    result = runner.invoke(app, ["check", str(config_file), "--set", override])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    # The mistake came with --set, so the --set line is named, not the file (issue 30: blamed on the file before).
    assert lines[0].startswith(f"error: --set {override}: {message}"), lines[0]


@pytest.mark.parametrize("case", ["binary-loss-for-ten-classes", "dense-layer-as-augmentation"])
def test_train_stops_on_them_before_making_a_run_folder(config_file, tmp_path, case):
    override, message = MISTAKES[case]
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(config_file), "--set", override, "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: --set {override}: {message}")
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_rehearsal_changes_nothing_the_training_starts_from(config_file):
    """The model's weights, the optimizer's state and the metrics are as build_and_compile left them."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data
    from cnnctl.training.prepare import build_and_compile
    from cnnctl.training.rehearsal import rehearse

    config = load_config(config_file, ["train.metrics=[accuracy]"])
    dataset = load_data(config)
    model = build_and_compile(config, dataset.input_shape, dataset.num_classes, train_examples=100)
    weights = [np.array(w) for w in model.get_weights()]
    rehearse(config, dataset, model)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert int(np.asarray(model.optimizer.iterations)) == 0
    assert all(float(np.sum(np.asarray(v))) == 0.0 for metric in model.metrics for v in metric.variables)


def _no_download(monkeypatch):
    import keras

    def offline():
        print("Downloading data from https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz")  # as Keras
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)


def test_check_needs_no_download_of_a_builtin_dataset(monkeypatch, tmp_path):
    _no_download(monkeypatch)
    config = Path(__file__).resolve().parent.parent / "configs" / "mnist.yaml"
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "warning: data.source mnist: could not load mnist.npz (URL fetch failure: no network)" in result.output
    assert "checked against zero images of its shape and classes instead" in result.output
    assert "(None, 28, 28, 1)" in result.output and result.output.strip().endswith(f"ok: {config} is valid")

    runs = tmp_path / "runs"  # training needs the real data: one error line, no run folder
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs)])
    assert result.exit_code == 2 and result.output.startswith(f"error: {config}: data.source mnist: could not load")
    assert len(result.output.splitlines()) == 1  # Keras' "Downloading data from" line held back: it never began
    assert not runs.exists() or list(runs.iterdir()) == []


def test_check_still_finds_a_mistake_with_a_stand_in(monkeypatch):
    _no_download(monkeypatch)
    config = Path(__file__).resolve().parent.parent / "configs" / "mnist.yaml"
    result = runner.invoke(app, ["check", str(config), "--set", "train.loss=binary_crossentropy"])
    assert result.exit_code == 2
    assert "error: --set train.loss=binary_crossentropy: train.loss: binary_crossentropy cannot score" in result.output
