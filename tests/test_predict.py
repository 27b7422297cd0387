"""`cnnctl predict`: inputs saved from the test split come back with the evaluator's probabilities, because
predict preprocesses them as training did (channel axis, pixel scale); mistakes are one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()
SAVED = 20  # test examples written as files


@pytest.fixture(scope="module")
def test_split(trained_digits_run):
    """The trained run's test split (images 0..16, as scikit-learn's digits store them) and its evaluation."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    dataset = load_data(load_config(trained_digits_run.path / "config.yaml"))
    with np.load(trained_digits_run.path / "predictions.npz") as archive:
        y_prob = archive["y_prob"]
    return dataset.splits["test"].x, y_prob


@pytest.fixture(scope="module")
def digit_folder(test_split, tmp_path_factory):
    """The first SAVED test digits as 8-bit grayscale PNGs; values 0..16 fit 8 bits exactly."""
    x, _ = test_split
    folder = tmp_path_factory.mktemp("digits")
    for i in range(SAVED):
        Image.fromarray(x[i, :, :, 0].astype(np.uint8), mode="L").save(folder / f"digit_{i:02d}.png")
    return folder


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def probabilities_from_csv(rows, k):
    """{input: [(class_index, probability), ...] in rank order}."""
    found = {}
    for row in rows:
        found.setdefault(row["input"], []).append((int(row["class_index"]), float(row["probability"])))
    assert all(len(ranked) == k for ranked in found.values())
    return found


def test_predict_on_saved_test_images_reproduces_the_evaluator(trained_digits_run, test_split, digit_folder,
                                                               tmp_path):
    _, y_prob = test_split
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(digit_folder), "--top-k", "3",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0]) == ["input", "rank", "class_index", "class", "probability"]
    assert len(rows) == SAVED * 3
    found = probabilities_from_csv(rows, 3)
    assert list(found) == [str(digit_folder / f"digit_{i:02d}.png") for i in range(SAVED)]  # sorted file order
    for i, ranked in enumerate(found.values()):
        expected = np.argsort(-y_prob[i], kind="stable")[:3]
        assert [index for index, _ in ranked] == list(expected)
        assert np.allclose([p for _, p in ranked], y_prob[i][expected], atol=1e-5)
    assert f"wrote{out}({SAVED}inputs)" in "".join(result.output.split())  # the console wraps long paths
    # The console table shows the top class of the first image with its probability.
    top = np.argmax(y_prob[0])
    assert f"{y_prob[0][top]:.4f}" in result.output


def test_predict_on_an_npz_without_a_channel_axis(trained_digits_run, test_split, tmp_path):
    x, y_prob = test_split
    archive = tmp_path / "digits.npz"
    np.savez(archive, x_test=x[:50, :, :, 0])  # (N, 8, 8): predict adds the channel axis as training did
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(archive), "--top-k", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    found = probabilities_from_csv(read_csv(out), 1)
    assert list(found) == [f"{archive}[{i}]" for i in range(50)]
    assert [ranked[0][0] for ranked in found.values()] == list(y_prob[:50].argmax(axis=1))
    assert np.allclose([ranked[0][1] for ranked in found.values()], y_prob[:50].max(axis=1), atol=1e-5)


def test_predict_mixes_files_folders_and_archives_in_the_order_given(trained_digits_run, test_split, digit_folder,
                                                                     tmp_path):
    from cnnctl.evaluation.predict import predict_run
    from cnnctl.runs.folder import Run

    x, y_prob = test_split
    archive = tmp_path / "three.npz"
    np.savez(archive, x=x[5:8])
    one = digit_folder / "digit_03.png"
    predictions = predict_run(Run(trained_digits_run.path), [one, archive, digit_folder])
    assert predictions.labels[:4] == [str(one), f"{archive}[0]", f"{archive}[1]", f"{archive}[2]"]
    assert len(predictions.labels) == 4 + SAVED
    expected = np.concatenate([y_prob[3:4], y_prob[5:8], y_prob[:SAVED]])
    assert np.allclose(predictions.probabilities, expected, atol=1e-5)
    assert predictions.class_names == [str(i) for i in range(10)]
    assert not predictions.notes


