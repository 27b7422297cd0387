"""Model: the JSON Schema of a config file, so editors complete and check the YAML as it is typed.

`cnnctl schema` writes it; VS Code's YAML extension (any yaml-language-server) reads it from a config's first
line, `# yaml-language-server: $schema=cnnctl.schema.json`. It comes from the pydantic `Config` (descriptions,
defaults, ranges) and describes the YAML as written, not the parsed model: a layer is `Conv2D: {filters: 32}`
or a bare `Flatten`, an optimizer a name or a mapping, early stopping true, false or a mapping. Layer names and
their keyword arguments are read from the installed keras.layers (hence here, after the config), so generating a
schema imports Keras.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from cnnctl.config.schema import REFUSED_LAYERS, SEARCH_SPACE_KINDS, Config, TrainConfig
from cnnctl.config.sources import BUILTIN_SOURCES, FILE_SOURCES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "configs/cnnctl.schema.json"  # the copy the shipped configs point at; tests keep it current

_KEYWORDS_KEPT_OUTSIDE = ("title", "description", "default")


def config_schema_text() -> str:
    """The schema as the JSON text `cnnctl schema` writes (stable key order, ending in a newline)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a YAML config (draft 2020-12), with the installed Keras' layers enumerated."""
    import keras

    schema = Config.model_json_schema(schema_generator=_DefaultsFromFactories)
    defs = schema["$defs"]
    names, layer_defs = _layer_definitions()
    defs["LayerSpec"] = _layer_entry(names, layer_defs)
    defs.update(layer_defs)
    # The YAML forms beyond the pydantic types: what schema.py's `mode="before"` validators turn into them.
    defs["OptimizerConfig"] = _also_accept(
        defs["OptimizerConfig"],
        {"type": "string", "description": "an optimizer name, e.g. adam: its defaults and train's learning rate"},
    )
    for name in _true_or_false_fields():
        defs["TrainConfig"]["properties"][name] = _also_accept(
            defs["TrainConfig"]["properties"][name],
            {"type": "boolean", "description": "true: the defaults; false: off"},
        )
    data = defs["DataConfig"]["properties"]
    data["source"] = _also_accept(data["source"], {"enum": [*BUILTIN_SOURCES, *FILE_SOURCES]})
    data["image_size"] = _also_accept(
        data["image_size"], {"type": "integer", "description": "one size for both sides: 32 means [32, 32]"}
    )
    data["augment"] = _also_accept(data["augment"], {"type": "null"})
    tta = defs["EvaluateConfig"]["properties"]["tta"]
    defs["EvaluateConfig"]["properties"]["tta"] = _also_accept(tta, {"enum": [False, None]})
    defs["SearchSpace"] = _search_space(defs["SearchSpace"])
    return {
        "$schema": SCHEMA_DIALECT,
        "$comment": f"Written by `cnnctl schema` with Keras {keras.__version__}; regenerate after upgrading "
        f"Keras or changing cnnctl/config/schema.py: cnnctl schema --out {SCHEMA_FILE}",
        **schema,
    }


class _DefaultsFromFactories(GenerateJsonSchema):
    """Shows the defaults that come from a `default_factory` too (a section's defaults, `top_k: [1, 5]`)."""

    def get_default_value(self, schema: Any) -> Any:
        if "default_factory" in schema and not schema.get("default_factory_takes_data"):
            return schema["default_factory"]()
        return super().get_default_value(schema)


def _also_accept(field: dict[str, Any], alternative: dict[str, Any]) -> dict[str, Any]:
    """`field`'s schema widened by one more form the YAML may take (what a `mode="before"` validator converts)."""
    outside = {key: field[key] for key in _KEYWORDS_KEPT_OUTSIDE if key in field}
    inside = {key: value for key, value in field.items() if key not in _KEYWORDS_KEPT_OUTSIDE}
    choices = inside["anyOf"] if list(inside) == ["anyOf"] else [inside]
    return {"anyOf": [*choices, alternative], **outside}


def _true_or_false_fields() -> tuple[str, ...]:
    """train's sections that `true` turns on with their defaults and `false` turns off: those that schema.py's
    `_true_means_defaults` validator covers."""
    return TrainConfig.__pydantic_decorators__.field_validators["_true_means_defaults"].info.fields


