"""data.mix: MixUp and CutMix on training batches — mixed labels sum to one (or stay within [0, 1] for several labels
per example), the images are blended in the same proportion, validation and test stay unmixed, the fit trains on
categorical cross-entropy, and mistakes are one config line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.schema import Config, MixConfig
from cnnctl.data.batches import ArrayBatches
from cnnctl.data.dataset import Dataset, Split
from cnnctl.model.mixing import build_mixer

runner = CliRunner()


def _dataset(x, y, multi_label=False):
    return Dataset(
        splits={"train": Split(x, y), "val": Split(x, y)},
        class_names=[str(k) for k in range(4)],
        input_shape=x.shape[1:],
        pixel_scale=1.0,
        full_scale=1.0,
        source="arrays",
        origin="test",
        multi_label=multi_label,
    )


# Each class has its own constant image value, so a mixed image's mean tells how much of each class it holds.
CLASS_VALUES = np.array([0.0, 1.0, 3.0, 7.0], np.float32)


def _examples(n=64):
    y = np.arange(n) % 4
    x = np.broadcast_to(CLASS_VALUES[y][:, None, None, None], (n, 16, 16, 1)).copy()
    return x, y


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
@pytest.mark.parametrize("through", ["tf.data", "ArrayBatches"])
def test_mixed_labels_sum_to_one_and_match_the_images(mix, through):
    x, y = _examples()
    layers = build_mixer(MixConfig(**mix), x.shape[1:], seed=1)
    if through == "tf.data":
        batches = list(_dataset(x, y).pipeline("train", 32, one_hot=True, shuffle=True, seed=1, mix=layers))
    else:
        batches = list(ArrayBatches(x, y, 32, shuffle=True, seed=1, one_hot=4, mix=layers))
    labels = np.concatenate([np.asarray(b[1]) for b in batches])
    images = np.concatenate([np.asarray(b[0]) for b in batches])
    assert labels.shape == (64, 4) and images.shape == (64, 16, 16, 1) and images.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert labels.min() >= 0 and (labels.max(axis=1) < 0.999).sum() >= 8  # many are soft
    # The image is the label-weighted blend of the class images: MixUp's every pixel; CutMix's on average, where
    # Keras weighs the labels by the box before it is cut to whole pixels (a pixel per side at most on 16×16).
    blend, expected = images.mean(axis=(1, 2, 3)), labels @ CLASS_VALUES
    if "cutmix" not in mix:
        np.testing.assert_allclose(blend, expected, atol=1e-4)
    else:
        assert np.abs(blend - expected).mean() < 0.05 * CLASS_VALUES.max()
        assert np.corrcoef(blend, expected)[0, 1] > 0.95


def test_several_labels_per_example_mix_within_zero_and_one():
    x, _ = _examples()
    y = (np.random.default_rng(0).random((64, 4)) < 0.5).astype(np.float32)
    layers = build_mixer(MixConfig(mixup=0.4), x.shape[1:], seed=1)
    labels = np.concatenate(
        [np.asarray(b[1]) for b in _dataset(x, y, multi_label=True).pipeline("train", 32, mix=layers)]
    )
    assert labels.min() >= 0 and labels.max() <= 1 and ((labels > 0.01) & (labels < 0.99)).any()


CONFIG = {
    "name": "mixed",
    "seed": 4,
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2, "mix": {"mixup": 0.2, "cutmix": 1.0}},
    "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {"epochs": 3, "batch_size": 64, "optimizer": {"name": "adam", "learning_rate": 0.01}},
    "evaluate": {"top_k": [1]},
}


def test_a_mixed_run_is_scored_on_hard_labels(tmp_path):
    config = tmp_path / "mixed.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "MixUp 0.2, CutMix 1" in result.output
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    matrix = np.loadtxt(run / "confusion_matrix.csv", delimiter=",", skiprows=1)
    assert np.array_equal(matrix, matrix.round()) and matrix.sum() == metrics["num_examples"] == 360
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    notes = " ".join(metrics["diagnosis"]["notes"])
    assert "measured on mixed batches" in notes
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["mix"] == {"mixup": 0.2, "cutmix": 1.0}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"mix": {}}}, "data.mix: give mixup: ALPHA, cutmix: ALPHA or both"),
        ({"data": {"mix": {"cutmix": 2}}}, "data.mix.cutmix"),
        ({"data": {"mix": {"mixup": -1}}}, "data.mix.mixup"),
        (
            {"data": {"mix": {"mixup": 0.2}}, "train": {"loss": "sparse_categorical_focal_crossentropy"}},
            "takes class indices, and data.mix trains on mixed labels; use categorical_crossentropy",
        ),
    ],
)
def test_mix_mistakes_are_one_line(tmp_path, change, message):
    config = copy.deepcopy(CONFIG)
    for section, values in change.items():
        config[section].update(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and message in result.output and len(result.output.splitlines()) == 1


def test_mix_on_signals_is_refused_before_training(tmp_path):
    signals = tmp_path / "signals.npz"
    rng = np.random.default_rng(0)
    np.savez(signals, x_train=rng.random((60, 32, 1), np.float32), y_train=np.arange(60) % 2)
    config = {
        "data": {"source": "npz", "path": str(signals), "mix": {"mixup": 0.2}},
        "model": {
            "layers": [
                {"Conv1D": {"filters": 4, "kernel_size": 3}},
                "GlobalAveragePooling1D",
                {"Dense": {"units": 2, "activation": "softmax"}},
            ]
        },
    }
    path = tmp_path / "signals.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "data.mix: MixUp and CutMix mix 2-D images (height, width, channels); these examples have shape (32, 1)" in (
        result.output
    )


def test_sparse_loss_trains_as_categorical_on_mixed_labels():
    from cnnctl.model.compile import soft_label_loss

    config = Config.model_validate(CONFIG)
    assert soft_label_loss(config.train.loss) == "categorical_crossentropy"
    with_options = Config.model_validate(
        {
            **CONFIG,
            "train": {**CONFIG["train"], "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True}},
        }
    )
    changed = soft_label_loss(with_options.train.loss)
    assert changed.name == "categorical_crossentropy" and changed.kwargs() == {"from_logits": True}
