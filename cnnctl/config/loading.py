"""Config: YAML file + `--set` overrides → a validated `Config`, every mistake one line.

Override order: schema defaults, then the YAML file, then each `--set key.path=value` in the order given.
Every error names the file and the YAML path (`train.optimizer.learning_rate`, `model.layers[3] (Conv2D)`).
A config is bounded before it is believed: a regular file of at most MAX_CONFIG_BYTES, nested at most
MAX_CONFIG_DEPTH levels, at most MAX_CONFIG_NODES values once every alias is expanded, and no alias inside
the node it names (the loaders: cnnctl/config/yaml_loader.py).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ValidationError

from cnnctl.config.schema import MAX_RUN_NAME, Config
from cnnctl.config.search_space import key_path_problem
from cnnctl.config.yaml_loader import StrictSafeLoader
from cnnctl.errors import ConfigError, closest, printable, shown_path, shown_value
from cnnctl.files import not_regular_reason

MAX_CONFIG_BYTES = 2**20  # 1 MiB: real configs are a few kilobytes, and PyYAML reads ~0.2 MB a second


def load_config(source: Union[str, Path, Mapping[str, Any], Config], overrides: Sequence[str] = ()) -> Config:
    """A YAML file, a dict shaped like one, or a Config → a validated Config with `--set` overrides applied.
    Raises ConfigError naming the file (or "config" for a dict) and the YAML path.

    A relative data.path is read from the config file's folder; for a dict or Config, from the working folder.
    The run name defaults to the file's stem, else "run". The caller's dict or Config is never modified.
    """
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(line, str) for line in overrides):
        raise ConfigError(
            f"overrides: {shown_value(overrides)}: give a list of key.path=value strings, "
            "e.g. overrides=['train.epochs=3']"
        )
    if not isinstance(source, (str, os.PathLike, Mapping, Config)):
        raise ConfigError(
            f"config: {type(source).__name__} {shown_value(source)}: give a YAML file's path, a dict "
            "shaped like one, or a Config, e.g. 'configs/digits.yaml'"
        )
    if isinstance(source, Config):
        if not overrides:
            return source.model_copy(deep=True)
        raw, origin, base, stem = source.to_dict(), "config", Path.cwd(), None
    elif isinstance(source, Mapping):
        raw, origin, base, stem = copy.deepcopy(dict(source)), "config", Path.cwd(), None
    else:
        path = Path(source)
        raw, origin, base, stem = read_yaml_mapping(path), str(path), path.resolve().parent, path.stem
    for override in overrides:
        apply_override(raw, override)
    config = validate_config(raw, source=origin, overrides=overrides)
    if config.name is None:
        # The file's stem, made a valid name; a stem too long for a folder name keeps its start.
        config.name = re.sub(r"[^A-Za-z0-9._-]", "-", stem or "")[:MAX_RUN_NAME] or "run"
    for key in ("path", "val_path", "test_path"):
        if getattr(config.data, key):
            setattr(config.data, key, str((base / getattr(config.data, key)).resolve()))
    backbone = config.model.backbone
    if backbone is not None and backbone.weights not in (None, "imagenet"):
        # Absolute, as the user wrote it: a link stays a link in config.yaml (a resume reads what it points to then).
        backbone.weights = str(base / backbone.weights)
    config._overrides = list(overrides)
    return config


_LEADING_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*)")


def shown_override(override: str) -> str:
    """A `--set` line as an error message names it: printable, and a value of thousands of characters shortened
    in the middle (a 1 MB value is not echoed whole)."""
    return shown_path(override, limit=200)


def set_by(config: Config):
    """For errors.in_config_file: given a mistake found after loading (`model.layers[0] (Conv2D): ...`), the `--set`
    line that wrote the value it names, or None when the value came from the file."""

    def culprit(message: str) -> Optional[str]:
        match = _LEADING_PATH.match(message)
        if not match or not config._overrides:
            return None
        override = _override_at(key_path_parts(match.group(1)), config._overrides)
        return shown_override(override) if override else None

    return culprit


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a YAML config file such as configs/digits.yaml")
    reason = not_regular_reason(path)
    if reason is not None:  # a FIFO would block the read forever, /dev/zero would never end
        raise ConfigError(f"{path}: {reason}; give a YAML config file such as configs/digits.yaml")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is over the limit of {MAX_CONFIG_BYTES:,} for a config file; "
            "keep large data (vocabularies, arrays) in data files"
        )
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=StrictSafeLoader)
    except yaml.reader.ReaderError as exc:  # a control character; it carries an offset, not a line
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}, column {column}: invalid YAML: character #x{exc.character:04x} "
            "is not allowed (a control character); delete it"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or ""
        tag = re.match(r"could not determine a constructor for the tag '(?:tag:yaml.org,2002:)?(.*)'", problem)
        if tag:
            problem = (
                f"the tag !!{tag.group(1).lstrip('!')} is refused: configs are plain YAML and never "
                "create Python objects"
            )
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least a model.layers list")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (name, seed, data, model, "
            f"train, evaluate), got {type(raw).__name__}"
        )
    return raw


_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """`train.epochs=3` or `model.layers[0].Conv2D.filters=8`: set one value, parsed as a YAML scalar."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {shown_override(override)}: expected key.path=value, e.g. --set train.epochs=3")
    problem = key_path_problem(key.strip())
    if not key.replace(" ", "").isprintable():  # a line break pasted into the key is a mistake, not padding
        problem = "the key holds a line break or another control character; write it on one line"
    if problem:
        raise ConfigError(f"--set {shown_override(override)}: {problem}")
    try:
        value = yaml.load(text, Loader=StrictSafeLoader) if text.strip() else None
    except yaml.constructor.ConstructorError as exc:
        if "appears twice" not in str(exc.problem):
            value = text
        else:  # `{name: adam, name: sgd}`: which one was meant cannot be guessed
            raise ConfigError(f"--set {shown_override(override)}: {exc.problem}") from None
    except yaml.YAMLError:
        value = text
    parts = key_path_parts(key)
    if not parts:
        raise ConfigError(f"--set {shown_override(override)}: expected key.path=value, e.g. --set train.epochs=3")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        here = dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {shown_override(override)}: {here}: no such list entry")
            if isinstance(node[part], str):  # a bare layer name gains kwargs
                node[part] = {node[part]: {}}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {shown_override(override)}: {here}: is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            elif isinstance(node[part], str) and isinstance(parts[depth + 1], str):
                node[part] = {"name": node[part]}  # `optimizer: adam` gains kwargs
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {shown_override(override)}: {dotted(parts)}: no such list entry")
    elif not isinstance(node, dict):
        raise ConfigError(f"--set {shown_override(override)}: {dotted(parts[:-1])}: is not a mapping")
    node[last] = value


