"""Evaluation: Grad-CAM's probe — the model rebuilt, sharing its layers and weights, with a zero variable (the shift)
added to the chosen layer's output, so that the gradient with respect to that variable is the gradient with respect
to the layer's output on TensorFlow and JAX alike, whatever the graph around it (skip connections, a nested
keras.applications backbone); and the class scores it differentiates, the output layer's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnctl import runtime

runtime.quiet_backend_import()  # before Keras, which would import TensorFlow with pages of start-up logs
import keras  # noqa: E402


def rebuild(model: Any, call: Callable) -> tuple[Any, Any]:
    """`model`'s graph on new inputs, every layer called through `call(layer, *args, **kwargs)`, sharing the
    model's layers and weights. Returns (inputs, output)."""
    if isinstance(model, keras.Sequential):
        # clone_model refuses a call_function for Sequential models; their layers simply run in order.
        inputs = keras.Input(tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return inputs, x
    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    return clone.inputs[0], clone.outputs[0]


class ActivationShift(keras.layers.Layer):
    """Adds a variable that stays zero to its input: the gradient with respect to the variable is the gradient with
    respect to the input, which the probe's callers cannot reach otherwise (it is computed inside the model)."""

    def __init__(self, shape: tuple, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="shift")

    def call(self, inputs: Any) -> Any:
        return keras.ops.add(inputs, self.shift)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def shifted(model: Any, path: tuple, shift: ActivationShift) -> tuple:
    """`model` rebuilt with `shift` applied to the output of the layer at `path`. Returns (inputs, activation,
    output, producers): `producers` maps each rebuilt tensor's id to (the layer that made it, that layer's input),
    which tells the top level what its output layer was called on."""
    head, rest = path[0], path[1:]
    inner = nested_probe(head, rest, shift) if rest else None
    activations, producers = [], {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer is not head:
            output = layer(*args, **kwargs)
        elif inner is not None:
            # The nested model runs as its own rebuilt graph, which hands out the activation inside it.
            activation, output = inner(args[0])
            activations.append(activation)
        else:
            activation = layer(*args, **kwargs)
            activations.append(activation)
            output = shift(activation)
        producers[id(output)] = (layer, args[0] if args else None)
        return output

    inputs, output = rebuild(model, call)
    return inputs, activations[0], output, producers


def nested_probe(model: Any, path: tuple, shift: ActivationShift) -> Any:
    """A nested model rebuilt as keras.Model(x) → [the activation at `path`, the nested model's output]."""
    inputs, activation, output, _ = shifted(model, path, shift)
    return keras.Model(inputs, [activation, output])


def probe(model: Any, path: tuple, shift: ActivationShift) -> Any:
    """keras.Model(x) → [the activation at `path`, class scores (N, K), the model's output], with `shift` added
    to the activation."""
    inputs, activation, output, producers = shifted(model, path, shift)
    output_layer, output_layer_input = producers.get(id(output), (None, None))
    return keras.Model(inputs, [activation, class_scores(output, output_layer, output_layer_input), output])


def class_scores(output: Any, output_layer: Any, output_layer_input: Any) -> Any:
    """The class scores Grad-CAM differentiates: the output layer's pre-activation (the logits).

    Selvaraju et al. use the score before the softmax, and so does this function on both backends: a confident
    softmax rounds to 1.0 in float32, where the gradient of the probability vanishes and that of its logarithm
    keeps only the other classes' tiny probabilities (evidence against them, not for the class explained). An
    output layer without a softmax or sigmoid is taken as giving scores already.
    """
    squashing = (keras.activations.softmax, keras.activations.sigmoid)
    if isinstance(output_layer, keras.layers.Softmax) or (
        isinstance(output_layer, keras.layers.Activation) and output_layer.activation in squashing
    ):
        scores = output_layer_input
    elif getattr(output_layer, "activation", None) in squashing:
        scores = without_activation(output_layer, output_layer_input)
    else:
        scores = output
    if scores.shape[-1] == 1:
        # A single sigmoid unit scores class 1 with z and class 0 with -z, since sigmoid(-z) = 1 - sigmoid(z).
        scores = keras.ops.concatenate([keras.ops.negative(scores), scores], axis=-1)
    return scores


def without_activation(layer: Any, layer_input: Any) -> Any:
    """A copy of `layer` with a linear activation and the layer's current weights, called on `layer_input`."""
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_logits"}
    copy = type(layer).from_config(config)
    scores = copy(layer_input)
    copy.set_weights(layer.get_weights())
    return scores
