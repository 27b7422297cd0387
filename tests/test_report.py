"""report.html: one self-contained page (every figure embedded, no network, no script), showing the run's
numbers; rendered by a real headless Chromium when one is installed."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"')


def embedded_images(page: str) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for data, name in DATA_URI.findall(page)}


def test_train_writes_a_self_contained_report(trained_digits_run):
    run = trained_digits_run.path
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no external address, stylesheet, script or frame.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page and "<iframe" not in page and "@import" not in page
    # Every figure of the folder is in the page, byte for byte.
    figures = sorted(path.name for path in run.glob("*.png"))
    images = embedded_images(page)
    assert sorted(images) == figures and len(figures) >= 8
    for name, data in images.items():
        assert data == (run / name).read_bytes()


def test_the_report_shows_the_runs_numbers_config_and_diagnosis(trained_digits_run):
    run = trained_digits_run.path
    page = (run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "precision_weighted", "roc_auc"):
        assert f"{metrics[key]:.4f}" in page
    assert f"{metrics['top_k_accuracy']['3']:.4f}" in page
    for name, values in metrics["per_class"].items():
        assert f'<td>{name}</td><td class="num">{values["precision"]:.4f}</td>' in page
    assert html.escape(metrics["diagnosis"]["summary"]) in page
    assert html.escape((run / "config.yaml").read_text()) in page
    data = json.loads((run / "data.json").read_text())
    assert f"<strong>{data['sizes']['test']}</strong>" in page and "sklearn.datasets.load_digits" in page
    assert '<span class="status" style="background:#2ca02c">completed</span>' in page


class SectionTables(HTMLParser):
    """The tables of one <section id=...> of a page, as lists of rows of cell texts (headers included)."""

    def __init__(self, section: str):
        super().__init__()
        self.section, self.inside, self.depth = section, False, 0
        self.tables: list[list[list[str]]] = []
        self.classes: list[list[str]] = []  # each table's row classes
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.inside = attrs.get("id") == self.section
        elif self.inside and tag == "table":
            self.tables.append([])
            self.classes.append([])
        elif self.inside and tag == "tr":
            self.tables[-1].append([])
            self.classes[-1].append(attrs.get("class") or "")
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "section":
            self.inside = False


def section_tables(page: str, section: str) -> SectionTables:
    parser = SectionTables(section)
    parser.feed(page)
    return parser


def test_the_report_tables_history_csv_one_row_per_epoch(trained_digits_run):
    run = trained_digits_run.path
    with (run / "history.csv").open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    parsed = section_tables((run / "report.html").read_text(encoding="utf-8"), "history")
    (table,) = parsed.tables
    others = [index for index, name in enumerate(header) if name != "epoch"]
    assert table[0] == ["epoch", *[header[index] for index in others]]
    # Epochs as people count them: from 1, whether the file counts from 0 (Keras' CSVLogger) or from 1.
    epochs = [int(float(row[header.index("epoch")])) for row in rows]
    epochs = [epoch + 1 for epoch in epochs] if epochs[0] == 0 else epochs
    expected = [[str(epoch), *[f"{float(row[index]):.4f}" for index in others]] for epoch, row in zip(epochs, rows)]
    assert [row[0] for row in expected] == ["1", "2"]
    assert table[1:] == expected and len(expected) == 2
    # The epoch early stopping kept is the highlighted row.
    best = json.loads((run / "metrics.json").read_text())["diagnosis"]["best_epoch"]
    assert [row[0] for row, klass in zip(table[1:], parsed.classes[0][1:]) if klass == "best"] == [str(best)]


def test_the_report_tables_the_models_layers(trained_digits_run):
    run = trained_digits_run.path
    saved = json.loads((run / "layers.json").read_text())
    (table,) = section_tables((run / "report.html").read_text(encoding="utf-8"), "model").tables
    assert table[0] == ["layer", "type", "output shape", "parameters", "receptive field"]
    assert table[1:] == [
        [row["name"], row["kind"], row["output_shape"], f"{row['params']:,}", row["receptive_field"]]
        for row in saved["layers"]
    ]
    # The tiny digits model, counted by hand: the input scaling, 3×3×1×8 + 8, pooling, 3×3×8×8 + 8, flatten,
    # 4·4·8 × 10 + 10.
    assert [(row[1], row[2], row[3]) for row in table[1:]] == [
        ("Rescaling", "(None, 8, 8, 1)", "0"),
        ("Conv2D", "(None, 8, 8, 8)", "80"),
        ("MaxPooling2D", "(None, 4, 4, 8)", "0"),
        ("Conv2D", "(None, 4, 4, 8)", "584"),
        ("Flatten", "(None, 128)", "0"),
        ("Dense", "(None, 10)", "1,290"),
    ]
    # The total is every weight model.keras holds (its optimizer's state aside).
    with zipfile.ZipFile(run / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        sizes = []
        weights["layers"].visititems(
            lambda name, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None
        )
    page = (run / "report.html").read_text(encoding="utf-8")
    assert f"total parameters {sum(sizes):,} · trainable {sum(sizes):,}" in page and sum(sizes) == 1954


def test_a_run_without_a_layer_table_or_history_says_so(digits_run_copy):
    (digits_run_copy / "layers.json").unlink()
    (digits_run_copy / "history.csv").unlink()
    assert runner.invoke(app, ["report", str(digits_run_copy)]).exit_code == 0
    page = (digits_run_copy / "report.html").read_text()
    assert "No layers.json: `cnnctl plot RUN` writes it from model.keras." in page
    assert "No history.csv: the run has no training history." in page


def test_figures_are_not_forced_to_a_fixed_width(trained_digits_run):
    page = (trained_digits_run.path / "report.html").read_text(encoding="utf-8")
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)
    rules = dict(re.findall(r"^([^{}\n]+?)\s*\{([^}]*)\}", style, re.MULTILINE))
    image_rule = rules["figure img"].replace(" ", "")
    assert "max-width:100%" in image_rule and "height:auto" in image_rule
    assert not re.search(r"(^|;)width:", image_rule), "images would be stretched or squeezed to a set width"
    assert "460px" not in style


def test_report_command_regenerates_it(digits_run_copy):
    (digits_run_copy / "report.html").unlink()
    result = runner.invoke(app, ["report", str(digits_run_copy)])
    assert result.exit_code == 0, result.output
    assert str(digits_run_copy / "report.html") in "".join(result.output.split())
    assert "tiny-digits" in (digits_run_copy / "report.html").read_text()


def test_a_run_that_was_never_evaluated_still_gets_a_page(digits_run_copy):
    for path in digits_run_copy.iterdir():
        if path.suffix == ".png" or path.name.startswith(("metrics", "classification_report")):
            path.unlink()
    result = runner.invoke(app, ["report", str(digits_run_copy)])
    assert result.exit_code == 0, result.output
    page = (digits_run_copy / "report.html").read_text()
    assert "Not evaluated yet: no metrics.json." in page
    assert "No figures yet" in page and not embedded_images(page)


def test_report_of_a_missing_run_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope"), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope'}: no such run folder"


# ---------------------------------------------------------------- in a real browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Added to a copy of the page only: after loading, it writes each image's decoded size into the DOM.
PROBE = (
    '<script>window.addEventListener("load", () => document.body.setAttribute("data-image-sizes", '
    '[...document.images].map(i => i.naturalWidth + "x" + i.naturalHeight).join(",")));</script>'
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_metrics_and_every_image(trained_digits_run, tmp_path):
    run = trained_digits_run.path
    metrics = json.loads((run / "metrics.json").read_text())

    probe = tmp_path / "report.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    assert f"{metrics['accuracy']:.4f}" in dom and "Classification report" in dom
    sizes = re.search(r'data-image-sizes="([^"]*)"', dom).group(1).split(",")
    expected = []
    for name in DATA_URI.findall(probe.read_text()):
        with Image.open(run / name[1]) as image:
            expected.append(f"{image.width}x{image.height}")
    assert sizes == expected  # every <img> decoded, at the PNG's own size
    shown = [name[1] for name in DATA_URI.findall(probe.read_text())]
    assert {"gradcam.png", "reliability.png", "coverage.png"} <= set(shown)  # the section on trust, rendered
    assert metrics["coverage"]["sentence"] in dom

    # Tall enough to show the metrics, the tables and the figures below them.
    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,5000", (run / "report.html").as_uri())
    with Image.open(screenshot) as image:
        assert image.size == (1200, 5000)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # Text and tables are gray on white; the figures bring colour (curves, heat maps, feature maps). The same
    # page with its images blanked shows about 0.1% saturated pixels and 1,500 colours; rendered, 4% and 15,000.
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert saturated.mean() > 0.01
    colours = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(colours)) > 5000


# Added to a copy of the page only: each image's file name, decoded width and width on screen (border aside).
WIDTH_PROBE = (
    '<script>window.addEventListener("load", () => { document.body.setAttribute("data-widths", '
    '[...document.images].map(i => i.alt + ":" + i.naturalWidth + ":" + i.clientWidth).join(",")); '
    'document.body.setAttribute("data-page-width", document.querySelector(".figures").clientWidth); });'
    "</script>"
)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_chromium_shows_figures_at_their_own_size_and_feature_maps_unshrunk(digits_run_copy, tmp_path):
    # feature_maps.png of a 16-channel layer is about 2000 px wide: wider than the page.
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 1960, 3), dtype=np.uint8)).save(
        digits_run_copy / "feature_maps.png"
    )
    assert runner.invoke(app, ["report", str(digits_run_copy)]).exit_code == 0
    probe = tmp_path / "report.html"
    probe.write_text((digits_run_copy / "report.html").read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    dom = chromium(tmp_path, "--window-size=1200,900", "--dump-dom", probe.as_uri()).stdout
    widths = {
        name: (int(natural), float(shown))
        for name, natural, shown in (
            entry.split(":") for entry in re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")
        )
    }
    page_width = int(re.search(r'data-page-width="(\d+)"', dom).group(1)) - 2  # the images' 1 px border aside
    assert len(widths) >= 9 and 1000 < page_width < 1200
    for name, (natural, shown) in widths.items():
        if name == "feature_maps.png":
            assert shown == natural, "feature maps are shown at their own size (the page scrolls them)"
        else:
            # Never stretched; shrunk only when wider than the page, and then to the page's width.
            assert shown == pytest.approx(min(natural, page_width), abs=1), (name, natural, shown)
