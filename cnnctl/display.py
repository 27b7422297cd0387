"""What the console shows: the run header, the layer table, metrics. Rendering only; no computation."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    console.print(text)


def warn(text: str) -> None:
    error_console.print(f"[yellow]warning:[/] {text}")


def format_count(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def layer_table(summary: Any, title: str = "Model") -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for header, justify in (("#", "right"), ("layer", "left"), ("output shape", "left"), ("params", "right"),
                            ("receptive field", "right"), ("jump", "right"), ("FLOPs", "right")):
        table.add_column(header, justify=justify)
    for row in summary.rows:
        table.add_row(str(row.index), f"{row.name} ({row.kind})", row.output_shape, f"{row.params:,}",
                      row.receptive_field, row.jump, format_count(row.flops))
    table.caption = (f"total params {summary.total_params:,} (trainable {summary.trainable_params:,}) · "
                     f"{format_count(summary.flops)} FLOPs per example")
    table.caption_justify = "left"
    return table


def data_table(summary: dict[str, Any]) -> Table:
    """Class counts per split, one row per class (at most 20, then a total)."""
    counts = summary["counts"]
    splits = list(counts)
    table = Table(title=f"Data: {summary['source']} · input {tuple(summary['input_shape'])} · "
                        f"{summary['num_classes']} classes", title_justify="left")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    names = summary["class_names"]
    for name in names[:20]:
        table.add_row(name, *[str(counts[split][name]) for split in splits])
    if len(names) > 20:
        table.add_row(f"… {len(names) - 20} more", *["" for _ in splits])
    table.add_row("[bold]total[/]", *[f"[bold]{summary['sizes'][split]}[/]" for split in splits])
    return table


def header(config_path: Optional[str], config: Any, data_summary: dict[str, Any], devices: list[str],
           precision: str, run_path: Any, model_summary: Any) -> None:
    console.rule(f"[bold]cnnctl train[/] {config.name}")
    console.print(f"config   {config_path or '(run config)'}  ·  seed {config.seed}  ·  "
                  f"{config.train.epochs} epochs, batch {config.train.batch_size}, "
                  f"{config.train.optimizer.name} lr {config.train.optimizer.learning_rate:g}, {config.train.loss}")
    console.print(f"device   {', '.join(devices)}  ·  precision {precision}")
    console.print(f"run      {run_path}")
    console.print(data_table(data_summary))
    for note in data_summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    if data_summary.get("skipped"):
        warn(f"skipped {len(data_summary['skipped'])} unreadable files (listed in data.json)")
    console.print(f"model    {len(model_summary.rows)} layers · {model_summary.total_params:,} params · "
                  f"{format_count(model_summary.flops)} FLOPs per example  (`cnnctl check` shows the layer table)")


def metrics_table(metrics: dict[str, Any], title: Optional[str] = None) -> Table:
    table = Table(title=title or f"Metrics on the {metrics.get('split', 'test')} split", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{metrics['accuracy']:.4f}")
    for k, value in metrics.get("top_k_accuracy", {}).items():
        if k != "1":
            table.add_row(f"top-{k} accuracy", f"{value:.4f}")
    for key in ("precision_macro", "recall_macro", "f1_macro", "f1_weighted"):
        table.add_row(key.replace("_", " "), f"{metrics[key]:.4f}")
    table.add_row("ROC-AUC (one-vs-rest, macro)" if len(metrics.get("per_class", {})) > 2 else "ROC-AUC",
                  "n/a" if metrics.get("roc_auc") is None else f"{metrics['roc_auc']:.4f}")
    table.add_row("examples", str(metrics.get("num_examples", "")))
    return table


def diagnosis_line(diagnosis: Optional[dict[str, Any]]) -> None:
    if diagnosis:
        color = {"good fit": "green", "still improving": "cyan"}.get(diagnosis["verdict"], "yellow")
        console.print(f"[{color}]diagnosis:[/] {diagnosis['summary']}")
