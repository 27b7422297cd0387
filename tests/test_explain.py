"""Trust in a trained run, end to end: `cnnctl explain` (Grad-CAM overlays and explain.npz), what every evaluation
adds (gradcam.png, calibration numbers checked against an independent computation, reliability.png, the
accuracy-against-coverage curve), `evaluate.calibrate: temperature` inside model.keras, and `predict
--min-confidence`. The Grad-CAM maps themselves are tested in test_gradcam.py, the calibration formulas in
test_calibration.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import brier_score_loss, log_loss
from test_hostile_inputs_more import one_error
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()


def convolutions(run: Path) -> list[str]:
    """The run's convolution layer names (Keras numbers them per process: conv2d_3 in a worker that built others)."""
    return [row["name"] for row in json.loads((run / "layers.json").read_text())["layers"] if row["kind"] == "Conv2D"]


def digits_npz(path: Path, count: int = 6) -> Path:
    digits = load_digits()
    np.savez(path, x=digits.images[:count], y=digits.target[:count])
    return path


def independent_gradcam(run: Path, images: np.ndarray) -> np.ndarray:
    """Grad-CAM written out for this Sequential model with TensorFlow's GradientTape: the predicted class's logit
    (the last Dense layer without its softmax), channel weights = the spatial mean of its gradient at the last
    convolution, relu of the weighted sum, bilinear to 8×8 (as tf.image.resize), divided by the peak."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    last = max(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D))
    with tf.GradientTape() as tape:
        hidden = tf.constant(images[..., None], tf.float32)
        for layer in model.layers[: last + 1]:
            hidden = layer(hidden)
        activation = hidden
        tape.watch(activation)
        for layer in model.layers[last + 1 : -1]:
            hidden = layer(hidden)
        logits = tf.matmul(hidden, model.layers[-1].kernel) + model.layers[-1].bias
        score = tf.reduce_sum(tf.reduce_max(logits, axis=1))
    gradient = tape.gradient(score, activation).numpy()
    cam = np.maximum((gradient.mean(axis=(1, 2), keepdims=True) * activation.numpy()).sum(axis=-1), 0)
    cam = tf.image.resize(cam[..., None], (8, 8), method="bilinear", antialias=False).numpy()[..., 0]
    peaks = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cam, peaks, out=np.zeros_like(cam), where=peaks > 0)


def test_explain_writes_an_overlay_per_input_and_the_heat_maps(digits_run_copy, tmp_path):
    inputs = digits_npz(tmp_path / "six.npz")
    folder = tmp_path / "seven"
    folder.mkdir()
    image = folder.parent / "7" / "a.png"  # a folder named after a class: its true class is known
    image.parent.mkdir()
    Image.fromarray((load_digits().images[7] * 255 / 16).astype(np.uint8)).save(image)
    result = runner.invoke(app, ["explain", str(digits_run_copy), str(inputs), str(image)])
    assert result.exit_code == 0, result.output
    out = digits_run_copy / "explain"
    with np.load(out / "explain.npz") as saved:
        heatmaps, y_pred, y_prob, y_true = saved["heatmaps"], saved["y_pred"], saved["y_prob"], saved["y_true"]
        names, layer = list(saved["inputs"]), str(saved["layer"])
    assert heatmaps.shape == (7, 8, 8) and heatmaps.dtype == np.float32
    peaks = heatmaps.reshape(7, -1).max(axis=1)
    assert heatmaps.min() >= 0 and np.all((peaks == 0) | np.isclose(peaks, 1))  # no positive evidence: all zero
    np.testing.assert_allclose(heatmaps[:6], independent_gradcam(digits_run_copy, load_digits().images[:6]), atol=1e-4)
    assert names[:2] == [f"{inputs}[0]", f"{inputs}[1]"] and names[6] == str(image)
    assert y_true.tolist() == [0, 1, 2, 3, 4, 5, 7]
    first, last = convolutions(digits_run_copy)
    assert layer == last  # the last convolution of the tiny digits model
    predictions = runner.invoke(
        app,
        ["predict", str(digits_run_copy), str(inputs), str(image), "--top-k", "1", "--out", str(tmp_path / "p.csv")],
    )
    assert predictions.exit_code == 0, predictions.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [int(row["class_index"]) for row in rows] == y_pred.tolist()  # the same answers as predict
    np.testing.assert_allclose([float(row["probability"]) for row in rows], y_prob.max(axis=1), atol=1e-5)
    overlays = sorted(out.glob("*.png"))
    assert [path.name for path in overlays][:2] == ["000-six.npz-0.png", "001-six.npz-1.png"]
    assert len(overlays) == 7 and overlays[-1].name == "006-a.png"
    with Image.open(overlays[0]) as picture:
        assert picture.width > 400
    assert f"Grad-CAM at {last}" in result.output and str(out / "explain.npz") in result.output

    again = runner.invoke(app, ["explain", str(digits_run_copy), str(inputs), "--class", "3", "--layer", first])
    assert again.exit_code == 0, again.output  # the run's own folder is rewritten
    with np.load(out / "explain.npz") as saved:
        assert saved["class_index"].tolist() == [3] * 6 and str(saved["layer"]) == first


def test_explain_mistakes_are_one_line_and_keep_files(digits_run_copy, tmp_path):
    inputs = digits_npz(tmp_path / "six.npz", 2)
    error = one_error("explain", digits_run_copy, inputs, "--layer", "conv2d_9")
    assert (
        error.startswith("error: layer 'conv2d_9' is not in model")
        and ", ".join(convolutions(digits_run_copy)) in error
    )
    error = one_error("explain", digits_run_copy, inputs, "--class", "eleven")
    assert error.startswith("error: --class eleven: not a class of this run; give a name (0, 1, 2,")
    out = tmp_path / "out"
    out.mkdir()
    (out / "explain.npz").write_bytes(b"mine")
    error = one_error("explain", digits_run_copy, inputs, "--out", out)
    assert error == f"error: --out {out}/explain.npz: already exists; add --overwrite to replace it, or give a new name"
    assert (out / "explain.npz").read_bytes() == b"mine"
    result = runner.invoke(app, ["explain", str(digits_run_copy), str(inputs), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    with np.load(out / "explain.npz") as saved:
        assert saved["heatmaps"].shape == (2, 8, 8)


def test_every_run_has_calibration_a_coverage_curve_and_gradcam(trained_digits_run):
    run = trained_digits_run.path
    metrics = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as saved:
        y_true, y_prob = saved["y_true"], saved["y_prob"].astype(np.float64)
    calibration = metrics["calibration"]
    # Independent binning: 15 equal-width bins of the top probability, (lower, upper].
    confidence, correct = y_prob.max(axis=1), (y_prob.argmax(axis=1) == y_true)
    gaps = []
    for lower in np.arange(15) / 15:
        inside = (confidence > lower) & (confidence <= lower + 1 / 15)
        if inside.any():
            gaps.append((inside.mean(), abs(correct[inside].mean() - confidence[inside].mean())))
    assert calibration["ece"] == pytest.approx(sum(share * gap for share, gap in gaps), abs=1e-6)
    assert calibration["mce"] == pytest.approx(max(gap for _, gap in gaps), abs=1e-6)
    assert calibration["brier"] == pytest.approx(brier_score_loss(y_true, y_prob, labels=np.arange(10)), abs=1e-6)
    rows = y_prob / y_prob.sum(axis=1, keepdims=True)
    assert calibration["nll"] == pytest.approx(log_loss(y_true, rows, labels=np.arange(10)), abs=1e-6)
    assert sum(entry["count"] for entry in calibration["bins"]) == len(y_true) == 360

    coverage = metrics["coverage"]
    assert coverage["coverage"][-1] == 1.0 and coverage["accuracy"][-1] == pytest.approx(metrics["accuracy"])
    assert coverage["sentence"].startswith(("At 99 % accuracy the model answers", "The model never reaches 99 %"))
    for name in ("gradcam.png", "reliability.png", "coverage.png", "gradcam.npz"):
        assert (run / name).is_file(), name
    with np.load(run / "gradcam.npz") as saved:
        assert saved["heatmaps"].shape == (len(saved["x"]), 8, 8) and len(saved["x"]) <= 20
        assert np.array_equal(saved["y_true"], y_true[saved["index"]])
    html = (run / "report.html").read_text()
    assert "Where it looked, and how sure" in html and coverage["sentence"] in html


def test_temperature_scaling_lives_in_model_keras(tmp_path, trained_digits_run):
    """Fitted on val, it lowers val NLL, never changes an argmax, and plain keras.saving.load_model gives the
    calibrated probabilities: model.keras's outputs are softmax(log p / T) of the same model without it."""
    import keras

    from cnnctl.evaluation.calibration import apply_temperature, fit_temperature
    from cnnctl.evaluation.temperature import calibrate_model

    result = runner.invoke(
        app,
        [
            "train",
            str(trained_digits_run.config),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--set",
            "evaluate.calibrate=temperature",
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    record = json.loads((run / "metrics.json").read_text())["temperature"]
    assert record["fitted_on"] == "val" and record["value"] > 0
    assert record["val_after"]["nll"] < record["val_before"]["nll"]
    assert record["after"]["nll"] <= record["before"]["nll"] + 0.05

    # The fold itself, on the run's own model: dividing the output layer's weights by T is exactly the temperature.
    x = load_digits().images[:50, :, :, None].astype(np.float32)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    before = model.predict(x, verbose=0)
    y = before.argmax(axis=1)
    calibrate_model(model, y, before)  # a second temperature on top, fitted here
    after = model.predict(x, verbose=0)
    fitted = fit_temperature(y, before)
    np.testing.assert_allclose(after, apply_temperature(before, fitted), atol=1e-5)
    assert np.array_equal(after.argmax(axis=1), y)
    model.save(tmp_path / "again.keras")
    reloaded = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), after, atol=1e-6)

    # Every export checks itself against model.keras: the calibrated probabilities survive them.
    for fmt, name, tolerance in (
        ("saved_model", "saved_model", 1e-4),
        ("onnx", "model.onnx", 1e-4),
        ("tflite", "model.tflite", 1e-3),
    ):
        exported = runner.invoke(app, ["export", str(run), "--format", fmt])
        assert exported.exit_code == 0, exported.output
        assert json.loads((run / "export" / f"{name}.json").read_text())["check"]["max_abs_diff"] <= tolerance


