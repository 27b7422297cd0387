"""Reporting, step 6b: draw every figure of a run from the run's files alone (history.csv, predictions.npz, model.keras).

plots.py turns arrays into figures; this module only knows which file feeds which figure.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnctl.errors import RunError, first_line
from cnnctl.reporting import plots
from cnnctl.runs import contract
from cnnctl.runs.folder import Run


def draw_run_figures(run: Run, model: Any = None) -> list[Path]:
    """Every figure the run's files allow; returns the paths written. Pass the run's `model` when it is already
    in memory, so model.keras is not loaded a second time."""
    written = []
    if run.has(contract.HISTORY):
        written += draw_history_figures(run)
    if run.has(contract.PREDICTIONS):
        written += draw_prediction_figures(run)
    if run.has(contract.MODEL):
        path = draw_filters(run, model)
        if path:
            written.append(path)
    return written


def draw_history_figures(run: Run) -> list[Path]:
    from cnnctl.evaluation.diagnosis import read_history_csv

    history = read_history_csv(run.file(contract.HISTORY))
    if not history.get("loss"):
        return []
    monitor = "val_loss" if history.get("val_loss") else "loss"
    best = plots.find_best_epoch(history, monitor)
    diagnosis = _diagnosis(run)
    written = [plots.save_figure(plots.loss_curve(history, best, diagnosis), run.file(contract.LOSS_CURVE))]
    metric = next((key for key in ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")
                   if key in history), None)
    if metric:
        written.append(plots.save_figure(plots.metric_curve(history, metric, best), run.file(contract.ACCURACY_CURVE)))
    return written


def _diagnosis(run: Run) -> Optional[dict[str, Any]]:
    if not run.has(contract.METRICS):
        return None
    return run.read_json(contract.METRICS).get("diagnosis")


PREDICTION_ARRAYS = ("y_true", "y_prob", "class_names")  # what every predictions.npz holds; wrong_* are optional


def read_predictions(run: Run) -> dict[str, Any]:
    """predictions.npz as arrays. Never unpickled: a file holding pickled data or object arrays, not a zip
    archive, or missing an array is one RunError line."""
    path = run.file(contract.PREDICTIONS)
    try:
        with np.load(path, allow_pickle=False) as archive:
            predictions = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"{path}: not the predictions cnnctl saves ({first_line(exc)}); rewrite it with: "
                       f"cnnctl evaluate {run.path}") from None
    missing = [name for name in PREDICTION_ARRAYS if name not in predictions]
    if missing:
        raise RunError(f"{path}: has no {', '.join(missing)} (it holds {', '.join(predictions) or 'nothing'}); "
                       f"rewrite it with: cnnctl evaluate {run.path}")
    return predictions


def draw_prediction_figures(run: Run) -> list[Path]:
    from sklearn.metrics import confusion_matrix

    predictions = read_predictions(run)
    y_true, y_prob = predictions["y_true"], predictions["y_prob"]
    class_names = [str(name) for name in predictions["class_names"]]
    matrix = confusion_matrix(y_true, y_prob.argmax(axis=1), labels=np.arange(len(class_names)))
    written = [
        plots.save_figure(plots.confusion_matrix_figure(matrix, class_names, normalized=False),
                          run.file(contract.CONFUSION_PNG)),
        plots.save_figure(plots.confusion_matrix_figure(matrix, class_names, normalized=True),
                          run.file(contract.CONFUSION_NORMALIZED_PNG)),
        plots.save_figure(plots.roc_figure(y_true, y_prob, class_names), run.file(contract.ROC_CURVE)),
        plots.save_figure(plots.pr_figure(y_true, y_prob, class_names), run.file(contract.PR_CURVE)),
    ]
    if "wrong_x" in predictions:
        written.append(plots.save_figure(misclassified_figure(predictions, class_names),
                                         run.file(contract.MISCLASSIFIED)))
    return written


def misclassified_figure(predictions: dict[str, Any], class_names: list[str]):
    index = predictions["wrong_index"]
    y_true = predictions["y_true"][index]
    y_prob = predictions["y_prob"][index]
    titles = [f"true: {class_names[t]}\npred: {class_names[p.argmax()]} ({p.max():.2f})"
              for t, p in zip(y_true, y_prob)]
    return plots.example_grid(predictions["wrong_x"], titles, colors=["tab:red"] * len(titles),
                              title=f"Most confidently wrong ({len(titles)} of "
                                    f"{int((predictions['y_prob'].argmax(1) != predictions['y_true']).sum())} errors)")


def draw_filters(run: Run, model: Any = None) -> Optional[Path]:
    """filters.png: the learned kernels of the first convolution (needs the model, so TensorFlow)."""
    if model is None:
        from cnnctl.evaluation.scoring import load_model

        model = load_model(run)
    conv = next((layer for layer in model.layers if "Conv" in type(layer).__name__
                 and getattr(layer, "kernel", None) is not None), None)
    if conv is None:
        return None
    kernel = np.asarray(conv.kernel.numpy() if hasattr(conv.kernel, "numpy") else conv.kernel)
    if kernel.ndim not in (3, 4):
        return None
    return plots.save_figure(plots.filters_figure(kernel), run.file(contract.FILTERS))
