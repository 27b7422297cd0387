"""Reporting: report.html: one self-contained page per run, to open in any browser or attach to an e-mail.

Everything is in the one file: figures are embedded as base64 `data:` URIs and the styling is an inline
<style> block, so the page needs no network, no other file and no JavaScript. It is built from the run
folder alone (like `cnnctl plot`) and shows what exists: a run that failed or was never evaluated still gets
a page, saying what is missing.

Example:

    path = write_report(resolve_run("last"))   # runs/<id>/report.html
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Optional

import yaml

from cnnctl.errors import RunError
from cnnctl.reporting import page, report_facts
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run, readable_file
from cnnctl.runs.history import read_history_csv

# Figures in reading order, with the caption that tells a reader what to look for.
FIGURE_CAPTIONS = {
    contract.LOSS_CURVE: "Loss per epoch: training vs validation, best epoch starred, diagnosis annotated.",
    contract.ACCURACY_CURVE: "Accuracy per epoch: training vs validation.",
    contract.CONFUSION_PNG: "Confusion matrix (counts) of the evaluated split: rows are true classes, columns "
    "predictions.",
    contract.CONFUSION_NORMALIZED_PNG: "Confusion matrix, each row divided by its total: recall on the diagonal.",
    contract.ROC_CURVE: "ROC curves, one-vs-rest, with the AUC of each class and the micro/macro averages; "
    "near-perfect curves get a zoomed inset of the top-left corner.",
    contract.PR_CURVE: "Precision-recall curves with average precision per class.",
    contract.MISCLASSIFIED: "The most confidently wrong examples: true label, prediction and its probability.",
    contract.LABEL_CONFUSION: "Multi-label: per label, its 2x2 confusion matrix at the label's decision threshold.",
    contract.FILTERS: "The first convolution's learned kernels, one colour scale centred at zero: red positive, "
    "blue negative.",
    contract.FEATURE_MAPS: "Feature maps: what each convolution and pooling layer outputs for one input, one colour "
    "scale per layer.",
    contract.GRADCAM: "Grad-CAM: for each class its most confident correct and most confidently wrong example, "
    "the heat over the input where the evidence for the predicted class was strongest.",
    contract.RELIABILITY: "Reliability: accuracy against confidence in 15 bins; bars below the diagonal are "
    "overconfident, and the count of examples stands over each bar.",
    contract.COVERAGE: "Accuracy against coverage: how accurate the model is on the examples it answers when it "
    "abstains below a confidence threshold (`cnnctl predict --min-confidence P`).",
}

# Figures shown in the section on trust rather than with the others.
TRUST_FIGURES = (contract.GRADCAM, contract.RELIABILITY, contract.COVERAGE)


# Shown at their own size and scrolled sideways when wider than the page: their small panels shrunk to fit
# would be unreadable. Every other figure is shown at its own size too, shrunk only to fit the page.
SCROLLED_FIGURES = {contract.FEATURE_MAPS}


# The metrics table shows every headline metric; the cards at the top of the page, the few a reader wants first.
HEADLINE_METRICS = ("accuracy", "f1_macro", "roc_auc")
MULTI_LABEL_HEADLINE = ("f1_micro", "subset_accuracy", "mean_average_precision")


def write_report(run: Run) -> Path:
    """Build report.html from the run folder and write it atomically; returns its path."""
    return write_text_atomic(run.file(contract.REPORT_HTML), render_report(run))


def render_report(run: Run) -> str:
    config_text = _read_text(run, contract.CONFIG)
    environment = _read_json(run, contract.ENVIRONMENT)
    data = _read_json(run, contract.DATA)
    metrics = _read_json(run, contract.METRICS)
    class_report = _read_json(run, contract.REPORT_JSON)
    name = _config_name(config_text) or run.id

    sections = [
        ("metrics", "Metrics", _metrics_section(metrics)),
        ("diagnosis", "Diagnosis", _diagnosis_section(metrics.get("diagnosis"), metrics.get("split"))),
        ("per-class", "Classification report", _class_report_section(class_report, metrics)),
        ("history", "Training history", _history_section(run, metrics.get("diagnosis") or {})),
        ("trust", "Where it looked, and how sure", _trust_section(run, metrics)),
        ("figures", "Figures", _figures_section(run)),
        ("model", "Model", report_facts.model_section(_read_json(run, contract.LAYERS))),
        ("data", "Data", report_facts.data_section(data)),
        (
            "config",
            "Config",
            f"<pre>{page.html_escape(config_text)}</pre>"
            if config_text
            else page.missing(f"{contract.CONFIG} is missing."),
        ),
        ("environment", "Environment", report_facts.environment_section(environment)),
    ]
    nav = " ".join(f'<a href="#{anchor}">{page.html_escape(title)}</a>' for anchor, title, _ in sections)
    body = "\n".join(
        f'<section id="{anchor}">\n<h2>{page.html_escape(title)}</h2>\n{content}\n</section>'
        for anchor, title, content in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnctl report: {page.html_escape(name)}</title>
<style>{page.STYLE}</style>
</head>
<body>
<main>
<h1>{page.html_escape(name)}</h1>
<p class="subtitle">{_header_line(run, environment, data)}</p>
{_headline(metrics)}
<nav>{nav}</nav>
{body}
</main>
</body>
</html>
"""


