"""Data sources beyond the built-ins on tiny data made here: image folders (odd and broken files among good
ones, given split trees), CSV, npz signals and volumes, IDX; splits, class imbalance and `cnnctl data`.
npz signals/volumes and a class-folder tree with augmentation are trained end to end by the shipped configs'
tests (test_examples_configs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.schema import Config
from cnnctl.data.builtin import DEBIAN_FASHION_MNIST
from cnnctl.data.dataset import load_data
from cnnctl.data.folders import ImageFiles
from cnnctl.errors import DataError

runner = CliRunner()

TINY_2D = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    "Flatten",
    {"Dense": {"units": 3, "activation": "softmax"}},
]
FAST_TRAIN = {"epochs": 1, "batch_size": 16, "early_stopping": False}


def write_config(tmp_path: Path, data: dict, layers=None, train=None, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "seed": 0,
                "data": data,
                "model": {"layers": layers or TINY_2D},
                "train": {**FAST_TRAIN, **(train or {})},
                "evaluate": {"top_k": [1]},
            }
        )
    )
    return path


def train(config: Path, runs_dir: Path, *extra: str):
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs_dir), *extra])
    assert result.exit_code == 0, result.output
    (run,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    return run, result


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- image folders


def class_image(label: int, rng: np.random.Generator, size=(12, 12)) -> np.ndarray:
    """Class 0 bright on the left, 1 bright on the right, 2 bright on top: learnable and easy to tell apart."""
    image = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
    h, w = size
    region = [np.s_[:, : w // 2], np.s_[:, w // 2 :], np.s_[: h // 2, :]][label]
    image[region] = rng.integers(180, 256, image[region].shape, dtype=np.uint8)
    return image


def make_image_folder(root: Path, per_class: int = 10, seed: int = 0, size=(12, 12)) -> dict[str, Path]:
    """Good PNG/JPEG images in three class folders, plus an RGBA PNG, a palette GIF and a grayscale PNG
    (readable) and a truncated JPEG, a text file and an empty file (not). Returns the odd files by name."""
    rng = np.random.default_rng(seed)
    names = ["left", "right", "top"]
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(class_image(label, rng, size)).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    odd = {
        "rgba": root / "left" / "rgba.png",
        "palette": root / "right" / "palette.gif",
        "gray": root / "top" / "gray.png",
        "truncated": root / "top" / "truncated.jpg",
        "text": root / "left" / "notes.txt",
        "empty": root / "right" / "empty.png",
    }
    rgba = np.dstack([class_image(0, rng, size), rng.integers(0, 256, size, dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(odd["rgba"])
    Image.fromarray(class_image(1, rng, size)).convert("P").save(odd["palette"])
    Image.fromarray(class_image(2, rng, size)[..., 0]).save(odd["gray"])
    Image.fromarray(class_image(2, rng, size)).save(root / "top" / "whole.jpg")
    jpeg = (root / "top" / "whole.jpg").read_bytes()
    odd["truncated"].write_bytes(jpeg[: len(jpeg) // 3])
    odd["text"].write_text("label notes, not an image\n")
    odd["empty"].write_bytes(b"")
    return odd


def test_folder_split_tree_with_broken_and_odd_files_trains_end_to_end(tmp_path):
    root = tmp_path / "tree"
    make_image_folder(root / "train", per_class=8)  # + RGBA, palette GIF, grayscale; truncated, text, empty
    rng = np.random.default_rng(1)
    for split, count, size in (("validation", 2, (16, 20)), ("test", 3, (9, 9))):
        for label, name in enumerate(["left", "right", "top"]):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(class_image(label, rng, size)).save(root / split / name / f"{i}.png")
    config = write_config(tmp_path, {"source": "folder", "path": str(root), "color_mode": "grayscale"})

    result = runner.invoke(app, ["data", str(config), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(
        f"error: {config}: data.image_size: the images in {root} have 3 different sizes (e.g. 12×12 in "
    )
    assert "set data.image_size: [height, width] to resize them" in result.output

    run, result = train(config, tmp_path / "runs", "--set", "data.image_size=[10,10]")
    data = read_json(run / "data.json")
    assert data["skipped"] == [
        "train/left/notes.txt (not an image)",
        "train/right/empty.png (empty file)",
        "train/top/truncated.jpg (corrupt: Invalid JPEG data or crop window.)",
    ]
    assert "warning: skipped 3 unreadable files: train/left/notes.txt (not an image)" in result.output
    # given splits, not carved: 8 good per class + RGBA (left), palette GIF (right), grayscale + whole.jpg (top)
    assert data["sizes"] == {"train": 28, "val": 6, "test": 9}
    assert data["counts"]["train"] == {"left": 9, "right": 9, "top": 10}
    assert not any("carved" in note for note in data["notes"])
    assert data["input_shape"] == [10, 10, 1] and data["dtype"] == "uint8" and data["pixel_scale"] == 255.0
    environment = read_json(run / "environment.json")
    assert environment["status"] == "completed" and environment["epochs_run"] == 1
    assert read_json(run / "metrics.json")["num_examples"] == 9
    with np.load(run / "predictions.npz") as predictions:  # the misclassified examples were read from their files
        wrong = predictions["wrong_x"]
        assert wrong.shape[1:] == (10, 10, 1) and wrong.dtype == np.uint8
        assert len(wrong) == int((predictions["y_prob"].argmax(1) != predictions["y_true"]).sum())


def test_class_folders_are_streamed_and_decoded_like_pillow(tmp_path):
    """A file list, not pixels in memory, carved stratified; RGBA (alpha dropped), palette and grayscale files
    become the RGB or gray pixels Pillow reads; batches are those pixels as float32 (the model divides by 255)."""
    root = tmp_path / "images"
    odd = make_image_folder(root, per_class=6)
    for color_mode in ("rgb", "grayscale"):
        dataset = load_data(
            Config.model_validate(
                {
                    "data": {
                        "source": "folder",
                        "path": str(root),
                        "color_mode": color_mode,
                        "validation_split": 0.25,
                        "test_split": 0.25,
                    },
                    "model": {"layers": TINY_2D},
                }
            )
        )
        assert all(isinstance(split.x, ImageFiles) for split in dataset.splits.values())
        # 22 readable (7, 7, 8 per class): test ceil(0.25 × 22) = 6 first, then val ceil(0.25 × 16) = 4; stratified
        assert {name: len(split) for name, split in dataset.splits.items()} == {"train": 12, "val": 4, "test": 6}
        assert [np.bincount(split.y).tolist() for split in dataset.splits.values()] == [[4, 4, 4], [1, 1, 2], [2, 2, 2]]
        assert len(dataset.skipped) == 3
        files = dataset.splits["test"].x
        batches = np.concatenate([x.numpy() for x, _ in dataset.pipeline("test", 4)])
        np.testing.assert_array_equal(batches, np.asarray(files).astype(np.float32))
        every = ImageFiles(
            np.array([str(odd[name]) for name in ("rgba", "palette", "gray")]), files.image_size, files.channels
        )
        for image, name in zip(np.asarray(every).astype(int), ("rgba", "palette", "gray")):
            pillow = Image.open(odd[name])
            if color_mode == "rgb":
                np.testing.assert_array_equal(image, np.asarray(pillow.convert("RGB")))
            else:  # TensorFlow's and Pillow's luma weights differ in the 4th digit: at most 1 level apart
                assert image.shape == (12, 12, 1)
                assert np.abs(image[..., 0] - np.asarray(pillow.convert("L"), int)).max() <= 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "has no class sub-folders; put the images in one folder per class"),
        (
            lambda root: (root / "cat").mkdir(parents=True) or (root / "cat" / "a.txt").write_text("x"),
            "data.path: no readable images under {root} (1 files could not be decoded, e.g. cat/a.txt (not an image))",
        ),
    ],
)
def test_folder_mistakes_are_one_line_errors(tmp_path, make, message):
    root = tmp_path / "images"
    make(root)
    config = write_config(tmp_path, {"source": "folder", "path": str(root)})
    result = runner.invoke(app, ["data", str(config)])
    assert result.exit_code == 2
    assert message.format(root=root) in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- CSV


def test_csv_with_named_label_column_and_shape_trains_with_balanced_class_weights(tmp_path):
    rng = np.random.default_rng(2)
    counts = {"ant": 40, "bee": 10, "cow": 10}  # 4:1 imbalance
    labels = np.repeat(list(counts), list(counts.values()))
    pixels = rng.integers(0, 256, (len(labels), 16))
    for i, name in enumerate(counts):
        pixels[labels == name, i * 4 : (i + 1) * 4] = 255  # a class-specific bright row
    order = rng.permutation(len(labels))
    lines = ["id," + ",".join(f"p{i}" for i in range(8)) + ",label," + ",".join(f"p{i}" for i in range(8, 16))]
    for n, i in enumerate(order):
        row = pixels[i]
        lines.append(f"{n}," + ",".join(map(str, row[:8])) + f",{labels[i]}," + ",".join(map(str, row[8:])))
    path = tmp_path / "pixels.csv"
    path.write_text("\n".join(lines) + "\n")
    # The id column is a feature too here (17 values): the shape must say so, and a wrong one is an error.
    config = write_config(
        tmp_path,
        {
            "source": "csv",
            "path": str(path),
            "label_column": "label",
            "shape": [4, 4],
            "validation_split": 0.2,
            "test_split": 0.2,
        },
        train={"class_weight": "balanced"},
    )
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {config}: data.shape: [4, 4] holds 16 values but {path} has 17 feature columns per row"
    )

    path.write_text("\n".join(line.split(",", 1)[1] for line in lines) + "\n")
    run, result = train(config, tmp_path / "runs")
    data = read_json(run / "data.json")
    assert data["class_names"] == ["ant", "bee", "cow"] and data["input_shape"] == [4, 4, 1]
    assert data["dtype"] == "uint8" and data["pixel_scale"] == 255.0
    assert any(note.startswith("imbalanced classes: train has ") and "'ant'" in note for note in data["notes"])
    assert "note: imbalanced classes" in result.output
    dataset = load_data(Config.model_validate(yaml.safe_load((run / "config.yaml").read_text())))
    every = np.concatenate([split.x.reshape(len(split), -1) for split in dataset.splits.values()])
    assert sorted(map(tuple, every)) == sorted(map(tuple, pixels))  # every row read back, none altered


def test_balanced_class_weights_match_the_formula(tmp_path):
    from cnnctl.training.prepare import class_weights

    path = tmp_path / "d.npz"
    y = np.repeat([0, 1, 2], [60, 20, 10])
    np.savez(
        path,
        x_train=np.zeros((90, 4, 4), np.uint8),
        y_train=y,
        x_test=np.zeros((6, 4, 4), np.uint8),
        y_test=np.array([0, 1, 2, 0, 1, 2]),
    )
    dataset = load_data(
        Config.model_validate(
            {"data": {"source": "npz", "path": str(path), "validation_split": 0}, "model": {"layers": TINY_2D}}
        )
    )
    weights = class_weights("balanced", dataset)
    assert weights == pytest.approx({c: 90 / (3 * n) for c, n in enumerate([60, 20, 10])})
    assert class_weights({1: 5.0}, dataset) == {0: 1.0, 1: 5.0, 2: 1.0}
    assert any("train has 60 of '0' but 10 of '2'" in note for note in dataset.notes)
    with pytest.raises(Exception, match=r"train.class_weight: class index 3 is out of range; the data has 3 classes"):
        class_weights({3: 2.0}, dataset)


@pytest.mark.parametrize(
    "text, column, message",
    [
        (
            "a,b,label\n1,2,x\n3,4,y\n",
            "lable",
            "data.label_column: 'lable' is not a column of {path}; did you mean 'label'?",
        ),
        ("1,2,x\n3,oops,y\n", 2, "{path}: line 2, column 2: 'oops' is not a number; feature columns must be numeric"),
        ("1,2,x\n3,4,y\n5,6\n", 2, "{path}: line 3 has 2 columns but the first line has 3"),
        ("1,2,x\n", 7, "data.label_column: 7 is out of range; {path} has 3 columns (0..2, or -1 for the last)"),
    ],
)
def test_csv_mistakes_name_the_line_or_column(tmp_path, text, column, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    config = Config.model_validate(
        {"data": {"source": "csv", "path": str(path), "label_column": column}, "model": {"layers": TINY_2D}}
    )
    with pytest.raises(DataError) as caught:
        load_data(config)
    assert message.format(path=path) in str(caught.value)


def test_csv_label_by_index_without_header(tmp_path):
    path = tmp_path / "signals.csv"
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 12)).round(3)
    y = np.arange(30) % 3
    path.write_text("\n".join(f"{label}," + ",".join(map(str, row)) for label, row in zip(y, x)) + "\n")
    layers = [{"Conv1D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 3}}]
    dataset = load_data(
        Config.model_validate(
            {
                "data": {
                    "source": "csv",
                    "path": str(path),
                    "label_column": 0,
                    "validation_split": 0,
                    "test_split": 0.3,
                },
                "model": {"layers": layers},
            }
        )
    )
    assert dataset.input_shape == (12, 1) and dataset.class_names == ["0", "1", "2"]
    rows = np.concatenate([split.x[..., 0] for split in dataset.splits.values()])
    np.testing.assert_allclose(sorted(map(tuple, rows)), sorted(map(tuple, x.astype(np.float32))))


# ---------------------------------------------------------------- npz of any rank, idx


@pytest.mark.parametrize(
    "shape, layer, input_shape",
    [
        ((40, 20), "Conv1D", (20, 1)),
        ((40, 20, 3), "Conv1D", (20, 3)),
        ((40, 6, 6, 6), "Conv3D", (6, 6, 6, 1)),
        ((40, 6, 6, 6, 2), "Conv3D", (6, 6, 6, 2)),
    ],
)
def test_npz_signals_and_volumes_get_the_layout_their_layers_take(tmp_path, shape, layer, input_shape):
    rng = np.random.default_rng(4)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=shape).astype(np.float32), y_train=np.array(["on", "off"] * 20))
    layers = [{layer: {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 2}}]
    dataset = load_data(
        Config.model_validate({"data": {"source": "npz", "path": str(path)}, "model": {"layers": layers}})
    )
    assert dataset.input_shape == input_shape and dataset.class_names == ["off", "on"]
    x, y = next(iter(dataset.pipeline("train", 4)))
    assert tuple(x.shape) == (4, *input_shape)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_idx_source_on_the_debian_files_equals_fashion_mnist():
    from cnnctl.data.sources import load_raw

    def raw(data):
        return load_raw(Config.model_validate({"data": data, "model": {"layers": TINY_2D}}).data)

    by_idx = raw({"source": "idx", "path": str(DEBIAN_FASHION_MNIST)})
    by_name = raw({"source": "fashion_mnist"})
    for key in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(by_idx, key), getattr(by_name, key)
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert by_idx.x_train.shape == (60000, 28, 28) and np.bincount(by_idx.y_test).tolist() == [1000] * 10


def test_a_validation_split_too_small_for_every_class_is_an_error(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=np.zeros((60, 4, 4)),
        y_train=np.arange(60) % 10,
        x_test=np.zeros((10, 4, 4)),
        y_test=np.arange(10),
    )
    config = write_config(tmp_path, {"source": "npz", "path": str(path), "validation_split": 0.1})
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and not (tmp_path / "runs").exists()
    assert result.output.strip() == (
        f"error: {config}: data.validation_split: 0.1 of 60 examples is 6, too small "
        "to hold all 10 classes; use at least 0.17, or more data"
    )


# ---------------------------------------------------------------- cnnctl data


def test_data_command_summarises_without_training(tmp_path):
    rng = np.random.default_rng(6)
    volumes = rng.uniform(-2, 3, (30, 6, 6, 6)).astype(np.float32)
    path = tmp_path / "v.npz"
    np.savez(path, x_train=volumes, y_train=np.array(["ball", "box", "rod"] * 10))
    layers = [{"Conv3D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 3}}]
    config = write_config(
        tmp_path, {"source": "npz", "path": str(path), "validation_split": 0.2, "test_split": 0.2}, layers=layers
    )
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["data", str(config), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    train_x = load_data(Config.model_validate(yaml.safe_load(config.read_text()))).splits["train"].x
    low, high = float(train_x.min()), float(train_x.max())
    flat = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert f"examples (6, 6, 6, 1) float32 · values {low:g} .. {high:g}" in flat
    for name in ("ball", "box", "rod"):
        assert name in flat
    assert "│ total │ 19 │ 5 │ 6 │" in flat  # val: ceil(0.2 × 24)
    assert f"samples: {out}" in flat
    with Image.open(out) as image:
        assert image.size[0] > 300 and image.size[1] > 100
    assert not (tmp_path / "runs").exists()


def test_data_command_lists_skipped_files(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root, per_class=4)
    config = write_config(tmp_path, {"source": "folder", "path": str(root), "validation_split": 0.3})
    result = runner.invoke(app, ["data", str(config), "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert (
        "skipped 3 unreadable files: left/notes.txt (not an image), right/empty.png (empty file), "
        "top/truncated.jpg (corrupt: Invalid JPEG data or crop window.)" in result.output.replace("\n", " ")
    )
    assert "(first 64 examples)" not in result.output  # fewer files than the sample: the range covers them all
    assert (tmp_path / "grid.png").stat().st_size > 1000
