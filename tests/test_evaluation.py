"""A trained digits run, judged from the outside: every file is there, every figure is a real picture of the
promised size, every number in metrics.json agrees with scikit-learn, and `evaluate`/`plot`/`filter`/`runs`/
`compare` regenerate or show what they should."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

# Sizes in pixels (100 dpi) for the tiny digits run of conftest.py: 10 classes, 24 misclassified examples
# in rows of 8, 8 first-layer filters, feature maps of the input + 3 conv/pool layers with 8 channels.
EXPECTED_PNG_SIZES = {
    "loss_curve.png": (800, 500),
    "accuracy_curve.png": (800, 500),
    "confusion_matrix.png": (820, 700),  # side 2.5 + 0.45 × 10 classes = 7 in, + 1.2 in colorbar
    "confusion_matrix_normalized.png": (820, 700),
    # A square plot and the legend beside it: the width follows the legend (tests/test_plots.py checks the square).
    "roc_curve.png": (range(700, 1000), 600),
    "pr_curve.png": (range(700, 1000), 600),
    # 8 panels of 1.35 in, 0.15 in apart, 0.1 margins; 3 rows under 2 title lines (0.16 in each), 0.45 in title
    "misclassified.png": (1205, 586),
    "filters.png": (1145, 186),  # 8 panels of 1.15 in + 1.1 in colour bar; one row
}
RUN_FILES = [
    "config.yaml",
    "environment.json",
    "data.json",
    "model.keras",
    "history.csv",
    "metrics.json",
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "predictions.npz",
    "report.html",
    *EXPECTED_PNG_SIZES,
]
VERDICTS = {"overfitting", "underfitting", "good fit", "still improving"}


def assert_size(pixels: np.ndarray, expected: tuple) -> None:
    width, height = expected
    assert pixels.shape[0] == height and (
        pixels.shape[1] in width if isinstance(width, range) else pixels.shape[1] == width
    )


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG", path
        return np.asarray(image.convert("RGB"), dtype=float)


def assert_not_blank(pixels: np.ndarray, name: str) -> None:
    # A blank or failed figure is one flat colour; a real one has ink on a good part of the canvas.
    ink = (pixels.min(axis=2) < 200).mean()
    assert pixels.std() > 10 and ink > 0.01, f"{name} looks blank (std {pixels.std():.1f}, ink {ink:.3f})"


def load_predictions(run: Path) -> dict:
    with np.load(run / "predictions.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_a_digits_run_writes_every_file(trained_digits_run):
    missing = [name for name in RUN_FILES if not (trained_digits_run.path / name).is_file()]
    assert not missing


@pytest.mark.parametrize("name", sorted(EXPECTED_PNG_SIZES))
def test_every_figure_opens_has_its_size_and_is_not_blank(trained_digits_run, name):
    pixels = read_png(trained_digits_run.path / name)
    assert_size(pixels, EXPECTED_PNG_SIZES[name])
    assert_not_blank(pixels, name)


def test_metrics_json_agrees_with_scikit_learn(trained_digits_run):
    run = trained_digits_run.path
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = load_predictions(run)
    y_true, y_prob = predictions["y_true"], predictions["y_prob"].astype(np.float64)
    y_pred = y_prob.argmax(axis=1)
    labels = np.arange(10)

    # The evaluator judged the test split that training left out (data.json says 360 examples).
    assert metrics["split"] == "test" and metrics["num_examples"] == len(y_true) == 360
    assert np.allclose(y_prob.sum(axis=1), 1, atol=1e-4)
    assert metrics["accuracy"] == pytest.approx(np.mean(y_pred == y_true))
    assert set(metrics["top_k_accuracy"]) == {"1", "3"}
    for k, value in metrics["top_k_accuracy"].items():
        top = np.argsort(-y_prob, axis=1)[:, : int(k)]
        assert value == pytest.approx(np.mean([t in row for t, row in zip(y_true, top)]))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, average=average, labels=labels, zero_division=0
        )
        assert metrics[f"precision_{average}"] == pytest.approx(p)
        assert metrics[f"recall_{average}"] == pytest.approx(r)
        assert metrics[f"f1_{average}"] == pytest.approx(f)
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, y_prob, multi_class="ovr"), abs=1e-6)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert list(metrics["per_class"]) == [str(i) for i in range(10)]
    for i, values in enumerate(metrics["per_class"].values()):
        assert values == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})

    with open(run / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [str(i) for i in range(10)]
    assert np.array_equal(np.array(rows[1:], dtype=int), skm.confusion_matrix(y_true, y_pred, labels=labels))


def test_the_evaluated_labels_are_the_test_split_of_the_data(trained_digits_run):
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    dataset = load_data(load_config(trained_digits_run.path / "config.yaml"))
    predictions = load_predictions(trained_digits_run.path)
    assert np.array_equal(predictions["y_true"], dataset.splits["test"].y)
    # The misclassified grid's examples are really wrong, most confident first.
    index = predictions["wrong_index"]
    wrong_prob = predictions["y_prob"][index]
    assert np.all(wrong_prob.argmax(axis=1) != predictions["y_true"][index])
    assert np.all(np.diff(wrong_prob.max(axis=1)) <= 1e-7)
    assert np.array_equal(predictions["wrong_x"], dataset.splits["test"].x[index])


def test_the_real_run_gets_a_diagnosis_with_evidence(trained_digits_run):
    metrics = json.loads((trained_digits_run.path / "metrics.json").read_text())
    diagnosis = metrics["diagnosis"]
    assert diagnosis["verdict"] in VERDICTS
    assert diagnosis["summary"] and diagnosis["advice"]
    y_true = load_predictions(trained_digits_run.path)["y_true"]
    assert diagnosis["baseline_accuracy"] == pytest.approx(np.bincount(y_true).max() / len(y_true))  # 37 / 360
    assert f"diagnosis: {diagnosis['summary'][:30]}" in " ".join(trained_digits_run.output.split())


def test_evaluate_on_the_validation_split_rewrites_the_reports(digits_run_copy):
    for name in ("metrics.json", "report.html", "roc_curve.png"):
        (digits_run_copy / name).unlink()
    result = runner.invoke(app, ["evaluate", str(digits_run_copy), "--split", "val"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((digits_run_copy / "metrics.json").read_text())
    predictions = load_predictions(digits_run_copy)
    assert metrics["split"] == "val" == str(predictions["split"])
    assert metrics["num_examples"] == len(predictions["y_true"]) == 144
    y_pred = predictions["y_prob"].argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(predictions["y_true"], y_pred))
    assert f"{metrics['accuracy']:.4f}" in result.output
    assert (digits_run_copy / "roc_curve.png").is_file()
    assert "Metrics on the val split" in result.output
    assert "(val)" in (digits_run_copy / "report.html").read_text()


def test_evaluate_on_another_split_keeps_the_headline_and_scores_it_beside(digits_run_copy):
    """A run scored on test, evaluated on val: metrics.json keeps its test numbers (what `cnnctl runs`, report.html
    and compare show first) and gains other_splits.val; the reports and predictions stay the test split's."""
    before = {name: (digits_run_copy / name).read_bytes() for name in ("predictions.npz", "confusion_matrix.csv")}
    headline = json.loads((digits_run_copy / "metrics.json").read_text())
    result = runner.invoke(app, ["evaluate", str(digits_run_copy), "--split", "val"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((digits_run_copy / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["accuracy"] == headline["accuracy"]
    val = metrics["other_splits"]["val"]
    assert val["split"] == "val" and val["num_examples"] == 144 and "calibration" in val
    assert {name: (digits_run_copy / name).read_bytes() for name in before} == before
    assert "Metrics on the val split" in result.output and f"{val['accuracy']:.4f}" in result.output
    html = (digits_run_copy / "report.html").read_text()
    assert "<th>test</th>" in html.replace(' class="num"', "") and "<th>val</th>" in html.replace(' class="num"', "")
    runs = runner.invoke(app, ["runs", "--runs-dir", str(digits_run_copy.parent)])
    assert f"{headline['accuracy']:.4f}" in runs.output and "(val)" not in runs.output


def test_evaluate_refuses_an_unknown_split(digits_run_copy):
    result = runner.invoke(app, ["evaluate", str(digits_run_copy), "--split", "train"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --split train: must be test or val"


def test_evaluate_names_the_run_config_when_its_data_is_gone(digits_run_copy):
    """A run trained on a file that has since moved: the error says which config.yaml to fix, writes nothing."""
    config = digits_run_copy / "config.yaml"
    moved = config.read_text().replace("source: digits", "source: npz").replace("\n  path: null", "\n  path: gone.npz")
    config.write_text(moved)
    before = (digits_run_copy / "metrics.json").read_bytes()
    result = runner.invoke(app, ["evaluate", str(digits_run_copy)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {config}: data.path: {digits_run_copy / 'gone.npz'} does not exist"
    assert (digits_run_copy / "metrics.json").read_bytes() == before


def test_plot_redraws_every_figure_and_the_report_and_draws_feature_maps(digits_run_copy, tmp_path):
    import keras

    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data
    from cnnctl.reporting.feature_maps import layer_activations
    from cnnctl.runs.folder import Run
    from cnnctl.runs.model_file import load_model

    dataset = load_data(load_config(digits_run_copy / "config.yaml"))
    digit = dataset.splits["test"].x[0, :, :, 0]  # digits pixels are 0..16: saved as an ordinary 0..255 image
    image = tmp_path / "digit.png"
    Image.fromarray(np.round(digit * 255 / 16).astype(np.uint8), mode="L").save(image)
    for name in [*EXPECTED_PNG_SIZES, "report.html"]:
        (digits_run_copy / name).unlink()

    result = runner.invoke(app, ["plot", str(digits_run_copy), "--feature-maps", str(image)])
    assert result.exit_code == 0, result.output
    printed = "".join(result.output.split())  # the console wraps long paths
    for name, size in EXPECTED_PNG_SIZES.items():
        pixels = read_png(digits_run_copy / name)
        assert_size(pixels, size)
        assert str(digits_run_copy / name) in printed
    # Keras numbers layer names per process (conv2d, conv2d_3, ...), so only the stem is fixed.
    assert re.search(
        r"feature maps: conv2d(_\d+)? \(8, 8, 8\), max_pooling2d(_\d+)? \(4, 4, 8\), "
        r"conv2d_\d+ \(4, 4, 8\)",
        " ".join(result.output.split()),
    ), result.output
    pixels = read_png(digits_run_copy / "feature_maps.png")
    assert (pixels.shape[1], pixels.shape[0]) == (1080, 490)  # 8 channels × 1.1 + 2 in; 4 rows × 1.15 + 0.3 in
    assert_not_blank(pixels, "feature_maps.png")
    assert "feature_maps.png" in (digits_run_copy / "report.html").read_text()

    # The activations are the layers' outputs: recompute them by calling the layers one after the other, from
    # the raw digit (the model's first layer divides by 16), then from the same digit scaled by hand.
    model = load_model(Run(digits_run_copy))
    assert model.layers[0].name == "scale_inputs"
    x = digit.astype(np.float32)[..., np.newaxis]
    activations = dict(layer_activations(model, x))
    assert list(activations) == [layer.name for layer in model.layers[1:4]]  # conv, pool, conv: not the scaling
    value = x[np.newaxis]
    for layer in model.layers[:4]:
        value = layer(value)
        if layer.name in activations:
            assert np.allclose(activations[layer.name], keras.ops.convert_to_numpy(value)[0], atol=1e-5)
    by_hand = model.layers[1]((x / 16.0)[np.newaxis])
    assert np.allclose(activations[model.layers[1].name], keras.ops.convert_to_numpy(by_hand)[0], atol=1e-5)


def test_feature_maps_of_a_missing_image_is_a_one_line_error(digits_run_copy):
    result = runner.invoke(app, ["plot", str(digits_run_copy), "--feature-maps", "no-such.png"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: INPUT no-such.png: no such file or folder"


# ---------------------------------------------------------------- cnnctl filter


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """scikit-learn's bundled china.jpg, a real 427×640 photograph."""
    from sklearn.datasets import load_sample_image

    path = tmp_path_factory.mktemp("photo") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path, quality=95)
    return path


def test_filter_writes_the_four_panels_of_a_real_photograph(photo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["filter", str(photo), "--kernel", "edge"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "original 427×640 → convolution (edge) 427×640 → ReLU 427×640 → max-pool 2×2 213×320" in text
    out = tmp_path / "china_filter.png"  # default: <image stem>_filter.png in the current folder
    assert "china_filter.png" in text
    pixels = read_png(out)
    assert (pixels.shape[1], pixels.shape[0]) == (1200, 340)  # 4 panels × 3 in, 3.4 in high
    assert_not_blank(pixels, out.name)


def test_filter_pool_and_out_options(photo, tmp_path):
    out = tmp_path / "figures" / "pooled.png"
    result = runner.invoke(app, ["filter", str(photo), "--kernel", "blur", "--pool", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max-pool 3×3 142×213" in " ".join(result.output.split())  # 427 // 3, 640 // 3
    assert out.is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--kernel", "sharp"],
            "error: --kernel sharp: unknown kernel; did you mean 'sharpen'? "
            "(sharpen, edge, blur, emboss, or a .npy/.txt/.csv file)",
        ),
        (["--pool", "0"], "error: --pool 0: must be a whole number of pixels ≥ 1, e.g. --pool 2"),
        (["--out", "x.jpg"], "error: --out x.jpg: the figure is a PNG; use a name ending in .png"),
    ],
)
def test_filter_mistakes_are_one_line_errors(photo, args, message):
    result = runner.invoke(app, ["filter", str(photo), *args])
    assert result.exit_code == 2
    assert result.output.strip() == message


# ---------------------------------------------------------------- cnnctl runs / compare


def _second_run(trained_digits_run, runs_dir: Path, run_id: str, **metric_changes) -> Path:
    """A copy of the trained run under another (later) id, with some metrics changed."""
    target = runs_dir / run_id
    shutil.copytree(trained_digits_run.path, target)
    metrics = json.loads((target / "metrics.json").read_text())
    metrics.update(metric_changes)
    (target / "metrics.json").write_text(json.dumps(metrics))
    return target


def test_runs_lists_every_run_newest_first(trained_digits_run, tmp_path, monkeypatch):
    from cnnctl.cli import console as display

    monkeypatch.setattr(display.console, "width", 200)
    runs_dir = tmp_path / "runs"
    shutil.copytree(trained_digits_run.path, runs_dir / trained_digits_run.path.name)
    newer = _second_run(trained_digits_run, runs_dir, "29991231-235959-later", accuracy=0.12345, f1_macro=0.5432)
    environment = json.loads((newer / "environment.json").read_text())
    environment.update(status="failed", duration_s=75.0, epochs_run=1)
    (newer / "environment.json").write_text(json.dumps(environment))

    result = runner.invoke(app, ["runs", "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "tiny-digits" in line]
    assert len(lines) == 2
    assert "29991231-235959-later" in lines[0]  # newest first
    assert re.search(r"digits\s*│\s*1\s*│\s*0\.1235\s*│\s*0\.5432\s*│\s*failed\s*│\s*1m 15s", lines[0])
    original = json.loads((trained_digits_run.path / "metrics.json").read_text())
    assert trained_digits_run.path.name in lines[1]
    assert f"{original['accuracy']:.4f}" in lines[1] and "completed" in lines[1]


def test_runs_in_an_empty_folder_says_so(tmp_path):
    result = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert f"norunsin{tmp_path};" in "".join(result.output.split())  # the console wraps long paths


def test_compare_shows_metrics_side_by_side_and_overlays_the_loss_curves(trained_digits_run, tmp_path, monkeypatch):
    from cnnctl.cli import console as display

    monkeypatch.setattr(display.console, "width", 200)
    monkeypatch.chdir(tmp_path)
    other = _second_run(trained_digits_run, tmp_path / "runs", "29991231-235959-other", accuracy=0.99)
    result = runner.invoke(app, ["compare", str(trained_digits_run.path), str(other)])
    assert result.exit_code == 0, result.output
    original = json.loads((trained_digits_run.path / "metrics.json").read_text())
    accuracy_line = next(line for line in result.output.splitlines() if line.startswith("│ accuracy"))
    assert f"{original['accuracy']:.4f}" in accuracy_line and "0.9900" in accuracy_line
    f1_line = next(line for line in result.output.splitlines() if line.startswith("│ F1 macro"))
    assert f1_line.count(f"{original['f1_macro']:.4f}") == 2
    assert "loss curves: compare.png" in result.output
    pixels = read_png(tmp_path / "compare.png")
    assert (pixels.shape[1], pixels.shape[0]) == (800, 500)
    assert_not_blank(pixels, "compare.png")


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "error: compare: give at least two runs, e.g. cnnctl compare RUN_A RUN_B"),
        (["SAME"], "error: compare: run {id} is given twice"),
        (["TYPO"], "error: {typo}: no such run in {runs_dir}; did you mean {id}?"),
    ],
)
def test_compare_mistakes_are_one_line_errors(trained_digits_run, extra, message):
    run = trained_digits_run.path
    typo = run.name[:-1] + "z"
    args = [{"SAME": str(run), "TYPO": typo}[item] for item in extra]
    result = runner.invoke(app, ["compare", str(run), *args, "--runs-dir", str(trained_digits_run.runs_dir)])
    assert result.exit_code == 2
    assert result.output.strip() == message.format(id=run.name, typo=typo, runs_dir=trained_digits_run.runs_dir)
