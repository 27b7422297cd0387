"""What the console shows of several runs at once: `cnnctl runs`, `compare`, the folds of `cv` and the trials of
`tune` (cli/console.py shows one run).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from cnnctl.api import contract


def runs_table(summaries: list[Any], runs_dir: Any) -> Table:
    """`cnnctl runs`: one row per run, newest first."""
    table = Table(title=f"Runs in {runs_dir}", title_justify="left")
    for header, justify in (
        ("id", "left"),
        ("name", "left"),
        ("dataset", "left"),
        ("epochs", "right"),
        ("accuracy", "right"),
        ("F1 macro", "right"),
        ("status", "left"),
        ("duration", "right"),
    ):
        # Numbers never wrap; in a narrow terminal the text columns fold instead.
        table.add_column(header, justify=justify, overflow="fold", no_wrap=justify == "right")
    for summary in summaries:
        split = "" if summary.split in (None, "test") else f" ({summary.split})"
        status = summary.status or "?"
        table.add_row(
            summary.id,
            summary.name or "",
            summary.dataset or "",
            "" if summary.epochs_run is None else str(summary.epochs_run),
            "" if summary.accuracy is None else f"{summary.accuracy:.4f}{split}",
            "" if summary.f1_macro is None else f"{summary.f1_macro:.4f}",
            f"[{contract.status_color(status)}]{status}[/]",
            contract.format_duration(summary.duration_s),
        )
    table.caption = "accuracy and F1 on the test split unless marked"
    if any(summary.status == "stopped" for summary in summaries):
        table.caption += "; stopped = its process died mid-training: cnnctl train --resume <id> continues it"
    table.caption_justify = "left"
    return table


def collections_table(collections: list[Any], runs_dir: Any) -> Table:
    """`cnnctl runs`: the cross-validation and tuning folders, whose runs are inside them."""
    table = Table(title=f"Cross-validation and tuning in {runs_dir}", title_justify="left")
    for header, justify in (
        ("id", "left"),
        ("kind", "left"),
        ("folds / trials", "right"),
        ("result", "left"),
        ("status", "left"),
    ):
        table.add_column(header, justify=justify, overflow="fold", no_wrap=justify == "right")
    for collection in collections:
        status = collection.status or "?"
        table.add_row(
            collection.id,
            collection.kind,
            "" if collection.count is None else str(collection.count),
            collection.score,
            f"[{contract.status_color(status)}]{status}[/]",
        )
    table.caption = "their runs are inside them: fold-1/ ... for cv, trial-0/ ... for tune"
    table.caption_justify = "left"
    return table


def compare_table(comparison: Any) -> Table:
    """`cnnctl compare`: one column per run, one row per metric; the best value of each row in bold green."""
    table = Table(title="Comparison", title_justify="left")
    table.add_column("metric")
    for summary in comparison.summaries:
        table.add_column(summary.id, justify="right", overflow="fold")
    for label, values in comparison.facts[:1]:
        table.add_row(label, *values)
    for label, values, best in comparison.rows:
        cells = ["n/a" if value is None else f"{value:.4f}" for value in values]
        if best is not None:
            cells[best] = f"[bold green]{cells[best]}[/]"
        table.add_row(label, *cells)
    for label, values in comparison.facts[1:]:
        table.add_row(label, *values)
    return table


def cv_table(summary: dict[str, Any]) -> Table:
    """Metrics per fold (each measured on its held-out fold) and their mean ± std."""
    per_fold = summary["per_fold"]
    stratified = summary.get("stratified_by", "class")
    table = Table(
        title=f"Cross-validation: {summary['folds']} folds stratified by {stratified}, each model scored on its "
        "held-out fold",
        title_justify="left",
    )
    table.add_column("metric")
    for fold in per_fold:
        table.add_column(f"fold {fold['fold']}", justify="right")
    table.add_column("mean ± std", justify="right", style="bold")
    for name in summary["metrics"]:
        cells = ["n/a" if fold.get(name) is None else f"{fold[name]:.4f}" for fold in per_fold]
        mean = summary["mean"].get(name)
        table.add_row(
            name.replace("_", " "), *cells, "n/a" if mean is None else f"{mean:.4f} ± {summary['std'][name]:.4f}"
        )
    table.add_row("examples", *[str(fold.get("examples", "")) for fold in per_fold], "")
    table.add_row("epochs", *[str(fold.get("epochs_run", "")) for fold in per_fold], "")
    return table


def tune_table(summary: dict[str, Any]) -> Table:
    """Every trial of `cnnctl tune`: its values, val accuracy, state and run folder; the best one in bold green."""
    best = (summary.get("best") or {}).get("number")
    table = Table(
        title=f"Tuning: {len(summary['trials'])} trials, each scored on the validation split ({summary['objective']})",
        title_justify="left",
    )
    paths = list(summary["search_space"])
    table.add_column("trial", justify="right")
    for path in paths:  # long paths wrap: cut short, two of them could read the same (`model.layers[…`)
        table.add_column(path, justify="right", overflow="fold")
    table.add_column(summary.get("objective_name", "val accuracy"), justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("state")
    table.add_column("run folder")
    for trial in summary["trials"]:
        value = trial.get("value")
        cells = [_tuned_value(trial["params"].get(path)) for path in paths]
        shown = "n/a" if value is None else f"{value:.4f}"
        state = trial["state"]
        colour = contract.status_color("completed" if state == "complete" else state)
        row = [
            str(trial["number"]),
            *cells,
            shown,
            str(trial.get("epochs") or ""),
            f"[{colour}]{state}[/]",
            str(trial.get("run") or ""),
        ]
        table.add_row(*row, style="bold green" if trial["number"] == best else None)
    return table


def _tuned_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
