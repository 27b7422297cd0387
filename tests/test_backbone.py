"""model.backbone (a keras.applications network in the model) and model.from_run (a previous run's weights).

Fast: the backbone is MobileNetV3Small at alpha 0.75 and 32×32 with random weights (weights: null); no test
needs the network, downloads are made to fail on purpose.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.schema import ModelConfig
from cnnctl.errors import ConfigError
from cnnctl.model.backbone import build_backbone, preprocessing_affine
from cnnctl.model.build import build_model
from cnnctl.model.summary import describe

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"name": "MobileNetV3Small", "weights": None, "alpha": 0.75}
TINY = {"name": "MobileNet", "weights": None, "alpha": 0.25}  # fewest layers to trace: the one training test
HEAD = [{"Dense": {"units": 3, "activation": "softmax"}}]
runner = CliRunner()


def model_config(backbone=None, layers=HEAD, **extra) -> ModelConfig:
    return ModelConfig(backbone=backbone, layers=layers, **extra)


@pytest.fixture(scope="module")
def gray_digits_model():
    """A backbone model for 8×8 grayscale data in 0..16 (digits' units): resized to 32×32, gray → RGB."""
    notes = []
    model = build_model(model_config(SMALL), (8, 8, 1), 3, pixel_scale=16.0, full_scale=16.0, notes=notes)
    assert notes == []
    return model


def test_the_model_equals_the_application_called_on_its_own_preprocessed_input(gray_digits_model):
    model = gray_digits_model
    assert [layer.name for layer in model.layers][1:4] == ["scale_inputs", "backbone_resize", "backbone_preprocess"]
    x = np.random.default_rng(0).uniform(0, 16, (4, 8, 8, 1)).astype(np.float32)
    backbone = model.get_layer("MobileNetV3Small")
    # What the application expects: 0..255 RGB pixels (MobileNetV3 scales them itself), at 32×32 at least.
    pixels = keras.ops.image.resize(np.repeat(x * 255 / 16, 3, axis=-1), (32, 32))
    expected = model.layers[-1](backbone(pixels, training=False))
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(expected), atol=1e-5)
    # Frozen: batch norm in inference mode even when the model is called in training mode.
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-6)


def test_frozen_and_trainable_counts(gray_digits_model):
    summary = describe(gray_digits_model)
    head = gray_digits_model.layers[-1].count_params()
    assert summary.trainable_params == head == 432 * 3 + 3
    assert summary.frozen_params == summary.total_params - head > 500_000
    assert [row.index for row in summary.rows] == [None, None, None, None, 0]  # config indices on the head only
    assert summary.rows[3].kind == "Functional" and summary.rows[3].flops > 1_000_000


@pytest.mark.parametrize(
    "name, module",
    [
        ("VGG16", "vgg16"),
        ("DenseNet121", "densenet"),
        ("MobileNetV2", "mobilenet_v2"),
        ("EfficientNetB0", "efficientnet"),
    ],
)
def test_preprocess_input_of_every_mode_is_an_affine_map(name, module):
    """caffe (BGR, mean), torch (mean/std), tf ([-1, 1]) and none (in the network) — found by probing."""
    matrix, offset = preprocessing_affine(name)
    pixels = np.random.default_rng(2).uniform(0, 255, (5, 3)).astype(np.float32)
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    np.testing.assert_allclose(pixels @ matrix + offset, expected, atol=1e-3)


def test_a_misspelt_backbone_or_option_is_one_line_with_a_hint():
    with pytest.raises(
        ConfigError,
        match=r"unknown keras.applications network 'MobileNetV3small'; did you mean "
        r"MobileNetV3Small\?",
    ):
        build_model(model_config({**SMALL, "name": "MobileNetV3small"}), (32, 32, 3), 3)
    with pytest.raises(
        ConfigError,
        match=r"model.backbone \(MobileNetV3Small\): unknown key 'alpah'; did you mean "
        r"'alpha'\?",
    ):
        build_model(model_config({"name": "MobileNetV3Small", "weights": None, "alpah": 0.75}), (32, 32, 3), 3)


def test_the_input_size_is_raised_to_the_backbones_minimum_or_as_configured(gray_digits_model):
    assert gray_digits_model.get_layer("backbone_resize").get_config()["height"] == 32
    model = build_model(model_config({**SMALL, "input_size": 48}), (32, 32, 3), 3, pixel_scale=255.0)
    assert model.get_layer("MobileNetV3Small").input_shape == (None, 48, 48, 3)


def offline(monkeypatch, tmp_path):
    """keras.applications.MobileNetV3Small as without internet: imagenet weights fail to download."""
    original = keras.applications.MobileNetV3Small
    url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/weights_small_no_top_v2.h5"

    @functools.wraps(original)
    def no_network(*args, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise Exception(f"URL fetch failure on {url}: None -- [Errno -2] Name or service not known")
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))


