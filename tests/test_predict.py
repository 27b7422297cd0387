"""`cnnctl predict`: ordinary 0..255 images of the test split's digits get the evaluator's classes, because
predict maps 8-bit pixels onto the training data's units by rule and the model scales its own inputs; an .npz is
taken in the training data's units; old run folders (the scaling outside the model) still predict; mistakes
are one-line errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()
NEAR_TIE = 0.02  # top-two probabilities closer than this may swap when a digit is rounded to 8 bits


@pytest.fixture(scope="module")
def test_split(trained_digits_run):
    """The trained run's test split (images 0..16, as scikit-learn's digits store them) and its evaluation."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    dataset = load_data(load_config(trained_digits_run.path / "config.yaml"))
    with np.load(trained_digits_run.path / "predictions.npz") as archive:
        y_prob = archive["y_prob"]
    return dataset.splits["test"].x, y_prob


def to_8bit(x):
    """Digits 0..16 as an ordinary 8-bit image: 0..255."""
    return np.round(x * 255 / 16).astype(np.uint8)


@pytest.fixture(scope="module")
def digit_folder(test_split, tmp_path_factory):
    """Every test digit as an 8-bit grayscale PNG, 0..255, as any image program would save it."""
    x, _ = test_split
    folder = tmp_path_factory.mktemp("digits")
    for i, digit in enumerate(to_8bit(x[:, :, :, 0])):
        Image.fromarray(digit, mode="L").save(folder / f"digit_{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def png_probabilities(trained_digits_run, test_split):
    """What model.keras, loaded by plain Keras, gives for the PNGs' pixels brought back to 0..16 by hand."""
    import keras

    x, _ = test_split
    model = keras.saving.load_model(trained_digits_run.path / "model.keras")
    return model.predict(to_8bit(x).astype(np.float64) * 16 / 255, verbose=0)


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


def test_predict_on_0_255_pngs_agrees_with_the_evaluator(trained_digits_run, test_split, digit_folder, tmp_path):
    _, y_prob = test_split
    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["predict", str(trained_digits_run.path), str(digit_folder), "--top-k", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # images are mapped to the training units by rule, not warned about
    found = probabilities_from_csv(read_csv(out), 1)
    assert list(found) == [str(digit_folder / f"digit_{i:03d}.png") for i in range(len(y_prob))]  # sorted order
    predicted = np.array([ranked[0][0] for ranked in found.values()])
    top_two = np.sort(y_prob, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] < NEAR_TIE
    differs = predicted != y_prob.argmax(axis=1)
    assert not np.any(differs & ~near_tie), np.flatnonzero(differs & ~near_tie)
    assert differs.sum() <= 3 and near_tie.mean() < 0.1


def test_predict_writes_the_top_k_of_each_image_to_csv(trained_digits_run, digit_folder, png_probabilities, tmp_path):
    out = tmp_path / "preds.csv"
    shown = sorted(digit_folder.iterdir())[:20]
    result = runner.invoke(
        app, ["predict", str(trained_digits_run.path), *map(str, shown), "--top-k", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0]) == ["input", "rank", "class_index", "class", "probability"]
    assert len(rows) == 20 * 3
    found = probabilities_from_csv(rows, 3)
    assert list(found) == [str(path) for path in shown]
    for probabilities, ranked in zip(png_probabilities, found.values()):
        expected = np.argsort(-probabilities, kind="stable")[:3]
        assert [index for index, _ in ranked] == list(expected)
        assert np.allclose([p for _, p in ranked], probabilities[expected], atol=1e-5)
    assert f"wrote{out}(20inputs)" in "".join(result.output.split())  # the console wraps long paths
    # The console table shows the top class of the first image with its probability.
    assert f"{png_probabilities[0].max():.4f}" in result.output


def test_plain_keras_on_the_raw_test_split_gives_the_run_accuracy(trained_digits_run):
    """model.keras carries its scaling: Keras alone, on the data as loaded (0..16), reproduces metrics.json."""
    import keras

    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    test = load_data(load_config(trained_digits_run.path / "config.yaml")).splits["test"]
    assert test.x.max() == 16  # raw units, not scaled
    model = keras.saving.load_model(trained_digits_run.path / "model.keras")
    assert model.layers[0].name == "scale_inputs"
    accuracy = float(np.mean(model.predict(test.x, verbose=0).argmax(axis=1) == test.y))
    metrics = json.loads((trained_digits_run.path / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)


def test_predict_on_an_npz_without_a_channel_axis(trained_digits_run, test_split, tmp_path):
    x, y_prob = test_split
    archive = tmp_path / "digits.npz"
    np.savez(archive, x_test=x[:50, :, :, 0])  # (N, 8, 8): predict adds the channel axis as training did
    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["predict", str(trained_digits_run.path), str(archive), "--top-k", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    found = probabilities_from_csv(read_csv(out), 1)
    assert list(found) == [f"{archive}[{i}]" for i in range(50)]
    assert [ranked[0][0] for ranked in found.values()] == list(y_prob[:50].argmax(axis=1))
    assert np.allclose([ranked[0][1] for ranked in found.values()], y_prob[:50].max(axis=1), atol=1e-5)


def test_an_npz_far_outside_the_training_units_is_warned_about(trained_digits_run, test_split, tmp_path):
    """An .npz is taken as given: 0..255 arrays for the 0..16 digits run are predicted as they are, with a
    warning that names the file."""
    x, _ = test_split
    archive = tmp_path / "bytes.npz"
    np.savez(archive, x=to_8bit(x[:5]))
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(archive), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    printed = "".join(result.output.split())  # the console wraps long paths
    assert f"warning:INPUT{archive}:valuesrange0..255butthetrainingdataranged0..16;" in printed


def test_predict_mixes_files_folders_and_archives_in_the_order_given(
    trained_digits_run, test_split, digit_folder, png_probabilities, tmp_path
):
    from cnnctl.evaluation.predict import predict_run
    from cnnctl.runs.folder import Run

    x, y_prob = test_split
    archive = tmp_path / "three.npz"
    np.savez(archive, x=x[5:8])
    one = digit_folder / "digit_003.png"
    predictions = predict_run(Run(trained_digits_run.path), [one, archive, digit_folder])
    assert predictions.labels[:4] == [str(one), f"{archive}[0]", f"{archive}[1]", f"{archive}[2]"]
    assert len(predictions.labels) == 4 + len(x)
    expected = np.concatenate([png_probabilities[3:4], y_prob[5:8], png_probabilities])
    assert np.allclose(predictions.probabilities, expected, atol=1e-5)
    assert predictions.class_names == [str(i) for i in range(10)]
    assert not predictions.notes


def test_an_array_is_taken_in_the_training_units(trained_digits_run, test_split):
    from cnnctl.evaluation.predict import predict_run
    from cnnctl.runs.folder import Run

    x, y_prob = test_split
    predictions = predict_run(Run(trained_digits_run.path), [], arrays=x[:6, :, :, 0])  # channel axis added
    assert predictions.labels == [f"array[{i}]" for i in range(6)] and not predictions.notes
    np.testing.assert_allclose(predictions.probabilities, y_prob[:6], atol=1e-5)
    bytes_given = predict_run(Run(trained_digits_run.path), [], arrays=to_8bit(x[:6]))
    assert bytes_given.notes[0].startswith("array: values range 0..255 but the training data ranged 0..16;")


def test_a_top_k_above_the_class_count_shows_every_class(trained_digits_run, digit_folder, tmp_path):
    out = tmp_path / "all.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained_digits_run.path),
            str(digit_folder / "digit_000.png"),
            "--top-k",
            "50",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert [int(row["rank"]) for row in rows] == list(range(1, 11))
    probabilities = [float(row["probability"]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-4)


def test_colour_photographs_are_converted_resized_and_mapped_to_the_training_units(trained_digits_run, tmp_path):
    """A 0..255 RGB photo given to the 0..16 grayscale digits model: made 8×8×1, then 0..255 → 0..16."""
    from sklearn.datasets import load_sample_image

    photo = tmp_path / "flower.jpg"
    Image.fromarray(load_sample_image("flower.jpg")).save(photo)
    result = runner.invoke(app, ["predict", str(trained_digits_run.path), str(photo), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output

    from cnnctl.evaluation.predict import Preprocessing, load_inputs, read_image
    from cnnctl.runs.folder import Run

    preprocessing = Preprocessing.of_run(Run(trained_digits_run.path))
    pixels = read_image(photo, preprocessing)
    assert pixels.shape == (8, 8, 1) and pixels.dtype == np.uint8
    inputs = load_inputs([photo], preprocessing)
    np.testing.assert_allclose(inputs.x[0], pixels.astype(np.float64) * 16 / 255, rtol=1e-6)


def test_the_preprocessing_comes_from_the_run_folder(trained_digits_run):
    from cnnctl.evaluation.predict import Preprocessing
    from cnnctl.runs.folder import Run

    data = json.loads((trained_digits_run.path / "data.json").read_text())
    assert data["scaling"] == "in_model" and data["full_scale"] == 16.0
    preprocessing = Preprocessing.of_run(Run(trained_digits_run.path))
    assert preprocessing.input_shape == (8, 8, 1) == tuple(data["input_shape"])
    assert preprocessing.pixel_scale == 16.0 == data["pixel_scale"]
    assert preprocessing.full_scale == 16.0 and not preprocessing.scale_outside
    assert preprocessing.channels == 1
    mapped = preprocessing.from_8bit(np.array([[0, 51, 255]], dtype=np.uint8))
    assert mapped.dtype == np.float32 and mapped.tolist() == np.float32([[0, 3.2, 16]]).tolist()  # 255 → 16
    raw = np.array([[0, 8, 16]], dtype=np.uint8)
    assert preprocessing.model_inputs(raw).tolist() == [[0.0, 8.0, 16.0]]  # the model scales them itself
    scaled = preprocessing.scale(raw)
    assert scaled.dtype == np.float32 and scaled.tolist() == [[0.0, 0.5, 1.0]]


@pytest.fixture
def old_style_run(trained_digits_run, tmp_path):
    """The trained run as an older cnnctl saved it: model.keras without the scaling layer (it takes examples
    divided by 16) and data.json without `scaling` and `full_scale`."""
    import keras

    run = tmp_path / "runs" / trained_digits_run.path.name
    shutil.copytree(trained_digits_run.path, run)
    model = keras.saving.load_model(run / "model.keras")
    old = keras.Sequential([keras.Input(model.input_shape[1:])] + model.layers[1:])
    old.save(run / "model.keras")
    data = json.loads((run / "data.json").read_text())
    del data["scaling"], data["full_scale"]
    (run / "data.json").write_text(json.dumps(data))
    return run


def test_an_old_run_folder_still_evaluates_and_predicts(
    old_style_run, test_split, digit_folder, png_probabilities, tmp_path
):
    import keras

    x, y_prob = test_split
    assert keras.saving.load_model(old_style_run / "model.keras").layers[0].name != "scale_inputs"
    result = runner.invoke(app, ["evaluate", str(old_style_run)])
    assert result.exit_code == 0, result.output
    with np.load(old_style_run / "predictions.npz") as archive:
        np.testing.assert_allclose(archive["y_prob"], y_prob, atol=1e-5)

    from cnnctl.evaluation.predict import Preprocessing, predict_run
    from cnnctl.runs.folder import Run

    preprocessing = Preprocessing.of_run(Run(old_style_run))
    assert preprocessing.scale_outside and preprocessing.full_scale == 16.0  # from pixel_scale, as recorded
    archive = tmp_path / "digits.npz"
    np.savez(archive, x=x[:10])
    predictions = predict_run(Run(old_style_run), [archive, digit_folder / "digit_000.png"])
    np.testing.assert_allclose(
        predictions.probabilities, np.concatenate([y_prob[:10], png_probabilities[:1]]), atol=1e-5
    )


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda tmp: tmp / "missing.png", "error: INPUT {path}: no such file or folder"),
        (
            lambda tmp: _write(tmp / "notes.txt", b"hello"),
            "error: INPUT {path}: not an image (.png, .jpg, .jpeg, .bmp, .gif, .webp), .npz or .npy file",
        ),
        (
            lambda tmp: _write(tmp / "broken.png", b"not a png"),
            "error: INPUT {path}: cannot read as an image (Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, "
            "BMP, WebP required.)",
        ),
        (
            lambda tmp: _npz(tmp / "keys.npz", images=np.zeros((2, 8, 8))),
            "error: INPUT {path}: no array named x or x_test (it has images); save the examples under x",
        ),
        (
            lambda tmp: _npz(tmp / "shape.npz", x=np.zeros((2, 28, 28))),
            "error: INPUT {path}: x examples have shape [28, 28]; this run's model takes [8, 8, 1]",
        ),
        (
            lambda tmp: (tmp / "empty").mkdir() or tmp / "empty",
            "error: INPUT {path}: no image files in this folder (.png, .jpg, .jpeg, .bmp, .gif, .webp)",
        ),
    ],
)
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
def test_image_files_are_decoded_exactly_as_a_folder_source_decodes_its_training_images(tmp_path, color_mode, channels):
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
    preprocessing = Preprocessing(
        input_shape=dataset.input_shape,
        pixel_scale=dataset.pixel_scale,
        full_scale=dataset.full_scale,
        class_names=dataset.class_names,
        value_range=(0.0, 255.0),
        reshape_to=None,
        batch_size=4,
    )
    inputs = load_inputs(list(test.paths), preprocessing)
    assert inputs.x.shape == (len(test), 6, 5, channels) == np.asarray(test).shape
    assert np.array_equal(inputs.x, np.asarray(test))  # 8-bit training data: the pixels as they are
    assert np.array_equal(preprocessing.model_inputs(inputs.x), np.asarray(test).astype(np.float32))
