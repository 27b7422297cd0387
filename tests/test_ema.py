"""train.ema: model.keras holds the exponential moving average of the weights, computed here independently from the
weights recorded after every training step; a run stopped early ends with the average too; a resumed run trains on
from the trained weights (not the average) and continues the average it had."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from cnnctl.config.schema import Config
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.training import checkpoint
from cnnctl.workflows.resume import resume_run
from cnnctl.workflows.train import train_run

MOMENTUM = 0.9  # a short memory, so the average differs clearly from the last step's weights in a few dozen steps

CONFIG = {
    "name": "ema",
    "seed": 3,
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {
        "epochs": 1,
        "batch_size": 128,
        "steps_per_execution": 1,  # a callback sees every step
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "early_stopping": False,
        "ema": {"momentum": MOMENTUM},
    },
    "evaluate": {"top_k": [1]},
}


class StepWeights(keras.callbacks.Callback):
    """The trainable weights before the first step and after every step, as the optimizer left them."""

    def __init__(self):
        super().__init__()
        self.before: list[np.ndarray] = []
        self.after: list[list[np.ndarray]] = []

    def on_train_batch_begin(self, batch, logs=None):
        if not self.before:
            self.before = [np.array(w) for w in self.model.trainable_weights]

    def on_train_batch_end(self, batch, logs=None):
        self.after.append([np.array(w) for w in self.model.trainable_weights])


def moving_average(steps: list[list[np.ndarray]], start: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Keras' rule: the first step of an optimizer copies the weights; each later one keeps MOMENTUM of the average."""
    average = [w.copy() for w in (start if start is not None else steps[0])]
    for weights in steps if start is not None else steps[1:]:
        average = [MOMENTUM * a + (1 - MOMENTUM) * w for a, w in zip(average, weights)]
    return average


def saved_weights(run: Run) -> list[np.ndarray]:
    model = keras.saving.load_model(run.file(contract.MODEL), compile=False)
    return [np.array(w) for w in model.trainable_weights]


def assert_same(found: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for a, b in zip(found, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def far_apart(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b)) > 1e-3


def test_model_keras_holds_the_average_and_resume_continues_both_sets(tmp_path):
    first = StepWeights()
    result = train_run(Config.model_validate(CONFIG), tmp_path / "runs", extra_callbacks=[first])
    run = result.run
    average = moving_average(first.after)
    assert len(first.after) == 11  # ceil(1293 / 128) steps
    assert_same(saved_weights(run), average)
    assert far_apart(average, first.after[-1])  # the test can tell the average from the last step's weights
    state = checkpoint.read_state(run)
    assert state["averaged_in_model"] is True and state["finished"] is True

    # Extended by a second epoch: training resumes from the last step's weights, and the average from its value.
    second = StepWeights()
    resume_run(run, overrides=["train.epochs=2"], extra_callbacks=[second])
    assert_same(second.before, first.after[-1])
    assert len(second.after) == 11
    assert_same(saved_weights(run), moving_average(second.after, start=average))
    metrics = run.read_json(contract.METRICS)
    assert 0 <= metrics["accuracy"] <= 1


def test_a_run_stopped_early_ends_with_the_average(tmp_path):
    config = copy.deepcopy(CONFIG)
    # No epoch can improve by 100: early stopping ends the run after its second epoch, before train.epochs.
    config["train"].update(epochs=6, early_stopping={"patience": 0, "min_delta": 100, "restore_best_weights": False})
    recorder = StepWeights()
    result = train_run(Config.model_validate(config), tmp_path / "runs", extra_callbacks=[recorder])
    assert len(recorder.after) == 22  # two epochs
    average = moving_average(recorder.after)
    assert_same(saved_weights(result.run), average)
    assert far_apart(average, recorder.after[-1])


@pytest.mark.parametrize("key", ["use_ema", "ema_momentum"])
def test_the_optimizers_own_switch_points_to_train_ema(key):
    config = copy.deepcopy(CONFIG)
    config["train"]["optimizer"][key] = True if key == "use_ema" else 0.99
    with pytest.raises(ValueError, match=rf"{key} is set by cnnctl: write train.ema: \{{momentum: 0.999\}}"):
        Config.model_validate(config)


def test_swap_ema_weights_still_has_what_averaged_weights_uses():
    # AveragedWeights (cnnctl/training/averaging.py) relies on these of Keras' SwapEMAWeights.
    callback = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    assert callback._ema_weights_in_model is False
    assert callable(callback._swap_variables) and callable(callback._finalize_ema_values)