def test_imagenet_weights_offline_name_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    cfg = model_config({**SMALL, "weights": "imagenet"}).backbone
    with pytest.raises(ConfigError) as caught:
        build_backbone(cfg, (32, 32))
    message = str(caught.value)
    assert message.startswith(
        "model.backbone.weights: could not download MobileNetV3Small's imagenet weights, "
        "weights_small_no_top_v2.h5 ([Errno -2] Name or service not known)"
    )
    assert f"place it at {tmp_path / 'models' / 'weights_small_no_top_v2.h5'}" in message
    backbone, note = build_backbone(cfg, (32, 32), weights_missing_ok=True)  # cnnctl check
    assert "checked with random weights instead" in note and not backbone.trainable


def test_a_local_weights_file_is_loaded_and_a_wrong_one_is_one_line(gray_digits_model, tmp_path):
    path = tmp_path / "small.weights.h5"
    gray_digits_model.get_layer("MobileNetV3Small").save_weights(path)
    backbone, _ = build_backbone(model_config({**SMALL, "weights": str(path)}).backbone, (32, 32))
    for ours, theirs in zip(backbone.weights, gray_digits_model.get_layer("MobileNetV3Small").weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with pytest.raises(ConfigError, match=r"model.backbone.weights: .*small.weights.h5 does not fit MobileNetV3Small"):
        build_backbone(model_config({**SMALL, "alpha": 1.0, "weights": str(path)}).backbone, (32, 32))
    with pytest.raises(ConfigError, match="no such file"):
        build_backbone(model_config({**SMALL, "weights": str(tmp_path / "missing.h5")}).backbone, (32, 32))


CONV_HEAD = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
    "Flatten",
    {"Dense": {"units": 3, "activation": "softmax"}},
]


def fake_run(folder: Path, model: keras.Model) -> Path:
    """A run folder as far as model.from_run reads it: config.yaml, environment.json and model.keras."""
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"layers": CONV_HEAD}}))
    (folder / "environment.json").write_text(json.dumps({"status": "completed"}))
    model.save(folder / "model.keras")
    return folder


def test_from_run_reuses_matching_layers_by_name_and_says_which_do_not_fit(tmp_path):
    """Pretrained on 12×12 images, reused on 8×8: the convolution fits any size, the Dense after Flatten does not."""
    previous = build_model(model_config(layers=CONV_HEAD), (12, 12, 1), 3)
    run = fake_run(tmp_path / "pretrained", previous)
    with pytest.raises(
        ConfigError,
        match=r"model.from_run: layer 'dense(_\d+)?' has weights of shape \(144, 3\), "
        r"\(3\) here but \(400, 3\), \(3\) in .*pretrained; .*skip_mismatched: true",
    ):
        build_model(model_config(layers=CONV_HEAD, from_run=str(run)), (8, 8, 1), 3)
    notes = []
    cfg = model_config(layers=CONV_HEAD, from_run={"run": str(run), "skip_mismatched": True})
    model = build_model(cfg, (8, 8, 1), 3, notes=notes)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), previous.layers[0].kernel.numpy())
    assert notes == [
        f"model.from_run: 1 layers start from {run.resolve()}; kept fresh weights for "
        f"{model.layers[-1].name} (shapes differ)"
    ]
    assert cfg.from_run.run == str(run.resolve())  # the saved config names the folder, never `last`
    with pytest.raises(ConfigError, match="model.from_run: .*no such run folder"):
        build_model(model_config(layers=CONV_HEAD, from_run=str(tmp_path / "nowhere")), (8, 8, 1), 3)


def pretend_pretrained(folder: Path) -> str:
    """TINY's weights with batch norm statistics that fit its inputs. Random weights with fresh statistics (mean 0,
    variance 1) shrink the signal to ~1e-17 by the last layer in inference mode, leaving nothing to fine-tune;
    one forward pass in training mode with momentum 0 sets every layer's statistics to its inputs'."""
    network = keras.applications.MobileNet(
        input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg", alpha=TINY["alpha"]
    )
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    network(np.random.default_rng(6).uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32), training=True)
    path = folder / "mobilenet.weights.h5"
    network.save_weights(path)
    return str(path)


class Snapshots(keras.callbacks.Callback):
    """Every weight of the backbone (by path) when each fit begins and ends: two phases, two pairs."""

    def __init__(self):
        super().__init__()
        self.taken: list[dict[str, np.ndarray]] = []

    def on_train_begin(self, logs=None):
        backbone = self.model.get_layer(TINY["name"])
        self.taken.append({weight.path: keras.ops.convert_to_numpy(weight).copy() for weight in backbone.weights})

    on_train_end = on_train_begin


