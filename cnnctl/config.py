"""The YAML schema: defaults, validation and `--set` overrides.

Override order: schema defaults, then the YAML file, then each `--set key.path=value` in the order given.
Every error names the file and the YAML path (`train.optimizer.learning_rate`, `model.layers[3]`).
This module imports no TensorFlow: layer, optimizer and loss *names* are checked when the model is built.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from cnnctl.errors import ConfigError

BUILTIN_SOURCES = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
FILE_SOURCES = ("npz", "npy", "idx", "csv", "folder")

# Layers whose config carries code (Lambda) or loads a foreign graph (TFSMLayer); never built from a config.
REFUSED_LAYERS = frozenset({"Lambda", "TFSMLayer", "Layer", "InputLayer", "Input"})
# Keys that make Keras import a module or look up a registered custom object while deserializing.
REFUSED_OBJECT_KEYS = frozenset({"module", "registered_name"})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LayerSpec(Section):
    """One entry of `model.layers`: a keras.layers class name and the kwargs passed to it."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_code(self) -> "LayerSpec":
        if self.name in REFUSED_LAYERS:
            raise ValueError(f"{self.name} is refused: configs must not run code (the model input is added "
                             "for you from model.input_shape)")
        _refuse_code_objects(self.kwargs)
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
        (name, kwargs), = entry.items()
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"the arguments of {name} must be a mapping like {{filters: 32}} (got {kwargs!r})")
        return {"name": str(name), "kwargs": kwargs}
    raise ValueError(f"must be a layer name or `LayerName: {{kwargs}}`, e.g. `Conv2D: {{filters: 32, kernel_size: 3}}` (got {entry!r})")


def _refuse_code_objects(value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in REFUSED_OBJECT_KEYS:
                raise ValueError(f"'{key}: {inner}' is refused: configs must not load code")
            _refuse_code_objects(inner)
    elif isinstance(value, list):
        for inner in value:
            _refuse_code_objects(inner)


def _parse_layer_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of layers, e.g. [Flatten, {{Dense: {{units: 10}}}}] (got {value!r})")
    return [_parse_layer_entry(entry) for entry in value]


class OptimizerConfig(BaseModel):
    """`{name: adam, learning_rate: 0.001, ...}`: any keras.optimizers class and its kwargs."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "adam"
    learning_rate: float = Field(0.001, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def kwargs(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, **(self.model_extra or {})}


class LossConfig(BaseModel):
    """`{name: categorical_crossentropy, label_smoothing: 0.1}`: any keras.losses class and its kwargs."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True


class ReduceLROnPlateauConfig(Section):
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    min_lr: float = Field(0.0, ge=0)


class FoldConfig(Section):
    """One fold of a stratified K-fold split of the training data; `cnnctl cv` sets it for each fold's run."""

    index: int = Field(ge=1)   # this fold (1..folds) is held out as the run's test split
    folds: int = Field(ge=2)   # K

    @model_validator(mode="after")
    def _index_in_range(self) -> "FoldConfig":
        if self.index > self.folds:
            raise ValueError(f"index must be 1..{self.folds} (got {self.index})")
        return self


class DataConfig(Section):
    source: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                    "npz", "npy", "idx", "csv", "folder"] = "digits"
    path: Optional[str] = None                    # npz | npy | idx | csv | folder; relative to the config file
    image_size: Optional[tuple[int, int]] = None  # folder: resize target (height, width)
    color_mode: Literal["grayscale", "rgb"] = "rgb"  # folder: channels after decoding
    validation_split: float = Field(0.1, ge=0, lt=1)  # carved from train, stratified, seeded
    test_split: Optional[float] = Field(None, gt=0, lt=1)  # carved first, when the source has no test set
    normalize: bool = True                        # scale pixel values to [0, 1]
    label_column: Union[str, int] = "label"       # csv: name or index of the label column
    shape: Optional[list[int]] = None             # csv: shape of one example, e.g. [28, 28]
    augment: list[LayerSpec] = Field(default_factory=list)  # keras preprocessing layers, training only
    fold: Optional[FoldConfig] = None             # cv: {index, folds}: test on this fold of train (cnnctl cv sets it)

    @field_validator("augment", mode="before")
    @classmethod
    def _parse_augment(cls, value: Any) -> Any:
        return _parse_layer_list(value)

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_size(cls, value: Any) -> Any:
        return [value, value] if isinstance(value, int) else value

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
        if value is not None and min(value) <= 0:
            raise ValueError(f"must be two positive integers [height, width] (got {list(value)})")
        return value

    @model_validator(mode="after")
    def _path_when_needed(self) -> "DataConfig":
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"source '{self.source}' needs data.path (a file or folder)")
        return self


