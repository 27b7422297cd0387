"""`source: manifest` (a table of files and labels, with a split column) and a folder source's given val/test
folders: the same digits as PNG files train like the arrays they came from, a given split is never trained on
(checked by file name), and every kind of bad manifest is one line or a counted skip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cnnctl.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from make_digits_manifest import write_digits_manifest  # noqa: E402

pytestmark = pytest.mark.xdist_group(__name__)

LAYERS = [
    {"Conv2D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    "Flatten",
    {"Dense": {"units": 10, "activation": "softmax"}},
]
TRAIN = {"epochs": 3, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.005}}


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory) -> Path:
    """The digits as PNG files with manifest.csv (every fifth image `test`) and the same images as an npz."""
    folder = tmp_path_factory.mktemp("digits-manifest")
    write_digits_manifest(folder)
    return folder


def manifest_config(path: Path, **data) -> dict:
    return {
        "seed": 3,
        "data": {"source": "manifest", "path": str(path), "split_column": "split", "color_mode": "grayscale", **data},
        "model": {"layers": LAYERS},
        "train": TRAIN,
    }


def test_digits_from_a_manifest_train_like_the_same_arrays_and_the_test_rows_stay_out(digits_files, tmp_path):
    import cnnctl
    from cnnctl.data.dataset import load_data

    config = manifest_config(digits_files / "manifest.csv")
    rows = [line.split(",") for line in (digits_files / "manifest.csv").read_text().splitlines()[1:]]
    given_test = {str(digits_files / file) for file, _, split in rows if split == "test"}

    dataset = load_data(cnnctl.load(config))
    names = {split: set(dataset.splits[split].x.paths) for split in ("train", "val", "test")}
    assert names["test"] == given_test  # exactly the rows marked test, by file name
    assert not names["test"] & (names["train"] | names["val"])
    assert len(names["train"]) + len(names["val"]) + len(given_test) == len(rows)
    labels = {str(digits_files / file): int(label) for file, label, _ in rows}
    test = dataset.splits["test"]
    assert [labels[path] for path in test.x.paths] == [int(dataset.class_names[y]) for y in test.y]

    from_files = cnnctl.train(config, runs_dir=tmp_path / "runs")
    arrays = dict(np.load(digits_files / "digits_arrays.npz"))
    from_arrays = cnnctl.train({**config, "data": {"validation_split": 0.1}}, arrays=arrays, runs_dir=tmp_path / "runs")
    assert from_files.metrics["num_examples"] == from_arrays.metrics["num_examples"] == len(given_test)
    assert abs(from_files.metrics["accuracy"] - from_arrays.metrics["accuracy"]) <= 0.02
    assert from_files.metrics["accuracy"] > 0.8
    data_json = json.loads((from_files.path / "data.json").read_text())
    assert data_json["class_names"] == [str(digit) for digit in range(10)]


def test_a_jsonl_manifest_with_names_and_npy_signals(tmp_path):
    """JSONL rows, class names as labels, and .npy files (1-D signals) read into memory for a Conv1D model."""
    import cnnctl
    from cnnctl.data.dataset import load_data

    rng = np.random.default_rng(0)
    rows = []
    for index in range(60):
        label = ["rise", "fall"][index % 2]
        signal = np.linspace(0, 1, 32) if label == "rise" else np.linspace(1, 0, 32)
        np.save(tmp_path / f"s{index}.npy", (signal + rng.normal(0, 0.05, 32)).astype(np.float32)[:, None])
        rows.append({"file": f"s{index}.npy", "label": label, "split": "test" if index >= 50 else None})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "data": {
            "source": "manifest",
            "path": str(tmp_path / "m.jsonl"),
            "split_column": "split",
            "validation_split": 0.2,
        },
        "model": {
            "layers": [
                {"Conv1D": {"filters": 4, "kernel_size": 3}},
                "GlobalAveragePooling1D",
                {"Dense": {"units": 2, "activation": "softmax"}},
            ]
        },
    }
    dataset = load_data(cnnctl.load(config))
    assert dataset.class_names == ["fall", "rise"]
    assert dataset.splits["test"].x.shape == (10, 32, 1) and len(dataset.splits["train"]) == 40


def write_images(folder: Path, count: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        Image.fromarray(np.full((6, 6), 20 * index, np.uint8)).save(folder / f"{index}.png")
        names.append(f"{folder.name}/{index}.png")
    return names


BAD = {
    "missing-column": (
        "file,labels\na/0.png,x\n",
        {},
        "data.label_column: 'label' is not a column of {m}; did you mean 'labels'? its columns are: file, labels",
    ),
    "empty-label": (
        "file,label\na/0.png,x\na/1.png,\n",
        {},
        "data.path: {m} line 3: the label cell ('label') is empty; every example needs a label",
    ),
    "duplicate-row": (
        "file,label\na/0.png,x\na/1.png,y\na/0.png,x\n",
        {},
        "data.path: {m} line 4: a/0.png is listed again (first on line 2); list each file once",
    ),
    "separator": (
        "file,label\na/0.png,car|bicycle\na/1.png,car\n",
        {},
        "data.path: {m} line 2: label 'car|bicycle' holds '|', which writes several labels",
    ),
    "bad-split": (
        "file,label,split\na/0.png,x,training\n",
        {"split_column": "split"},
        "data.path: {m} line 2: split 'training' is not train, val or test",
    ),
    "all-missing": (
        "file,label\nnope/0.png,x\nnope/1.png,y\n",
        {},
        "data.path: none of the 2 files listed in {m} can be read (e.g. line 2: {d}/nope/0.png (does not exist))",
    ),
    "not-an-image": ("file,label\na/0.txt,x\n", {}, "data.path: {m} line 2: {d}/a/0.txt is neither an image"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifests_are_one_line(case, tmp_path):
    import cnnctl
    from cnnctl.data.manifest import load_manifest

    text, data, expected = BAD[case]
    write_images(tmp_path / "a")
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    config = cnnctl.load({"data": {"source": "manifest", "path": str(manifest), **data}, "model": {"layers": LAYERS}})
    with pytest.raises(DataError) as caught:
        load_manifest(config.data)
    message = str(caught.value)
    assert message.startswith(expected.format(m=manifest, d=tmp_path)), message
    assert "\n" not in message


def test_a_jsonl_line_that_is_not_json_and_missing_files_are_counted(tmp_path):
    import cnnctl
    from cnnctl.data.manifest import load_manifest

    write_images(tmp_path / "a")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"file": "a/0.png", "label": "x"}\n{"file": "a/1.png", "label": "y"\n')
    config = cnnctl.load({"data": {"source": "manifest", "path": str(manifest)}, "model": {"layers": LAYERS}})
    with pytest.raises(DataError, match=rf"^data.path: {manifest} line 2 is not JSON \("):
        load_manifest(config.data)

    rows = [{"file": f"a/{index}.png", "label": "xy"[index % 2]} for index in range(4)]
    rows.append({"file": "a/gone.png", "label": "x"})
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = load_manifest(config.data)
    assert len(raw.y_train) == 4
    assert raw.skipped == [f"line 5: {tmp_path}/a/gone.png (does not exist)"]


def test_a_folder_source_takes_given_val_and_test_folders(tmp_path):
    """A published set's train/ and val/ photo folders: val/ given as test_path is the untouched test split."""
    import cnnctl
    from cnnctl.data.dataset import load_data

    for name in ("cat", "dog"):
        write_images(tmp_path / "train" / name, 10)
        write_images(tmp_path / "held-out" / name, 3)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "folder", "path": "train", "test_path": "held-out", "color_mode": "grayscale"},
                "model": {"layers": LAYERS[2:3] + [{"Dense": {"units": 2}}]},
            }
        )
    )
    dataset = load_data(cnnctl.load(config_file))
    test_names = {Path(path).relative_to(tmp_path).as_posix() for path in dataset.splits["test"].x.paths}
    assert test_names == {f"held-out/{name}/{index}.png" for name in ("cat", "dog") for index in range(3)}
    trained = set(dataset.splits["train"].x.paths) | set(dataset.splits["val"].x.paths)
    assert len(trained) == 20 and all("/train/" in path for path in trained)

    with pytest.raises(Exception, match="test_path is for source folder"):
        cnnctl.load({"data": {"source": "digits", "test_path": "x"}})
    with pytest.raises(DataError, match=r"data.test_path: .*/nowhere does not exist"):
        load_data(cnnctl.load(config_file, ["data.test_path=nowhere"]))


def test_the_shipped_manifest_config_trains_from_the_generated_files(digits_files, tmp_path):
    from typer.testing import CliRunner

    from cnnctl.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "configs" / "digits_manifest.yaml"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--set",
            f"data.path={digits_files / 'manifest.csv'}",
            "--set",
            "train.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    data_json = json.loads((run / "data.json").read_text())
    assert data_json["source"] == "manifest" and data_json["sizes"]["test"] == 360
