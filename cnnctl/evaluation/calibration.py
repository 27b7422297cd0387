"""Evaluation: how far the model's confidence can be trusted: calibration errors, the Brier score, the
negative log-likelihood, accuracy against coverage, and temperature scaling.

Pure functions of labels and probabilities (numpy, scikit-learn, scipy), like metrics.py: a single sigmoid column
(N, 1) is read as the two classes it stands for.

Example:

    calibration_metrics(y_true, y_prob)["ece"]          # 0.031: confidence is 3.1 points off accuracy on average
    coverage_sentence(coverage_curve(y_true, y_prob))   # 'At 99 % accuracy the model answers 82 % of the test set ...'
    temperature = fit_temperature(y_val, p_val)         # fitted on validation predictions, then
    apply_temperature(p_test, temperature)              # applied to the test set's
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnctl.errors import ConfigError, DataError

# The bounds of the temperature search: beyond them a model is no longer miscalibrated but broken.
TEMPERATURE_BOUNDS = (0.05, 20.0)
# How far a row of probabilities may sum from 1: the rounding of a float16 softmax, with room to spare.
ROW_SUM_TOLERANCE = 1e-3
# The smallest probability a float32 softmax gives without underflow; an exact 0 would make log p infinite.
SMALLEST_PROBABILITY = float(np.finfo(np.float32).tiny)


def as_class_probabilities(y_prob: Any) -> np.ndarray:
    """A single sigmoid unit (N, 1) becomes two columns [P(class 0), P(class 1)]."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim == 2 and y_prob.shape[1] == 1:
        return np.hstack([1 - y_prob, y_prob])
    return y_prob


def calibration_metrics(y_true: Any, y_prob: Any, bins: int = 15) -> dict[str, Any]:
    """Calibration of the top-1 probability (Guo et al., 2017) and two proper scores.

    - `ece`: expected calibration error: examples binned by their top probability into `bins` equal-width
      intervals (lower, upper]; Σ over bins of (bin's share of examples) × |accuracy − mean confidence|.
    - `mce`: maximum calibration error: the largest |accuracy − mean confidence| of a non-empty bin.
    - `brier`: mean over examples of Σ over classes of (probability − one-hot label)², not divided by the number
      of classes (0 is perfect, 2 the worst); halved for two classes, where it is the familiar binary Brier score.
      This is scikit-learn's `brier_score_loss` with its default `scale_by_half="auto"` (1.7 and later).
    - `nll`: mean negative log-likelihood of the true class (scikit-learn's `log_loss`).
    - `bins`: every bin as {lower, upper, count, accuracy, confidence}, accuracy and confidence None when empty:
      the points of a reliability diagram.

    Args:
        y_true: (N,) class indices.
        y_prob: (N, K) class probabilities, or (N, 1) for a single sigmoid unit.
        bins: the number of equal-width confidence bins. Defaults to 15, as in Guo et al.
    """
    from sklearn.metrics import log_loss

    if bins < 1:
        raise ConfigError(f"bins must be at least 1; given {bins}")
    y_true, y_prob = _checked(y_true, y_prob)
    num_classes = y_prob.shape[1]
    confidence = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin m holds confidences in (edges[m], edges[m + 1]]; a confidence of exactly 0 joins the first bin.
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table, gaps = [], []
    for index in range(bins):
        members = bin_of == index
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else None
        mean_confidence = float(confidence[members].mean()) if count else None
        if count:
            gaps.append((count, abs(accuracy - mean_confidence)))
        table.append(
            {
                "lower": float(edges[index]),
                "upper": float(edges[index + 1]),
                "count": count,
                "accuracy": accuracy,
                "confidence": mean_confidence,
            }
        )
    one_hot = np.eye(num_classes)[y_true]
    brier = float(((y_prob - one_hot) ** 2).sum(axis=1).mean())
    return {
        "ece": float(sum(count * gap for count, gap in gaps) / len(y_true)),
        "mce": float(max(gap for _, gap in gaps)),
        "brier": brier / 2 if num_classes == 2 else brier,
        # Rows of a float32 softmax sum to 1 only within float32 rounding, which log_loss checks at float64
        # precision and warns about.
        "nll": float(log_loss(y_true, y_prob / y_prob.sum(axis=1, keepdims=True), labels=np.arange(num_classes))),
        "bins": table,
    }