class ModelConfig(Section):
    input_shape: Optional[list[int]] = None  # inferred from the data when omitted
    layers: list[LayerSpec] = Field(min_length=1)

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        return _parse_layer_list(value)


class TrainConfig(Section):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    # a name, or {name, **kwargs}; categorical_crossentropy → labels one-hot encoded for you
    loss: Union[str, LossConfig] = "sparse_categorical_crossentropy"
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    early_stopping: Optional[EarlyStoppingConfig] = Field(default_factory=EarlyStoppingConfig)  # false disables
    reduce_lr_on_plateau: Optional[ReduceLROnPlateauConfig] = None  # or {monitor, factor, patience}
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: learning_rate decays to 0 over the epochs
    class_weight: Union[Literal["balanced"], dict[int, float], None] = None
    jit_compile: Union[Literal["auto"], bool] = "auto"  # XLA; auto = on a GPU only (3.5x slower on our CPUs)
    steps_per_execution: Union[Literal["auto"], int] = "auto"  # batches per compiled call; auto = 16 on a CPU
    mixed_precision: Literal["auto", "off", "mixed_float16", "mixed_bfloat16"] = "auto"

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_name_or_options(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("name"), str)):
            return value
        raise ValueError(f"must be a loss name or {{name, options}}, e.g. sparse_categorical_crossentropy or "
                         f"{{name: categorical_crossentropy, label_smoothing: 0.1}} (got {value!r})")

    @property
    def loss_name(self) -> str:
        return self.loss if isinstance(self.loss, str) else self.loss.name

    @model_validator(mode="after")
    def _one_learning_rate_policy(self) -> "TrainConfig":
        if self.lr_schedule != "constant" and self.reduce_lr_on_plateau is not None:
            raise ValueError(f"lr_schedule: {self.lr_schedule} already sets the learning rate every step; "
                             "set reduce_lr_on_plateau: false or lr_schedule: constant")
        return self

    @field_validator("steps_per_execution")
    @classmethod
    def _positive_steps(cls, value: Any) -> Any:
        if value != "auto" and value <= 0:
            raise ValueError(f"must be a positive integer or auto (got {value})")
        return value

    @field_validator("early_stopping", "reduce_lr_on_plateau", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_serializer("early_stopping", "reduce_lr_on_plateau")
    def _none_means_false(self, value: Any) -> Any:
        return False if value is None else value


class EvaluateConfig(Section):
    top_k: list[int] = Field(default_factory=lambda: [1, 5])  # k larger than the number of classes is dropped
    # The split `train` scores at the end: test when the data has one, else val. `val` while tuning keeps the
    # test set untouched until the final run.
    split: Optional[Literal["test", "val"]] = None
    # flip: also score every example mirrored along its last spatial axis (left-right for images, reversed in
    # time for signals) and average the two predictions: test-time augmentation, for classes that keep their
    # meaning in a mirror (clothes, objects; not digits or letters). Used by train's evaluation, evaluate, predict.
    tta: Literal["off", "flip"] = "off"

    @field_validator("tta", mode="before")
    @classmethod
    def _off_spellings(cls, value: Any) -> Any:
        return "off" if value is None or value is False else value

    @field_validator("top_k")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(k <= 0 for k in values):
            raise ValueError(f"every k must be a positive integer (got {values})")
        return values


class Config(Section):
    name: Optional[str] = None  # run name; default: the config file's stem
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"must be letters, digits, '.', '_' or '-' (got {value!r})")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data, layers in the `- Name: {kwargs}` form."""
        data = self.model_dump(mode="json")
        data["model"]["layers"] = [layer.to_yaml() for layer in self.model.layers]
        data["data"]["augment"] = [layer.to_yaml() for layer in self.data.augment]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------- loading


def load_config(path: Union[str, Path], overrides: list[str] = ()) -> Config:
    """Read a YAML file, apply `--set` overrides, validate. Raises ConfigError naming file and YAML path."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    for override in overrides:
        apply_override(raw, override)
    config = validate_config(raw, source=str(path))
    if config.name is None:
        config.name = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem) or "run"
    if config.data.path:
        config.data.path = str((path.resolve().parent / config.data.path).resolve())
    return config


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a YAML config file such as configs/digits.yaml")
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=_StrictSafeLoader)
    except yaml.reader.ReaderError as exc:  # a control character; it carries an offset, not a line
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(f"{path}: line {line}, column {column}: invalid YAML: character #x{exc.character:04x} "
                          "is not allowed (a control character); delete it") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or ""
        tag = re.match(r"could not determine a constructor for the tag '(?:tag:yaml.org,2002:)?(.*)'", problem)
        if tag:
            problem = (f"the tag !!{tag.group(1).lstrip('!')} is refused: configs are plain YAML and never "
                       "create Python objects")
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position {exc.start}); "
                          "save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least a model.layers list")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (name, seed, data, model, "
                          f"train, evaluate), got {type(raw).__name__}")
    return raw