def test_train_fine_tune_and_predict_with_a_backbone(tmp_path, monkeypatch):
    """One frozen epoch and one fine-tuning epoch on 90 tiny RGB images: the header counts frozen parameters; the
    backbone (batch norm statistics included) does not move in phase 1; in phase 2 its last layers do, batch norm
    excepted; model.keras takes raw pixels (MobileNet scales them to [-1, 1] in backbone_preprocess)."""
    from cnnctl.reporting.curves import fine_tuning_start
    from cnnctl.training import loop

    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "tiny.npz", x_train=rng.integers(0, 256, (90, 16, 16, 3), dtype=np.uint8), y_train=np.arange(90) % 3
    )
    config = tmp_path / "tiny.yaml"
    backbone = {**TINY, "weights": pretend_pretrained(tmp_path)}
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "npz", "path": "tiny.npz", "test_split": 0.2},
                "model": {"backbone": backbone, "layers": HEAD},
                "train": {
                    "epochs": 1,
                    "batch_size": 32,
                    "early_stopping": False,
                    "fine_tune": {"epochs": 1, "unfreeze": 6},
                },
            }
        )
    )
    snapshots = Snapshots()
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [snapshots])
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "layers on MobileNet (frozen, then fine-tuned)" in output and "(771 trainable," in output
    assert "then fine-tune 1 epoch at learning rate 0.0001, unfreezing the last 6 layers of MobileNet" in output
    (run,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["backbone"] == {**backbone, "input_size": None, "pooling": "avg", "trainable": False}

    start, after_first, begin_second, after_second = snapshots.taken
    network = keras.applications.MobileNet(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.25, pooling="avg"
    )
    unfrozen = {weight.path for layer in network.layers[-6:] for weight in layer.weights}
    norms = {
        weight.path
        for layer in network.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for weight in layer.weights
    }
    assert unfrozen & norms  # the last six layers include a batch norm
    changed = lambda a, b: {path for path in a if not np.array_equal(a[path], b[path])}  # noqa: E731
    assert changed(start, after_first) == set() == changed(after_first, begin_second)  # phase 1: all frozen
    assert changed(begin_second, after_second) == unfrozen - norms != set()  # phase 2: batch norm kept frozen
    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["epoch"], row["phase"], float(row["learning_rate"])) for row in rows] == [
        ("1", "1", 0.001),
        ("2", "2", 0.0001),
    ]
    assert fine_tuning_start({"epoch": [1, 2], "phase": [1.0, 2.0]}) == 2

    # model.keras loads without cnnctl, takes the data's raw pixels, and keeps the backbone in inference mode.
    loaded = keras.saving.load_model(run / "model.keras", safe_mode=True)
    x = np.load(tmp_path / "tiny.npz")["x_train"][:2].astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=True), loaded.predict(x, verbose=0), atol=1e-5)
    saved_model = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))
    (node,) = [layer for layer in saved_model["config"]["layers"] if layer["name"] == "MobileNet"]
    assert node["inbound_nodes"][0]["kwargs"]["training"] is False
    np.savez(tmp_path / "two.npz", x=x)
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "two.npz"), "--top-k", "1"])
    assert result.exit_code == 0, result.output


