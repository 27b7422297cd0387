"""The command line's console: the run header, the layer table, metrics. Rendering only; no computation."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cnnctl.runs import contract
from cnnctl.runtime import backend

# Piped output (logs, CI, tests) has no terminal width; 80 columns would wrap the layer table.
# (pytest-xdist even sets COLUMNS=80 for its workers.) Plain lines never wrap: paths must stay copyable.
_width = None if sys.stdout.isatty() else 120


console = Console(highlight=False, width=_width, soft_wrap=True)


error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    console.print(text)


def warn(text: str) -> None:
    """A warning on stderr; `text` is shown as written (a `[` in a path or an exception is not rich markup)."""
    error_console.print(f"[yellow]warning:[/] {escape(text)}")


def format_count(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def layer_table(summary: Any, title: str = "Model") -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for header, justify in (
        ("#", "right"),
        ("layer", "left"),
        ("output shape", "left"),
        ("params", "right"),
        ("receptive field", "right"),
        ("jump", "right"),
        ("FLOPs", "right"),
    ):
        table.add_column(header, justify=justify)
    for row in summary.rows:
        # The input scaling cnnctl adds has no model.layers index: the # column matches the config.
        table.add_row(
            "" if row.index is None else str(row.index),
            f"{row.name} ({row.kind})",
            row.output_shape,
            f"{row.params:,}",
            row.receptive_field,
            row.jump,
            format_count(row.flops),
        )
    frozen = summary.total_params - summary.trainable_params
    table.caption = (
        f"total params {summary.total_params:,} (trainable {summary.trainable_params:,}"
        f"{f', frozen {frozen:,}' if frozen else ''}) · "
        f"{format_count(summary.flops)} FLOPs per example"
    )
    table.caption_justify = "left"
    return table


def data_table(summary: dict[str, Any]) -> Table:
    """Class counts per split, one row per class (at most 20, then a total)."""
    counts = summary["counts"]
    splits = list(counts)
    table = Table(
        title=f"Data: {summary['source']} · input {tuple(summary['input_shape'])} · {summary['num_classes']} classes",
        title_justify="left",
    )
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


def header(
    config_path: Optional[str],
    config: Any,
    data_summary: dict[str, Any],
    devices: list[str],
    precision: str,
    run_path: Any,
    model_summary: Any,
) -> None:
    console.rule(f"[bold]cnnctl train[/] {config.name}")
    console.print(
        f"config   {config_path or '(run config)'}  ·  seed {config.seed}  ·  "
        f"{epochs_text(config.train)}, batch {config.train.batch_size}, "
        f"{config.train.optimizer.name} lr {config.train.optimizer.learning_rate:g}, "
        f"{config.train.loss_name}{recipe_text(config)}"
    )
    console.print(f"device   {', '.join(devices)}  ·  precision {precision}  ·  backend {backend()}")
    console.print(f"run      {run_path}")
    console.print(data_table(data_summary))
    for note in data_summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    skipped_files_warning(data_summary.get("skipped"))
    configured = sum(row.index is not None for row in model_summary.rows)
    backbone = getattr(config.model, "backbone", None)
    state = (
        "trainable"
        if backbone and backbone.trainable
        else ("frozen, then fine-tuned" if config.train.fine_tune else "frozen")
    )
    on = f" on {backbone.name} ({state})" if backbone else ""
    frozen = model_summary.total_params - model_summary.trainable_params
    split = f" ({model_summary.trainable_params:,} trainable, {frozen:,} frozen)" if frozen else ""
    console.print(
        f"model    {configured} layers{on} · {model_summary.total_params:,} params{split} · "
        f"{format_count(model_summary.flops)} FLOPs per example  (`cnnctl check` shows the layer table)"
    )


def recipe_text(config: Any) -> str:
    """ ", EMA 0.999, MixUp 0.2, CutMix 1" for the training recipe's items that are on."""
    mix = config.data.mix
    items = [
        *([f"EMA {config.train.ema.momentum:g}"] if config.train.ema else []),
        *([f"MixUp {mix.mixup:g}"] if mix and mix.mixup else []),
        *([f"CutMix {mix.cutmix:g}"] if mix and mix.cutmix else []),
    ]
    return "".join(f", {item}" for item in items)


