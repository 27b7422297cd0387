"""`cnnctl schema`: the JSON Schema editors use to complete and check configs. Every shipped config passes it, the
structural mistakes of the bad-input catalogue (tests/test_bad_inputs.py) fail it, the YAML forms cnnctl accepts
pass it, and configs/cnnctl.schema.json is what the command writes today."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.loading import load_config
from cnnctl.config.schema import REFUSED_LAYERS
from cnnctl.errors import ConfigError
from cnnctl.model.json_schema import SCHEMA_FILE, config_schema_text

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=cnnctl.schema.json"

LAYERS = """model:
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""

runner = CliRunner()


def layers(*entries: str) -> str:
    return "model: {layers: [" + ", ".join(entries) + "]}\n"


@pytest.fixture(scope="module")
def schema_text() -> str:
    return config_schema_text()


@pytest.fixture(scope="module")
def schema(schema_text) -> dict:
    return json.loads(schema_text)


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, text: str) -> list[str]:
    return [error.message for error in validator.iter_errors(yaml.safe_load(text))]


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_every_shipped_config_passes_the_schema_it_names(path, validator):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    assert (path.parent / "cnnctl.schema.json").is_file()
    assert errors(validator, text) == []


def test_the_committed_schema_is_the_generated_one(schema_text):
    import keras

    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    written_with = json.loads(committed).get("$comment", "")
    if f"Keras {keras.__version__};" not in written_with:
        # Layer arguments and their docs come from Keras itself: another release changes them, not our schema.
        pytest.skip(f"{SCHEMA_FILE} was written with another Keras ({written_with[:60]}...)")
    assert committed == schema_text, f"{SCHEMA_FILE} is stale; regenerate it: cnnctl schema --out {SCHEMA_FILE}"


# The catalogue's mistakes that the schema alone can see (types, ranges, unknown keys, layer names); the others
# need the data or Keras to build the model. `cnnctl` refuses every one of them too, in the same file.
REJECTED = [
    ("epochs-not-a-number", LAYERS + "train: {epochs: ten}\n"),
    ("epochs-zero", LAYERS + "train: {epochs: 0}\n"),
    ("batch-size-negative", LAYERS + "train: {batch_size: -5}\n"),
    ("validation-split-above-one", LAYERS + "data: {validation_split: 1.5}\n"),
    ("layers-not-a-list", "model: {layers: Conv2D}\n"),
    ("seed-a-list", LAYERS + "seed: [1]\n"),
    ("normalize-not-bool", LAYERS + "data: {normalize: maybe}\n"),
    ("layer-kwargs-not-a-mapping", layers("{Conv2D: 32}", "Flatten", "{Dense: {units: 10}}")),
    ("patience-negative", LAYERS + "train: {early_stopping: {patience: -1}}\n"),
    ("unknown-section", LAYERS + "trian: {epochs: 2}\n"),
    ("unknown-key", LAYERS + "train: {epoch: 2}\n"),
    ("layer-wrong-case", layers("{conv2d: {filters: 4, kernel_size: 3}}", "Flatten", "{Dense: {units: 10}}")),
    ("layer-unknown", layers("{Convolution9D: {filters: 4}}", "Flatten", "{Dense: {units: 10}}")),
    ("augment-layer-unknown", LAYERS + "data: {augment: [RandomFlipp]}\n"),
    ("lambda-layer", layers("{Lambda: {function: print}}", "Flatten", "{Dense: {units: 10}}")),
    ("evaluate-split-unknown", "evaluate: {split: train}\n" + LAYERS),
    # and a few more of the same kind
    ("no-model", "train: {epochs: 2}\n"),
    ("layer-given-as-a-list", layers("[Conv2D, {filters: 4}]", "Flatten")),
    ("two-layers-in-one-entry", layers("{Flatten: null, Dense: {units: 10}}")),
    ("bare-layer-that-needs-arguments", layers("Flatten", "Dense")),
    ("optimizer-a-number", LAYERS + "train: {optimizer: 3}\n"),
    ("early-stopping-a-string", LAYERS + "train: {early_stopping: yes please}\n"),
    ("early-stopping-unknown-key", LAYERS + "train: {early_stopping: {patients: 2}}\n"),
    ("image-size-three-numbers", LAYERS + "data: {image_size: [1, 2, 3]}\n"),
    ("tune-unknown-kind", LAYERS + "tune: {train.batch_size: {grid: [32, 64]}}\n"),
    ("tune-two-kinds", LAYERS + "tune: {train.batch_size: {int: [32, 64], choice: [32, 64]}}\n"),
]


# Layer names and arguments: cnnctl checks them when it builds the model (`cnnctl check`), the schema at once.
CHECKED_WHEN_BUILT = {"layer-wrong-case", "layer-unknown", "augment-layer-unknown", "bare-layer-that-needs-arguments"}


@pytest.mark.parametrize("case, text", REJECTED, ids=[case for case, _ in REJECTED])
def test_a_structural_mistake_fails_the_schema(case, text, validator):
    assert errors(validator, text) != []
    if case not in CHECKED_WHEN_BUILT:
        with pytest.raises(ConfigError):
            load_config(yaml.safe_load(text))


