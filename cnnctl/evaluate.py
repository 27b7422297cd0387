"""Judge a trained model on a held-out split with scikit-learn, and write the report files of the run.

`compute_metrics` is pure (labels and probabilities in, numbers out); `write_evaluation` writes metrics.json,
the classification reports, the confusion matrix and predictions.npz; `evaluate_run` rebuilds everything from
the run folder alone (config.yaml → same data splits, model.keras loaded in Keras' safe mode).
"""

from __future__ import annotations

import zipfile
from typing import Any, Optional, Sequence

import numpy as np

from cnnctl import runs
from cnnctl.errors import ConfigError, RunError, in_config_file
from cnnctl.runs import Run


def as_class_probabilities(y_prob: np.ndarray) -> np.ndarray:
    """A single sigmoid unit (N, 1) becomes two columns [P(class 0), P(class 1)]."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim == 2 and y_prob.shape[1] == 1:
        return np.hstack([1 - y_prob, y_prob])
    return y_prob


def compute_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str],
                    top_k: Sequence[int] = (1, 5)) -> dict[str, Any]:
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
    result["top_k_accuracy"] = {str(k): float(skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels))
                                for k in ks}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    result["roc_auc"] = roc_auc(y_true, y_prob, num_classes)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    result["per_class"] = {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                           for name, p, r, f, s in zip(class_names, precision, recall, f1, support)}
    result["num_examples"] = int(len(y_true))
    return result


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


def write_evaluation(run: Run, split: str, y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str],
                     top_k: Sequence[int], x: Optional[np.ndarray] = None, tta: str = "off") -> dict[str, Any]:
    """All of evaluate's files: metrics.json (with the diagnosis of the run's history), the classification
    reports, confusion_matrix.csv and predictions.npz. `tta` is recorded: flip-averaged numbers are not plain ones."""
    from sklearn.metrics import classification_report, confusion_matrix

    y_prob = as_class_probabilities(y_prob)
    metrics = {"split": split, "tta": tta, **compute_metrics(y_true, y_prob, class_names, top_k)}
    diagnosis = diagnose_run(run, y_true)
    if diagnosis is not None:
        metrics["diagnosis"] = diagnosis
    run.write_json(runs.METRICS, metrics)

    labels = np.arange(len(class_names))
    y_pred = y_prob.argmax(axis=1)
    report_args = dict(labels=labels, target_names=list(class_names), zero_division=0, digits=4)
    runs.write_text_atomic(run.file(runs.REPORT_TXT), classification_report(y_true, y_pred, **report_args))
    run.write_json(runs.REPORT_JSON, classification_report(y_true, y_pred, output_dict=True, **report_args))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    runs.write_csv_atomic(run.file(runs.CONFUSION_CSV), list(class_names), matrix.tolist())
    arrays = dict(y_true=y_true, y_prob=y_prob.astype(np.float32), split=np.array(split),
                  class_names=np.array(list(class_names)))
    if x is not None:
        wrong = most_confidently_wrong(y_true, y_prob, MISCLASSIFIED_SHOWN)
        arrays.update(wrong_index=wrong, wrong_x=x[wrong])
    with runs.atomic_path(run.file(runs.PREDICTIONS)) as temp:
        np.savez_compressed(temp, **arrays)
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


def diagnose_run(run: Run, y_true: np.ndarray) -> Optional[dict[str, Any]]:
    from cnnctl.diagnosis import diagnose, read_history_csv

    if not run.has(runs.HISTORY):
        return None
    history = read_history_csv(run.file(runs.HISTORY))
    if not history.get("loss"):
        return None
    return diagnose(history, baseline_accuracy=diagnosis_baseline(y_true))


def predict_probabilities(model: Any, dataset: Any, split: str, train_batch_size: int, tta: str = "off") -> np.ndarray:
    """The outputs of the model that `evaluate.tta` asks for (`scoring_model`) for every example of the split."""
    from cnnctl.runtime import inference_batch_size

    batches = dataset.pipeline(split, inference_batch_size(train_batch_size))
    return scoring_model(model, dataset.input_shape, tta).predict(batches, verbose=0)


def scoring_model(model: Any, input_shape: Sequence[int], tta: str) -> Any:
    """The trained model as it is, or for `tta: flip` a model around it whose output is the average of the
    trained model's outputs on each example and on its mirror image (one place for evaluate and predict)."""
    if tta != "flip":
        return model
    import keras

    axis = mirror_axis(input_shape)
    inputs = keras.Input(tuple(input_shape))
    mirrored = keras.ops.flip(inputs, axis=axis)
    return keras.Model(inputs, keras.layers.Average()([model(inputs), model(mirrored)]))


def mirror_axis(input_shape: Sequence[int]) -> int:
    """The batch axis `evaluate.tta: flip` reverses: the last spatial axis of channels-last examples (an image's
    or a volume's width, a signal's time)."""
    if len(input_shape) < 2:
        raise ConfigError(f"evaluate.tta: flip needs examples with a spatial and a channel axis (images, signals, "
                          f"volumes), not flat vectors of shape {list(input_shape)}; set evaluate.tta: off")
    return len(input_shape) - 1


def load_model(run: Run) -> Any:
    """model.keras in Keras' safe mode: a file that carries code (a Lambda layer) is refused."""
    from cnnctl import runtime

    runtime.import_tensorflow()  # before Keras, which would import TensorFlow with its start-up noise
    import keras

    run.require(runs.MODEL)
    path = run.file(runs.MODEL)
    if not zipfile.is_zipfile(path):  # else Keras answers "File not found" for a file that is there
        raise RunError(f"{path}: not a Keras model file (a .keras file is a zip archive); it is damaged or was "
                       "never finished; train the run again or resume it") from None
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise RunError(f"{path}: refused: the model contains code (a Lambda layer), which cnnctl never "
                           "loads; rebuild it from a config") from None
        raise RunError(f"{path}: cannot load the model ({text.splitlines()[0] if text else 'ValueError'})") from None
    except (OSError, EOFError, KeyError) as exc:
        raise RunError(f"{path}: cannot load the model ({type(exc).__name__}: {exc}); the file may be damaged") from None


def evaluate_run(run: Run, split: Optional[str] = None, model: Any = None) -> dict[str, Any]:
    """Recompute predictions and every report file from the run folder alone (`model`: the run's model.keras
    when the caller has loaded it already)."""
    from cnnctl.config import load_config
    from cnnctl.data import load_data

    run.require(runs.CONFIG, runs.MODEL)
    config = load_config(run.file(runs.CONFIG))
    model = model if model is not None else load_model(run)
    with in_config_file(str(run.file(runs.CONFIG))):  # e.g. the data moved since training
        dataset = load_data(config)
        if split is None:
            split = dataset.evaluation_split(config.evaluate.split)
    if split not in dataset.splits:
        raise RunError(f"--split {split}: this run has no {split} split (it has {', '.join(dataset.splits)})")
    y_prob = predict_probabilities(model, dataset, split, config.train.batch_size, config.evaluate.tta)
    data = dataset.splits[split]
    return write_evaluation(run, split, data.y, y_prob, dataset.class_names, config.evaluate.top_k, x=data.x,
                            tta=config.evaluate.tta)