def _header_line(run: Run, environment: dict, data: dict) -> str:
    status = environment.get("status", "unknown")
    color = contract.status_color(status)
    parts = [
        f"run <code>{page.html_escape(run.id)}</code>",
        f'<span class="status" style="background:{color}">{page.html_escape(status)}</span>',
    ]
    if data.get("source"):
        parts.append(f"data: {page.html_escape(data['source'])}")
    if environment.get("epochs_run") is not None:
        parts.append(f"{environment['epochs_run']} epochs")
    if environment.get("duration_s") is not None:
        parts.append(f"{environment['duration_s']:g} s")
    if environment.get("started"):
        parts.append(f"started {page.html_escape(environment['started'])}")
    return " · ".join(parts)


def _headline(metrics: dict) -> str:
    if not metrics:
        return ""
    wanted = MULTI_LABEL_HEADLINE if metrics.get("multi_label") else HEADLINE_METRICS
    cards = contract.metric_rows(wanted) + contract.top_k_rows(metrics.get("top_k_accuracy", {}))
    split = metrics.get("split", "test")
    return (
        '<div class="headline">'
        + "".join(
            f'<div class="card"><div class="value">{page.number(metric.value(metrics))}</div><div class="label">'
            f"{page.html_escape(metric.label)} ({page.html_escape(split)})</div></div>"
            for metric in cards
        )
        + "</div>"
    )


def _metrics_section(metrics: dict) -> str:
    if not metrics:
        return page.missing(f"Not evaluated yet: no {contract.METRICS}. `cnnctl evaluate RUN` computes the metrics.")
    # The run's own split first; splits scored later with `cnnctl evaluate --split` beside it.
    others = metrics.get("other_splits") if isinstance(metrics.get("other_splits"), dict) else {}
    columns = [metrics, *[value for value in others.values() if isinstance(value, dict)]]
    ks = {k for column in columns for k in column.get("top_k_accuracy", {})}
    rows = [("split", *[page.html_escape(column.get("split", "")) for column in columns])]
    present = {key for column in columns for key in column}  # a multi-label run has no accuracy, and so on
    rows += [
        (metric.label, *[page.number(metric.value(column)) for column in columns])
        for metric in contract.metric_rows(present, ks=ks)
    ]
    rows.append(("examples", *[str(column.get("num_examples", "")) for column in columns]))
    if any(column.get("tta", "off") != "off" for column in columns):
        rows.append(("test-time augmentation", *[page.html_escape(column.get("tta", "off")) for column in columns]))
    headers = (
        ["metric", "value"] if len(columns) == 1 else ["metric", *[f"{column.get('split')}" for column in columns]]
    )
    table = page.table(headers, rows, numeric=list(range(1, len(columns) + 1)))
    thresholds = metrics.get("thresholds")
    if isinstance(thresholds, dict) and thresholds:
        shown = ", ".join(f"{page.html_escape(name)} {page.number(value)}" for name, value in thresholds.items())
        table += f"<p>Decision thresholds ({page.html_escape(metrics.get('thresholds_from', ''))}): {shown}</p>"
    if metrics.get("does_not_apply"):
        table += f"<p>{page.html_escape(metrics['does_not_apply'])}.</p>"
    return table


