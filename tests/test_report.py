"""report.html: one self-contained page (every figure embedded, no network, no script), showing the run's
numbers; rendered by a real headless Chromium when one is installed."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

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
        assert f"<td>{name}</td><td class=\"num\">{values['precision']:.4f}</td>" in page
    assert html.escape(metrics["diagnosis"]["summary"]) in page
    assert html.escape((run / "config.yaml").read_text()) in page
    data = json.loads((run / "data.json").read_text())
    assert f"<strong>{data['sizes']['test']}</strong>" in page and "sklearn.datasets.load_digits" in page
    assert '<span class="status" style="background:#2ca02c">completed</span>' in page


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

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Added to a copy of the page only: after loading, it writes each image's decoded size into the DOM.
PROBE = ('<script>window.addEventListener("load", () => document.body.setAttribute("data-image-sizes", '
         '[...document.images].map(i => i.naturalWidth + "x" + i.naturalHeight).join(",")));</script>')


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


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
