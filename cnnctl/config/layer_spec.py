"""Config: one `model.layers` or `data.augment` entry (`Conv2D: {filters: 8}`, or a bare name) → a LayerSpec; layers
and arguments that would run code or read files are refused here, before anything is built."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from pydantic import (
    Field,
    model_validator,
)

from cnnctl.config.section import Section

# Layers whose config carries code (Lambda) or loads a foreign graph (TFSMLayer); never built from a config.
REFUSED_LAYERS = frozenset({"Lambda", "TFSMLayer", "Layer", "InputLayer", "Input"})


# Keys that make Keras import a module or look up a registered custom object while deserializing.
REFUSED_OBJECT_KEYS = frozenset({"module", "registered_name"})

# Layer arguments that, given as a string, name a file Keras reads (StringLookup, IntegerLookup and
# TextVectorization read a vocabulary file); Keras' safe mode refuses them when loading a model, and so do
# configs. Each maps to how to give the value instead.
FILE_READING_ARGUMENTS = {"vocabulary": "give the vocabulary as a list, e.g. vocabulary: [cat, dog]"}


class LayerSpec(Section):
    """One entry of `model.layers`: a keras.layers class name and the kwargs passed to it."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_code(self) -> "LayerSpec":
        if self.name in REFUSED_LAYERS:
            raise ValueError(
                f"{self.name} is refused: configs must not run code (the model input is added "
                "for you from model.input_shape)"
            )
        name = self.kwargs.get("name")
        if isinstance(name, str) and len(name) > MAX_LAYER_NAME:
            raise ValueError(f"name: {len(name):,} characters; a layer name may have at most {MAX_LAYER_NAME}")
        _refuse_in_arguments(self.kwargs)
        for argument, instead in FILE_READING_ARGUMENTS.items():
            if isinstance(self.kwargs.get(argument), str):
                raise ValueError(
                    f"{argument}: a file path is refused (got {self.kwargs[argument]!r}): configs "
                    f"must not read files; {instead}"
                )
        return self

    def to_yaml(self) -> Union[str, dict]:
        return {self.name: dict(self.kwargs)} if self.kwargs else self.name


def _parse_layer_entry(entry: Any) -> Any:
    """`- Conv2D: {filters: 8}` or a bare `- Flatten` → {name, kwargs}."""
    if isinstance(entry, LayerSpec):
        return entry
    if isinstance(entry, str):
        return {"name": entry, "kwargs": {}}
    if isinstance(entry, dict) and len(entry) == 1:
        ((name, kwargs),) = entry.items()
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"the arguments of {name} must be a mapping like {{filters: 32}} (got {kwargs!r})")
        return {"name": str(name), "kwargs": kwargs}
    raise ValueError(
        f"must be a layer name or `LayerName: {{kwargs}}`, e.g. `Conv2D: {{filters: 32, kernel_size: 3}}` (got {entry!r})"
    )


# A layer's name ends up in figure titles, the layer table and model.keras: a 1 MB name passed `check` and broke a
# figure after training. Keras' own names are a few dozen characters.
MAX_LAYER_NAME = 200
MAX_TEXT_ARGUMENT = 10_000  # any other string argument (an initializer's name, a padding mode...): far above real ones


def _refuse_in_arguments(value: Any, argument: Optional[str] = None, seen: Optional[set[int]] = None) -> None:
    """Walk the kwargs once, refusing what would load code (`module:`, `registered_name:`) and values no layer can
    take, named by their argument instead of by whatever Keras says of them (`filters: .inf` got Keras' message
    about groups). A node shared through YAML aliases is visited once, and one that contains itself (from Python)
    ends the walk instead of recursing forever."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{argument}: {value} is not a finite number; give a finite one")
    if isinstance(value, str) and len(value) > MAX_TEXT_ARGUMENT:
        raise ValueError(f"{argument}: a string of {len(value):,} characters; at most {MAX_TEXT_ARGUMENT:,}")
    seen = set() if seen is None else seen
    if not isinstance(value, (dict, list)) or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in REFUSED_OBJECT_KEYS:
                raise ValueError(f"'{key}: {_short(inner)}' is refused: configs must not load code")
            _refuse_in_arguments(inner, argument or key, seen)
    else:
        for inner in value:
            _refuse_in_arguments(inner, argument, seen)


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


# Layers a config may list: far more than any network written by hand (VGG-19 is 25 with its pooling and dense
# layers); thousands would take `check` minutes to build. Deeper networks come as model.backbone.
MAX_LAYERS = 500


def _parse_layer_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of layers, e.g. [Flatten, {{Dense: {{units: 10}}}}] (got {value!r})")
    if len(value) > MAX_LAYERS:
        raise ValueError(
            f"{len(value):,} layers; a config lists at most {MAX_LAYERS} (a deeper network, ResNet or EfficientNet, "
            "comes as model.backbone)"
        )
    return [_parse_layer_entry(entry) for entry in value]