def _diagnosis_section(diagnosis: Optional[dict], split: Optional[str] = None) -> str:
    if not diagnosis:
        return page.missing("No diagnosis: the run has no training history or was not evaluated.")
    color = contract.verdict_color(str(diagnosis.get("verdict", "")))
    # The summary opens with the verdict: saying it again in bold read "good fit: Good fit: ...".
    parts = [
        f'<div class="verdict" style="border-color:{color}">{page.html_escape(contract.verdict_sentence(diagnosis))}</div>'
    ]
    advice = diagnosis.get("advice") or []
    if split == "test":
        # A metrics.json from an older cnnctl may still advise the test split its numbers already come from.
        advice = [item for item in advice if "--split test" not in str(item)]
    if advice:
        parts.append("<ul>" + "".join(f"<li>{page.html_escape(item)}</li>" for item in advice) + "</ul>")
    evidence = [
        ("best epoch", diagnosis.get("best_epoch")),
        ("validation loss turned up at epoch", diagnosis.get("turn_epoch")),
        ("final training loss", diagnosis.get("final_train_loss")),
        ("final validation loss", diagnosis.get("final_val_loss")),
        ("final training accuracy", diagnosis.get("final_train_accuracy")),
        ("final validation accuracy", diagnosis.get("final_val_accuracy")),
        ("majority-class baseline accuracy", diagnosis.get("baseline_accuracy")),
    ]
    gap = diagnosis.get("generalization_gap")
    if isinstance(gap, dict):
        evidence.append(("validation − training loss", gap.get("absolute")))
    rows = [(label, page.number(value)) for label, value in evidence if value is not None]
    if rows:
        parts.append(page.table(["evidence", "value"], rows, numeric=[1]))
    for note in diagnosis.get("notes") or []:
        parts.append(f"<p>{page.html_escape(note)}</p>")
    return "\n".join(parts)


def _class_report_section(class_report: dict, metrics: dict) -> str:
    per_class = {name: values for name, values in class_report.items() if isinstance(values, dict)}
    if not per_class and metrics.get("per_class"):
        per_class = {name: {**values, "f1-score": values.get("f1")} for name, values in metrics["per_class"].items()}
    if not per_class:
        return page.missing(f"No {contract.REPORT_JSON}: the run was not evaluated.")
    rows = []
    names = list(per_class)
    for name in names[: page.MAX_CLASS_ROWS] + [n for n in names[page.MAX_CLASS_ROWS :] if n.endswith(" avg")]:
        values = per_class[name]
        support = values.get("support")
        rows.append(
            (
                page.html_escape(name),
                page.number(values.get("precision")),
                page.number(values.get("recall")),
                page.number(values.get("f1-score")),
                "" if support is None else str(int(support)),
            )
        )
    table = page.table(["class", "precision", "recall", "F1", "support"], rows, numeric=[1, 2, 3, 4])
    hidden = len([n for n in names[page.MAX_CLASS_ROWS :] if not n.endswith(" avg")])
    if hidden:
        table += f"<p>… {hidden} more classes in {contract.REPORT_JSON}.</p>"
    if "accuracy" in class_report:
        table += f"<p>accuracy: {page.number(class_report['accuracy'])}</p>"
    return table


