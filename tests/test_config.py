"""Config errors as data: YAML snippet in, exact message out."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from cnnctl.config.loading import load_config
from cnnctl.config.schema import Config
from cnnctl.errors import ConfigError

MODEL = "model:\n  layers: [Flatten, {Dense: {units: 10, activation: softmax}}]\n"

error_cases = [
    (
        "train:\n  optimizer: {name: adam, learning_rate: -1}\n",
        "train.optimizer.learning_rate: must be greater than 0 (got -1)",
    ),
    ("train:\n  epoch: 3\n", "train.epoch: unknown key; did you mean 'epochs'? (e.g. epochs: 10)"),
    ("trian:\n  epochs: 3\n", "trian: unknown key; did you mean 'train'?"),
    ("train:\n  batch_size: big\n", "train.batch_size: must be an integer (got big)"),
    ("train:\n  epochs: 0\n", "train.epochs: must be greater than 0 (got 0)"),
    (
        "train:\n  early_stopping: {patiense: 2}\n",
        "train.early_stopping.patiense: unknown key; did you mean 'patience'? (e.g. patience: 3)",
    ),
    (
        "data:\n  source: mnistt\n",
        "data.source: must be one of 'digits', 'mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'npz', 'npy', "
        "'idx', 'csv', 'folder' or 'manifest' (got mnistt); did you mean 'mnist'?",
    ),
    ("data:\n  source: npz\n", "data: source 'npz' needs data.path (a file or folder)"),
    ("data:\n  validation_split: 1.5\n", "data.validation_split: must be less than 1 (got 1.5)"),
    (
        "data:\n  augment: [{RandomFlip: 3}]\n",
        "data.augment: the arguments of RandomFlip must be a mapping like {filters: 32} (got 3)",
    ),
    (
        "train:\n  lr_schedule: cosine\n  reduce_lr_on_plateau: true\n",
        "train: lr_schedule: cosine already sets the learning rate every step; set reduce_lr_on_plateau: false or "
        "lr_schedule: constant",
    ),
    ("train:\n  steps_per_execution: 0\n", "train.steps_per_execution: must be a positive integer or auto (got 0)"),
    ("evaluate:\n  top_k: [0, 5]\n", "evaluate.top_k: every k must be a positive integer (got [0, 5])"),
    (
        "train:\n  loss: {label_smoothing: 0.1}\n",
        "train.loss: must be a loss name or {name, options}, e.g. sparse_categorical_crossentropy or "
        "{name: categorical_crossentropy, label_smoothing: 0.1} (got {'label_smoothing': 0.1})",
    ),
    ("evaluate:\n  tta: flop\n", "evaluate.tta: must be one of 'off', 'flip' or 'flip_translate' (got flop)"),
]


@pytest.mark.parametrize("snippet, message", error_cases)
def test_config_errors_name_the_file_and_yaml_path(tmp_path, snippet, message):
    path = tmp_path / "x.yaml"
    path.write_text(MODEL + snippet)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {message}"


layer_cases = [
    (
        "model:\n  layers: [Flatten, Lambda]\n",
        "model.layers[1] (Lambda): Lambda is refused: configs must not run code (the model input is added for you "
        "from model.input_shape)",
    ),
    (
        "model:\n  layers: [{Dense: {units: 3, activation: {module: os, class_name: system}}}]\n",
        "model.layers[0] (Dense): 'module: os' is refused: configs must not load code",
    ),
    (
        "model:\n  layers: [{Dense: 3}]\n",
        "model.layers: the arguments of Dense must be a mapping like {filters: 32} (got 3)",
    ),
    ("model:\n  layers: []\n", "model.layers: must have at least 1 item after validation, not 0 (got [])"),
    ("seed: 1\n", "model: missing; this key is required"),
]


@pytest.mark.parametrize("text, message", layer_cases)
def test_layer_list_errors(tmp_path, text, message):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {message}"


def test_yaml_syntax_error_gives_line_number(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  layers: [Flatten\ntrain: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3, column \d+: invalid YAML"):
        load_config(path)


def test_python_tags_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_defaults_are_filled_and_name_comes_from_file_stem(tmp_path):
    path = tmp_path / "my-net.yaml"
    path.write_text(MODEL)
    config = load_config(path)
    assert config.name == "my-net"
    assert config.train.epochs == 10
    assert config.train.batch_size == 64
    assert config.train.optimizer.name == "adam" and config.train.optimizer.learning_rate == 0.001
    assert config.train.early_stopping.patience == 3
    assert config.train.reduce_lr_on_plateau is None
    assert config.data.source == "digits"
    assert [layer.name for layer in config.model.layers] == ["Flatten", "Dense"]


set_cases = [
    (["train.epochs=3"], lambda c: c.train.epochs == 3),
    (["data.augment=[]"], lambda c: c.data.augment == []),
    (["train.optimizer.learning_rate=0.01"], lambda c: c.train.optimizer.learning_rate == 0.01),
    (
        ["train.optimizer=sgd", "train.optimizer.momentum=0.9"],
        lambda c: c.train.optimizer.name == "sgd" and c.train.optimizer.kwargs()["momentum"] == 0.9,
    ),
    (["model.layers[1].Dense.units=4"], lambda c: c.model.layers[1].kwargs["units"] == 4),
    (["model.layers[0].Flatten.name=flat"], lambda c: c.model.layers[0].kwargs == {"name": "flat"}),
    (["train.early_stopping=false"], lambda c: c.train.early_stopping is None),
    (["name=other"], lambda c: c.name == "other"),
]


@pytest.mark.parametrize("overrides, holds", set_cases)
def test_set_overrides_are_yaml_scalars(tmp_path, overrides, holds):
    path = tmp_path / "x.yaml"
    path.write_text(MODEL)
    assert holds(load_config(path, overrides))


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs", "--set train.epochs: expected key.path=value, e.g. --set train.epochs=3"),
        ("=3", "--set =3: expected key.path=value, e.g. --set train.epochs=3"),
        ("model.layers[7].Dense.units=3", "--set model.layers[7].Dense.units=3: model.layers[7]: no such list entry"),
    ],
)
def test_bad_set_overrides(tmp_path, override, message):
    path = tmp_path / "x.yaml"
    path.write_text(MODEL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, [override])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epocs=3"], "--set train.epocs=3: train.epocs: unknown key; did you mean 'epochs'? (e.g. epochs: 10)"),
        (
            ["seed=1", "train.batch_size=-4"],
            "--set train.batch_size=-4: train.batch_size: must be greater than 0 (got -4)",
        ),
        (["data.validation_split=1.5"], "--set data.validation_split=1.5: data.validation_split: "),
    ],
)
def test_a_mistake_made_by_set_is_blamed_on_the_set_not_the_file(tmp_path, overrides, message):
    path = tmp_path / "x.yaml"
    path.write_text(MODEL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    assert str(caught.value).startswith(message)


def test_a_mistake_in_the_file_is_still_blamed_on_the_file_when_set_is_given(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(MODEL + "train:\n  epochs: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["train.batch_size=8"])
    assert str(caught.value) == f"{path}: train.epochs: must be greater than 0 (got 0)"


def test_resolved_config_round_trips(tmp_path):
    """The saved config.yaml rebuilds the same config: nothing lost, nothing added."""
    path = tmp_path / "x.yaml"
    path.write_text(
        textwrap.dedent("""\
        data: {source: npz, path: arrays.npz, augment: [{RandomFlip: {mode: horizontal}}]}
        model:
          layers:
            - Conv2D: {filters: 4, kernel_size: 3}
            - GlobalAveragePooling2D
            - Dense: {units: 2, activation: softmax}
        train: {optimizer: {name: sgd, learning_rate: 0.1, momentum: 0.9}, early_stopping: false,
                reduce_lr_on_plateau: {factor: 0.2}, class_weight: balanced,
                loss: {name: categorical_crossentropy, label_smoothing: 0.1}}
        evaluate: {tta: flip}
        """)
    )
    config = load_config(path)
    assert config.data.path == str(tmp_path / "arrays.npz")  # relative paths resolve from the config's folder
    saved = tmp_path / "saved.yaml"
    saved.write_text(config.to_yaml())
    again = load_config(saved)
    assert again.to_dict() == config.to_dict()
    raw = yaml.safe_load(config.to_yaml())
    assert raw["train"]["early_stopping"] is False
    assert raw["model"]["layers"][1] == "GlobalAveragePooling2D"
    assert raw["train"]["optimizer"] == {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
    assert raw["train"]["loss"] == {"name": "categorical_crossentropy", "label_smoothing": 0.1}
    assert raw["evaluate"]["tta"] == "flip"


def test_shipped_configs_are_valid():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml")):
        assert isinstance(load_config(path), Config), path


def test_mixed_precision_off_survives_yaml_reading_it_as_false(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {layers: [Flatten]}\ntrain: {mixed_precision: off}\n")
    assert load_config(config).train.mixed_precision == "off"
    assert load_config(config, ["train.mixed_precision=off"]).train.mixed_precision == "off"