def test_a_top_k_above_the_class_count_shows_every_class(trained_digits_run, digit_folder, tmp_path):
    out = tmp_path / "all.csv"
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(digit_folder / "digit_00.png"),
                                 "--top-k", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert [int(row["rank"]) for row in rows] == list(range(1, 11))
    probabilities = [float(row["probability"]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-4)


def test_colour_photographs_are_converted_resized_and_warned_about(trained_digits_run, tmp_path):
    """A 0..255 RGB photo fed to the 0..16 grayscale digits model: it is made 8×8×1, and the user is told that
    its values are far outside what the model was trained on."""
    from sklearn.datasets import load_sample_image

    photo = tmp_path / "flower.jpg"
    Image.fromarray(load_sample_image("flower.jpg")).save(photo)
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(photo), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: inputs range" in text and "but the training data ranged 0..16" in text

    from cnnctl.evaluation.predict import Preprocessing, read_image
    from cnnctl.runs.folder import Run

    pixels = read_image(photo, Preprocessing.of_run(Run(trained_digits_run.path)))
    assert pixels.shape == (8, 8, 1) and pixels.dtype == np.uint8


def test_the_preprocessing_comes_from_the_run_folder(trained_digits_run):
    from cnnctl.evaluation.predict import Preprocessing
    from cnnctl.runs.folder import Run

    data = json.loads((trained_digits_run.path / "data.json").read_text())
    preprocessing = Preprocessing.of_run(Run(trained_digits_run.path))
    assert preprocessing.input_shape == (8, 8, 1) == tuple(data["input_shape"])
    assert preprocessing.pixel_scale == 16.0 == data["pixel_scale"]
    assert preprocessing.channels == 1
    scaled = preprocessing.scale(np.array([[0, 8, 16]], dtype=np.uint8))
    assert scaled.dtype == np.float32 and scaled.tolist() == [[0.0, 0.5, 1.0]]


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: tmp / "missing.png", "error: INPUT {path}: no such file or folder"),
    (lambda tmp: _write(tmp / "notes.txt", b"hello"),
     "error: INPUT {path}: not an image (.png, .jpg, .jpeg, .bmp, .gif, .webp) or .npz file"),
    (lambda tmp: _write(tmp / "broken.png", b"not a png"),
     "error: INPUT {path}: cannot read as an image (Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, "
     "BMP, WebP required.)"),
    (lambda tmp: _npz(tmp / "keys.npz", images=np.zeros((2, 8, 8))),
     "error: INPUT {path}: no array named x or x_test (it has images); save the examples under x"),
    (lambda tmp: _npz(tmp / "shape.npz", x=np.zeros((2, 28, 28))),
     "error: INPUT {path}: x examples have shape [28, 28]; this run's model takes [8, 8, 1]"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty",
     "error: INPUT {path}: no image files in this folder (.png, .jpg, .jpeg, .bmp, .gif, .webp)"),
])
def test_input_mistakes_are_one_line_errors(trained_digits_run, tmp_path, make_input, message):
    path = make_input(tmp_path)
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == message.format(path=path)


def test_top_k_must_be_positive(trained_digits_run, digit_folder):
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(digit_folder), "--top-k", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --top-k 0: must be at least 1, e.g. --top-k 3"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_image_files_are_decoded_exactly_as_a_folder_source_decodes_its_training_images(tmp_path, color_mode,
                                                                                         channels):
    """For a `source: folder` run, predict must see the very pixels training saw: same resize, same colour."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data
    from cnnctl.evaluation.predict import Preprocessing, load_inputs

    rng = np.random.default_rng(0)
    for label in ("circle", "square"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):  # sizes differ from the 6×5 target, so every image is resized
            pixels = rng.integers(0, 256, size=(10 + i, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    config = tmp_path / "folder.yaml"
    config.write_text(f"""
data: {{source: folder, path: images, image_size: [6, 5], color_mode: {color_mode}, test_split: 0.5,
        validation_split: 0}}
model: {{layers: [Flatten, {{Dense: {{units: 2, activation: softmax}}}}]}}
""")
    dataset = load_data(load_config(config))
    test = dataset.splits["test"].x
    preprocessing = Preprocessing(input_shape=dataset.input_shape, pixel_scale=dataset.pixel_scale,
                                  class_names=dataset.class_names, value_range=(0.0, 255.0), reshape_to=None,
                                  batch_size=4)
    inputs = load_inputs(list(test.paths), preprocessing)
    assert inputs.x.shape == (len(test), 6, 5, channels) == np.asarray(test).shape
    assert np.array_equal(inputs.x, np.asarray(test))
    assert np.array_equal(preprocessing.scale(inputs.x), np.asarray(test).astype(np.float32) / 255)