def _layer_entry(names: dict[str, str], layer_defs: dict[str, Any]) -> dict[str, Any]:
    """One `model.layers` / `data.augment` entry in its YAML form: a bare name, or `Name: {kwargs}`."""
    bare = [name for name, definition in names.items() if not layer_defs[definition].get("required")]
    return {
        "description": "A keras.layers class: `Name: {keyword: value, ...}` (e.g. `Conv2D: {filters: 32, "
        "kernel_size: 3}`), or a bare name for a layer that needs no arguments (e.g. `Flatten`)",
        "oneOf": [
            {"type": "string", "enum": bare, "description": "a layer built with its defaults"},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {name: {"$ref": f"#/$defs/{definition}"} for name, definition in names.items()},
            },
        ],
    }


def _layer_definitions() -> tuple[dict[str, str], dict[str, Any]]:
    """(every layer name a config may use, aliases included → its class's definition; `layer.<Class>` → the
    schema of that class's keyword arguments). Refused layers are left out."""
    from cnnctl.model.layers import layer_classes

    classes = layer_classes()
    names, layer_defs = {}, {}
    for name, cls in sorted(classes.items()):
        if name in REFUSED_LAYERS:
            continue
        definition = f"layer.{cls.__name__ if classes.get(cls.__name__) is cls else name}"
        names[name] = definition
        if definition not in layer_defs:
            layer_defs[definition] = _layer_arguments(cls)
    return names, dict(sorted(layer_defs.items()))


def _layer_arguments(cls: type) -> dict[str, Any]:
    """A layer's kwargs as properties (Keras' own docs and defaults); extra keys are allowed, since base classes
    accept real extra kwargs (`Conv2D: {lora_rank: 2}`)."""
    from cnnctl.model.layers import constructor_parameters

    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _argument_docs(klass.__doc__ or "").items():
            docs.setdefault(name, text)
    properties = {}
    for name, parameter in constructor_parameters(cls).items():
        described = {"description": docs[name]} if name in docs else {}
        properties[name] = {**described, **_json_default(parameter.default)}
    own = inspect.signature(cls.__init__).parameters.values()
    required = [
        parameter.name
        for parameter in own
        if parameter.name in properties and parameter.default is inspect.Parameter.empty
    ]
    summary = inspect.cleandoc(cls.__doc__ or cls.__name__).splitlines()[0]
    return {
        "type": ["object", "null"],
        "description": summary,
        "properties": properties,
        **({"required": required} if required else {}),
        "additionalProperties": True,
    }


def _argument_docs(docstring: str) -> dict[str, str]:
    """`name: text` entries of a Google-style docstring's `Args:` section, each joined onto one line."""
    lines = inspect.cleandoc(docstring).splitlines()
    start = next((index for index, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None)
    if start is None:
        return {}
    entries: dict[str, list[str]] = {}
    indent, current = None, None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        if width < indent:
            break
        entry = re.fullmatch(r"(\w+): ?(.*)", line.strip()) if width == indent else None
        if entry:
            current = entry.group(1)
            entries[current] = [entry.group(2)]
        elif current is not None:
            entries[current].append(line.strip())
    return {name: " ".join(" ".join(parts).split()) for name, parts in entries.items()}


def _json_default(value: Any) -> dict[str, Any]:
    """`{"default": value}` when the default is plain JSON (tuples become lists), else nothing."""
    if value is inspect.Parameter.empty:
        return {}
    try:
        return {"default": json.loads(json.dumps(value, allow_nan=False))}
    except (TypeError, ValueError):
        return {}


def _search_space(model_schema: dict[str, Any]) -> dict[str, Any]:
    """A `tune:` entry in its YAML form, `{kind: values}`: `{log_uniform: [1e-4, 1e-2]}`, `{choice: [16, 32]}`."""
    low_high = {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "number"},
        "description": "[low, high], both ends included",
    }
    choices = {
        "type": "array",
        "minItems": 1,
        "items": {"type": ["number", "string", "boolean", "null"]},
        "description": "the values to try",
    }
    return {
        "description": model_schema.get("description", ""),
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {kind: choices if kind == "choice" else low_high for kind in SEARCH_SPACE_KINDS},
    }