def coverage_curve(y_true: Any, y_prob: Any, points: int = 100) -> dict[str, list[float]]:
    """Accuracy against coverage: the model answers only when its top probability reaches a threshold, and the
    curve says, for each threshold, which share of the examples it answers and how many of those it gets right.

    Examples with the same confidence are answered or not together, so every point is a threshold that can be
    used as it is. Points run from the highest threshold (fewest answers) to answering everything.

    Args:
        y_true: (N,) class indices.
        y_prob: (N, K) class probabilities, or (N, 1) for a single sigmoid unit.
        points: about how many points to keep, spread evenly over coverage. Defaults to 100.

    Returns:
        {"coverage": shares answered, rising to 1; "accuracy": accuracy on the answered examples;
        "threshold": the lowest confidence answered, falling}.
    """
    if points < 1:
        raise ConfigError(f"points must be at least 1; given {points}")
    y_true, y_prob = _checked(y_true, y_prob)
    order = np.argsort(-y_prob.max(axis=1), kind="stable")
    confidence = y_prob.max(axis=1)[order]
    correct = (y_prob.argmax(axis=1) == y_true)[order]
    answered = np.arange(1, len(order) + 1)
    # A threshold can stop only after the last of the examples that share its confidence.
    group_ends = np.flatnonzero(np.append(confidence[1:] != confidence[:-1], True))
    # The tolerance keeps a wanted 7.000000000000001 examples (0.07 × 100) at 7.
    wanted = np.linspace(1 / points, 1.0, points) * len(order)
    kept = np.unique(group_ends[np.searchsorted(answered[group_ends], wanted - 1e-9)])
    accuracy = np.cumsum(correct)[kept] / answered[kept]
    return {
        "coverage": (answered[kept] / len(order)).tolist(),
        "accuracy": accuracy.tolist(),
        "threshold": confidence[kept].tolist(),
    }


def coverage_sentence(
    curve: dict[str, list[float]], target_accuracy: float = 0.99, examples: str = "the test set"
) -> str:
    """One plain sentence: how much of the data the model answers at the target accuracy, and from which
    confidence; or, when it never gets there, the best accuracy it reaches and at what coverage.

    Args:
        curve: the output of `coverage_curve`.
        target_accuracy: the accuracy asked for, in (0, 1]. Defaults to 0.99.
        examples: what the curve was computed on, as the sentence names it. Defaults to "the test set".
    """
    if not 0 < target_accuracy <= 1:
        raise ConfigError(f"target_accuracy must be in (0, 1]; given {target_accuracy}")
    reached = [index for index, accuracy in enumerate(curve["accuracy"]) if accuracy >= target_accuracy]
    if reached:
        index = reached[-1]  # the widest coverage that keeps the target
        return (
            f"At {100 * target_accuracy:g} % accuracy the model answers {_percent(curve['coverage'][index])} "
            f"of {examples} (those with confidence ≥ {curve['threshold'][index]:.3g})."
        )
    best = int(np.argmax(curve["accuracy"]))
    return (
        f"The model never reaches {100 * target_accuracy:g} % accuracy on {examples}: at best "
        f"{_percent(curve['accuracy'][best])}, answering {_percent(curve['coverage'][best])} of it "
        f"(confidence ≥ {curve['threshold'][best]:.3g})."
    )


