"""Evaluation: labels and probabilities → metrics with scikit-learn, and the report files of the run.

`compute_metrics` is pure (labels and probabilities in, numbers out); `write_evaluation` writes metrics.json
(with the diagnosis of history.csv), the classification reports, the confusion matrix and predictions.npz.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import yaml

from cnnctl.errors import DataError
from cnnctl.evaluation.backbone_advice import Backbone
from cnnctl.evaluation.calibration import (
    as_class_probabilities,
    calibration_metrics,
    coverage_curve,
    coverage_sentence,
)
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path, write_csv_atomic, write_text_atomic
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runs.history import read_history_csv


def compute_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str], top_k: Sequence[int] = (1, 5)
) -> dict[str, Any]:
    """Accuracy, top-k, macro/weighted precision-recall-F1, ROC-AUC and per-class numbers, via sklearn."""
    from sklearn import metrics as skm

    num_classes = len(class_names)
    labels = np.arange(num_classes)
    y_prob = as_class_probabilities(y_prob)
    y_pred = y_prob.argmax(axis=1)
    result: dict[str, Any] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    ks = sorted({k for k in top_k if k < num_classes})
    # sklearn wants the positive class's score alone for two classes (and refuses the two columns).
    scores = y_prob[:, 1] if num_classes == 2 else y_prob
    result["top_k_accuracy"] = {str(k): float(skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels)) for k in ks}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    result["roc_auc"] = roc_auc(y_true, y_prob, num_classes)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    result["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }
    result["num_examples"] = int(len(y_true))
    return result


def confidence_metrics(y_true: np.ndarray, y_prob: np.ndarray, split: str) -> dict[str, Any]:
    """metrics.json's `calibration` (ECE, MCE, Brier, NLL and the reliability bins) and `coverage` (accuracy
    against the share answered, and its sentence). Outputs that are not probabilities (a model ending in logits)
    have neither: `calibration_note` says why, and the rest of the evaluation stands."""
    try:
        calibration = calibration_metrics(y_true, y_prob)
        curve = coverage_curve(y_true, y_prob)
    except DataError as exc:
        return {"calibration": None, "coverage": None, "calibration_note": str(exc)}
    return {
        "calibration": calibration,
        "coverage": {**curve, "sentence": coverage_sentence(curve, examples=f"the {split} split")},
    }


def roc_auc(y_true: np.ndarray, y_prob: np.ndarray, num_classes: int) -> Optional[float]:
    """Binary: AUC of the positive class; multi-class: one-vs-rest macro average. None when undefined
    (a class missing from y_true)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < num_classes:
        return None
    if num_classes == 2:
        return float(roc_auc_score(y_true, y_prob[:, 1]))
    return float(roc_auc_score(y_true, y_prob, multi_class="ovr", average="macro", labels=np.arange(num_classes)))


MISCLASSIFIED_SHOWN = 24  # examples kept in predictions.npz for misclassified.png


def write_evaluation(
    run: Run,
    split: str,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    class_names: Sequence[str],
    top_k: Sequence[int],
    x: Optional[np.ndarray] = None,
    tta: str = "off",
    extra: Optional[dict[str, Any]] = None,
    thresholds: Optional[np.ndarray] = None,
) -> dict[str, Any]:
    """All of evaluate's files: metrics.json (with the diagnosis of the run's history), the classification
    reports, confusion_matrix.csv and predictions.npz. `tta` is recorded: flip-averaged numbers are not plain ones.
    `extra` joins metrics.json (a temperature's record, the other splits kept beside the headline). Multi-label
    `y_true` (N, K) is scored at `thresholds` (one per label; write_multi_label_evaluation)."""
    from sklearn.metrics import classification_report, confusion_matrix

    if y_true.ndim == 2:
        return write_multi_label_evaluation(run, split, y_true, y_prob, class_names, thresholds, tta, extra)
    y_prob = as_class_probabilities(y_prob)
    metrics = {"split": split, "tta": tta, **compute_metrics(y_true, y_prob, class_names, top_k)}
    metrics.update(confidence_metrics(y_true, y_prob, split))
    diagnosis = diagnose_run(run, y_true, accuracy=metrics["accuracy"], split=split, num_classes=len(class_names))
    if diagnosis is not None:
        metrics["diagnosis"] = diagnosis
    metrics.update(extra or {})
    run.write_json(contract.METRICS, metrics)

    labels = np.arange(len(class_names))
    y_pred = y_prob.argmax(axis=1)
    report_args = dict(labels=labels, target_names=list(class_names), zero_division=0, digits=4)
    write_text_atomic(run.file(contract.REPORT_TXT), classification_report(y_true, y_pred, **report_args))
    run.write_json(contract.REPORT_JSON, classification_report(y_true, y_pred, output_dict=True, **report_args))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    write_csv_atomic(run.file(contract.CONFUSION_CSV), list(class_names), matrix.tolist())
    arrays = dict(
        y_true=y_true, y_prob=y_prob.astype(np.float32), split=np.array(split), class_names=np.array(list(class_names))
    )
    if x is not None:
        wrong = most_confidently_wrong(y_true, y_prob, MISCLASSIFIED_SHOWN)
        arrays.update(wrong_index=wrong, wrong_x=x[wrong])
    with atomic_path(run.file(contract.PREDICTIONS)) as temp:
        np.savez_compressed(temp, **arrays)
    return metrics


