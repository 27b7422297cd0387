"""Evaluation: `evaluate.calibrate: temperature` — one temperature fitted on the validation split, put
inside model.keras.

Temperature scaling (Guo et al., 2017) divides the logits by T before the softmax: argmaxes never change, and a T
above 1 softens an overconfident model. cnnctl folds T into the output layer itself: a softmax (or sigmoid) Dense
layer computes softmax(W·x + b), and softmax((W·x + b) / T) is the same layer with W / T and b / T. So model.keras
stays a plain Keras model that gives calibrated probabilities wherever it is loaded — `keras.saving.load_model`,
`cnnctl predict`, and every export — with nothing to remember at serving time.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from cnnctl.errors import ConfigError
from cnnctl.evaluation.calibration import apply_temperature, calibration_metrics, fit_temperature

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


def calibrate_model(model: Any, y_val: np.ndarray, p_val: np.ndarray) -> dict[str, Any]:
    """Fit T on the validation split's labels and probabilities, fold it into the model's output layer, and
    return what metrics.json records: {"value", "fitted_on": "val", "val_before": {ece, nll}, "val_after": ...}."""
    layer = temperature_layer(model)
    temperature = fit_temperature(y_val, p_val)
    weights = layer.get_weights()
    layer.set_weights(
        [weights[0] / temperature, *([weights[1] / temperature] if len(weights) > 1 else []), *weights[2:]]
    )
    return {
        "value": float(temperature),
        "fitted_on": "val",
        "val_before": _ece_nll(y_val, p_val),
        "val_after": _ece_nll(y_val, apply_temperature(p_val, temperature)),
    }


def with_split_effect(
    record: dict[str, Any], y_true: np.ndarray, before: np.ndarray, after: np.ndarray
) -> dict[str, Any]:
    """The record with ECE and NLL of the evaluated split's probabilities before and after the temperature."""
    return {**record, "before": _ece_nll(y_true, before), "after": _ece_nll(y_true, after)}


def carried_over(record: dict[str, Any], y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, Any]:
    """A run's temperature record, re-evaluated on the split scored now (`cnnctl evaluate`): model.keras carries
    the temperature, so `y_prob` is calibrated; the probabilities before it are softmax(log p × T), exact for a
    model alone (test-time flips average two calibrated outputs, so there it is close, not exact)."""
    kept = {key: record[key] for key in ("value", "fitted_on", "val_before", "val_after") if key in record}
    value = float(kept.get("value") or 1.0)
    return with_split_effect(kept, y_true, apply_temperature(y_prob, 1.0 / value), y_prob)


def _ece_nll(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    numbers = calibration_metrics(y_true, y_prob)
    return {"ece": numbers["ece"], "nll": numbers["nll"]}


def _has_kernel(layer: Any) -> bool:
    return getattr(layer, "kernel", None) is not None


def _activation_name(layer: Any) -> Optional[str]:
    """The name of a layer's activation: `activation=` of Dense/Conv, or the function of Activation/Softmax."""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None
