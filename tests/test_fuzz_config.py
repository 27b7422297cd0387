"""Fuzzing the config reader and the model builder: whatever the YAML says, the answer is a Config, a model,
or a CnnctlError with a message, never a crash with a traceback.

Inputs: random YAML documents (random text and random nested data), and random mutations of the shipped
configs/*.yaml (keys dropped, values replaced by other types, keys added). The number of examples is bounded
so the suite stays fast, and the examples are derandomized (the same every run) so CI cannot flake; to explore
new examples locally, run with CNNCTL_FUZZ_EXPLORE=1 (then `--hypothesis-seed N` reproduces a failure).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnctl.config.loading import load_config
from cnnctl.errors import CnnctlError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {path.name: yaml.safe_load(path.read_text()) for path in sorted((ROOT / "configs").glob("*.yaml"))}
FUZZ = settings(
    deadline=None,
    database=None,  # no example database left in the repository
    derandomize=not os.environ.get("CNNCTL_FUZZ_EXPLORE"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "relu",
            "same",
            "adam",
            "Conv2D",
            "Flatten",
            "val_loss",
            "digits",
            "npz",
            "balanced",
            "auto",
            "",
            "-1",
            "1e9",
            "[]",
            "{}",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    # One file rewritten by every example: hypothesis runs many examples per test call.
    return tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"


def load_or_refuse(path: Path, text: str):
    """The property: a Config or a CnnctlError; anything else fails the test with its traceback."""
    path.write_text(text, encoding="utf-8")
    try:
        return load_config(path)
    except CnnctlError as exc:
        message = str(exc)
        assert message and "\n" not in message, message  # one line for the `error:` print
        return None


def key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a nested document a mutation can touch."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, inner in node.items():
            found += key_paths(inner, prefix + (key,))
    elif isinstance(node, list):
        for index, inner in enumerate(node):
            found += key_paths(inner, prefix + (index,))
    return found


def mutate(document: Any, data: st.DataObject) -> Any:
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = key_paths(document)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["drop", "replace", "add"]), label="action")
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = data.draw(values, label="value")
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=10), label="new key")] = data.draw(values, label="value")
        else:
            parent.insert(path[-1], data.draw(values, label="value"))
    return document


@settings(FUZZ, max_examples=30)
@given(text=st.text(max_size=200))
def test_random_text_is_loaded_or_refused(config_file, text):
    load_or_refuse(config_file, text)


@settings(FUZZ, max_examples=30)
@given(document=values)
def test_random_yaml_documents_are_loaded_or_refused(config_file, document):
    load_or_refuse(config_file, yaml.safe_dump(document))


@settings(FUZZ, max_examples=50)
@given(name=st.sampled_from(sorted(SHIPPED)), data=st.data())
def test_mutated_shipped_configs_are_loaded_or_refused(config_file, name, data):
    load_or_refuse(config_file, yaml.safe_dump(mutate(SHIPPED[name], data)))


small_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(-2, 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "relu",
            "softmax",
            "same",
            "valid",
            "causal",
            "channels_first",
            "he_normal",
            "l2",
            "bogus",
            "float16",
            "int32",
            "",
        ]
    ),
    st.lists(st.integers(-1, 5), max_size=3),
)
LAYER_KEYS = [
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "activation",
    "units",
    "rate",
    "pool_size",
    "dilation_rate",
    "groups",
    "data_format",
    "kernel_initializer",
    "kernel_regularizer",
    "use_bias",
    "dtype",
    "name",
    "axis",
    "momentum",
    "size",
    "interpolation",
    "target_shape",
    "bogus",
]


@pytest.fixture(scope="module")
def build_model():
    # Imported before hypothesis starts timing and watching: TensorFlow's import changes the recursion limit.
    from cnnctl.model.build import build_model

    return build_model


@settings(FUZZ, max_examples=15)
@given(name=st.sampled_from(sorted(SHIPPED)), data=st.data())
def test_mutated_layers_are_built_or_refused(config_file, build_model, name, data):
    """Layer kwargs take random small values (small, so a model never needs much memory to build)."""
    document = copy.deepcopy(SHIPPED[name])
    layers = document["model"]["layers"]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        index = data.draw(st.integers(0, len(layers) - 1), label="layer")
        entry = layers[index]
        layer_name, kwargs = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        kwargs = dict(kwargs or {})
        key = data.draw(st.sampled_from(LAYER_KEYS + list(kwargs)), label="key")
        if kwargs and data.draw(st.booleans(), label="drop"):
            kwargs.pop(key, None)
        else:
            kwargs[key] = data.draw(small_values, label="value")
        layers[index] = {layer_name: kwargs}
    config = load_or_refuse(config_file, yaml.safe_dump(document))
    if config is None:
        return
    try:
        model = build_model(config.model, (16, 16, 1), num_classes=10)
    except CnnctlError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        return
    assert model.output_shape[-1] in (1, 10) and all(math.isfinite(d) for d in model.output_shape[1:])