# What needs one label per example, named in a multi-label run's metrics.json rather than computed wrongly.
NOT_FOR_MULTI_LABEL = (
    "top-k accuracy, the confusion matrix, calibration and coverage need one label per example: for multi-label "
    "data see per_label, the per-label 2x2 confusion grid (label_confusion.png) and the precision-recall curves"
)


def write_multi_label_evaluation(
    run: Run,
    split: str,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    class_names: Sequence[str],
    thresholds: Optional[np.ndarray],
    tta: str = "off",
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """A multi-label evaluation's files: metrics.json (cnnctl/evaluation/multilabel.py's numbers at the decision
    thresholds, the diagnosis), the classification reports per label, and predictions.npz with the labels predicted;
    confusion_matrix.csv, which needs one label per example, is removed if an older evaluation left one."""
    from sklearn.metrics import classification_report

    from cnnctl.evaluation.multilabel import DEFAULT_THRESHOLD, multilabel_metrics, predicted_labels

    cutoffs = np.full(len(class_names), DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds)
    metrics = {
        "split": split,
        "tta": tta,
        "multi_label": True,
        **multilabel_metrics(y_true, y_prob, cutoffs, class_names),
        "does_not_apply": NOT_FOR_MULTI_LABEL,
    }
    diagnosis = diagnose_run(run, None, split=split)
    if diagnosis is not None:
        metrics["diagnosis"] = diagnosis
    metrics.update(extra or {})
    run.write_json(contract.METRICS, metrics)
    y_pred = predicted_labels(y_prob, cutoffs)
    report_args = dict(target_names=list(class_names), zero_division=0, digits=4)
    write_text_atomic(run.file(contract.REPORT_TXT), classification_report(y_true, y_pred, **report_args))
    run.write_json(contract.REPORT_JSON, classification_report(y_true, y_pred, output_dict=True, **report_args))
    run.file(contract.CONFUSION_CSV).unlink(missing_ok=True)
    with atomic_path(run.file(contract.PREDICTIONS)) as temp:
        np.savez_compressed(
            temp,
            y_true=y_true.astype(np.uint8),
            y_prob=y_prob.astype(np.float32),
            y_pred=y_pred.astype(np.uint8),
            thresholds=cutoffs.astype(np.float32),
            split=np.array(split),
            class_names=np.array(list(class_names)),
        )
    return metrics


def most_confidently_wrong(y_true: np.ndarray, y_prob: np.ndarray, count: int) -> np.ndarray:
    """Indices of wrong predictions, most confident first, so `plot` can redraw them without the data."""
    predicted = y_prob.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    order = np.argsort(-y_prob[wrong, predicted[wrong]], kind="stable")
    return wrong[order[:count]]


def diagnosis_baseline(y_true: np.ndarray) -> float:
    """Accuracy of always answering the most common class: what a model must beat to have learned anything."""
    return float(np.bincount(y_true).max() / len(y_true))


def diagnose_run(
    run: Run,
    y_true: Optional[np.ndarray],
    accuracy: Optional[float] = None,
    split: Optional[str] = None,
    num_classes: Optional[int] = None,
) -> Optional[dict[str, Any]]:
    from cnnctl.evaluation.diagnosis import diagnose

    if not run.has(contract.HISTORY):
        return None
    history = read_history_csv(run.file(contract.HISTORY))
    if not history.get("loss"):
        return None
    return diagnose(
        history,
        baseline_accuracy=None if y_true is None else diagnosis_baseline(y_true),
        accuracy=accuracy,
        split=split,
        num_classes=num_classes,
        **_run_facts(run),
    )


def _run_facts(run: Run) -> dict[str, Any]:
    """What the diagnosis needs to know of the run beyond its history: training set size, backbone, mixed labels."""
    facts: dict[str, Any] = {}
    try:
        if run.has(contract.DATA):
            facts["train_examples"] = int(run.read_json(contract.DATA)["sizes"]["train"])
        if run.has(contract.CONFIG):
            saved = yaml.safe_load(readable_file(run.file(contract.CONFIG)).read_text(encoding="utf-8")) or {}
            facts["backbone"] = Backbone.from_config(saved)
            facts["mixed_labels"] = bool((saved.get("data") or {}).get("mix"))
    except Exception:  # noqa: BLE001 - an odd or older run folder only loses the transfer advice
        return {}
    return facts
