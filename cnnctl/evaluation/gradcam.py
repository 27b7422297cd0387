"""Evaluation: Grad-CAM heat maps: where in each example a trained model found the evidence for a class.

Grad-CAM (Selvaraju et al., 2017) weighs each output channel of a convolution by the mean gradient of a class score
over the channel's positions, keeps the positive part of the weighted sum of the channels, and stretches that map
to the input's size. Here it runs on TensorFlow and on JAX: the model is rebuilt, sharing its layers, as a probe in
which a zero variable, the shift, is added to the chosen layer's output. The gradient with respect to the layer's
output is then the gradient with respect to the shift, a variable that `tf.GradientTape` and `jax.grad` (through
`stateless_call`) both differentiate, whatever the graph around the layer: skip connections, or a keras.applications
backbone nested in the model.

Every evaluation keeps a few of the split's examples with their maps in gradcam.npz (cnnctl/evaluation/
gradcam_examples.py), which `cnnctl plot` draws as gradcam.png without loading the model.

Example:

    result = gradcam(model, x_test[:16])               # the last convolution, each example's predicted class
    result.heatmaps.shape                              # (16, 24, 24): one map in [0, 1] per example
    gradcam(model, x_test[:16], layer="MobileNetV3Small/conv_1", class_index=3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnctl import runtime
from cnnctl.errors import ConfigError, DataError, did_you_mean
from cnnctl.evaluation import gradcam_probe
from cnnctl.evaluation.calibration import as_class_probabilities

runtime.quiet_backend_import()  # before Keras, which would import TensorFlow with pages of start-up logs
import keras  # noqa: E402

# The keras.layers classes Grad-CAM looks for by default: every convolution whose output keeps the input's spatial
# axes. ConvLSTM is left out: its output mixes a time axis into the map.
CONVOLUTIONS = (
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "SeparableConv1D",
    "SeparableConv2D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
)


@dataclass(frozen=True)
class GradCam:
    """Grad-CAM heat maps of a set of examples and what the model predicted for them."""

    heatmaps: np.ndarray  # (N, *the input's spatial shape), float32 in [0, 1]: 1 where the evidence is strongest
    y_pred: np.ndarray  # (N,) the predicted class
    y_prob: np.ndarray  # (N, K) class probabilities; two columns for a single sigmoid unit
    class_index: np.ndarray  # (N,) the class each heat map explains
    layer: str  # the layer the maps come from; "outer/inner" for a layer inside a nested model


def is_convolution(layer: Any) -> bool:
    """A convolution of keras.layers (1-D, 2-D or 3-D; plain, separable, depthwise or transposed) or a subclass."""
    classes = tuple(getattr(keras.layers, name) for name in CONVOLUTIONS if hasattr(keras.layers, name))
    return isinstance(layer, classes)


def layer_path_name(path: Sequence[Any]) -> str:
    """A layer path as the user writes it: the layer's name, after the names of the nested models holding it."""
    return "/".join(layer.name for layer in path)


def find_target_layer(model: Any, name: str | None = None) -> tuple:
    """The layer Grad-CAM reads, as a path: the nested models that hold it (outermost first), then the layer.

    Nested models (a keras.applications backbone inside the model) are searched too, in the model's order.

    Args:
        model: a built Keras model.
        name: a layer's name, or "outer/inner" for a layer inside a nested model; a bare name found in several
            nested models means the first. Defaults to None: the last convolution.

    Raises:
        ConfigError: no such layer (the message lists the near names and the convolutions), a layer whose output
            has no spatial axes, or a model without a convolution.
    """
    paths = _layer_paths(model)
    convolutions = [path for path in paths if is_convolution(path[-1])]
    if name is None:
        if not convolutions:
            raise ConfigError(
                f"model '{model.name}' has no convolutional layer for Grad-CAM; name a layer whose "
                "output keeps the input's spatial axes"
            )
        return convolutions[-1]
    matches = [path for path in paths if name in (path[-1].name, layer_path_name(path))]
    existing = ", ".join(layer_path_name(path) for path in convolutions) or "none"
    if not matches:
        choices = [layer_path_name(path) for path in paths] + [path[-1].name for path in paths]
        raise ConfigError(
            f"layer '{name}' is not in model '{model.name}' (its convolutional layers: {existing})"
            f"{did_you_mean(name, choices)}"
        )
    path = matches[0]
    shape = tuple(path[-1].output.shape)
    if len(shape) < 3:
        raise ConfigError(
            f"layer '{name}' outputs shape {list(shape)}, with no spatial axes to draw a heat map "
            f"of; choose a layer before Flatten or global pooling, such as one of: {existing}"
        )
    return path