# The YAML forms the README documents, beyond the plain types: each passes both cnnctl and the schema.
ACCEPTED = [
    (
        "bare-layer-and-null-kwargs",
        layers(
            "{Conv2D: {filters: 4, kernel_size: 3}}",
            "Flatten",
            "{Dropout: {rate: 0.2}}",
            "{GlobalAveragePooling2D: null}",
            "{Dense: {units: 10}}",
        ),
    ),
    ("layer-alias", layers("{Convolution2D: {filters: 4, kernel_size: 3}}", "Flatten", "{Dense: {units: 10}}")),
    ("layer-extra-base-kwarg", layers("{Conv2D: {filters: 4, kernel_size: 3, lora_rank: 2}}", "Flatten")),
    ("optimizer-name", LAYERS + "train: {optimizer: sgd}\n"),
    ("optimizer-mapping", LAYERS + "train: {optimizer: {name: adamw, learning_rate: 0.002, weight_decay: 0.0001}}\n"),
    ("loss-mapping", LAYERS + "train: {loss: {name: categorical_crossentropy, label_smoothing: 0.1}}\n"),
    ("switches-off", LAYERS + "train: {early_stopping: false, reduce_lr_on_plateau: false}\n"),
    ("switches-on", LAYERS + "train: {early_stopping: true, reduce_lr_on_plateau: true, tensorboard: true}\n"),
    ("switch-mapping", LAYERS + "train: {reduce_lr_on_plateau: {monitor: val_loss, factor: 0.5, patience: 3}}\n"),
    ("class-weight", LAYERS + "train: {class_weight: {0: 2.0, 3: 0.5}}\n"),
    ("square-image-size", LAYERS + "data: {source: folder, path: images, image_size: 32}\n"),
    ("augment", LAYERS + "data: {augment: [{RandomFlip: {mode: horizontal}}, RandomFlip]}\n"),
    ("registered-source", LAYERS + "data: {source: sensors}\n"),
    ("tta-off", LAYERS + "evaluate: {tta: off, split: val}\n"),
    (
        "tune",
        LAYERS + "tune: {train.optimizer.learning_rate: {log_uniform: [0.0001, 0.01]}, "
        "train.batch_size: {choice: [32, 64]}, 'model.layers[0].Conv2D.filters': {int: [4, 16]}}\n",
    ),
    (
        "everything-else",
        LAYERS
        + textwrap.dedent("""\
        name: my-run
        train: {jit_compile: false, steps_per_execution: 4, mixed_precision: mixed_bfloat16, lr_schedule: cosine}
        """),
    ),
]


@pytest.mark.parametrize("case, text", ACCEPTED, ids=[case for case, _ in ACCEPTED])
def test_a_documented_form_passes_the_schema(case, text, validator, monkeypatch):
    import cnnctl
    from cnnctl.config import sources

    monkeypatch.setattr(sources, "_registered", {})  # the registration ends with this test, not with the worker
    cnnctl.register_source("sensors", lambda data: {})
    load_config(yaml.safe_load(text))
    assert errors(validator, text) == []


def test_every_config_key_is_described_and_every_layer_is_listed(schema):
    defs = schema["$defs"]
    sections = {name: section for name, section in defs.items() if not name.startswith("layer.")}
    undescribed = [
        f"{name}.{key}"
        for name, section in [("Config", schema), *sections.items()]
        for key, field in section.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undescribed == []
    assert schema["properties"]["train"]["default"]["optimizer"] == {"name": "adam", "learning_rate": 0.001}

    bare, named = defs["LayerSpec"]["oneOf"]
    assert {"Flatten", "BatchNormalization", "RandomFlip"} <= set(bare["enum"])
    assert not {"Conv2D", "Dense"} & set(bare["enum"])  # they need arguments
    assert not REFUSED_LAYERS & (set(bare["enum"]) | set(named["properties"]))
    conv = defs[named["properties"]["Convolution2D"]["$ref"].removeprefix("#/$defs/")]
    assert conv["required"] == ["filters", "kernel_size"]
    assert conv["properties"]["padding"]["default"] == "valid"
    assert "convolution window" in conv["properties"]["kernel_size"]["description"]


def test_schema_command_writes_the_schema(tmp_path, schema_text):
    out = tmp_path / "sub" / "cnnctl.schema.json"
    result = runner.invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["$defs"]["LayerSpec"]
    assert out.read_text(encoding="utf-8") == schema_text
    assert result.output.strip() == f"schema: {out}"

    printed = runner.invoke(app, ["schema"])
    assert printed.exit_code == 0 and printed.output == schema_text


def test_schema_command_refuses_a_folder_or_a_path_under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    for out, reason in [
        (tmp_path, "is a folder; give a file name, e.g. --out {d}/cnnctl.schema.json"),
        (tmp_path / "a-file" / "s.json", "{d}/a-file is a file, not a folder; give a path in a folder"),
    ]:
        result = runner.invoke(app, ["schema", "--out", str(out)])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --out {out}: {reason.replace('{d}', str(tmp_path))}")
