"""Core data path: sources reachable offline, stratified seeded splits, scaling, channel axis, pipelines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cnnctl.config.schema import Config
from cnnctl.data.builtin import DEBIAN_FASHION_MNIST
from cnnctl.data.dataset import load_data, pixel_scale
from cnnctl.errors import DataError

LAYERS_2D = [{"Conv2D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 3}}]


def make_config(data: dict, layers=None, seed: int = 0) -> Config:
    return Config.model_validate({"seed": seed, "data": data, "model": {"layers": layers or LAYERS_2D}})


def test_digits_is_embedded_split_and_scaled():
    dataset = load_data(make_config({"source": "digits", "validation_split": 0.1, "test_split": 0.2}))
    sizes = {name: len(split) for name, split in dataset.splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360  # ceil(0.2 * 1797)
    assert sizes["val"] == 144  # ceil(0.1 * 1437)
    assert dataset.input_shape == (8, 8, 1)
    assert dataset.pixel_scale == 16.0
    assert dataset.class_names == [str(i) for i in range(10)]
    # Stratified: every class keeps its share in each split (within one example).
    from sklearn.datasets import load_digits

    overall = np.bincount(load_digits().target) / 1797
    for split in dataset.splits.values():
        share = np.bincount(split.y, minlength=10) / len(split)
        assert np.all(np.abs(share - overall) * len(split) <= 1.0)


def test_splits_are_seeded_and_disjoint():
    first = load_data(make_config({"source": "digits"}, seed=7))
    again = load_data(make_config({"source": "digits"}, seed=7))
    other = load_data(make_config({"source": "digits"}, seed=8))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[name].x, again.splits[name].x)
    assert not np.array_equal(first.splits["test"].x, other.splits["test"].x)
    rows = {name: {split.x[i].tobytes() for i in range(len(split))} for name, split in first.splits.items()}
    # digits has a few duplicate images, so compare counts rather than demand empty intersections
    assert len(rows["train"] & rows["test"]) <= 5


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_with_string_labels_and_given_test_set(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["cat", "dog", "emu"])
    y_train, y_test = names[rng.integers(0, 3, 90)], names[rng.integers(0, 3, 30)]
    path = write_npz(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (90, 6, 6), dtype=np.uint8),
        y_train=y_train,
        x_test=rng.integers(0, 256, (30, 6, 6), dtype=np.uint8),
        y_test=y_test,
    )
    dataset = load_data(make_config({"source": "npz", "path": str(path), "validation_split": 0.2}))
    assert dataset.class_names == ["cat", "dog", "emu"]
    assert dataset.input_shape == (6, 6, 1)  # channel axis added for grayscale images
    assert dataset.pixel_scale == 255.0
    np.testing.assert_array_equal(dataset.splits["test"].y, np.searchsorted(names, y_test))
    assert len(dataset.splits["train"]) + len(dataset.splits["val"]) == 90
    assert not any("carved" in note for note in dataset.notes)  # the source's own test set is used


def test_pipeline_casts_one_hot_encodes_and_batches_and_leaves_scaling_to_the_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    y = np.tile(np.arange(4), 10)
    path = write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    dataset = load_data(make_config({"source": "npz", "path": str(path), "validation_split": 0}))
    pipeline = dataset.pipeline("test", batch_size=5, one_hot=True)
    # In-memory data runs without tf.data's autotuner (its threads stalled the end of epochs: dataset.py).
    assert pipeline.options().autotune.enabled is False
    batches = list(pipeline)
    assert [tuple(b[0].shape) for b in batches] == [(5, 4, 4, 3), (3, 4, 4, 3)]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, x[:8])  # 0..255: the model's first layer divides by 255
    np.testing.assert_array_equal(labels, np.eye(4)[y[:8]])
    # A model saved before models carried their scaling is fed as its training pipeline fed it.
    old_style = np.concatenate([b[0].numpy() for b in dataset.pipeline("test", batch_size=5, scale_outside=True)])
    np.testing.assert_allclose(old_style, x[:8] / 255.0, rtol=1e-6)


@pytest.mark.parametrize("normalize, pixel_scale, scaling", [(True, 16.0, "in_model"), (False, 1.0, "none")])
def test_data_json_records_how_inputs_reach_the_model(normalize, pixel_scale, scaling):
    """`scaling` says model.keras takes examples as stored; `full_scale` (what an 8-bit 255 means to predict)
    is recorded whether or not the data are normalized."""
    from cnnctl.data.dataset import scaled_outside_model

    summary = load_data(make_config({"source": "digits", "normalize": normalize})).summary()
    assert (summary["pixel_scale"], summary["full_scale"], summary["scaling"]) == (pixel_scale, 16.0, scaling)
    assert not scaled_outside_model(summary)
    older = {key: value for key, value in summary.items() if key not in ("scaling", "full_scale")}
    assert scaled_outside_model(older) == normalize  # an older run's model takes examples divided by 16


def test_signals_get_a_channel_axis_for_conv1d(tmp_path):
    rng = np.random.default_rng(2)
    path = write_npz(
        tmp_path / "s.npz", x_train=rng.normal(size=(60, 50)).astype(np.float32), y_train=np.repeat([0, 1], 30)
    )
    layers = [{"Conv1D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 2}}]
    dataset = load_data(make_config({"source": "npz", "path": str(path)}, layers))
    assert dataset.input_shape == (50, 1)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            dict(x_train=np.zeros((10, 4, 4)), y_train=np.zeros(9)),
            "data: x_train has 10 examples but y_train has 9 labels",
        ),
        (
            dict(x_train=np.zeros((10, 4, 4)), y_train=np.zeros(10)),
            "data: y_train has only one class (0); a classifier needs at least two",
        ),
        (
            dict(x_train=np.full((10, 4, 4), np.nan), y_train=np.arange(10) % 2),
            "data: x_train has NaN or infinite values in 10 of 10 examples (first at index 0); clean or drop them",
        ),
        (
            dict(
                x_train=np.zeros((10, 4, 4)),
                y_train=np.arange(10) % 2,
                x_test=np.zeros((2, 4, 4)),
                y_test=np.array([0, 5]),
            ),
            "data: y_test has labels [5] that never occur in y_train",
        ),
        (dict(x_train=np.zeros((10, 4, 4))), "has arrays ['x_train']; it needs x_train and y_train"),
        (
            dict(x_train=np.zeros((20, 4, 4)), y_train=np.arange(20) % 10),
            "data.test_split: 0.2 of 20 examples is 4, too small to hold all 10 classes; use at least 0.5, or more data",
        ),
    ],
)
def test_bad_arrays_are_clear_errors(tmp_path, arrays, message):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as caught:
        load_data(make_config({"source": "npz", "path": str(path)}))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "splits, message",
    [
        (  # the test split takes so much that no validation split can hold every class (the message said 0.59)
            {"test_split": 0.83},
            "data.validation_split: 17 examples cannot hold all 10 classes on both sides of a split (at least 20 "
            "needed); lower data.test_split (carved first), or use more data",
        ),
        (
            {"validation_split": 0.95},
            "data.validation_split: 0.95 of 80 examples leaves 4, too few to hold all 10 classes; use at most 0.87",
        ),
    ],
)
def test_splits_that_leave_a_side_without_every_class_say_which_way_to_go(tmp_path, splits, message):
    path = write_npz(tmp_path / "ten.npz", x_train=np.zeros((100, 4, 4)), y_train=np.arange(100) % 10)
    with pytest.raises(DataError) as caught:
        load_data(make_config({"source": "npz", "path": str(path), **splits}))
    assert message in str(caught.value)


def test_pixel_scale_rules():
    assert pixel_scale(np.zeros(3, np.uint8)) == 255.0
    assert pixel_scale(np.array([0.0, 0.5, 1.0])) == 1.0
    assert pixel_scale(np.array([0, 16])) == 16.0
    assert pixel_scale(np.array([-3.0, 2.0])) == 3.0


def test_offline_keras_dataset_names_the_file(monkeypatch, tmp_path):
    import keras

    def no_network():
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError) as caught:
        load_data(make_config({"source": "mnist"}))
    assert str(caught.value).startswith("data.source mnist: could not load mnist.npz (URL fetch failure")
    assert f"place it at {tmp_path / 'datasets' / 'mnist.npz'}" in str(caught.value)


def test_a_download_under_way_shows_keras_line_and_progress(capsys):
    from cnnctl.data.builtin import _FirstLineHeld

    held = _FirstLineHeld(sys.stdout)
    held.write("Downloading data from https://example.org/x.npz\n")
    assert capsys.readouterr().out == ""  # held until the download shows progress
    held.write("\r 8192/11490434 0s 0us/step")
    assert capsys.readouterr().out == "Downloading data from https://example.org/x.npz\n\r 8192/11490434 0s 0us/step"
    held.write(" more")
    assert capsys.readouterr().out == " more"


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_files():
    dataset = load_data(make_config({"source": "fashion_mnist", "validation_split": 0.1}))
    assert len(dataset.splits["test"]) == 10_000
    assert len(dataset.splits["train"]) + len(dataset.splits["val"]) == 60_000
    assert dataset.input_shape == (28, 28, 1)
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"
    assert dataset.splits["test"].x.dtype == np.uint8  # kept compact; scaled per batch
    assert np.bincount(dataset.splits["test"].y).tolist() == [1000] * 10
