"""The run folder's contract, written once: every file name, and the rules that every reader and writer shares
(which metrics are shown and in what order, the top-k rule, epoch numbering, verdict colours).
"""
from __future__ import annotations

# Fixed file names: the run folder is a contract (see DESIGN.md), so they live in one place.
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


CHECKPOINTS = "checkpoints"


RUNS_DIR_ENV = "CNNCTL_RUNS_DIR"
