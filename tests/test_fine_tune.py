"""train.fine_tune: a frozen first phase, then the chosen layers unfrozen and trained at a lower learning rate
(the Keras transfer-learning recipe) — one history with a phase column, resumable in either phase. A backbone's
two phases are tested in tests/test_backbone.py (its one training test)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

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
from cnnctl.runs.folder import Run
from cnnctl.training import checkpoint

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
# Digits with the first convolution frozen: a fine-tuning phase with no backbone, seconds to train.
FROZEN_CONV = {
    "name": "frozen-conv",
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "trainable": False}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {
        "epochs": 1,
        "batch_size": 64,
        "early_stopping": False,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "fine_tune": {"epochs": 1, "unfreeze": "all"},
    },
}


def history_rows(run) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_run_stopped_at_the_start_of_fine_tuning_resumes_into_fine_tuning(tmp_path, monkeypatch):
    """Stopped once phase 1 is over and phase 2's starting state is committed (its optimizer's slots for the
    unfrozen layer included): the resume unfreezes before loading, trains phase 2 and no phase-1 epoch again, and
    needs neither the run the training started from (model.from_run) nor anything else but its checkpoint."""
    from cnnctl.training import loop

    kernels = {}

    class StopInSecondPhase(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            kernels[epoch] = keras.ops.convert_to_numpy(self.model.layers[1].kernel).copy()
            if epoch == 1:  # the first fine-tuning epoch
                raise KeyboardInterrupt

    pretrained = tmp_path / "pretrained"  # a run to start from, gone before the resume: it is not needed again
    pretrained.mkdir()
    (pretrained / "config.yaml").write_text(load_config(FROZEN_CONV).to_yaml())
    (pretrained / "environment.json").write_text('{"status": "completed"}')
    build_model(load_config(FROZEN_CONV).model, (8, 8, 1), 10).save(pretrained / "model.keras")
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [StopInSecondPhase()])
    with pytest.raises(Interrupted):
        api.train(
            {**FROZEN_CONV, "model": {**FROZEN_CONV["model"], "from_run": str(pretrained)}}, runs_dir=tmp_path / "runs"
        )
    monkeypatch.setattr(loop, "make_callbacks", make_callbacks)
    shutil.rmtree(pretrained)
    (run,) = (tmp_path / "runs").iterdir()
    np.testing.assert_array_equal(kernels[0], kernels[1])  # frozen in phase 1
    state = checkpoint.read_state(Run(run))
    assert (state["epoch"], state["fine_tune_from"], state["weights"]) == (1, 1, "epoch-0001-fine-tune.weights.h5")
    with pytest.raises(
        ConfigError,
        match=r"is fine-tuning; its first phase ended after epoch 1; extend the "
        r"fine-tuning with --set train.fine_tune.epochs=N",
    ):
        api.resume(run, epochs=3)
    result = api.resume(run)
    assert [(row["epoch"], row["phase"], float(row["learning_rate"])) for row in history_rows(run)] == [
        ("1", "1", 0.01),
        ("2", "2", 0.001),
    ]
    assert result.model.layers[1].trainable  # resumed unfrozen, and trained
    assert not np.array_equal(keras.ops.convert_to_numpy(result.model.layers[1].kernel), kernels[1])
    note = api.resume(run).note
    assert "already completed (2 epochs of 2)" in note and "--set train.fine_tune.epochs=2" in note


def test_fine_tune_mistakes_are_one_line_before_training():
    def plan(unfreeze, trainable=False):
        cfg = load_config(
            {**FROZEN_CONV, "train": {**FROZEN_CONV["train"], "fine_tune": {"epochs": 1, "unfreeze": unfreeze}}}
        )
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
    with pytest.raises(
        ConfigError,
        match=r"train.fine_tune.unfreeze: must be all, a number of layers or a layer "
        r"name \(got true\)",
    ):
        load_config({**FROZEN_CONV, "train": {"fine_tune": {"epochs": 1, "unfreeze": True}}})

    assert plan("all").describe(load_config(FROZEN_CONV)) == (
        "then fine-tune 1 epoch at learning rate 0.001, unfreezing all layers of the model (2 layers with "
        "weights; +40 trainable parameters)"
    )


def test_the_shipped_transfer_from_run_config_reuses_the_pretraining_runs_convolutions(tmp_path):
    """configs/transfer_from_run.yaml against a stand-in for the Fashion-MNIST run it follows (that config's
    layers, random weights) and examples/make_few_digits.py's data: the convolutions are reused, the renamed head
    is fresh, and the two phases are planned."""
    import runpy

    import yaml

    pretraining = load_config(ROOT / "configs" / "fashion_mnist.yaml")
    previous = build_model(pretraining.model, (28, 28, 1), 10)
    folder = tmp_path / "fashion"
    folder.mkdir()
    (folder / "config.yaml").write_text(pretraining.to_yaml())
    (folder / "environment.json").write_text('{"status": "completed"}')
    previous.save(folder / "model.keras")
    make = runpy.run_path(str(ROOT / "examples" / "make_few_digits.py"), run_name="example")
    arrays = make["few_digits"](per_class=5)
    assert arrays["x_train"].shape == (50, 28, 28, 1) and len(arrays["y_test"]) == 1797 - 50
    np.savez(tmp_path / "few.npz", **arrays)
    result = runner.invoke(
        app,
        [
            "check",
            str(ROOT / "configs" / "transfer_from_run.yaml"),
            "--set",
            f"data.path={tmp_path / 'few.npz'}",
            "--set",
            f"model.from_run.run={folder}",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"model.from_run: 3 layers start from {folder.resolve()}" in output  # the convolutions, not the head
    assert (
        "then fine-tune 15 epochs at learning rate 0.0001, unfreezing all layers of the model (5 layers with "
        "weights; +55,744 trainable parameters)"
    ) in output
    assert (
        yaml.safe_load((ROOT / "configs" / "transfer_from_run.yaml").read_text())["model"]["from_run"]["run"] == "last"
    )


def test_from_run_last_is_looked_up_in_the_runs_dir_the_new_run_goes_to(tmp_path):
    from cnnctl.config.schema import FromRunConfig
    from cnnctl.model.backbone import locate_from_run

    for name in ("20260101-000000-older", "20260102-000000-newer"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "config.yaml").write_text("model: {layers: [Flatten]}\n")
        (tmp_path / "runs" / name / "environment.json").write_text('{"status": "completed"}')
    cfg = FromRunConfig(run="last")
    locate_from_run(cfg, tmp_path / "runs")
    assert cfg.run == str((tmp_path / "runs" / "20260102-000000-newer").resolve())
    with pytest.raises(ConfigError, match=r"^model.from_run: .*"):
        locate_from_run(FromRunConfig(run="last"), tmp_path / "empty")


@pytest.mark.parametrize("phase", [None, 1])
def test_early_stopping_says_what_it_did_and_what_comes_next(phase, capsys):
    """Issue 30: Keras' "Epoch 7: early stopping" read as the end of a run that went on to fine-tune, and its
    "Restoring model weights" line came once per phase. One line now: the stop, why, and which weights go on."""
    from cnnctl.training.callbacks import SaidEarlyStopping

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((32, 3), np.float32), np.arange(32) % 2
    # No epoch improves on the first by 100: the fit stops when patience 2 runs out, at epoch 3.
    stopping = SaidEarlyStopping(
        monitor="loss", patience=2, min_delta=100, restore_best_weights=True, announce=True, first_of_two_phases=phase
    )
    model.fit(x, y, epochs=10, verbose=0, callbacks=[stopping])
    printed = capsys.readouterr().out.splitlines()
    if phase == 1:
        expected = "the first phase stops early (loss did not improve for 2 epochs); fine-tuning starts from epoch 1's"
    else:
        expected = "early stopping (loss did not improve for 2 epochs); the model keeps epoch 1's weights"
    assert printed == [f"Epoch 3: {expected}" + (" weights" if phase == 1 else "")]
