"""Evaluation: `evaluate.calibrate: temperature` — one temperature fitted on the validation split, put
inside model.keras.

Temperature scaling (Guo et al., 2017) divides the logits by T before the softmax: argmaxes never change, and a T
above 1 softens an overconfident model. cnnctl folds T into the output layer itself: a softmax (or sigmoid) Dense
layer computes softmax(W·x + b), and softmax((W·x + b) / T) is the same layer with W / T and b / T. So model.keras
stays a plain Keras model that gives calibrated probabilities wherever it is loaded — `keras.saving.load_model`,
`cnnctl predict`, and every export — with nothing to remember at serving time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnctl.evaluation.calibration import apply_temperature, calibration_metrics, fit_temperature
from cnnctl.model.output_layer import temperature_layer


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
