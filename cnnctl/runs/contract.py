"""Runs: the run folder's contract, written once: every file name, and the rules that every reader and writer shares
(which metrics are shown and in what order, the top-k rule, epoch numbering, verdict and status colours).

Standard library only: `cnnctl runs` and `cnnctl --help` import it without TensorFlow, numpy or matplotlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

# Fixed file names: the run folder is a contract (docs/run-folder.md), so they live in one place.
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
DATA = "data.json"
MODEL = "model.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
REPORT_TXT = "classification_report.txt"
REPORT_JSON = "classification_report.json"
CONFUSION_CSV = "confusion_matrix.csv"
PREDICTIONS = "predictions.npz"
REPORT_HTML = "report.html"
LAYERS = "layers.json"  # the model's layer table (name, type, output shape, parameters) for report.html
FILTER_WEIGHTS = "filters.npz"  # the kernel filters.png shows, so `cnnctl plot` redraws it without TensorFlow
CHECKPOINTS = "checkpoints"
LOCK = "lock"  # in checkpoints/: held while a process trains the run
TENSORBOARD = "tensorboard"  # train.tensorboard: Keras' TensorBoard logs, train/ and validation/ event files
MLFLOW = "mlflow.json"  # train.mlflow: the MLflow run's id and what was sent to it (cnnctl sync sends the rest)
EXPORT = "export"  # cnnctl export: saved_model/, model.onnx, model.tflite, each with its <name>.json

# Figures, drawn from the files above alone.
LOSS_CURVE = "loss_curve.png"
ACCURACY_CURVE = "accuracy_curve.png"
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_NORMALIZED_PNG = "confusion_matrix_normalized.png"
ROC_CURVE = "roc_curve.png"
PR_CURVE = "pr_curve.png"
MISCLASSIFIED = "misclassified.png"
LABEL_CONFUSION = "label_confusion.png"  # multi-label: a 2x2 confusion matrix per label at its threshold
FILTERS = "filters.png"
FEATURE_MAPS = "feature_maps.png"
GRADCAM = "gradcam.png"  # a few test examples per class with their Grad-CAM heat maps, from gradcam.npz
RELIABILITY = "reliability.png"  # accuracy against confidence per bin, from metrics.json's calibration
COVERAGE = "coverage.png"  # accuracy against the share answered (the reject option), from metrics.json

GRADCAM_NPZ = "gradcam.npz"  # those examples and their heat maps, written with every evaluation
EXPLAIN = "explain"  # `cnnctl explain`'s default folder: one overlay PNG per input and explain.npz
EXPLAIN_NPZ = "explain.npz"  # heatmaps, y_pred, y_prob, class_index, y_true, inputs, class_names, layer

# A cross-validation folder holds this beside its fold-1/ ... fold-K/ run folders.
CV_SUMMARY = "cv_summary.json"

# A tuning folder (cnnctl tune) holds these beside config.yaml and its trial-<n>/ run folders.
TUNE_STUDY = "study.db"  # Optuna's SQLite storage: every trial, its params, values and state
TUNE_LOCK = "study.lock"  # held while a worker counts the trials and starts the next one
TUNE_SUMMARY = "tune_summary.json"
TUNE_BEST = "best.yaml"  # the config with the best trial's values, ready for `cnnctl train`
TUNE_REPORT = "tune_report.html"
TUNE_HISTORY_PNG = "tune_history.png"
TUNE_IMPORTANCE_PNG = "tune_importance.png"
TUNE_SLICE_PNG = "tune_slice.png"
TUNE_TRIAL_PREFIX = "trial-"  # trial-<n>/: the run folder of Optuna's trial number n
TUNE_WORKER_LOG = "worker-{index}.log"  # stderr of each extra worker process

RUNS_DIR_ENV = "CNNCTL_RUNS_DIR"


@dataclass(frozen=True)
class Metric:
    """One number of metrics.json that readers show: a row of a table, a card, a column of a summary."""

    key: str  # its metrics.json key; a top-k accuracy's is `top_<k>_accuracy`
    label: str  # its name on report.html
    higher_is_better: bool = True
    k: Optional[str] = None  # a top-k accuracy's k: its value sits in metrics.json's top_k_accuracy[k]

    def value(self, metrics: Mapping[str, Any]) -> Optional[float]:
        """This metric in a metrics.json dict; None where the run does not have it."""
        if self.k is not None:
            return metrics.get("top_k_accuracy", {}).get(self.k)
        return metrics.get(self.key)


# The headline metrics in display order; each reader picks the ones it shows. Top-k accuracies depend on the
# run's evaluate.top_k, so they are not here: `metric_rows` puts them after accuracy.
METRIC_TABLE = (
    Metric("accuracy", "accuracy"),
    Metric("precision_macro", "precision (macro)"),
    Metric("recall_macro", "recall (macro)"),
    Metric("f1_macro", "F1 (macro)"),
    Metric("precision_weighted", "precision (weighted)"),
    Metric("recall_weighted", "recall (weighted)"),
    Metric("f1_weighted", "F1 (weighted)"),
    Metric("roc_auc", "ROC-AUC"),
    # multi-label runs (data.multi_label): scikit-learn's names; a run shows the ones its metrics.json has
    Metric("f1_micro", "F1 (micro)"),
    Metric("f1_samples", "F1 (samples)"),
    Metric("subset_accuracy", "subset accuracy"),
    Metric("hamming_loss", "Hamming loss", higher_is_better=False),
    Metric("mean_average_precision", "mAP"),
)


def top_k_rows(ks: Iterable[str]) -> list[Metric]:
    """The top-k accuracies worth showing for metrics.json's top_k_accuracy keys `ks`, ordered by k.
    Top-1 is left out: it is accuracy itself, which every reader already shows."""
    return [Metric(f"top_{k}_accuracy", f"top-{k} accuracy", k=k) for k in sorted(set(ks), key=int) if k != "1"]


def metric_rows(keys: Optional[Collection[str]] = None, ks: Iterable[str] = ()) -> list[Metric]:
    """The metrics of METRIC_TABLE named in `keys` (None: all of them), in the table's order, with the top-k
    accuracies for `ks` right after accuracy, which they refine."""
    rows = []
    for metric in METRIC_TABLE:
        if keys is None or metric.key in keys:
            rows.append(metric)
        if metric.key == "accuracy":
            rows += top_k_rows(ks)
    return rows


def epoch_numbers(epoch_column: Optional[Sequence[float]], rows: int) -> list[int]:
    """The 1-based epoch of each row of history.csv, as people count them.

    cnnctl writes the `epoch` column from 1; files from an older cnnctl count from 0 (Keras' CSVLogger does),
    recognised by a first row of 0. The column is used when it is finite and increasing (a resumed run continues
    it); otherwise the rows are numbered 1, 2, ... Every epoch a reader shows (plot axes, best and turn epochs,
    the report's table) follows this rule.
    """
    if (
        epoch_column is not None
        and all(math.isfinite(epoch) for epoch in epoch_column)
        and all(later > earlier for earlier, later in zip(epoch_column, epoch_column[1:]))
    ):
        shift = 1 if len(epoch_column) and epoch_column[0] == 0 else 0
        return [int(epoch) + shift for epoch in epoch_column]
    return list(range(1, rows + 1))


# Colours as "#rrggbb", which matplotlib, HTML and rich all accept, so a verdict or a status looks the same on
# the loss curve, report.html and the console. These are matplotlib's tab10 red, orange, green and blue.
VERDICT_COLORS = {
    "overfitting": "#d62728",
    "underfitting": "#ff7f0e",
    "good fit": "#2ca02c",
    "still improving": "#1f77b4",
}


# The verdicts cnnctl.evaluation.diagnosis can reach.
VERDICTS = tuple(VERDICT_COLORS)


UNKNOWN_VERDICT_COLOR = "#7f7f7f"  # a damaged or hand-edited metrics.json: grey, no judgement implied


# environment.json's status (plus `stopped`, which `cnnctl runs` shows for a run whose trainer died).
STATUS_COLORS = {
    "completed": "#2ca02c",
    "running": "#1f77b4",
    "interrupted": "#ff7f0e",
    "stopped": "#ff7f0e",
    "failed": "#d62728",
    "pruned": "#7f7f7f",  # a cnnctl tune trial stopped early by the pruner: complete files, fewer epochs
}


def verdict_color(verdict: str) -> str:
    return VERDICT_COLORS.get(verdict, UNKNOWN_VERDICT_COLOR)


def status_color(status: Optional[str]) -> str:
    """A status this version does not know is shown like a failure: the run needs a look."""
    return STATUS_COLORS.get(status, STATUS_COLORS["failed"])


def verdict_sentence(diagnosis: dict[str, Any], separator: str = ": ") -> str:
    """The verdict and the summary as one line, the verdict said once: summaries open with it already, and
    one written by hand or by an older cnnctl that does not gets it in front, joined by `separator`."""
    verdict, summary = str(diagnosis.get("verdict") or ""), str(diagnosis.get("summary") or "")
    if summary.lower().startswith(verdict.lower()):
        return summary
    label = verdict.capitalize()
    return f"{label}{separator}{summary}" if summary else label


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"