def fit_temperature(y_true: Any, y_prob: Any) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(log p / T) (Guo et al., 2017).

    T > 1 softens an overconfident model, T < 1 sharpens an underconfident one; dividing every log-probability
    by the same T never changes which class is predicted. Fit it on validation predictions, not the test set's.

    Args:
        y_true: (N,) class indices.
        y_prob: (N, K) class probabilities, or (N, 1) for a single sigmoid unit.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    y_true, y_prob = _checked(y_true, y_prob)
    log_prob = np.log(np.clip(y_prob, SMALLEST_PROBABILITY, 1.0))
    rows = np.arange(len(y_true))

    def nll(log_temperature: float) -> float:
        return float(-log_softmax(log_prob / math.exp(log_temperature), axis=1)[rows, y_true].mean())

    # Searched on log T: a temperature of 0.5 is as far from 1 as one of 2.
    result = minimize_scalar(nll, bounds=tuple(math.log(bound) for bound in TEMPERATURE_BOUNDS), method="bounded")
    return float(math.exp(result.x))


def apply_temperature(y_prob: Any, temperature: float) -> np.ndarray:
    """softmax(log p / temperature): the probabilities scaled by a temperature from `fit_temperature`, in the
    shape given ((N, 1) for a single sigmoid unit stays (N, 1)).

    Args:
        y_prob: (N, K) class probabilities, or (N, 1) for a single sigmoid unit.
        temperature: a positive temperature; 1 leaves the probabilities as they are.
    """
    from scipy.special import softmax

    if not temperature > 0:
        raise ConfigError(f"temperature must be positive; given {temperature}")
    given = np.asarray(y_prob, dtype=np.float64)
    y_prob = _checked_probabilities(given)
    scaled = softmax(np.log(np.clip(y_prob, SMALLEST_PROBABILITY, 1.0)) / temperature, axis=1)
    return scaled[:, 1:] if given.ndim == 2 and given.shape[1] == 1 else scaled


def _percent(share: float) -> str:
    """A share as a whole percentage, with one decimal where rounding would claim 0 % or 100 % that isn't."""
    text = f"{100 * share:.0f}"
    if text in ("0", "100") and 0 < share < 1:
        text = f"{100 * share:.1f}"
    return f"{text} %"


def _checked(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as integers and probabilities as (N, K) float64, or a DataError saying what does not fit."""
    y_prob = _checked_probabilities(y_prob)
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) != len(y_prob):
        raise DataError(
            f"y_true must hold one class index per row of y_prob ({len(y_prob)}); given shape {list(y_true.shape)}"
        )
    num_classes = y_prob.shape[1]
    # Labels read from a CSV or an npz of floats are whole numbers stored as floats.
    whole = np.issubdtype(y_true.dtype, np.number) and np.array_equal(y_true, np.round(y_true))
    if not whole or y_true.min() < 0 or y_true.max() >= num_classes:
        raise DataError(f"y_true must hold class indices 0..{num_classes - 1} for y_prob's {num_classes} columns")
    return y_true.astype(np.int64), y_prob


def _checked_probabilities(y_prob: Any) -> np.ndarray:
    """Probabilities as (N, K) float64, or a DataError saying what does not fit."""
    y_prob = as_class_probabilities(np.asarray(y_prob, dtype=np.float64))
    if y_prob.ndim != 2 or len(y_prob) == 0:
        raise DataError(
            f"y_prob must be (N, K) probabilities of at least one example; given shape {list(y_prob.shape)}"
        )
    sums = y_prob.sum(axis=1)
    negative = np.flatnonzero(y_prob.min(axis=1) < 0)
    if negative.size:
        problem = f"row {negative[0]} holds {y_prob[negative[0]].min():.6g}"
    elif np.abs(sums - 1).max() > ROW_SUM_TOLERANCE:
        worst = int(np.abs(sums - 1).argmax())
        problem = f"row {worst} sums to {sums[worst]:.6g}"
    else:
        return y_prob
    raise DataError(
        f"y_prob must hold probabilities, each row summing to 1; {problem} (are these logits? apply a softmax first)"
    )