def key_path_parts(key: str) -> list:
    """`model.layers[0].Conv2D.filters` → ["model", "layers", 0, "Conv2D", "filters"] (`--set` and `tune:` keys)."""
    return [name if name else int(index) for name, index in _KEY_PART.findall(key.strip())]


def dotted(loc: Any) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not re.fullmatch(r"[\w-]+", str(part)):
            text += f"[{str(part)!r}]"  # a key with spaces, dots or control characters, shown unambiguously
        else:
            text += f".{part}" if text else str(part)
    return text


def validate_config(raw: dict[str, Any], source: str, overrides: Sequence[str] = ()) -> Config:
    """Config.model_validate with one error line, blamed on the `--set` that wrote the wrong value when there
    is one, else on `source`."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        message = describe_error(errors[0], raw)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        culprit = _override_at(_user_loc(errors[0]["loc"]), overrides)
        raise ConfigError(
            f"{f'--set {shown_override(culprit)}' if culprit else source}: {printable(message)}{more}"
        ) from None


def _override_at(loc: Sequence[Union[str, int]], overrides: Sequence[str]) -> Optional[str]:
    """The last `--set` whose key path holds the error's place or lies inside it (a layer's error for
    `--set model.layers[0].Conv2D.filters=-1` is reported at model.layers[0])."""
    for override in reversed(overrides):
        parts = tuple(key_path_parts(override.partition("=")[0]) or ())
        shared = min(len(parts), len(tuple(loc)))
        if shared and tuple(loc)[:shared] == parts[:shared] and (shared >= 2 or len(parts) == len(tuple(loc))):
            return override
    return None


# Config sections whose YAML path is shown with the layer's name: `model.layers[3] (Conv2D)`.
_LAYER_LISTS = {("model", "layers"), ("data", "augment")}


def describe_error(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One pydantic error → `yaml.path: what is wrong (got value)`, with a spelling hint for unknown keys."""
    loc = _user_loc(error["loc"])
    path = dotted(loc) or "(top level)"
    if len(loc) >= 3 and tuple(loc[:2]) in _LAYER_LISTS and isinstance(loc[2], int):
        layer_name = _layer_name_at(raw, loc[:3])
        if layer_name:
            path = f"{dotted(loc[:3])} ({layer_name})"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key{_spelling_hint(loc, raw)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    message = error["msg"]
    if kind == "value_error":  # our own validators: the message is complete
        message = re.sub(r"^Value error, ", "", message)
        if not loc and re.match(r"^[a-z_]+\.[a-z_]+: ", message):  # a rule across sections names its own key
            return message
        return f"{path}: {message}"
    message = _TYPE_MESSAGES.get(kind, message)
    message = re.sub(r"^Input should be ", "must be ", message)
    message = re.sub(r"^Input should have ", "must have ", message)
    message = re.sub(r"^List should have ", "must have ", message)
    message = message.replace("a valid", "a")
    if kind in ("literal_error", "enum") and len(loc) >= 1:
        message = message.replace("must be ", "must be one of ", 1)
    if "got" not in message and "input" in error:
        message += f" (got {_show(error['input'])})"
    return f"{path}: {message}"


_TYPE_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _user_loc(loc: tuple) -> list:
    """Drop pydantic's internal union/tag parts (`literal[False]`, `EarlyStoppingConfig`, `function-after[...]`)."""
    cleaned = []
    for part in loc:
        if isinstance(part, str) and (
            re.match(r"^(literal|function-|union|bool|int|str|float)\b", part)
            or part[:1].isupper()
            and part.endswith(("Config", "Spec"))
        ):
            continue
        cleaned.append(part)
    return cleaned


def _layer_name_at(raw: dict[str, Any], loc: list) -> str:
    node: Any = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return ""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        return str(next(iter(node)))
    return ""


def _spelling_hint(loc: list, raw: dict[str, Any]) -> str:
    model = _section_model(loc[:-1])
    if model is None:
        return ""
    fields = list(model.model_fields)
    suggestion = closest(str(loc[-1]), fields)
    if suggestion is None:
        return f"; valid keys are: {', '.join(fields)}"
    default = model.model_fields[suggestion].get_default(call_default_factory=True)
    # A section's default is a whole mapping, with no one-line example to paste.
    example = "" if isinstance(default, (BaseModel, dict)) else f" (e.g. {suggestion}: {_show(default)})"
    return f"; did you mean '{suggestion}'?{example}"


def _section_model(parents: list) -> Optional[type[BaseModel]]:
    model: Any = Config
    for part in parents:
        if isinstance(part, int) or model is None:
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = next(
            (arg for arg in _type_args(field.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)), None
        )
    return model


def _type_args(annotation: Any) -> list:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    found = []
    for arg in args:
        found.extend(_type_args(arg))
    return found


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True).strip()
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value) if not isinstance(value, str) else value
    text = " ".join(text.split())  # errors are one line: YAML's complex keys and long flows would wrap
    return text if len(text) <= 80 else text[:77] + "..."