def _trust_section(run: Run, metrics: dict) -> str:
    """Calibration numbers, the reject option's sentence and the Grad-CAM, reliability and coverage figures."""
    if metrics.get("multi_label"):
        return page.missing(
            "Multi-label: calibration, the reject option and the per-class Grad-CAM examples need one label per "
            "example; each label's decision threshold is in Metrics, and `cnnctl explain RUN IMAGE --class LABEL` "
            "shows where the model found a label."
        )
    calibration = metrics.get("calibration")
    parts = []
    if calibration:
        rows = [
            ("expected calibration error (ECE, 15 bins)", calibration.get("ece")),
            ("maximum calibration error (MCE)", calibration.get("mce")),
            ("Brier score", calibration.get("brier")),
            ("negative log-likelihood", calibration.get("nll")),
        ]
        temperature = metrics.get("temperature")
        if temperature:
            rows.append(("temperature (fitted on val, inside model.keras)", temperature.get("value")))
            rows += [
                (f"{key} before temperature scaling", temperature.get("before", {}).get(key)) for key in ("ece", "nll")
            ]
        parts.append(
            "<table>"
            + "".join(
                f"<tr><td>{page.html_escape(label)}</td><td>{page.number(value)}</td></tr>" for label, value in rows
            )
            + "</table>"
        )
    elif metrics.get("calibration_note"):
        parts.append(page.missing(f"No calibration: {metrics['calibration_note']}"))
    if (metrics.get("coverage") or {}).get("sentence"):
        parts.append(f"<p><strong>{page.html_escape(metrics['coverage']['sentence'])}</strong></p>")
    parts += [_figure(run, name) for name in TRUST_FIGURES if run.has(name)]
    return "\n".join(parts) if parts else page.missing("Not evaluated yet: `cnnctl evaluate RUN` computes it.")


def _figure(run: Run, name: str) -> str:
    try:
        encoded = base64.b64encode(readable_file(run.file(name)).read_bytes()).decode("ascii")
    except OSError as exc:
        return page.missing(f"{name}: cannot read ({exc.strerror}).")
    except RunError as exc:
        return page.missing(str(exc))
    caption = FIGURE_CAPTIONS.get(name, "")
    klass = ' class="scroll"' if name in SCROLLED_FIGURES else ""
    return (
        f'<figure id="{page.html_escape(name)}"{klass}><img src="data:image/png;base64,{encoded}" '
        f'alt="{page.html_escape(name)}"><figcaption><code>{page.html_escape(name)}</code> {page.html_escape(caption)}</figcaption></figure>'
    )


def _figures_section(run: Run) -> str:
    present = sorted(path.name for path in run.path.glob("*.png") if not path.name.startswith("."))
    present = [name for name in present if name not in TRUST_FIGURES]
    ordered = [name for name in FIGURE_CAPTIONS if name in present]
    ordered += [name for name in present if name not in FIGURE_CAPTIONS]
    if not ordered:
        return page.missing("No figures yet: `cnnctl plot RUN` draws them.")
    return '<div class="figures">\n' + "\n".join(_figure(run, name) for name in ordered) + "\n</div>"


def _history_section(run: Run, diagnosis: dict) -> str:
    """history.csv as a table, one row per epoch (numbered from 1, as every figure does), the best one marked."""
    if not run.has(contract.HISTORY):
        return page.missing(f"No {contract.HISTORY}: the run has no training history.")
    history = read_history_csv(run.file(contract.HISTORY))  # damaged: a RunError, the old page kept (_read_json)
    columns = [name for name in history if name != "epoch"]
    rows = max((len(values) for values in history.values()), default=0)
    epochs = contract.epoch_numbers(history.get("epoch"), rows)
    best = diagnosis.get("best_epoch")
    head = "<tr>" + "".join(f'<th class="num">{page.html_escape(name)}</th>' for name in ["epoch", *columns]) + "</tr>"
    body = "".join(
        ('<tr class="best">' if epoch == best else "<tr>")
        + f'<td class="num">{epoch}</td>'
        + "".join(f'<td class="num">{page.number(history[name][row])}</td>' for name in columns)
        + "</tr>"
        for row, epoch in enumerate(epochs)
    )
    note = f"<p>Best epoch ({best}) highlighted.</p>" if best in epochs else ""
    return f'{note}<div class="scroll-table"><table>{head}{body}</table></div>'


def _read_json(run: Run, name: str) -> dict:
    """A missing file leaves its section saying so (a run still training has no metrics.json yet); a damaged one
    (a FIFO, garbage, JSON nested past sense) is a RunError naming it, and the old report.html stays as it was:
    a page rewritten around it would lose what the old one showed."""
    return run.read_json(name) if run.has(name) else {}


def _read_text(run: Run, name: str) -> str:
    if not run.has(name):
        return ""
    path = readable_file(run.file(name))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None


def _config_name(config_text: str) -> Optional[str]:
    try:
        config = yaml.safe_load(config_text) if config_text else None
    except yaml.YAMLError:
        return None
    return str(config["name"]) if isinstance(config, dict) and config.get("name") else None