def gradcam(
    model: Any,
    x: np.ndarray,
    layer: str | None = None,
    class_index: None | int | Sequence[int] = None,
    batch_size: int = 32,
) -> GradCam:
    """Grad-CAM heat maps of `x`, each at the input's spatial shape.

    The channel weights are the spatial means of d(score)/d(activation), the map is relu(Σ weight × channel),
    stretched to the input's size by linear interpolation along each spatial axis (linear in 1-D, bilinear in
    2-D, trilinear in 3-D) and divided by its maximum (a map with no positive evidence stays zero).

    Args:
        model: a trained model with one input, channels last (as cnnctl builds them).
        x: examples as the model takes them, batch axis first: (N, *spatial, channels), in the data's own units
            for a model that scales its inputs itself.
        layer: the layer to read (see `find_target_layer`). Defaults to None: the last convolution.
        class_index: the class to explain: one for every example, or one per example. Defaults to None: each
            example's predicted class.
        batch_size: examples per forward and backward pass, which bounds the memory used. Defaults to 32.

    Raises:
        ConfigError: a wrong layer, class index or batch size, or a backend other than TensorFlow or JAX.
        DataError: `x` does not have the shape the model takes.
    """
    path = find_target_layer(model, layer)
    x = _checked_examples(model, x)
    activation_shape = tuple(path[-1].output.shape[1:])
    _check_layout(path, activation_shape, x)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1; given {batch_size}")
    # The shift has a batch axis, so every batch has the same size: the last one is padded with its first example.
    size = min(batch_size, len(x))
    shift = gradcam_probe.ActivationShift((size, *activation_shape), dtype="float32")
    probe = gradcam_probe.probe(model, path, shift)
    requested = _requested_classes(class_index, len(x), probe.outputs[1].shape[-1])
    step = _gradient_step(probe, shift)
    maps, probabilities, explained = [], [], []
    for start in range(0, len(x), size):
        count = min(size, len(x) - start)
        padding = np.zeros(size - count, dtype=int)
        batch = np.concatenate([x[start : start + count], x[start + padding]])
        batch_requested = np.concatenate([requested[start : start + count], requested[start + padding]])
        activation, gradient, batch_probabilities, batch_explained = (
            keras.ops.convert_to_numpy(value)[:count]
            for value in step(keras.ops.convert_to_tensor(batch), keras.ops.convert_to_tensor(batch_requested))
        )
        maps.append(_class_activation_map(activation.astype(np.float64), gradient.astype(np.float64)))
        probabilities.append(batch_probabilities)
        explained.append(batch_explained)
    heatmaps = _normalised(resize_maps(np.concatenate(maps), x.shape[1:-1]))
    y_prob = as_class_probabilities(np.concatenate(probabilities)).astype(np.float32)
    return GradCam(
        heatmaps=heatmaps.astype(np.float32),
        y_pred=y_prob.argmax(axis=1),
        y_prob=y_prob,
        class_index=np.concatenate(explained).astype(np.int64),
        layer=layer_path_name(path),
    )


