"""Grad-CAM finds what a model looked at: small CNNs trained here on generated images and signals, where the
evidence is an object drawn at a random place, must put the peak of their heat map on that object. Then the
mechanics: heat maps at the input's shape in 1-D, 2-D and 3-D, layers inside nested models (a backbone with a
skip connection, a keras.applications network built by cnnctl), one-line errors, and the same maps on JAX."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import JAX_TEST_CACHE

from cnnctl.config.schema import ModelConfig
from cnnctl.errors import ConfigError, DataError
from cnnctl.evaluation.gradcam import find_target_layer, gradcam, layer_path_name, resize_maps
from cnnctl.model.build import build_model

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.xdist_group(__name__)  # the module's fixtures train two models: once, on one worker

SQUARE, CROSS, NOTHING = 0, 1, 2  # a third class of noise alone: a shape is told from nothing by its own evidence
IMAGE_SIZE = 24
SIGNAL_LENGTH = 64
BUMP, DIP = 0, 1
LOCATED = 0.8  # share of correctly classified examples whose heat-map peak must lie on the object
TOLERANCE = 2  # pixels or samples the peak may lie outside the object's box


def make_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """24×24 noise in 0..100 (8-bit units); a filled 3×3 square or a 5×5 cross of 9 pixels at 255 at a random
    place, or nothing. Returns images (N, 24, 24, 1), labels and the object's box (top, left, bottom, right)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 100, size=(count, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=count)
    boxes = np.full((count, 4), -1)
    for image, label, box in zip(x, y, boxes):
        top, left = rng.integers(0, IMAGE_SIZE - 5, size=2)
        if label == SQUARE:
            image[top + 1 : top + 4, left + 1 : left + 4] = 255
            box[:] = top + 1, left + 1, top + 3, left + 3
        elif label == CROSS:
            image[top + 2, left : left + 5] = 255
            image[top : top + 5, left + 2] = 255
            box[:] = top, left, top + 4, left + 4
    return x, y, boxes


