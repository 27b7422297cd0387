"""Every shipped config runs: trained for one epoch on a small copy of its data (made by the example generators),
or, for the configs whose data set is downloaded, validated and built by `cnnctl check` on a stand-in."""

from __future__ import annotations

import json
import re
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.data.builtin import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
EXAMPLES = ROOT / "examples"
ONE_EPOCH = ["--set", "train.epochs=1"]

TRAINED_HERE = {"lenet5.yaml", "conv1d_signals.yaml", "conv3d_volumes.yaml", "shapes_folder.yaml"}
CHECKED_HERE = {"mnist.yaml", "cifar10.yaml", "fashion_mnist.yaml", "fashion_mnist_best.yaml"}
TRAINED_ELSEWHERE = {
    "digits.yaml",  # tests/test_cli_core.py trains it (the embedded default)
    "digits_manifest.yaml",
    "shapes_multilabel.yaml",  # tests/test_multilabel.py trains it on the generated pictures
}  # tests/test_manifest.py, on the files its generator writes
CHECKED_ELSEWHERE = {
    "transfer_folder.yaml",  # tests/test_backbone.py checks it (imagenet weights not downloaded)
    "transfer_from_run.yaml",
}  # tests/test_fine_tune.py, on a stand-in pretraining run

runner = CliRunner()


def example(name: str) -> dict:
    """The functions of examples/<name>.py (they are scripts, not a package)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")


def train(config: Path, runs_dir: Path, *extra: str) -> tuple[Path, str]:
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs_dir), *ONE_EPOCH, *extra])
    assert result.exit_code == 0, result.output
    (run,) = list(runs_dir.iterdir())
    return run, result.output


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_shipped_config_has_a_test():
    assert {
        path.name for path in CONFIGS.glob("*.yaml")
    } == TRAINED_HERE | CHECKED_HERE | TRAINED_ELSEWHERE | CHECKED_ELSEWHERE


def test_lenet5_trains_on_digits_with_the_paper_shapes(tmp_path, monkeypatch):
    from cnnctl.data import sources
    from cnnctl.runs.folder import Run
    from cnnctl.runs.model_file import load_model

    def first_500_digits(data_cfg):
        raw = real_digits(data_cfg)
        raw.x_train, raw.y_train = raw.x_train[:500], raw.y_train[:500]
        return raw

    real_digits = sources._LOADERS["digits"]
    monkeypatch.setitem(sources._LOADERS, "digits", first_500_digits)
    run, _ = train(CONFIGS / "lenet5.yaml", tmp_path / "runs")
    assert read_json(run / "environment.json")["status"] == "completed"
    data = read_json(run / "data.json")
    assert data["input_shape"] == [8, 8, 1] and sum(data["sizes"].values()) == 500
    layers = load_model(Run(run)).layers
    assert layers[0].name == "scale_inputs"  # 0..16 → 0..1 inside the model, then the config's layers
    shapes = [tuple(layer.output.shape[1:]) for layer in layers[1:]]
    assert shapes[:6] == [(32, 32, 1), (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (1, 1, 120)]
    assert shapes[-2:] == [(84,), (10,)]


def test_signal_generator_is_reproducible_and_conv1d_config_trains(tmp_path):
    signals = example("make_signals")
    path = signals["write"](tmp_path / "signals.npz", train=120, test=40)
    x_again, y_again = signals["make_signals"](120)
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["x_train"], x_again)
        np.testing.assert_array_equal(saved["y_train"], y_again)
        assert saved["x_train"].shape == (120, 128, 1) and sorted(set(saved["y_train"])) == sorted(signals["CLASSES"])
    run, _ = train(CONFIGS / "conv1d_signals.yaml", tmp_path / "runs", "--set", f"data.path={path}")
    data = read_json(run / "data.json")
    assert data["input_shape"] == [128, 1] and data["class_names"] == ["sawtooth", "sine", "square", "triangle"]
    assert data["sizes"] == {"train": 102, "val": 18, "test": 40}
    assert read_json(run / "metrics.json")["num_examples"] == 40


def test_volume_generator_and_conv3d_config_train(tmp_path):
    volumes = example("make_volumes")
    path = volumes["write"](tmp_path / "volumes.npz", train=60, test=30)
    with np.load(path) as saved:
        assert saved["x_train"].shape == (60, 16, 16, 16, 1)
        # the solids are brighter than the noise around them: a voxel count an eye could check
        assert (saved["x_train"] > 0.5).sum(axis=(1, 2, 3, 4)).min() > 20
    run, _ = train(CONFIGS / "conv3d_volumes.yaml", tmp_path / "runs", "--set", f"data.path={path}")
    data = read_json(run / "data.json")
    assert data["input_shape"] == [16, 16, 16, 1] and data["class_names"] == ["cube", "rod", "sphere"]
    assert read_json(run / "environment.json")["status"] == "completed"


def test_shapes_folder_trains_with_augmentation_on_training_batches_only(tmp_path, monkeypatch):
    """The folder example with its bad files; data.augment changes what training sees, not what evaluation
    sees, and the saved model.keras carries no augmentation layer."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import Dataset, load_data
    from cnnctl.runs.folder import Run
    from cnnctl.runs.model_file import load_model

    shapes = example("make_shapes_folder")
    root = shapes["write"](tmp_path / "shapes", per_class=12, bad_files=True)

    seen = []  # (split, augmenter given?, first batch as it would be fed, the same batch without augmentation)
    original = Dataset.pipeline

    def spy(self, split, batch_size, **kwargs):
        in_order = {**kwargs, "shuffle": False}  # the same examples in the same order, to compare pixel by pixel
        seen.append(
            (
                split,
                kwargs.get("augment") is not None,
                next(iter(original(self, split, batch_size, **in_order)))[0].numpy(),
                next(iter(original(self, split, batch_size, **{**in_order, "augment": None})))[0].numpy(),
            )
        )
        return original(self, split, batch_size, **kwargs)

    monkeypatch.setattr(Dataset, "pipeline", spy)
    run, output = train(CONFIGS / "shapes_folder.yaml", tmp_path / "runs", "--set", f"data.path={root}")
    monkeypatch.undo()

    data = read_json(run / "data.json")
    skipped = [entry.split(" (")[0] for entry in data["skipped"]]
    assert skipped == ["circle/notes.txt", "square/empty.png", "triangle/truncated.jpg"]
    assert sum(data["sizes"].values()) == 3 * 12 + 3  # + the RGBA PNG, the palette GIF and good.jpg

    assert {split: augmented for split, augmented, _, _ in seen} == {"train": True, "val": False, "test": False}
    for split, _, batch, plain in seen:
        if split == "train":
            assert np.abs(batch - plain).mean() > 0.02  # flipped and shifted
        else:
            np.testing.assert_array_equal(batch, plain)

    with zipfile.ZipFile(run / "model.keras") as archive:
        model_json = archive.read("config.json").decode()
    assert not [name for name in ("RandomFlip", "RandomTranslation", "augment") if name in model_json]
    test_files = load_data(load_config(run / "config.yaml")).splits["test"].x
    with np.load(run / "predictions.npz") as predictions:  # evaluation saw the plain test images
        expected = load_model(Run(run)).predict(np.asarray(test_files).astype(np.float32), verbose=0)
        np.testing.assert_allclose(predictions["y_prob"], expected, atol=1e-5)


