"""Reporting: runs side by side: the headline numbers of each run folder (`cnnctl runs`) and metric-by-metric comparison
with overlaid loss curves (`cnnctl compare`).

Everything is read from the run folders' small files (config.yaml, data.json, environment.json,
metrics.json, history.csv): no TensorFlow, so listing a hundred runs takes a moment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from cnnctl.errors import CnnctlError, ConfigError, RunError
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, collection_kind, list_collections, list_runs, readable_file
from cnnctl.runs.history import read_history_csv
from cnnctl.runs.output import check_output_path, check_png_name, write_output_bytes
from cnnctl.runs.status import abandoned

STOPPED = "stopped"  # shown for a run left `running` by a process that no longer exists; --resume continues it


@dataclass
class RunSummary:
    """One row of `cnnctl runs`; None where the run folder does not say (still running, never evaluated)."""

    id: str
    path: Path
    name: Optional[str] = None
    dataset: Optional[str] = None
    status: Optional[str] = None
    epochs_run: Optional[int] = None
    duration_s: Optional[float] = None
    metrics: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # files that could not be read

    @property
    def split(self) -> Optional[str]:
        return self.metrics.get("split")

    @property
    def accuracy(self) -> Optional[float]:
        return self.metrics.get("accuracy")

    @property
    def f1_macro(self) -> Optional[float]:
        return self.metrics.get("f1_macro")


def summarize_run(run: Run, now: Optional[float] = None) -> RunSummary:
    """Read what a run folder says about itself; a damaged file is noted, never fatal (a listing must go on)."""
    summary = RunSummary(id=run.id, path=run.path)
    config = _read(run, contract.CONFIG, summary, _read_yaml)
    summary.name = config.get("name") if isinstance(config, dict) else None
    data = _read(run, contract.DATA, summary, Run.read_json)
    summary.dataset = data.get("source")
    environment = _read(run, contract.ENVIRONMENT, summary, Run.read_json)
    summary.status = environment.get("status")
    summary.epochs_run = environment.get("epochs_run")
    summary.duration_s = environment.get("duration_s")
    if summary.status == "running" and abandoned(run):
        summary.status = STOPPED  # its process died (kill -9, a crash, a power cut) without recording why
    if summary.duration_s is None and summary.status == "running" and environment.get("started_unix"):
        summary.duration_s = round((now or time.time()) - environment["started_unix"], 1)
    summary.metrics = _read(run, contract.METRICS, summary, Run.read_json)
    return summary


def _read(run: Run, name: str, summary: RunSummary, reader) -> dict[str, Any]:
    if not run.has(name):
        return {}
    try:
        value = reader(run, name)
    except CnnctlError as exc:
        summary.problems.append(str(exc))
        return {}
    return value if isinstance(value, dict) else {}


def _read_yaml(run: Run, name: str) -> Any:
    path = readable_file(run.file(name))
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunError(f"{path}: cannot read ({type(exc).__name__})") from None
    except RecursionError:
        raise RunError(
            f"{path}: YAML nested too deeply to be cnnctl's; the file was edited or is not cnnctl's"
        ) from None


def summarize_runs(runs_dir: Union[str, Path]) -> list[RunSummary]:
    """Every run in the folder, newest first."""
    now = time.time()
    return [summarize_run(run, now) for run in list_runs(runs_dir)]


@dataclass
class CollectionSummary:
    """One row of `cnnctl runs`' second table: a cross-validation or tuning folder, whose runs are inside it."""

    id: str
    path: Path
    kind: str  # "cv" or "tune"
    status: Optional[str] = None
    count: Optional[int] = None  # folds completed, or trials
    score: str = ""  # mean ± std accuracy over the folds, or the best trial's val accuracy
    problems: list[str] = field(default_factory=list)


def summarize_collections(runs_dir: Union[str, Path]) -> list[CollectionSummary]:
    """Every cross-validation and tuning folder in the runs dir, newest first, read from its summary file."""
    summaries = []
    for path in list_collections(runs_dir):
        kind = collection_kind(path)
        summary = CollectionSummary(id=path.name, path=path, kind=kind)
        name = contract.CV_SUMMARY if kind == "cv" else contract.TUNE_SUMMARY
        folder = Run(path)
        data = _read(folder, name, summary, Run.read_json) if folder.has(name) else {}
        summary.status = data.get("status")
        if kind == "cv":
            summary.count = data.get("folds_completed")
            key = "accuracy" if "accuracy" in (data.get("mean") or {}) else "f1_micro"  # multi-label: micro F1
            mean, std = (data.get("mean") or {}).get(key), (data.get("std") or {}).get(key)
            if isinstance(mean, (int, float)) and isinstance(std, (int, float)):
                summary.score = f"{key.replace('_', ' ')} {mean:.4f} ± {std:.4f}"
        else:
            trials = data.get("trials")
            summary.count = len(trials) if isinstance(trials, list) else None
            best = data.get("best") or {}
            if isinstance(best.get("value"), (int, float)):
                objective = data.get("objective_name", "val accuracy")
                summary.score = f"best {objective} {best['value']:.4f} (trial {best.get('number')})"
        summaries.append(summary)
    return summaries