def resize_maps(maps: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(N, *map shape) maps → (N, *shape) by linear interpolation along each axis in turn, which is bilinear in
    2-D and trilinear in 3-D. Pixel centres are aligned as in keras.ops.image.resize ("half pixel"), so a map of
    a strided layer lines up with the input it was computed from.

    Args:
        maps: a batch of maps with any number of spatial axes.
        shape: the spatial shape wanted, one size per spatial axis of `maps`.
    """
    maps = np.asarray(maps, dtype=np.float64)
    for axis, (old, new) in enumerate(zip(maps.shape[1:], shape), start=1):
        if old == new:
            continue
        position = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
        lower = np.floor(position).astype(int)
        upper = np.minimum(lower + 1, old - 1)
        fraction = (position - lower).reshape([-1 if index == axis else 1 for index in range(maps.ndim)])
        maps = np.take(maps, lower, axis=axis) * (1 - fraction) + np.take(maps, upper, axis=axis) * fraction
    return maps


def _layer_paths(model: Any, outer: tuple = ()) -> list[tuple]:
    """Every layer of `model` as a path from the model down, in the model's order; a nested model's layers come
    right after the nested model."""
    paths = []
    for layer in model.layers:
        paths.append(outer + (layer,))
        if isinstance(layer, keras.Model):
            paths += _layer_paths(layer, outer + (layer,))
    return paths


def _checked_examples(model: Any, x: Any) -> np.ndarray:
    if len(model.inputs) != 1:
        raise ConfigError(f"Grad-CAM explains models with one input; model '{model.name}' has {len(model.inputs)}")
    x = np.asarray(x, dtype=np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    matches = x.ndim == len(expected) + 1 and all(want in (None, got) for want, got in zip(expected, x.shape[1:]))
    if not matches:
        raise DataError(
            f"x has shape {list(x.shape)} but model '{model.name}' takes examples of shape "
            f"{list(expected)} with a batch axis first (one example: x[None])"
        )
    if len(x) == 0:
        raise DataError("x holds no examples")
    return x


def _check_layout(path: tuple, activation_shape: tuple, x: np.ndarray) -> None:
    """The heat map is resized onto the input: both must put channels last and have the same spatial axes."""
    name = layer_path_name(path)
    if getattr(path[-1], "data_format", "channels_last") == "channels_first":
        raise ConfigError(f"layer '{name}' puts channels first; Grad-CAM here reads channels-last layers")
    map_axes, input_axes = len(activation_shape) - 1, x.ndim - 2
    if map_axes != input_axes:
        raise ConfigError(
            f"layer '{name}' has {map_axes} spatial axes but the input has {input_axes}; choose a "
            "layer whose output keeps the input's spatial axes"
        )
    if None in activation_shape:
        raise ConfigError(
            f"layer '{name}' outputs shape {list(activation_shape)}; Grad-CAM needs a model built for one input size"
        )


def _requested_classes(class_index: None | int | Sequence[int], count: int, num_classes: int) -> np.ndarray:
    """One class per example, -1 where the predicted class is explained (decided inside the gradient step)."""
    if class_index is None:
        return np.full(count, -1, dtype=np.int32)
    requested = np.asarray(class_index)
    if requested.ndim == 0:
        requested = np.full(count, int(requested))
    if requested.shape != (count,):
        raise ConfigError(
            f"class_index gives {requested.size} classes for {count} examples; give one class, or one per example"
        )
    outside = requested[(requested < 0) | (requested >= num_classes)]
    if outside.size:
        raise ConfigError(
            f"class_index {int(outside[0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return requested.astype(np.int32)


def _gradient_step(probe: Any, shift: gradcam_probe.ActivationShift) -> Callable:
    """A function (x, requested classes) → (activation, d score / d activation, model output, class explained),
    differentiated by the backend's own means; the rest of the module is backend-free."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def step(x: Any, requested: Any) -> tuple:
            with tf.GradientTape() as tape:
                tape.watch(shift.shift.value)
                activation, scores, output = probe(x, training=False)
                explained = _explained_classes(scores, requested)
                score = _summed_scores(scores, explained)
            return activation, tape.gradient(score, shift.shift.value), output, explained

        # One graph for every batch (they are all padded to one size): the eager tape costs as much again per batch.
        return tf.function(step, reduce_retracing=True)
    if backend == "jax":
        import jax

        variables = probe.non_trainable_variables
        position = next(index for index, variable in enumerate(variables) if variable is shift.shift)

        def summed_score(shift_value: Any, trainable: list, non_trainable: list, x: Any, requested: Any) -> tuple:
            non_trainable = [*non_trainable[:position], shift_value, *non_trainable[position + 1 :]]
            (activation, scores, output), _ = probe.stateless_call(trainable, non_trainable, x, training=False)
            explained = _explained_classes(scores, requested)
            return _summed_scores(scores, explained), (activation, output, explained)

        # The weights are arguments, not constants folded into the compiled program (a backbone's are large).
        gradient_of_score = jax.jit(jax.grad(summed_score, has_aux=True))
        trainable = [variable.value for variable in probe.trainable_variables]
        non_trainable = [variable.value for variable in variables]

        def step(x: Any, requested: Any) -> tuple:
            gradient, (activation, output, explained) = gradient_of_score(
                non_trainable[position], trainable, non_trainable, x, requested
            )
            return activation, gradient, output, explained

        return step
    raise ConfigError(
        f"Grad-CAM runs on the tensorflow and jax backends; this process uses {backend} "
        "(set KERAS_BACKEND=tensorflow or jax)"
    )


def _explained_classes(scores: Any, requested: Any) -> Any:
    requested = keras.ops.cast(requested, "int32")
    predicted = keras.ops.cast(keras.ops.argmax(scores, axis=-1), "int32")
    return keras.ops.where(requested >= 0, requested, predicted)


def _summed_scores(scores: Any, explained: Any) -> Any:
    """The explained class's score summed over the batch: each example's score depends on that example alone,
    so one gradient of the sum gives every example's own gradient."""
    one_hot = keras.ops.one_hot(explained, scores.shape[-1], dtype=scores.dtype)
    return keras.ops.sum(scores * one_hot)


def _class_activation_map(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """relu(Σ_c w_c A_c) with w_c the spatial mean of the gradient of channel c: (N, *spatial, C) → (N, *spatial)."""
    spatial_axes = tuple(range(1, activation.ndim - 1))
    channel_weights = gradient.mean(axis=spatial_axes, keepdims=True)
    return np.maximum((channel_weights * activation).sum(axis=-1), 0.0)


def _normalised(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum; a map with no positive evidence stays zero."""
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape([-1] + [1] * (maps.ndim - 1))
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