class _StrictSafeLoader(yaml.SafeLoader):
    """yaml.safe_load's loader (no tag can build a Python object) that also refuses a key given twice in one
    mapping, which YAML loaders otherwise settle silently by keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` overriding keys is what merges are for
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' appears twice in the same mapping (first on line {first_line[key] + 1}); "
                    "keep one", key_node.start_mark)
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """`train.epochs=3` or `model.layers[0].Conv2D.filters=8`: set one value, parsed as a YAML scalar."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override}: expected key.path=value, e.g. --set train.epochs=3")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    parts = [name if name else int(index) for name, index in _KEY_PART.findall(key.strip())]
    if not parts:
        raise ConfigError(f"--set {override}: expected key.path=value, e.g. --set train.epochs=3")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        here = _dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {override}: {here}: no such list entry")
            if isinstance(node[part], str):  # a bare layer name gains kwargs
                node[part] = {node[part]: {}}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override}: {here}: is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            elif isinstance(node[part], str) and isinstance(parts[depth + 1], str):
                node[part] = {"name": node[part]}  # `optimizer: adam` gains kwargs
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {override}: {_dotted(parts)}: no such list entry")
    elif not isinstance(node, dict):
        raise ConfigError(f"--set {override}: {_dotted(parts[:-1])}: is not a mapping")
    node[last] = value


def _dotted(loc: Any) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not re.fullmatch(r"[\w-]+", str(part)):
            text += f"[{str(part)!r}]"  # a key with spaces, dots or control characters, shown unambiguously
        else:
            text += f".{part}" if text else str(part)
    return text


def validate_config(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        message = describe_error(errors[0], raw)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {message}{more}") from None


# Config sections whose YAML path is shown with the layer's name: `model.layers[3] (Conv2D)`.
_LAYER_LISTS = {("model", "layers"), ("data", "augment")}


def describe_error(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One pydantic error → `yaml.path: what is wrong (got value)`, with a spelling hint for unknown keys."""
    loc = _user_loc(error["loc"])
    path = _dotted(loc) or "(top level)"
    if len(loc) >= 3 and tuple(loc[:2]) in _LAYER_LISTS and isinstance(loc[2], int):
        layer_name = _layer_name_at(raw, loc[:3])
        if layer_name:
            path = f"{_dotted(loc[:3])} ({layer_name})"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key{_spelling_hint(loc, raw)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    message = error["msg"]
    if kind == "value_error":  # our own validators: the message is complete
        return f"{path}: {re.sub(r'^Value error, ', '', message)}"
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
    "int_parsing": "must be an integer", "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "string_type": "must be a string", "list_type": "must be a list", "tuple_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
}


def _user_loc(loc: tuple) -> list:
    """Drop pydantic's internal union/tag parts (`literal[False]`, `EarlyStoppingConfig`, `function-after[...]`)."""
    cleaned = []
    for part in loc:
        if isinstance(part, str) and (re.match(r"^(literal|function-|union|bool|int|str|float)\b", part)
                                       or part[:1].isupper() and part.endswith(("Config", "Spec"))):
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
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if close:
        default = model.model_fields[close[0]].get_default(call_default_factory=True)
        if isinstance(default, (BaseModel, dict)):
            return f"; did you mean '{close[0]}'?"
        return f"; did you mean '{close[0]}'? (e.g. {close[0]}: {_show(default)})"
    return f"; valid keys are: {', '.join(fields)}"


def _section_model(parents: list) -> Optional[type[BaseModel]]:
    model: Any = Config
    for part in parents:
        if isinstance(part, int) or model is None:
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = next((arg for arg in _type_args(field.annotation) if isinstance(arg, type)
                      and issubclass(arg, BaseModel)), None)
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
