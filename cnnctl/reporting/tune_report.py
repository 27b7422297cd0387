"""Reporting: a `cnnctl tune` folder's figures and tune_report.html, from tune_summary.json alone.

The page uses page.py's style: one self-contained HTML file, figures embedded, no network.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Sequence

import yaml

from cnnctl.reporting import page, tune_plots
from cnnctl.reporting.plots import save_figure
from cnnctl.runs import contract
from cnnctl.runs.atomic import write_text_atomic
from cnnctl.runs.folder import Run

FIGURE_CAPTIONS = {
    contract.TUNE_HISTORY_PNG: "Each trial's val accuracy by trial number; the line: the best completed one so far.",
    contract.TUNE_IMPORTANCE_PNG: "How much of the score's variation each tuned value explains (fANOVA).",
    contract.TUNE_SLICE_PNG: "Each trial's val accuracy against the value it tried, one panel per tuned path.",
}


def draw_tune_figures(tune_run: Run, summary: dict[str, Any], log_params: Sequence[str] = ()) -> list[Path]:
    """tune_history.png, tune_slice.png and (when summary has importances) tune_importance.png."""
    scored = [trial for trial in summary["trials"] if trial["state"] in tune_plots.STATE_STYLE]
    numbers = [trial["number"] for trial in scored]
    values = [trial.get("value") for trial in scored]
    states = [trial["state"] for trial in scored]
    objective = summary.get("objective_name", "val accuracy")
    written = [
        save_figure(
            tune_plots.history_figure(numbers, values, states, objective), tune_run.file(contract.TUNE_HISTORY_PNG)
        )
    ]
    params = {path: [trial["params"].get(path) for trial in scored] for path in summary["search_space"]}
    written.append(
        save_figure(
            tune_plots.slice_figure(params, values, states, log_params, objective),
            tune_run.file(contract.TUNE_SLICE_PNG),
        )
    )
    if summary.get("importances"):
        written.append(
            save_figure(
                tune_plots.importance_figure(summary["importances"]), tune_run.file(contract.TUNE_IMPORTANCE_PNG)
            )
        )
    return written


def write_tune_report(tune_run: Run, summary: dict[str, Any]) -> Path:
    return write_text_atomic(tune_run.file(contract.TUNE_REPORT), render_tune_report(tune_run, summary))


def render_tune_report(tune_run: Run, summary: dict[str, Any]) -> str:
    e = page.html_escape
    best = summary.get("best")
    headline = (
        "<p>No trial completed: no best config.</p>"
        if best is None
        else f'<div class="headline"><div class="card"><div class="value">{best["value"]:.4f}</div>'
        f'<div class="label">best {e(summary.get("objective_name", "val accuracy"))} (trial {best["number"]})</div>'
        "</div></div>"
        f"<p>Best values: {', '.join(f'<code>{e(path)} = {e(value)}</code>' for path, value in best['params'].items())}"
        f"; config: <code>{e(contract.TUNE_BEST)}</code> "
        f"(<code>cnnctl train {e(tune_run.file(contract.TUNE_BEST))}</code> scores it on test).</p>"
    )
    rows = []
    for trial in summary["trials"]:
        color = contract.status_color("completed" if trial["state"] == "complete" else trial["state"])
        state = f'<span class="status" style="background:{color}">{e(trial["state"])}</span>'
        params = ", ".join(f"{e(path)} = {page.number(value)}" for path, value in trial["params"].items())
        rows.append(
            (
                trial["number"],
                state,
                page.number(trial.get("value")),
                params,
                e(trial.get("epochs") or ""),
                e(trial.get("run") or ""),
            )
        )
    objective = summary.get("objective_name", "val accuracy")
    table = page.table(["trial", "state", objective, "values", "epochs", "run folder"], rows, numeric=[0, 2, 4])
    figures = []
    for name, caption in FIGURE_CAPTIONS.items():
        if tune_run.has(name):
            encoded = base64.b64encode(tune_run.file(name).read_bytes()).decode("ascii")
            figures.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{e(name)}"><figcaption>'
                f"<code>{e(name)}</code> {e(caption)}</figcaption></figure>"
            )
    space = yaml.safe_dump(summary["search_space"], sort_keys=False, default_flow_style=None)
    notes = "".join(page.missing(note) for note in summary.get("notes", []))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnctl tune: {e(summary.get("name"))}</title>
<style>{page.STYLE}</style>
</head>
<body>
<main>
<h1>Tuning {e(summary.get("name"))}</h1>
<p class="subtitle">{len(summary["trials"])} trials of {summary["trials_wanted"]} · {e(summary["status"])} ·
objective: {e(summary["objective"])} · {e(summary["pruning"])}</p>
{headline}
{notes}
<section id="tune"><h2>Trials</h2>
{table}
</section>
<section id="figures"><h2>Figures</h2>
<div class="figures">{"".join(figures)}</div>
</section>
<section id="space"><h2>Search space</h2>
<pre>{e(space)}</pre>
</section>
</main>
</body>
</html>
"""