def _stand_in(shape: tuple, seed: int = 0):
    """keras.datasets-style ((x_train, y_train), (x_test, y_test)) of random uint8 images, 10 classes."""
    rng = np.random.default_rng(seed)

    def part(count):
        return rng.integers(0, 256, (count, *shape), dtype=np.uint8), np.arange(count) % 10

    return lambda: (part(200), part(50))


# Parameters counted by hand from the configs' layers: (kernel area × inputs + 1) × filters per convolution,
# 4 per channel per BatchNormalization, (inputs + 1) × units per Dense.
MNIST_PARAMS = 32 * 10 + 64 * (9 * 32 + 1) + 64 * (9 * 64 + 1) + (3 * 3 * 64 + 1) * 64 + 65 * 10
CIFAR10_PARAMS = (
    32 * 28
    + 4 * 32
    + 32 * (9 * 32 + 1)
    + 64 * (9 * 32 + 1)
    + 4 * 64
    + 64 * (9 * 64 + 1)
    + 128 * (9 * 64 + 1)
    + 4 * 128
    + (4 * 4 * 128 + 1) * 128
    + 129 * 10
)


@pytest.mark.parametrize(
    "name, dataset, shape, params",
    [
        ("mnist.yaml", "mnist", (28, 28), MNIST_PARAMS),
        ("cifar10.yaml", "cifar10", (32, 32, 3), CIFAR10_PARAMS),
    ],
)
def test_download_configs_validate_and_build_on_a_stand_in(monkeypatch, name, dataset, shape, params):
    import keras

    monkeypatch.setattr(getattr(keras.datasets, dataset), "load_data", _stand_in(shape))
    result = runner.invoke(app, ["check", str(CONFIGS / name)], terminal_width=200)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert f"ok: {CONFIGS / name} is valid" in flat
    assert re.search(r"total\W+180\W+20\W+50\W", flat)  # 200 train (10% to val) and 50 test
    assert f"total params {params:,}" in flat


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("name", ["fashion_mnist.yaml", "fashion_mnist_best.yaml"])
def test_fashion_mnist_config_validates_on_the_debian_files(name):
    result = runner.invoke(app, ["check", str(CONFIGS / name)], terminal_width=200)
    assert result.exit_code == 0, result.output
    # fashion_mnist_best trains on every training image (its choices were made holding out 6000)
    sizes = r"total\W+60000\W+10000\W" if name == "fashion_mnist_best.yaml" else r"total\W+54000\W+6000\W+10000\W"
    assert re.search(sizes, result.output) and "Ankle boot" in result.output
    if name == "fashion_mnist_best.yaml":  # the cost RESULTS.md's time-to-accuracy budget was planned on
        assert "total params 517,962 (trainable 516,874, frozen 1,088) · 33.66M FLOPs per example" in result.output