def make_signals(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64 samples of noise (σ 0.3); a bump or a dip 5 samples wide (height 1.5) at a random place, or nothing.
    Returns signals (N, 64, 1), labels and the object's centre."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, size=(count, SIGNAL_LENGTH, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=count)
    centres = rng.integers(2, SIGNAL_LENGTH - 2, size=count)
    bump = np.array([0.5, 1.0, 1.5, 1.0, 0.5], dtype=np.float32)
    for signal, label, centre in zip(x, y, centres):
        if label in (BUMP, DIP):
            signal[centre - 2 : centre + 3, 0] += bump if label == BUMP else -bump
    return x, y, centres


def trained(layers: list, x: np.ndarray, y: np.ndarray, epochs: int) -> keras.Model:
    """A Sequential of `layers` fitted with Adam; seed Keras first for the same model every time."""
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(0.005), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def image_model() -> keras.Model:
    """A CNN as cnnctl builds them (input scaling first, 8-bit units in), trained for 10 epochs on 800 images.
    Its last convolution works at half the input's resolution, so the maps are stretched to the image."""
    keras.utils.set_random_seed(1)
    x, y, _ = make_images(800, seed=1)
    return trained(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
            keras.layers.Rescaling(1 / 255, name="scale_inputs"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        x,
        y,
        10,
    )


@pytest.fixture(scope="module")
def signal_model() -> keras.Model:
    """A 1-D CNN trained for 8 epochs on 600 signals; its maps too are stretched from half the length."""
    keras.utils.set_random_seed(1)
    x, y, _ = make_signals(600, seed=1)
    return trained(
        [
            keras.Input((SIGNAL_LENGTH, 1)),
            keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling1D(),
            keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        x,
        y,
        8,
    )


def located_share(correct: np.ndarray, inside: np.ndarray) -> float:
    assert correct.sum() >= 40, f"the model classified only {correct.sum()} objects correctly; train it better"
    return float(inside[correct].mean())


def test_image_heat_maps_peak_on_the_drawn_object(image_model):
    x, y, boxes = make_images(200, seed=101)
    result = gradcam(image_model, x)
    assert result.layer == image_model.layers[3].name  # the last convolution
    assert result.heatmaps.shape == (200, IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_allclose(result.y_prob, image_model.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(result.class_index, result.y_pred)
    peaks = np.array([np.unravel_index(heatmap.argmax(), heatmap.shape) for heatmap in result.heatmaps])
    inside = (
        (peaks[:, 0] >= boxes[:, 0] - TOLERANCE)
        & (peaks[:, 0] <= boxes[:, 2] + TOLERANCE)
        & (peaks[:, 1] >= boxes[:, 1] - TOLERANCE)
        & (peaks[:, 1] <= boxes[:, 3] + TOLERANCE)
    )
    for shape in (SQUARE, CROSS):
        correct = (result.y_pred == y) & (y == shape)
        assert located_share(correct, inside) >= LOCATED, f"class {shape}"


def test_each_class_is_found_where_its_own_object_is(image_model):
    # One image, both objects: the map of "square" peaks on the square, the map of "cross" on the cross.
    image = np.full((1, IMAGE_SIZE, IMAGE_SIZE, 1), 40, dtype=np.float32)
    image[0, 3:6, 3:6] = 255  # square, rows and columns 3..5
    image[0, 18, 14:19] = image[0, 16:21, 16] = 255  # cross, rows 16..20, columns 14..18
    for class_index, (top, left, bottom, right) in ((SQUARE, (3, 3, 5, 5)), (CROSS, (16, 14, 20, 18))):
        heatmap = gradcam(image_model, image, class_index=class_index).heatmaps[0]
        row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert top - TOLERANCE <= row <= bottom + TOLERANCE and left - TOLERANCE <= column <= right + TOLERANCE


def test_signal_heat_maps_peak_on_the_bump_or_dip(signal_model):
    x, y, centres = make_signals(200, seed=101)
    result = gradcam(signal_model, x, batch_size=64)
    assert result.heatmaps.shape == (200, SIGNAL_LENGTH)
    inside = np.abs(result.heatmaps.argmax(axis=1) - centres) <= 2 + TOLERANCE  # the object spans centre ± 2
    for shape in (BUMP, DIP):
        correct = (result.y_pred == y) & (y == shape)
        assert located_share(correct, inside) >= LOCATED, f"class {shape}"


def test_batches_and_a_given_class_change_nothing_but_what_is_explained(signal_model):
    x, _, _ = make_signals(10, seed=5)
    whole = gradcam(signal_model, x, batch_size=10)
    batched = gradcam(signal_model, x, batch_size=3)  # 3 + 3 + 3 + 1, the last batch padded
    np.testing.assert_allclose(batched.heatmaps, whole.heatmaps, atol=1e-5)
    np.testing.assert_allclose(batched.y_prob, whole.y_prob, atol=1e-6)
    per_example = gradcam(signal_model, x, class_index=[2] * 5 + [1] * 5)
    assert per_example.class_index.tolist() == [2] * 5 + [1] * 5
    np.testing.assert_array_equal(per_example.y_pred, whole.y_pred)


def test_a_3d_map_is_stretched_to_the_volume_and_lies_in_0_1():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 8, 10, 2)),
            keras.layers.Conv3D(4, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling3D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(5, 6, 8, 10, 2)).astype(np.float32)
    result = gradcam(model, x, batch_size=2)
    assert result.heatmaps.shape == (5, 6, 8, 10) and result.heatmaps.dtype == np.float32
    assert result.heatmaps.min() >= 0 and result.heatmaps.max() <= 1
    peaks = result.heatmaps.reshape(5, -1).max(axis=1)
    assert np.all((peaks == 1) | (peaks == 0))  # each map is scaled by its own maximum, or had no evidence at all
    assert result.y_prob.shape == (5, 2)


def test_maps_are_stretched_as_keras_resizes_images_and_numpy_interpolates():
    maps = np.random.default_rng(0).uniform(size=(3, 5, 7))
    expected = keras.ops.image.resize(maps[..., None], (20, 21), interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(resize_maps(maps, (20, 21)), np.asarray(expected)[..., 0], atol=1e-5)
    signal = maps[:, 0, :]
    centres = (np.arange(30) + 0.5) * 7 / 30 - 0.5  # each output sample's position in input samples
    expected = np.stack([np.interp(centres, np.arange(7), row) for row in signal])
    np.testing.assert_allclose(resize_maps(signal, (30,)), expected, atol=1e-12)


def nested_and_flat_models() -> tuple[keras.Model, keras.Model]:
    """The same network twice: with its convolutions in a nested "backbone" that has a skip connection around
    conv_b, and written out flat. Same weights, so the same heat maps."""
    keras.utils.set_random_seed(3)

    def convolutions(suffix: str = "") -> tuple:
        return (
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=f"conv_a{suffix}"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=f"conv_b{suffix}"),
        )

    conv_a, conv_b = convolutions()
    inner = keras.Input((12, 12, 1))
    features = conv_a(inner)
    backbone = keras.Model(inner, keras.layers.Add()([features, conv_b(features)]), name="backbone")
    inputs = keras.Input((12, 12, 1))
    x = backbone(keras.layers.Rescaling(1 / 16, name="scale_inputs")(inputs), training=False)
    outputs = keras.layers.Dense(3, activation="softmax", name="scores")(keras.layers.GlobalAveragePooling2D()(x))
    nested = keras.Model(inputs, outputs, name="nested")

    conv_a, conv_b = convolutions("_flat")
    inputs = keras.Input((12, 12, 1))
    features = conv_a(keras.layers.Rescaling(1 / 16)(inputs))
    x = keras.layers.Add()([features, conv_b(features)])
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    flat = keras.Model(inputs, outputs, name="flat")
    flat.set_weights(nested.get_weights())
    return nested, flat


def test_a_layer_inside_a_nested_model_is_found_and_explained_like_the_flat_model():
    nested, flat = nested_and_flat_models()
    assert layer_path_name(find_target_layer(nested)) == "backbone/conv_b"
    assert layer_path_name(find_target_layer(nested, "conv_a")) == "backbone/conv_a"
    assert layer_path_name(find_target_layer(nested, "backbone/conv_a")) == "backbone/conv_a"
    x = np.random.default_rng(1).uniform(0, 16, size=(8, 12, 12, 1)).astype(np.float32)
    for nested_layer, flat_layer in (("conv_b", "conv_b_flat"), ("conv_a", "conv_a_flat")):
        from_nested = gradcam(nested, x, layer=nested_layer, class_index=1)
        from_flat = gradcam(flat, x, layer=flat_layer, class_index=1)
        assert from_nested.layer == f"backbone/{nested_layer}"
        assert (from_flat.heatmaps.reshape(8, -1).max(axis=1) == 1).sum() >= 4  # not a comparison of empty maps
        np.testing.assert_allclose(from_nested.heatmaps, from_flat.heatmaps, atol=1e-5)
        np.testing.assert_allclose(from_nested.y_prob, nested.predict(x, verbose=0), atol=1e-6)


def test_a_keras_applications_backbone_built_by_cnnctl():
    model = build_model(
        ModelConfig(
            backbone={"name": "MobileNetV3Small", "weights": None, "alpha": 0.75},
            layers=[{"Dense": {"units": 3, "activation": "softmax"}}],
        ),
        (8, 8, 1),
        3,
        pixel_scale=16.0,
        full_scale=16.0,
    )
    x = np.random.default_rng(2).uniform(0, 16, size=(4, 8, 8, 1)).astype(np.float32)
    result = gradcam(model, x)
    assert result.layer == "MobileNetV3Small/conv_1"  # the application's last convolution
    assert result.heatmaps.shape == (4, 8, 8) and 0 <= result.heatmaps.min() <= result.heatmaps.max() <= 1
    np.testing.assert_allclose(result.y_prob, model.predict(x, verbose=0), atol=1e-5)


def test_a_single_sigmoid_unit_explains_either_class():
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((10, 1)),
            keras.layers.Conv1D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    x = np.random.default_rng(4).normal(size=(6, 10, 1)).astype(np.float32)
    result = gradcam(model, x, class_index=0)
    probability = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(result.y_prob, np.stack([1 - probability, probability], axis=1), atol=1e-6)
    np.testing.assert_array_equal(result.y_pred, (probability > 0.5).astype(int))
    assert result.heatmaps.shape == (6, 10)


def test_wrong_requests_are_one_line_errors():
    nested, _ = nested_and_flat_models()
    x = np.zeros((2, 12, 12, 1), dtype=np.float32)
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")], name="mlp")
    cases = [
        (
            lambda: find_target_layer(nested, "conv_bb"),
            ConfigError,
            (
                "layer 'conv_bb' is not in model 'nested' (its convolutional layers: backbone/conv_a, "
                "backbone/conv_b); did you mean 'conv_b'?"
            ),
        ),
        (
            lambda: find_target_layer(dense_only),
            ConfigError,
            (
                "model 'mlp' has no convolutional layer for Grad-CAM; name a layer whose output keeps "
                "the input's spatial axes"
            ),
        ),
        (
            lambda: gradcam(nested, x, layer="scores"),
            ConfigError,
            (
                "layer 'scores' outputs shape [None, 3], with no spatial axes to draw a heat map of; "
                "choose a layer before Flatten or global pooling, such as one of: backbone/conv_a, "
                "backbone/conv_b"
            ),
        ),
        (
            lambda: gradcam(nested, x, class_index=3),
            ConfigError,
            "class_index 3 is out of range: the model has 3 classes (0..2)",
        ),
        (
            lambda: gradcam(nested, x, class_index=[0, 1, 2]),
            ConfigError,
            "class_index gives 3 classes for 2 examples; give one class, or one per example",
        ),
        (
            lambda: gradcam(nested, x[0]),
            DataError,
            (
                "x has shape [12, 12, 1] but model 'nested' takes examples of shape [12, 12, 1] with a "
                "batch axis first (one example: x[None])"
            ),
        ),
    ]
    for make_error, error, message in cases:
        with pytest.raises(error) as caught:
            make_error()
        assert str(caught.value) == message


JAX_HEATMAPS = """
import sys
import keras
import numpy as np
from cnnctl.evaluation.gradcam import gradcam

result = gradcam(keras.models.load_model(sys.argv[1]), np.load(sys.argv[2]), batch_size=5)
np.savez(sys.argv[3], heatmaps=result.heatmaps, y_prob=result.y_prob, layer=result.layer, backend=keras.backend.backend())
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install 'cnnctl[jax]')")
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares this process's TensorFlow with JAX")
def test_jax_draws_the_same_heat_maps_as_tensorflow(image_model, tmp_path):
    x, _, _ = make_images(12, seed=202)
    image_model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    # JAX alone, TensorFlow hidden, as on a machine without it; 12 examples in batches of 5, the last one padded.
    hidden = os.pathsep.join(filter(None, [str(ROOT / "tests" / "without_tensorflow"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **JAX_TEST_CACHE, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": hidden}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            JAX_HEATMAPS,
            str(tmp_path / "model.keras"),
            str(tmp_path / "x.npy"),
            str(tmp_path / "jax.npz"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on_jax = np.load(tmp_path / "jax.npz")
    on_tensorflow = gradcam(image_model, x)
    assert str(on_jax["backend"]) == "jax" and str(on_jax["layer"]) == on_tensorflow.layer
    assert (on_tensorflow.heatmaps.reshape(12, -1).max(axis=1) == 1).all()
    np.testing.assert_allclose(on_jax["heatmaps"], on_tensorflow.heatmaps, atol=1e-3)
    np.testing.assert_allclose(on_jax["y_prob"], on_tensorflow.y_prob, atol=1e-5)
