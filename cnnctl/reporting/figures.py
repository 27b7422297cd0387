"""Reporting: draw every figure of a run from the run's files alone (history.csv, predictions.npz, model.keras).

plots.py turns arrays into figures; this module only knows which file feeds which figure.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnctl.data.limits import check_npz
from cnnctl.errors import CnnctlError, DataError, RunError, first_line
from cnnctl.reporting import curves, grids, plots, scores, trust_plots
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runs.history import read_history_csv
from cnnctl.runs.model_file import load_model
from cnnctl.runtime import memory_bytes


def draw_run_figures(run: Run, model: Any = None) -> list[Path]:
    """Every figure the run's files allow, and the files drawn from the model (see draw_model_figures); returns
    the paths written. Pass the run's `model` when it is already in memory, so model.keras is not loaded a
    second time."""
    written = []
    if run.has(contract.HISTORY):
        written += draw_history_figures(run)
    if run.has(contract.PREDICTIONS):
        written += draw_prediction_figures(run)
    if run.has(contract.MODEL):
        written += draw_model_figures(run, model)
    return written


def draw_model_figures(run: Run, model: Any = None) -> list[Path]:
    """filters.png and layers.json (the layer table report.html shows) come from model.keras.

    With the model in memory they are written from it, with filters.npz (the kernel filters.png shows). Without
    it, filters.png is redrawn from filters.npz when filters.npz and layers.json were written from this very
    model.keras (its SHA-256 is recorded in both): `cnnctl plot` then needs no TensorFlow. Otherwise (a model
    replaced by hand, a run from an older cnnctl) the model is loaded.
    """
    digest = _sha256(run.file(contract.MODEL))
    if model is None:
        current, kernel = _saved_kernel(run, digest)
        if current:
            return (
                [plots.save_figure(grids.filters_figure(kernel), run.file(contract.FILTERS))]
                if kernel is not None
                else []
            )

        model = load_model(run)
    kernel = first_convolution_kernel(model)
    arrays = {"model_sha256": np.array(digest)}
    if kernel is not None:
        arrays["kernel"] = kernel
    written = [_write_npz(run.file(contract.FILTER_WEIGHTS), arrays), write_layer_table(run, model, digest)]
    if kernel is not None:
        written.insert(0, plots.save_figure(grids.filters_figure(kernel), run.file(contract.FILTERS)))
    return written


def first_convolution_kernel(model: Any) -> Optional[np.ndarray]:
    """The kernel of the model's first convolution (Conv1D/2D/3D, transposed or not), or None."""
    conv = next(
        (
            layer
            for layer in model.layers
            if "Conv" in type(layer).__name__ and getattr(layer, "kernel", None) is not None
        ),
        None,
    )
    if conv is None:
        return None
    kernel = np.asarray(conv.kernel.numpy() if hasattr(conv.kernel, "numpy") else conv.kernel, dtype=np.float32)
    return kernel if kernel.ndim in (3, 4, 5) else None


def _saved_kernel(run: Run, digest: str) -> tuple[bool, Optional[np.ndarray]]:
    """(current, kernel): whether filters.npz and layers.json were both written from the model with `digest`,
    and the kernel filters.npz holds (None for a model without a convolution). Missing or unreadable files are
    not current: they are rebuilt from the model."""
    if not (run.has(contract.FILTER_WEIGHTS) and run.has(contract.LAYERS)):
        return False, None
    try:
        if run.read_json(contract.LAYERS).get("model_sha256") != digest:
            return False, None
        path = checked_npz(run, contract.FILTER_WEIGHTS)
        with np.load(path, allow_pickle=False) as archive:
            if "model_sha256" not in archive.files or str(archive["model_sha256"]) != digest:
                return False, None
            kernel = archive["kernel"] if "kernel" in archive.files else None
    except (CnnctlError, ValueError, OSError, EOFError, zipfile.BadZipFile):
        return False, None
    if kernel is not None and (kernel.ndim not in (3, 4, 5) or not np.issubdtype(kernel.dtype, np.floating)):
        return False, None
    return True, kernel