@dataclass
class Comparison:
    summaries: list[RunSummary]
    rows: list[tuple[str, list[Optional[float]], Optional[int]]]  # label, value per run, index of the best
    facts: list[tuple[str, list[str]]]  # split, epochs, verdict...: shown, not ranked
    figure_path: Optional[Path]
    notes: list[str]


def compare_runs(run_list: Sequence[Run], out: Union[str, Path], *, overwrite: bool = False) -> Comparison:
    """Metrics of several runs side by side, and their loss curves overlaid in one PNG at `out` (an existing file
    is replaced only with `overwrite`, and never one of a run's own files: cnnctl/runs/output.py)."""
    from cnnctl.reporting import curves, plots

    if len(run_list) < 2:
        raise ConfigError("compare: give at least two runs, e.g. cnnctl compare RUN_A RUN_B")
    seen: dict[Path, str] = {}
    for run in run_list:
        key = run.path.resolve()
        if key in seen:
            raise ConfigError(f"compare: run {run.id} is given twice")
        seen[key] = run.id
    check_png_name(out, "the comparison figure")
    check_output_path(out, overwrite=overwrite, example="compare.png")
    summaries = [summarize_run(run) for run in run_list]
    labels = _unique_labels(summaries)

    rows = []
    top_ks = {k for summary in summaries for k in summary.metrics.get("top_k_accuracy", {})}
    for metric in contract.metric_rows(ks=top_ks):
        values = [metric.value(summary.metrics) for summary in summaries]
        present = [(value, index) for index, value in enumerate(values) if value is not None]
        if not present:  # e.g. the multi-label metrics of single-label runs
            continue
        best = None
        if len(present) > 1 and len({value for value, _ in present}) > 1:
            best = (max if metric.higher_is_better else min)(present)[1]
        rows.append((_label(metric), values, best))

    histories, notes = {}, []
    for summary, run, label in zip(summaries, run_list, labels):
        try:
            history = read_history_csv(run.file(contract.HISTORY)) if run.has(contract.HISTORY) else {}
        except RunError as exc:
            history = {}
            notes.append(str(exc))
        if history.get("loss"):
            histories[label] = history
        else:
            notes.append(f"{run.id}: no epochs in {contract.HISTORY}, so no loss curve")
        if not summary.metrics:
            notes.append(f"{run.id}: not evaluated yet (no {contract.METRICS}); `cnnctl evaluate {run.path}` makes one")
        notes.extend(summary.problems)
    facts = [
        ("split", [summary.split or "" for summary in summaries]),
        ("dataset", [summary.dataset or "" for summary in summaries]),
        ("epochs run", ["" if summary.epochs_run is None else str(summary.epochs_run) for summary in summaries]),
        ("best val loss", [_best_loss(histories.get(label)) for label in labels]),
        ("diagnosis", [(summary.metrics.get("diagnosis") or {}).get("verdict", "") for summary in summaries]),
        ("status", [summary.status or "" for summary in summaries]),
    ]
    figure_path = None
    if histories:
        figure_path = write_output_bytes(
            out, plots.png_bytes(curves.compare_figure(histories, "loss")), overwrite=overwrite
        )
    return Comparison(summaries, rows, facts, figure_path, notes)


def _label(metric: contract.Metric) -> str:
    # A console column is narrower than report.html's table: "F1 macro" rather than "F1 (macro)".
    return metric.label.replace("(", "").replace(")", "")


def _best_loss(history: Optional[dict[str, list]]) -> str:
    values = [value for value in (history or {}).get("val_loss", []) if math.isfinite(value)]
    return f"{min(values):.4f}" if values else ""


def _unique_labels(summaries: Sequence[RunSummary]) -> list[str]:
    """The run ids: unique inside one runs folder, but two folders may hold runs with the same id."""
    labels, counts = [], {}
    for summary in summaries:
        counts[summary.id] = counts.get(summary.id, 0) + 1
        labels.append(summary.id if counts[summary.id] == 1 else f"{summary.id} ({summary.path.parent})")
    return labels
