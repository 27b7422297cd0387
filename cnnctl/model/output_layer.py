"""Model: the output layer as evaluation needs it — which layer's weights can carry a temperature
(`evaluate.calibrate: temperature`), and a sigmoid per label for multi-label data — checked before training, so a
model that cannot give what evaluation reads is refused first.
"""

from __future__ import annotations

from typing import Any, Optional

from cnnctl.errors import ConfigError

PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


def temperature_layer(model: Any) -> Any:
    """The layer whose weights carry the temperature: the output layer when it has a kernel and ends in softmax
    or sigmoid, or the linear layer with a kernel right before an output Softmax / Activation("softmax") layer.
    Raises ConfigError naming what the model ends with otherwise."""
    output = model.layers[-1]
    if _has_kernel(output) and _activation_name(output) in PROBABILITY_ACTIVATIONS:
        return output
    if _activation_name(output) in PROBABILITY_ACTIVATIONS and not _has_kernel(output) and len(model.layers) > 1:
        before = model.layers[-2]
        if _has_kernel(before) and _activation_name(before) in ("linear", None):
            return before
    raise ConfigError(
        f"evaluate.calibrate: temperature scales the logits of the output layer, so the model must "
        f"end in a Dense layer with activation softmax (or sigmoid); it ends in {type(output).__name__}"
        f" ({_activation_name(output) or 'no activation'})"
    )


def _has_kernel(layer: Any) -> bool:
    return getattr(layer, "kernel", None) is not None


def _activation_name(layer: Any) -> Optional[str]:
    """The name of a layer's activation: `activation=` of Dense/Conv, or the function of Activation/Softmax."""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def check_multi_label_output(model: Any, where: str, num_labels: int) -> None:
    """Multi-label data needs one independent probability per label: K outputs ending in a sigmoid. A softmax makes
    the labels compete (they sum to 1), so two labels present can never both be likely. Raises ConfigError."""
    output = model.layers[-1]
    units = model.output_shape[-1]
    activation = _activation_name(output)
    if activation != "sigmoid":
        why = (
            "softmax makes the labels compete (their probabilities sum to 1)"
            if activation == "softmax"
            else "binary cross-entropy needs a probability per label"
        )
        raise ConfigError(
            f"{where}: activation {activation or 'linear'} does not fit data.multi_label: {why}; set activation: "
            "sigmoid (one independent probability per label)"
        )
    if units != num_labels:
        raise ConfigError(
            f"{where}: gives {units} outputs but the data has {num_labels} labels; set units: {num_labels}"
        )
