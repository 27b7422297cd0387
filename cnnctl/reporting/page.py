"""Reporting: the pieces every HTML page of cnnctl is made of — one style sheet (no network, no script), tables,
numbers as the pages show them, escaping. report.html, tune_report.html and compare.html share them.
"""

from __future__ import annotations

import html
import math
from typing import Any

MAX_CLASS_ROWS = 100  # data and per-class tables beyond this are cut, with a line saying how many more

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 0;
       color: #1d2430; background: #f5f6f8; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; border-bottom: 2px solid #e3e6eb; padding-bottom: 4px; margin-top: 32px; }
.subtitle { color: #5b6575; margin: 0 0 16px; }
.status { display: inline-block; padding: 1px 10px; border-radius: 10px; color: #fff; font-size: 0.85em; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e3e6eb; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f2f5; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #e3e6eb; border-radius: 8px; padding: 8px 16px; min-width: 120px; }
.card .value { font-size: 1.6em; font-weight: 600; }
.card .label { color: #5b6575; font-size: 0.85em; }
.verdict { border-left: 6px solid; padding: 8px 16px; background: #f8f9fb; margin: 8px 0; }
.verdict strong { text-transform: capitalize; }
.figures { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 8px 20px; }
figure { margin: 12px 0 20px; max-width: 100%; }
figure img { display: block; box-sizing: border-box; max-width: 100%; height: auto; border: 1px solid #e3e6eb; }
figure.scroll { flex: 1 1 100%; overflow-x: auto; }
figure.scroll img { max-width: none; }
.scroll-table { max-height: 420px; overflow-y: auto; display: inline-block; }
.scroll-table th { position: sticky; top: 0; }
tr.best td { font-weight: 600; background: #fff8d6; }
figcaption { color: #5b6575; font-size: 0.9em; margin-top: 4px; }
pre { background: #f6f8fa; border: 1px solid #e3e6eb; padding: 10px 14px; overflow-x: auto; font-size: 0.85em; }
.missing { color: #8a6d00; background: #fff8e1; padding: 6px 12px; border-radius: 4px; }
nav a { margin-right: 14px; color: #1f5fbf; text-decoration: none; }
"""


def table(
    headers: list[str], rows: list[tuple], numeric: list[int] = (), header: bool = True, escape: bool = False
) -> str:
    """Rows are HTML already (escaped by the caller), unless `escape`."""

    def cell(tag: str, index: int, value: Any) -> str:
        klass = ' class="num"' if index in numeric else ""
        text = html_escape(value) if escape else str(value)
        return f"<{tag}{klass}>{text}</{tag}>"

    head = ("<tr>" + "".join(cell("th", i, html_escape(h)) for i, h in enumerate(headers)) + "</tr>") if header else ""
    body = "".join("<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html_escape(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}"


def count(value: Any) -> str:
    return (
        f"{value:,}"
        if isinstance(value, int) and not isinstance(value, bool)
        else html_escape("" if value is None else value)
    )


def missing(text: str) -> str:
    return f'<p class="missing">{html_escape(text)}</p>'


def html_escape(value: Any) -> str:
    return html.escape(str(value), quote=True)