def test_temperature_needs_a_softmax_output_and_a_validation_split(trained_digits_run):
    error = one_error(
        "check",
        trained_digits_run.config,
        "--set",
        "evaluate.calibrate=temperature",
        "--set",
        "model.layers[4].Dense.activation=linear",
    )
    assert (
        "evaluate.calibrate: temperature scales the logits of the output layer, so the model must end in a "
        "Dense layer with activation softmax" in error
    )
    error = one_error(
        "check",
        trained_digits_run.config,
        "--set",
        "evaluate.calibrate=temperature",
        "--set",
        "data.validation_split=0",
    )
    assert "evaluate.calibrate: temperature is fitted on the validation split, and this data has none" in error


def test_predict_min_confidence_marks_what_it_would_not_answer(trained_digits_run, tmp_path):
    inputs = digits_npz(tmp_path / "six.npz", 20)
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained_digits_run.path),
            str(inputs),
            "--top-k",
            "2",
            "--min-confidence",
            "0.5",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["input", "rank", "class_index", "class", "probability", "answered"]
    top = {row["input"]: float(row["probability"]) for row in rows if row["rank"] == "1"}
    answered = {row["input"]: row["answered"] == "1" for row in rows}
    assert answered == {name: probability >= 0.5 for name, probability in top.items()}
    count = sum(answered.values())
    assert f"answered {count} of 20 inputs (top probability ≥ 0.5); {20 - count} not answered" in result.output
    error = one_error("predict", trained_digits_run.path, inputs, "--min-confidence", "1.5")
    assert error == "error: --min-confidence 1.5: must be a probability between 0 and 1, e.g. --min-confidence 0.9"
