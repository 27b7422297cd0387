"""Evaluation: multi-label scores — per-label decision thresholds and the metrics of indicator matrices.

A multi-label model gives each example K independent sigmoid probabilities; an example may carry any number of
the K labels. `y_true` is (N, K) of 0/1, `y_prob` (N, K) of probabilities. `choose_thresholds` picks one threshold
per label on validation examples, `predicted_labels` applies them, and `multilabel_metrics` scores the result with
scikit-learn's definitions (JSON-ready: plain floats, ints and None).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np

# Threshold of a label whose F1 cannot be tuned (no positive or no negative example): the sigmoid's midpoint.
DEFAULT_THRESHOLD = 0.5


def choose_thresholds(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Per label, the threshold t that maximises F1 of `y_prob >= t` on these examples; (K,) floats.

    A label whose `y_true` column is all 0 or all 1 gets DEFAULT_THRESHOLD: its F1 is 0 at every threshold, or
    1 at any low enough one, and a threshold tuned on one class says nothing about new examples. Among equal
    F1s the first (lowest) threshold wins.
    """
    from sklearn.metrics import precision_recall_curve

    y_true, y_prob = _check_pair(y_true, y_prob)
    thresholds = np.full(y_true.shape[1], DEFAULT_THRESHOLD)
    for label in range(y_true.shape[1]):
        positives = y_true[:, label]
        if positives.all() or not positives.any():
            continue
        precision, recall, candidates = precision_recall_curve(positives, y_prob[:, label])
        # The curve's last point (precision 1, recall 0) has no threshold: precision[i], recall[i] belong to
        # `score >= candidates[i]`, and every candidate is a score itself, so applying it reproduces that F1.
        precision, recall = precision[: len(candidates)], recall[: len(candidates)]
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
        thresholds[label] = candidates[int(np.argmax(f1))]
    return thresholds


def predicted_labels(y_prob: np.ndarray, thresholds: Union[float, Sequence[float], np.ndarray]) -> np.ndarray:
    """(N, K) 0/1 ints: label k is predicted where `y_prob[:, k] >= thresholds[k]` (a scalar applies to all)."""
    y_prob = _as_matrix(y_prob, "y_prob", dtype=float)
    return (y_prob >= _threshold_vector(thresholds, y_prob.shape[1])).astype(int)


def multilabel_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: Union[float, Sequence[float], np.ndarray],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Subset accuracy, Hamming loss, F1/precision/recall averages, mAP, ROC-AUC and per-label numbers, via sklearn.

    Labels are predicted with `predicted_labels(y_prob, thresholds)`. Averages use zero_division=0. The mean
    average precision counts only labels with a positive example, ROC-AUC only labels with both; either is None
    when no label qualifies.
    """
    from sklearn import metrics as skm

    y_true, y_prob = _check_pair(y_true, y_prob)
    examples, num_labels = y_true.shape
    names = [str(name) for name in class_names]
    if len(names) != num_labels:
        raise ValueError(f"class_names must name the {num_labels} labels of y_true. Received {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct (they key the per-label numbers). Received: {names}")
    if examples == 0:
        raise ValueError("multi-label metrics need at least one example. Received 0 rows")
    cutoffs = _threshold_vector(thresholds, num_labels)
    y_pred = (y_prob >= cutoffs).astype(int)

    result: dict[str, Any] = {
        "subset_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "hamming_loss": float(skm.hamming_loss(y_true, y_pred)),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        result[f"f1_{average}"] = float(skm.f1_score(y_true, y_pred, average=average, zero_division=0))
    for average in ("micro", "macro"):
        result[f"precision_{average}"] = float(skm.precision_score(y_true, y_pred, average=average, zero_division=0))
        result[f"recall_{average}"] = float(skm.recall_score(y_true, y_pred, average=average, zero_division=0))

    support = y_true.sum(axis=0)
    has_positive = support > 0
    # Average precision is undefined without a positive, ROC-AUC without a positive and a negative: such labels
    # are left out of the macro averages rather than counted as 0 (sklearn would warn and score them 0).
    average_precision: list[Optional[float]] = [
        float(skm.average_precision_score(y_true[:, k], y_prob[:, k])) if has_positive[k] else None
        for k in range(num_labels)
    ]
    scored = [value for value in average_precision if value is not None]
    result["mean_average_precision"] = float(np.mean(scored)) if scored else None
    both = has_positive & (support < examples)
    aucs = [float(skm.roc_auc_score(y_true[:, k], y_prob[:, k])) for k in np.flatnonzero(both)]
    result["roc_auc"] = float(np.mean(aucs)) if aucs else None
    result["label_cardinality"] = float(y_true.sum(axis=1).mean())
    result["thresholds"] = {name: float(cutoff) for name, cutoff in zip(names, cutoffs)}

    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    result["per_label"] = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "average_precision": average_precision[k],
            "threshold": float(cutoffs[k]),
        }
        for k, name in enumerate(names)
    }
    result["num_labels"] = int(num_labels)
    result["num_examples"] = int(examples)
    return result


def saved_thresholds(metrics: Any, class_names: Sequence[str]) -> list[float]:
    """A run's decision thresholds as its metrics.json keeps them, in class order: DEFAULT_THRESHOLD for a label it
    does not name (a run not evaluated yet) or a value that is not a probability (a hand-edited file)."""
    saved = metrics.get("thresholds") if isinstance(metrics, dict) else None
    saved = saved if isinstance(saved, dict) else {}
    chosen = []
    for name in class_names:
        value = saved.get(str(name), DEFAULT_THRESHOLD)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
        chosen.append(float(value) if ok else DEFAULT_THRESHOLD)
    return chosen


def label_sets(y_pred_row: Sequence[int], class_names: Sequence[str]) -> list[str]:
    """The names of the labels set in one row of a 0/1 prediction: [1, 0, 1] → ["cat", "sky"]."""
    row = np.asarray(y_pred_row).reshape(-1)
    if len(row) != len(class_names):
        raise ValueError(f"y_pred_row must hold one entry per class name ({len(class_names)}). Received {len(row)}")
    return [str(name) for name, present in zip(class_names, row) if present]


def _as_matrix(values, name: str, dtype=None) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 2:
        raise ValueError(f"{name} must be (N, K): one row per example, one column per label. Received: {array.shape}")
    return array


def _check_pair(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    """y_true as (N, K) ints of 0/1 and y_prob as (N, K) floats of the same shape, or a ValueError saying why."""
    y_true = _as_matrix(y_true, "y_true")
    y_prob = _as_matrix(y_prob, "y_prob", dtype=float)
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true and y_prob must have the same shape. Received {y_true.shape} and {y_prob.shape}")
    if not np.isin(y_true, (0, 1)).all():
        # A float array of 0.0/1.0 is fine; soft labels (0.7) or class indices (3) are a different problem.
        raise ValueError("y_true must hold 0/1 indicators only (one column per label)")
    return y_true.astype(int), y_prob


def _threshold_vector(thresholds, num_labels: int) -> np.ndarray:
    values = np.asarray(thresholds, dtype=float)
    if values.ndim > 1 or (values.ndim == 1 and len(values) != num_labels):
        raise ValueError(f"thresholds must be one number or one per label ({num_labels}). Received: {values.shape}")
    return np.broadcast_to(values, (num_labels,)).astype(float)