def epochs_text(train: Any) -> str:
    """ "10 epochs", or "10 epochs + 5 fine-tuning" with train.fine_tune."""
    text = f"{train.epochs} epoch{'s' if train.epochs != 1 else ''}"
    return f"{text} + {train.fine_tune.epochs} fine-tuning" if train.fine_tune else text


SKIPPED_SHOWN = 10  # skipped files named on the console; data.json lists them all


def skipped_files_warning(skipped: Optional[list[str]]) -> None:
    """One warning naming the files a folder source could not decode (the first few)."""
    if not skipped:
        return
    shown = ", ".join(skipped[:SKIPPED_SHOWN])
    more = f", and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
    warn(
        f"skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''}: {shown}{more} "
        f"(listed in {contract.DATA})"
    )


# The metrics a run's console table shows, before ROC-AUC (last, with a label saying how it averages).
CONSOLE_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted")


# A multi-label run's console table (scikit-learn's names), at each label's decision threshold.
MULTI_LABEL_CONSOLE_METRICS = (
    "f1_micro",
    "f1_macro",
    "f1_samples",
    "subset_accuracy",
    "hamming_loss",
    "mean_average_precision",
    "roc_auc",
)


def metrics_table(metrics: dict[str, Any], title: Optional[str] = None) -> Table:
    table = Table(title=title or f"Metrics on the {metrics.get('split', 'test')} split", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if metrics.get("multi_label"):
        for metric in contract.metric_rows(MULTI_LABEL_CONSOLE_METRICS):
            value = metric.value(metrics)
            table.add_row(metric.key.replace("_", " "), "n/a" if value is None else f"{value:.4f}")
        table.add_row("examples", str(metrics.get("num_examples", "")))
        table.caption = f"each label at its decision threshold ({metrics.get('thresholds_from', '0.5')})"
        table.caption_justify = "left"
        return table
    for metric in contract.metric_rows(CONSOLE_METRICS, metrics.get("top_k_accuracy", {})):
        # Named by its metrics.json key ("f1 macro"); a top-k accuracy has no key of its own there.
        table.add_row(metric.label if metric.k else metric.key.replace("_", " "), f"{metric.value(metrics):.4f}")
    table.add_row(
        "ROC-AUC (one-vs-rest, macro)" if len(metrics.get("per_class", {})) > 2 else "ROC-AUC",
        "n/a" if metrics.get("roc_auc") is None else f"{metrics['roc_auc']:.4f}",
    )
    table.add_row("examples", str(metrics.get("num_examples", "")))
    if metrics.get("tta", "off") != "off":
        table.add_row("test-time augmentation", str(metrics["tta"]))
    return table


def _label_sets_table(predictions: Any, max_inputs: int) -> Table:
    table = Table(title="Labels predicted (each at its threshold)", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("labels")
    table.add_column("probabilities", overflow="fold")
    for label, labels, probabilities in zip(
        predictions.labels[:max_inputs], predictions.label_sets, predictions.probabilities
    ):
        shown = ", ".join(
            f"{name} {probability:.2f}" for name, probability in zip(predictions.class_names, probabilities)
        )
        table.add_row(label, "|".join(labels) or "[dim](none)[/]", shown)
    hidden = len(predictions.labels) - max_inputs
    if hidden > 0:
        table.caption = f"… {hidden} more inputs not shown; --out FILE writes them all"
        table.caption_justify = "left"
    return table


def diagnosis_line(diagnosis: Optional[dict[str, Any]]) -> None:
    if diagnosis:
        # The summary opens with the verdict; one written without it gets it in front, never twice.
        console.print(
            f"[{contract.verdict_color(diagnosis['verdict'])}]diagnosis:[/] {contract.verdict_sentence(diagnosis)}"
        )
        if diagnosis.get("fine_tuning"):
            console.print(f"[yellow]note:[/] {diagnosis['fine_tuning']}")


def predictions_table(predictions: Any, k: int, max_inputs: int = 50) -> Table:
    """Top-k classes per input (`cnnctl predict`); the first `max_inputs` inputs, the CSV has them all. A multi-label
    run's table gives each input's label set instead (`k` does not apply)."""
    if predictions.multi_label:
        return _label_sets_table(predictions, max_inputs)
    table = Table(title=f"Top-{k} predictions", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("rank", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    for label, probabilities, ranked, answered, unreadable in zip(
        predictions.labels[:max_inputs],
        predictions.probabilities,
        predictions.top_k(k),
        predictions.answered,
        predictions.unreadable,
    ):
        if unreadable:  # NaN or infinite values in the input: no class is ranked (the warning says so)
            table.add_row(f"{escape(label)} [yellow](not answered)[/]", "", "", "nan")
            table.add_section()
            continue
        for rank, index in enumerate(ranked, start=1):
            name = label if rank == 1 else ""
            if rank == 1 and not answered:
                name += " [yellow](not answered)[/]"
            table.add_row(
                name,
                str(rank),
                predictions.class_names[index],
                f"{probabilities[index]:.4f}",
                style="bold" if rank == 1 and answered else None,
            )
        if k > 1:
            table.add_section()
    hidden = len(predictions.labels) - max_inputs
    if hidden > 0:
        table.caption = f"… {hidden} more inputs not shown; --out FILE writes them all"
        table.caption_justify = "left"
    return table


def explanation_table(explanation: Any, max_inputs: int = 50) -> Table:
    """`cnnctl explain`: per input its prediction, the class explained, the true class when known, the overlay."""
    table = Table(title=f"Grad-CAM at {explanation.layer}", title_justify="left")
    for header in ("input", "predicted", "explained", "true", "overlay"):
        table.add_column(header, overflow="fold")
    names = explanation.class_names
    for index, name in enumerate(explanation.inputs[:max_inputs]):
        predicted = int(explanation.y_pred[index])
        true = int(explanation.y_true[index])
        table.add_row(
            name,
            f"{names[predicted]} ({explanation.y_prob[index, predicted]:.2f})",
            names[int(explanation.class_index[index])],
            names[true] if true >= 0 else "",
            str(explanation.figures[index]),
        )
    hidden = len(explanation.inputs) - max_inputs
    if hidden > 0:
        table.caption = f"… {hidden} more inputs in {explanation.npz}"
        table.caption_justify = "left"
    return table


@contextlib.contextmanager
def fold_progress(total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over the folds of `cnnctl cv`; each fold's training log scrolls above it.
    Yields `advance(text)`, called when a fold ends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]cross-validation[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with progress:
        task = progress.add_task("", total=total)
        yield lambda text: progress.update(task, advance=1, description=text)


def data_overview(summary: dict[str, Any]) -> None:
    """What `cnnctl data` prints: where the data come from, their layout and range, counts per split."""
    low_high = summary.get("value_range")
    shown = "n/a" if low_high is None else f"{low_high[0]:g} .. {low_high[1]:g}"
    if summary.get("value_range_examples"):
        shown += f" (first {summary['value_range_examples']} examples)"
    console.print(f"source   {summary['source']}  ·  {summary['origin']}")
    console.print(
        f"examples {tuple(summary['input_shape'])} {summary['dtype']}  ·  values {shown}  ·  "
        f"divided by {summary['pixel_scale']:g} when normalized"
    )
    console.print(data_table(summary))
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    skipped_files_warning(summary.get("skipped"))