def checked_npz(run: Run, name: str) -> Path:
    """A run's .npz file, refused before numpy reads it when it is no regular file or its arrays would inflate
    past memory (an .npy header of 100 bytes can claim 40 GiB); RunError naming the file."""
    path = readable_file(run.file(name), max_bytes=memory_bytes())
    try:
        check_npz(path, str(path))
    except DataError as exc:
        raise RunError(f"{exc}; `cnnctl evaluate {run.path}` writes it again") from None
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(readable_file(path, max_bytes=memory_bytes()), "rb") as handle:  # a FIFO would block for ever
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with atomic_path(path) as temp:
        np.savez(temp, **arrays)
    return path


def write_layer_table(run: Run, model: Any, model_sha256: Optional[str] = None) -> Path:
    """layers.json: per layer its name, type, output shape and parameters (as `cnnctl check` prints them), and
    the totals, so report.html can show the model without loading TensorFlow."""
    from cnnctl.model.summary import describe

    summary = describe(model)
    return run.write_json(
        contract.LAYERS,
        {
            "layers": [asdict(row) for row in summary.rows],
            "total_params": summary.total_params,
            "trainable_params": summary.trainable_params,
            "flops": summary.flops,
            "model_sha256": model_sha256 or _sha256(run.file(contract.MODEL)),
        },
    )


