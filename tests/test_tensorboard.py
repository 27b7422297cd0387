"""`train.tensorboard`: Keras' TensorBoard logs in the run folder's tensorboard/, read back with TensorBoard's own
event reader — one point per epoch whose values are history.csv's, the learning rate, optional weight histograms,
the model graph — appended to by a resume, one per cross-validation fold, and nothing printed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

import cnnctl
from cnnctl.errors import ConfigError
from cnnctl.runs import contract
from cnnctl.workflows.crossval import cross_validate

CONFIG = {
    "name": "tb",
    "seed": 3,
    "data": {"validation_split": 0.2, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 2, "activation": "softmax"}},
        ]
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "early_stopping": False,
        "tensorboard": True,
        "optimizer": {"name": "adam", "learning_rate": 0.002},
    },
    "evaluate": {"top_k": [1]},
}


def bright_or_dark(n: int = 300) -> dict[str, np.ndarray]:
    """8×8 images, class 1 brighter than class 0: learnable in two epochs."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.uniform(0, 128, size=(n, 8, 8)) + 100 * y[:, None, None]
    return {"x_train": x.astype("float32"), "y_train": y}


def config(**train) -> dict:
    return {**CONFIG, "train": {**CONFIG["train"], **train}}


def event_values(logdir: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag in `logdir`'s event files: {tag: {step: value}}, as TensorBoard reads them."""
    reader = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    reader.Reload()
    return {
        tag: {event.step: float(tensor_util.make_ndarray(event.tensor_proto)) for event in reader.Tensors(tag)}
        for tag in reader.Tags()["tensors"]
        if reader.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    }


def history_columns(run: Path) -> dict[str, list[float]]:
    with open(run / contract.HISTORY, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def assert_epochs_match_history(run: Path) -> list[int]:
    """The train and validation epoch scalars equal history.csv's columns, step for step; returns the steps."""
    history = history_columns(run)
    steps = [int(epoch) for epoch in history["epoch"]]
    train = event_values(run / contract.TENSORBOARD / "train")
    validation = event_values(run / contract.TENSORBOARD / "validation")
    for name in ("loss", "accuracy"):
        assert sorted(train[f"epoch_{name}"]) == steps
        assert sorted(validation[f"epoch_{name}"]) == steps
        assert [train[f"epoch_{name}"][step] for step in steps] == pytest.approx(history[name], rel=1e-6)
        assert [validation[f"epoch_{name}"][step] for step in steps] == pytest.approx(history[f"val_{name}"], rel=1e-6)
    assert sorted(train["epoch_learning_rate"]) == steps
    return steps


def test_epoch_scalars_learning_rate_and_graph_are_logged_silently_and_a_resume_appends(tmp_path, capfd):
    result = cnnctl.train(config(), arrays=bright_or_dark(), runs_dir=tmp_path)
    assert capfd.readouterr() == ("", "")  # the library prints nothing, TensorFlow's summary writers included

    assert assert_epochs_match_history(result.path) == [1, 2]
    train = event_values(result.path / contract.TENSORBOARD / "train")
    assert train["epoch_learning_rate"] == pytest.approx({1: 0.002, 2: 0.002})
    assert train["epoch_epoch_time_s"] == pytest.approx(
        dict(enumerate(result.history["epoch_time_s"], start=1)), rel=1e-6
    )
    reader = EventAccumulator(str(result.path / contract.TENSORBOARD / "train"))
    reader.Reload()
    plugins = {reader.SummaryMetadata(tag).plugin_data.plugin_name for tag in reader.Tags()["tensors"]}
    assert plugins == {"scalars", "graph_keras_model"}  # the model graph; no histograms unless asked for
    assert yaml.safe_load((result.path / contract.CONFIG).read_text())["train"]["tensorboard"] == {"histogram_freq": 0}
    # A resumed run appends to the same logs.
    cnnctl.resume(result.path, epochs=4)
    assert assert_epochs_match_history(result.path) == [1, 2, 3, 4]
    assert len(list((result.path / contract.TENSORBOARD / "train").iterdir())) == 2  # one event file per process


def test_histograms_and_a_scheduled_learning_rate(tmp_path):
    result = cnnctl.train(
        config(tensorboard={"histogram_freq": 1}, lr_schedule="cosine"), arrays=bright_or_dark(), runs_dir=tmp_path
    )
    reader = EventAccumulator(str(result.path / contract.TENSORBOARD / "train"), size_guidance={"tensors": 0})
    reader.Reload()
    histograms = [
        tag for tag in reader.Tags()["tensors"] if reader.SummaryMetadata(tag).plugin_data.plugin_name == "histograms"
    ]
    assert len(histograms) == 4  # the conv and dense layers' kernel and bias
    assert all([event.step for event in reader.Tensors(tag)] == [1, 2] for tag in histograms)
    learning_rate = event_values(result.path / contract.TENSORBOARD / "train")["epoch_learning_rate"]
    # the rate at each epoch's end: cosine decay from 0.002 over both epochs, 0 after the last step
    assert learning_rate[1] == pytest.approx(0.001, rel=0.05)
    assert learning_rate[2] == pytest.approx(float(result.model.optimizer.learning_rate), abs=1e-9)
    assert learning_rate[2] < 1e-6


def test_each_fold_logs_on_its_own(tmp_path):
    np.savez(tmp_path / "data.npz", **bright_or_dark(200))
    fold_config = cnnctl.Config.model_validate(
        {**config(epochs=1), "data": {"source": "npz", "path": str(tmp_path / "data.npz"), "validation_split": 0.2}}
    )
    folder, _ = cross_validate(fold_config, tmp_path / "runs", folds=2)
    for fold in ("fold-1", "fold-2"):
        assert assert_epochs_match_history(folder / fold) == [1]
    assert not (folder / contract.TENSORBOARD).exists()


def test_off_by_default(trained_digits_run):
    assert yaml.safe_load((trained_digits_run.path / contract.CONFIG).read_text())["train"]["tensorboard"] is False
    assert not (trained_digits_run.path / contract.TENSORBOARD).exists()


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, {"histogram_freq": 0}),
        (False, False),
        (None, False),
        ({"histogram_freq": 2}, {"histogram_freq": 2}),
    ],
)
def test_the_option_and_its_spellings(value, expected):
    resolved = cnnctl.Config.model_validate(config(tensorboard=value))
    assert resolved.to_dict()["train"]["tensorboard"] == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ({"histogram_freq": -1}, "train.tensorboard.histogram_freq: must be greater than or equal to 0 (got -1)"),
        (
            {"histogram_frequency": 1},
            "train.tensorboard.histogram_frequency: unknown key; did you mean 'histogram_freq'?",
        ),
    ],
)
def test_mistakes_name_the_key(value, message):
    with pytest.raises(ConfigError) as raised:
        cnnctl.train(config(tensorboard=value), arrays=bright_or_dark())
    assert message in str(raised.value)