def test_check_builds_the_shipped_transfer_config_without_its_imagenet_weights(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    rng = np.random.default_rng(4)
    shapes = tmp_path / "shapes"
    for name in ["circle", "square", "triangle"]:
        (shapes / name).mkdir(parents=True)
        for copy in range(4):
            keras.utils.save_img(shapes / name / f"{copy}.png", rng.integers(0, 256, (32, 32, 3)).astype("uint8"))
    result = runner.invoke(
        app,
        [
            "check",
            str(ROOT / "configs" / "transfer_folder.yaml"),
            "--set",
            f"data.path={shapes}",
            "--set",
            "data.image_size=[32,32]",
            "--set",
            "data.validation_split=0.25",
            "--set",
            "data.test_split=0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "could not download MobileNetV3Small's imagenet weights" in output
    assert "checked with random weights instead" in output and "frozen" in output


def test_the_diagnosis_advises_a_pretrained_backbone_with_the_config_lines():
    from cnnctl.evaluation.diagnosis import TRANSFER_LINES, diagnose

    stuck = {"loss": [1.1, 1.09, 1.08, 1.08, 1.07, 1.07], "val_loss": [1.1, 1.1, 1.09, 1.09, 1.08, 1.08]}
    for kwargs in (
        {"baseline_accuracy": 0.4, "accuracy": 0.42},  # near the majority class, any size
        {"train_examples": 300},
    ):  # underfitting a small dataset from scratch
        report = diagnose(stuck, **kwargs)
        assert report["verdict"] == "underfitting"
        assert any(TRANSFER_LINES in line for line in report["advice"]), report["advice"]
    assert not any(TRANSFER_LINES in line for line in diagnose(stuck, train_examples=50_000)["advice"])
    with_backbone = diagnose(stuck, baseline_accuracy=0.4, accuracy=0.42, backbone="MobileNetV3Small")
    assert not any(TRANSFER_LINES in line for line in with_backbone["advice"])
    assert any("The backbone (MobileNetV3Small)" in line for line in with_backbone["advice"])


def test_the_backbone_advice_follows_the_config_frozen_or_fine_tuned_and_which_weights():
    """Issue 30: the advice called a fine-tuned backbone frozen and asked for imagenet weights when a local file
    was given; it is now worded from config.yaml as a run saves it."""
    from cnnctl.evaluation.backbone_advice import Backbone
    from cnnctl.evaluation.diagnosis import diagnose

    stuck = {"loss": [1.1, 1.09, 1.08, 1.08, 1.07, 1.07], "val_loss": [1.1, 1.1, 1.09, 1.09, 1.08, 1.08]}
    saved = yaml.safe_load(
        "model:\n  backbone: {name: VGG16, weights: weights/vgg16.weights.h5}\n"
        "  layers: [{Dense: {units: 3, activation: softmax}}]\n"
        "train: {epochs: 3, fine_tune: {epochs: 2}}\n"
    )
    fine_tuned = Backbone.from_config(saved)
    assert fine_tuned == Backbone("VGG16", "weights/vgg16.weights.h5", trains=True, head_normalized=False)

    def backbone_line(backbone):
        advice = diagnose(stuck, baseline_accuracy=0.4, accuracy=0.42, backbone=backbone)["advice"]
        (line,) = [line for line in advice if line.startswith("The backbone (VGG16)")]
        return line

    line = backbone_line(fine_tuned)
    assert "frozen" not in line and "train.fine_tune.learning_rate" in line
    assert "weights/vgg16.weights.h5" in line and "imagenet" not in line
    assert "make BatchNormalization the first layer of the head" in line  # the head starts with Dense

    saved["train"] = {"epochs": 3}
    saved["model"]["backbone"]["weights"] = "imagenet"
    saved["model"]["layers"].insert(0, "BatchNormalization")
    frozen = Backbone.from_config(saved)
    line = backbone_line(frozen)
    assert "is frozen" in line and "train.fine_tune: {epochs: 5}" in line
    assert "weights" not in line.split("input_size")[1] and "BatchNormalization" not in line
    assert Backbone.from_config({"model": {"layers": []}}) is None


def test_check_warns_that_a_frozen_random_backbone_cannot_learn(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "tiny.npz", x_train=rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8), y_train=np.arange(60) % 3
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "npz", "path": "tiny.npz"},
                "model": {"backbone": TINY, "layers": HEAD},
            }
        )
    )
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "with weights: null and trainable: false stays random and frozen" in " ".join(result.output.split())


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_weights_file_that_is_not_a_regular_file_is_one_line_and_never_opened(tmp_path, kind):
    weights = tmp_path / "backbone.weights.h5"
    if kind == "fifo":
        os.mkfifo(weights)  # opening it would wait for a writer forever
    else:
        weights.symlink_to("/dev/zero")  # reading it would never end
    config = tmp_path / "bb.yaml"
    config.write_text(
        "data: {source: digits}\n"
        "model:\n"
        "  backbone: {name: MobileNetV3Small, weights: backbone.weights.h5, input_size: 32}\n"
        "  layers: [{Dense: {units: 10, activation: softmax}}]\n"
    )
    result = CliRunner().invoke(app, ["check", str(config)])
    assert result.exit_code == 2
    what = "a named pipe (FIFO)" if kind == "fifo" else "a device"
    assert result.output == (
        f"error: {config}: model.backbone.weights: {weights}: is {what}, not a regular file; give imagenet, null or "
        "a weights file (.weights.h5)\n"
    )


def test_config_keeps_the_weights_path_as_written_not_its_link_target(tmp_path):
    from cnnctl.config.loading import load_config

    (tmp_path / "real.weights.h5").write_bytes(b"")
    (tmp_path / "link.weights.h5").symlink_to(tmp_path / "real.weights.h5")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: MobileNetV3Small, weights: link.weights.h5}\n  layers: [{Dense: {units: 2}}]\n"
    )
    assert load_config(config).model.backbone.weights == str(tmp_path / "link.weights.h5")
