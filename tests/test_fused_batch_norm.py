"""The fused batch-norm training path must train to the same numbers as Keras' own, and leave model.keras plain."""

import json
import zipfile

import keras  # noqa: E402 - after cnnctl has set TensorFlow up quietly
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

from cnnctl.config.schema import TrainConfig
from cnnctl.model.compile import compile_model
from cnnctl.model.fused_batch_norm import use_fused_batch_norm


def _twin_models(make_layers):
    """Two models with the same initial weights: Keras' batch-norm in the first, the fused one in the second."""
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        models.append(keras.Sequential(make_layers()))
    assert use_fused_batch_norm(models[1]) >= 1
    return models


def _train_both(models, x, y, steps=3):
    for model in models:
        model.compile(keras.optimizers.SGD(0.1), "mse")
        for _ in range(steps):
            model.train_on_batch(x, y)


def _assert_same_weights(plain, fused):
    for left, right in zip(plain.weights, fused.weights):
        np.testing.assert_allclose(right.numpy(), left.numpy(), rtol=1e-4, atol=1e-5, err_msg=left.path)


def _data(shape, outputs=2):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 1).astype("float32")  # mean and variance far from 0 and 1
    y = rng.normal(size=(shape[0], outputs)).astype("float32")
    return x, y


@pytest.mark.parametrize("bn_kwargs", [{"momentum": 0.5}, {"momentum": 0.9, "scale": False, "center": False}])
def test_fused_training_matches_keras_batch_norm(bn_kwargs):
    plain, fused = _twin_models(
        lambda: [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(**bn_kwargs),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    x, y = _data((16, 8, 8, 3))
    _train_both((plain, fused), x, y)
    _assert_same_weights(plain, fused)  # gamma, beta, moving mean/variance and the layers around them
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_fused_path_runs_the_fused_kernel_and_only_when_training():
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.BatchNormalization()])
    use_fused_batch_norm(model)
    x = tf.zeros((4, 6, 6, 2))

    def op_types(training):
        graph = tf.function(lambda t: model(t, training=training)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in op_types(True)
    assert "FusedBatchNormV3" not in op_types(False)  # inference is Keras' own code


def test_other_ranks_and_axes_keep_keras_code_and_numbers():
    # Conv1D's 3-D maps and a channels-first axis are not the fused kernel's layout: Keras' path must run.
    plain, fused = _twin_models(
        lambda: [
            keras.Input((10, 3)),
            keras.layers.Conv1D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    x, y = _data((8, 10, 3))
    _train_both((plain, fused), x, y)
    _assert_same_weights(plain, fused)

    plain, fused = _twin_models(
        lambda: [
            keras.Input((3, 5, 5)),
            keras.layers.BatchNormalization(axis=1),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    x, y = _data((8, 3, 5, 5))
    _train_both((plain, fused), x, y)
    _assert_same_weights(plain, fused)


def test_compiled_models_are_fused_and_saved_as_plain_keras(tmp_path):
    inner = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()], name="base"
    )
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            inner,
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    compile_model(model, TrainConfig.model_validate({"epochs": 1}), jit_compile=False)
    fused = [layer for layer in (inner.layers[1], model.layers[1]) if "call" in vars(layer)]
    assert len(fused) == 2  # the nested model's batch-norm too (a transfer-learning base, say)
    assert use_fused_batch_norm(model) == 0  # already done: not wrapped twice

    x = np.random.default_rng(1).random((12, 8, 8, 1)).astype("float32")
    model.fit(x, np.arange(12) % 3, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    classes = [(layer["module"], layer["class_name"]) for layer in config["config"]["layers"]]
    assert ("keras.layers", "BatchNormalization") in classes
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert "call" not in vars(loaded.layers[1])  # a plain Keras layer once loaded
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
