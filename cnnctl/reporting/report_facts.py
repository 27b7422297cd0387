"""Reporting: report.html's reference sections — the model's layer table (from layers.json), the data (data.json:
source, shapes, class counts per split, notes) and the environment (environment.json: versions, devices, timings).
"""

from __future__ import annotations

from cnnctl.reporting import page
from cnnctl.runs import contract


def model_section(layers: dict) -> str:
    """layers.json as a table: what `cnnctl check` prints, without loading the model."""
    rows = layers.get("layers")
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        return page.missing(f"No {contract.LAYERS}: `cnnctl plot RUN` writes it from {contract.MODEL}.")
    table = page.table(
        ["layer", "type", "output shape", "parameters", "receptive field"],
        [
            (
                page.html_escape(row.get("name", "")),
                page.html_escape(row.get("kind", "")),
                page.html_escape(row.get("output_shape", "")),
                page.count(row.get("params")),
                page.html_escape(row.get("receptive_field", "")),
            )
            for row in rows
        ],
        numeric=[3],
    )
    totals = [
        f"{label} {page.count(layers[key])}"
        for label, key in (("total parameters", "total_params"), ("trainable", "trainable_params"))
        if key in layers
    ]
    return table + (f"<p>{' · '.join(totals)}</p>" if totals else "")


def data_section(data: dict) -> str:
    if not data:
        return page.missing(f"{contract.DATA} is missing.")
    facts = [
        ("source", data.get("source")),
        ("origin", data.get("origin")),
        ("input shape", " × ".join(str(d) for d in data.get("input_shape", []))),
        ("stored dtype", data.get("dtype")),
        ("value range", " .. ".join(f"{v:g}" for v in data.get("value_range") or [])),
        ("pixel scale (inputs divided by)", data.get("pixel_scale")),
        ("classes", data.get("num_classes")),
    ]
    parts = [_facts_table(facts)]
    counts, sizes = data.get("counts") or {}, data.get("sizes") or {}
    splits = list(counts)
    if splits:
        names = list(data.get("class_names") or next(iter(counts.values())))
        rows = [
            (page.html_escape(name), *[str(counts[split].get(name, "")) for split in splits])
            for name in names[: page.MAX_CLASS_ROWS]
        ]
        if len(names) > page.MAX_CLASS_ROWS:
            rows.append((f"… {len(names) - page.MAX_CLASS_ROWS} more", *["" for _ in splits]))
        rows.append(("<strong>total</strong>", *[f"<strong>{sizes.get(split, '')}</strong>" for split in splits]))
        parts.append(page.table(["class", *splits], rows, numeric=list(range(1, len(splits) + 1)), escape=False))
    for note in data.get("notes") or []:
        parts.append(f"<p>note: {page.html_escape(note)}</p>")
    if data.get("skipped"):
        parts.append(f"<p>{len(data['skipped'])} unreadable files were skipped (listed in {contract.DATA}).</p>")
    return "\n".join(parts)


def environment_section(environment: dict) -> str:
    if not environment:
        return page.missing(f"{contract.ENVIRONMENT} is missing.")
    facts = [
        ("status", environment.get("status")),
        ("started", environment.get("started")),
        ("ended", environment.get("ended")),
        ("devices", ", ".join(environment.get("devices") or [])),
        ("precision", environment.get("precision")),
        ("seed", environment.get("seed")),
        ("error", environment.get("error")),
    ]
    facts += [(name, version) for name, version in (environment.get("versions") or {}).items()]
    return _facts_table(facts)


def _facts_table(facts: list) -> str:
    """(label, value) pairs as a two-column table without a header; empty values left out."""
    return page.table(
        ["", ""],
        [(page.html_escape(label), page.html_escape(value)) for label, value in facts if value not in (None, "")],
        header=False,
    )