def draw_history_figures(run: Run) -> list[Path]:
    history = read_history_csv(run.file(contract.HISTORY))
    if not history.get("loss"):
        return []
    monitor = "val_loss" if history.get("val_loss") else "loss"
    best = curves.find_best_epoch(history, monitor)
    diagnosis = _diagnosis(run)
    written = [plots.save_figure(curves.loss_curve(history, best, diagnosis), run.file(contract.LOSS_CURVE))]
    metric = next(
        (key for key in ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy") if key in history),
        None,
    )
    if metric:
        written.append(plots.save_figure(curves.metric_curve(history, metric, best), run.file(contract.ACCURACY_CURVE)))
    return written


def _diagnosis(run: Run) -> Optional[dict[str, Any]]:
    return _read_metrics(run).get("diagnosis")


PREDICTION_ARRAYS = ("y_true", "y_prob", "class_names")  # what every predictions.npz holds; wrong_* are optional


def read_predictions(run: Run) -> dict[str, Any]:
    """predictions.npz as arrays. Never unpickled: a file holding pickled data or object arrays, not a zip
    archive, or missing an array is one RunError line."""
    path = checked_npz(run, contract.PREDICTIONS)
    try:
        with np.load(path, allow_pickle=False) as archive:
            predictions = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(
            f"{path}: not the predictions cnnctl saves ({first_line(exc)}); rewrite it with: cnnctl evaluate {run.path}"
        ) from None
    missing = [name for name in PREDICTION_ARRAYS if name not in predictions]
    if missing:
        raise RunError(
            f"{path}: has no {', '.join(missing)} (it holds {', '.join(predictions) or 'nothing'}); "
            f"rewrite it with: cnnctl evaluate {run.path}"
        )
    problem = predictions_problem(predictions)
    if problem:  # before any figure is drawn: a refused plot leaves the old figures as they were
        raise RunError(f"{path}: {problem}; the file was edited; rewrite it with: cnnctl evaluate {run.path}")
    return predictions


def predictions_problem(predictions: dict[str, Any]) -> Optional[str]:
    """What in predictions.npz's arrays no evaluation writes, or None: y_prob (N, C) of finite numbers in 0..1 for
    C class names, y_true N class indices (or an N × C matrix of 0/1 for multi-label), wrong_index rows of them."""
    y_true, y_prob, names = predictions["y_true"], predictions["y_prob"], predictions["class_names"]
    if names.ndim != 1 or not names.size or names.dtype.kind != "U":
        return f"class_names must be a list of names, found {names.dtype} of shape {names.shape}"
    classes = len(names)
    if y_prob.ndim != 2 or y_prob.shape[1] != classes or y_prob.dtype.kind != "f":
        return f"y_prob must be numbers of shape (examples, {classes}), found {y_prob.dtype} of shape {y_prob.shape}"
    if not np.isfinite(y_prob).all() or y_prob.min(initial=0) < -1e-3 or y_prob.max(initial=0) > 1 + 1e-3:
        return "y_prob must hold probabilities, finite numbers from 0 to 1"
    expected = (len(y_prob),) if y_true.ndim == 1 else (len(y_prob), classes)
    if y_true.shape != expected or y_true.dtype.kind not in "iub":
        return f"y_true must be whole numbers of shape {expected}, found {y_true.dtype} of shape {y_true.shape}"
    highest = 1 if y_true.ndim == 2 else classes - 1
    if y_true.size and (y_true.min() < 0 or y_true.max() > highest):
        return f"y_true must hold values from 0 to {highest}"
    wrong = predictions.get("wrong_index")
    if wrong is not None and (
        wrong.ndim != 1
        or wrong.dtype.kind not in "iu"
        or (wrong.size and (wrong.min() < 0 or wrong.max() >= len(y_prob)))
    ):
        return "wrong_index must be row numbers of y_prob"
    images = predictions.get("wrong_x")
    if (images is None) != (wrong is None) or (
        images is not None and (len(images) != len(wrong) or images.dtype.kind not in "fiub")
    ):
        return "wrong_x and wrong_index must come together: one image (numbers) per row number"
    return None


def draw_prediction_figures(run: Run) -> list[Path]:
    from sklearn.metrics import confusion_matrix

    predictions = read_predictions(run)
    y_true, y_prob = predictions["y_true"], predictions["y_prob"]
    class_names = [str(name) for name in predictions["class_names"]]
    if y_true.ndim == 2:
        return draw_multi_label_figures(run, predictions, class_names)
    matrix = confusion_matrix(y_true, y_prob.argmax(axis=1), labels=np.arange(len(class_names)))
    split = _split(run, predictions)
    written = [
        plots.save_figure(
            scores.confusion_matrix_figure(matrix, class_names, normalized=False, split=split),
            run.file(contract.CONFUSION_PNG),
        ),
        plots.save_figure(
            scores.confusion_matrix_figure(matrix, class_names, normalized=True, split=split),
            run.file(contract.CONFUSION_NORMALIZED_PNG),
        ),
        plots.save_figure(scores.roc_figure(y_true, y_prob, class_names), run.file(contract.ROC_CURVE)),
        plots.save_figure(scores.pr_figure(y_true, y_prob, class_names), run.file(contract.PR_CURVE)),
    ]
    if "wrong_x" in predictions:
        written.append(
            plots.save_figure(misclassified_figure(predictions, class_names), run.file(contract.MISCLASSIFIED))
        )
    return written + draw_trust_figures(run, split or "test")


def draw_multi_label_figures(run: Run, predictions: dict[str, Any], class_names: list[str]) -> list[Path]:
    """Multi-label: a 2x2 confusion matrix per label and the precision-recall curves, each label at its threshold.
    The figures that need one label per example (the confusion matrix, ROC, misclassified, reliability) are not
    drawn; files an older single-label evaluation left are removed."""
    from cnnctl.reporting.multilabel_plots import label_confusion_figure, label_pr_figure

    y_true, y_prob = predictions["y_true"], predictions["y_prob"]
    thresholds = predictions.get("thresholds", np.full(len(class_names), 0.5))
    y_pred = predictions.get("y_pred", (y_prob >= thresholds).astype(np.uint8))
    for stale in (
        contract.CONFUSION_PNG,
        contract.CONFUSION_NORMALIZED_PNG,
        contract.ROC_CURVE,
        contract.MISCLASSIFIED,
    ):
        run.file(stale).unlink(missing_ok=True)
    return [
        plots.save_figure(label_confusion_figure(y_true, y_pred, class_names), run.file(contract.LABEL_CONFUSION)),
        plots.save_figure(label_pr_figure(y_true, y_prob, thresholds, class_names), run.file(contract.PR_CURVE)),
    ]


def draw_trust_figures(run: Run, split: str) -> list[Path]:
    """reliability.png and coverage.png from metrics.json; gradcam.png from gradcam.npz (when the model has a
    convolution Grad-CAM could read)."""
    written = []
    metrics = _read_metrics(run)
    if metrics.get("calibration"):
        written.append(
            plots.save_figure(
                trust_plots.reliability_figure(metrics["calibration"], split), run.file(contract.RELIABILITY)
            )
        )
    if metrics.get("coverage"):
        coverage = metrics["coverage"]
        written.append(
            plots.save_figure(
                trust_plots.coverage_figure(coverage, coverage.get("sentence", ""), split), run.file(contract.COVERAGE)
            )
        )
    if run.has(contract.GRADCAM_NPZ):
        written.append(plots.save_figure(gradcam_figure(run, split), run.file(contract.GRADCAM)))
    return written


def gradcam_figure(run: Run, split: str):
    """gradcam.png: per class its most confident correct example and its most confidently wrong one, heat over."""
    try:
        with np.load(checked_npz(run, contract.GRADCAM_NPZ), allow_pickle=False) as archive:
            saved = {key: archive[key] for key in ("x", "heatmaps", "y_true", "y_prob", "class_names", "layer")}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(
            f"{run.file(contract.GRADCAM_NPZ)}: not the Grad-CAM examples cnnctl writes "
            f"({first_line(exc)}); `cnnctl evaluate {run.path}` writes it again"
        ) from None
    names = [str(name) for name in saved["class_names"]]
    predicted = saved["y_prob"].argmax(axis=1)
    titles = [
        f"true: {names[t]}\npred: {names[p]} ({prob[p]:.2f})"
        for t, p, prob in zip(saved["y_true"], predicted, saved["y_prob"])
    ]
    colors = ["black" if t == p else "tab:red" for t, p in zip(saved["y_true"], predicted)]
    return trust_plots.gradcam_grid(
        list(saved["x"]),
        list(saved["heatmaps"]),
        titles,
        colors,
        ncols=6,
        title=f"Grad-CAM at {saved['layer']}, {split} split: where each prediction looked (red: wrong)",
    )


def _split(run: Run, predictions: dict[str, Any]) -> Optional[str]:
    """The split the predictions were made on: predictions.npz says it; one from an older cnnctl may not,
    metrics.json (written with it) then does."""
    if "split" in predictions and predictions["split"].ndim == 0:
        return str(predictions["split"])
    split = _read_metrics(run).get("split")
    return str(split) if split else None


def _read_metrics(run: Run) -> dict[str, Any]:
    return run.read_json(contract.METRICS) if run.has(contract.METRICS) else {}


def misclassified_figure(predictions: dict[str, Any], class_names: list[str]):
    index = predictions["wrong_index"]
    y_true = predictions["y_true"][index]
    y_prob = predictions["y_prob"][index]
    titles = [
        f"true: {class_names[t]}\npred: {class_names[p.argmax()]} ({p.max():.2f})" for t, p in zip(y_true, y_prob)
    ]
    return grids.example_grid(
        predictions["wrong_x"],
        titles,
        colors=["tab:red"] * len(titles),
        title=f"Most confidently wrong ({len(titles)} of "
        f"{int((predictions['y_prob'].argmax(1) != predictions['y_true']).sum())} errors)",
    )


def draw_filters(run: Run, model: Any = None) -> Optional[Path]:
    """filters.png alone: the learned kernels of the first convolution (loads the model when not given)."""
    if model is None:
        model = load_model(run)
    kernel = first_convolution_kernel(model)
    return plots.save_figure(grids.filters_figure(kernel), run.file(contract.FILTERS)) if kernel is not None else None
