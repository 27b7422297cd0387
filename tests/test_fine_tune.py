"""train.fine_tune: a frozen first phase, then the chosen layers unfrozen and trained at a lower learning rate
(the Keras transfer-learning recipe) — one history with a phase column, resumable in either phase."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cnnctl import api
from cnnctl.cli.app import app
from cnnctl.config.loading import load_config
from cnnctl.errors import ConfigError, Interrupted
from cnnctl.model.build import build_model
from cnnctl.model.unfreeze import plan_fine_tune
from cnnctl.reporting.plots import fine_tuning_start

runner = CliRunner()
BACKBONE = {"name": "MobileNet", "weights": None, "alpha": 0.25}  # the fewest layers to trace
HEAD = [{"Dense": {"units": 3, "activation": "softmax"}}]
# Digits with the first convolution frozen: a fine-tuning phase with no backbone, seconds to train.
FROZEN_CONV = {
    "name": "frozen-conv",
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {"layers": [{"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "trainable": False}},
                         "Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {"epochs": 1, "batch_size": 64, "early_stopping": False,
              "optimizer": {"name": "adam", "learning_rate": 0.01},
              "fine_tune": {"epochs": 2, "unfreeze": "all"}},
}


def history_rows(run) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


class Snapshots(keras.callbacks.Callback):
    """Every weight of the backbone (by path) when each fit begins and ends: two fits, two pairs."""

    def __init__(self):
        super().__init__()
        self.taken: list[dict[str, np.ndarray]] = []

    def _take(self):
        backbone = self.model.get_layer(BACKBONE["name"])
        self.taken.append({weight.path: keras.ops.convert_to_numpy(weight).copy() for weight in backbone.weights})

    on_train_begin = on_train_end = lambda self, logs=None: self._take()  # noqa: E731


def pretend_pretrained(folder) -> str:
    """MobileNet weights with batch norm statistics that fit its inputs. Random weights with fresh statistics
    (mean 0, variance 1) shrink the signal to ~1e-17 by the last layer in inference mode, leaving nothing to
    fine-tune; one forward pass in training mode with momentum 0 sets every layer's statistics to its inputs'."""
    network = keras.applications.MobileNet(input_shape=(32, 32, 3), include_top=False, weights=None,
                                           pooling="avg", alpha=BACKBONE["alpha"])
    norms = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    network(np.random.default_rng(6).uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32), training=True)
    path = folder / "mobilenet.weights.h5"
    network.save_weights(path)
    return str(path)


def test_a_frozen_backbone_stays_put_then_the_chosen_layers_fine_tune(tmp_path):
    from cnnctl.training.loop import train_run

    rng = np.random.default_rng(5)
    np.savez(tmp_path / "tiny.npz", x_train=rng.integers(0, 256, (72, 16, 16, 3), dtype=np.uint8),
             y_train=np.arange(72) % 3)
    config = load_config({"data": {"source": "npz", "path": str(tmp_path / "tiny.npz"), "test_split": 0.25},
                          "model": {"backbone": {**BACKBONE, "weights": pretend_pretrained(tmp_path)},
                                    "layers": HEAD},
                          "train": {"epochs": 1, "batch_size": 32, "early_stopping": False,
                                    "fine_tune": {"epochs": 1, "unfreeze": 6}}})
    snapshots = Snapshots()
    result = train_run(config, tmp_path / "runs", extra_callbacks=[snapshots])
    start, after_first, begin_second, after_second = snapshots.taken
    backbone = result.model.get_layer(BACKBONE["name"])
    unfrozen = {weight.path for layer in backbone.layers[-6:] for weight in layer.weights}
    moving = {path for path in start if "moving_" in path}
    assert unfrozen and moving & unfrozen  # the unfrozen layers include a batch norm
    changed = lambda a, b: {path for path in a if not np.array_equal(a[path], b[path])}  # noqa: E731
    assert changed(start, after_first) == set()  # phase 1: the backbone, batch norm statistics included, frozen
    assert changed(after_first, begin_second) == set()
    trained = changed(begin_second, after_second)
    # phase 2: the unfrozen layers' weights moved; the rest, and batch norm (kept frozen, statistics too), did not
    norms = {weight.path for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
             for weight in layer.weights}
    assert trained == unfrozen - norms and trained
    rows = history_rows(result.path)
    assert [(row["epoch"], row["phase"], float(row["learning_rate"])) for row in rows] == [
        ("1", "1", 0.001), ("2", "2", 0.0001)]
    assert fine_tuning_start(result.history) == 2
    loaded = keras.saving.load_model(result.path / "model.keras")
    x = np.load(tmp_path / "tiny.npz")["x_train"][:4].astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)


def test_a_run_stopped_while_fine_tuning_resumes_into_fine_tuning_and_can_be_extended(tmp_path, monkeypatch):
    from cnnctl.training import loop

    kernels = {}

    class StopInSecondPhase(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            kernels[epoch] = keras.ops.convert_to_numpy(self.model.layers[1].kernel).copy()
            if epoch == 2:  # after phase 1's epoch and the first fine-tuning epoch were committed
                raise KeyboardInterrupt

    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [StopInSecondPhase()])
    with pytest.raises(Interrupted):
        api.train(FROZEN_CONV, runs_dir=tmp_path / "runs")
    monkeypatch.setattr(loop, "make_callbacks", make_callbacks)
    (run,) = (tmp_path / "runs").iterdir()
    np.testing.assert_array_equal(kernels[0], kernels[1])  # frozen in phase 1
    assert not np.array_equal(kernels[1], kernels[2])      # trained in phase 2
    result = api.resume(run)
    rows = history_rows(run)
    assert [(row["epoch"], row["phase"], float(row["learning_rate"])) for row in rows] == [
        ("1", "1", 0.01), ("2", "2", 0.001), ("3", "2", 0.001)]
    assert not np.array_equal(keras.ops.convert_to_numpy(result.model.layers[1].kernel), kernels[2])
    assert result.model.layers[1].trainable  # resumed unfrozen
    with pytest.raises(ConfigError, match=r"is fine-tuning; its first phase ended after epoch 1; extend the "
                                          r"fine-tuning with --set train.fine_tune.epochs=N"):
        api.resume(run, epochs=3)
    note = api.resume(run).note
    assert "already completed (3 epochs of 3)" in note and "--set train.fine_tune.epochs=4" in note
    api.resume(run, fine_tune_epochs=3)
    assert [(row["epoch"], row["phase"]) for row in history_rows(run)][-1] == ("4", "2")


def test_fine_tune_mistakes_are_one_line_before_training(tmp_path):
    def plan(unfreeze, trainable=False):
        cfg = load_config({**FROZEN_CONV, "train": {**FROZEN_CONV["train"],
                                                    "fine_tune": {"epochs": 1, "unfreeze": unfreeze}}})
        cfg.model.layers[0].kwargs["trainable"] = trainable
        return plan_fine_tune(build_model(cfg.model, (8, 8, 1), 10), cfg)

    assert [layer.name.split("_")[0] for layer in plan("all").layers] == ["conv2d", "flatten", "dense"]
    assert plan(3).added_params == 4 * 9 + 4
    with pytest.raises(ConfigError, match=r"unfreeze: the model has no layer 'conv2'; did you mean 'conv2d"):
        plan("conv2")
    with pytest.raises(ConfigError, match=r"unfreeze: 9 layers, but the model has 3; give at most 3, or all"):
        plan(9)
    with pytest.raises(ConfigError, match=r"train.fine_tune: nothing to unfreeze: .* or remove train.fine_tune"):
        plan("all", trainable=True)
    config = tmp_path / "c.yaml"
    config.write_text(str(FROZEN_CONV).replace("'", '"').replace("False", "false"))
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert ("phases: 1 epochs as above, then fine-tune 2 epochs at learning rate 0.001, unfreezing all layers "
            "of the model (3 layers, batch normalization kept frozen; +40 trainable parameters)") in " ".join(result.output.split())
