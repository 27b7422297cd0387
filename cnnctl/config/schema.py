"""Config: the schema — every section of the YAML, its defaults and the rules each value follows.

This module imports no TensorFlow: layer, optimizer and loss *names* are checked when the model is built
(cnnctl/model); here only shapes of values are checked (types, ranges, which keys exist). Layers whose
config would run code or load foreign objects are refused here, before anything is built.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from cnnctl.data.raw import (
    ARRAYS_SOURCE,
    BUILTIN_SOURCES,
    FILE_SOURCES,
    registered_sources,
)
from cnnctl.errors import did_you_mean

# Layers whose config carries code (Lambda) or loads a foreign graph (TFSMLayer); never built from a config.
REFUSED_LAYERS = frozenset({"Lambda", "TFSMLayer", "Layer", "InputLayer", "Input"})


# Keys that make Keras import a module or look up a registered custom object while deserializing.
REFUSED_OBJECT_KEYS = frozenset({"module", "registered_name"})

# Layer arguments that, given as a string, name a file Keras reads (StringLookup, IntegerLookup and
# TextVectorization read a vocabulary file); Keras' safe mode refuses them when loading a model, and so do
# configs. Each maps to how to give the value instead.
FILE_READING_ARGUMENTS = {"vocabulary": "give the vocabulary as a list, e.g. vocabulary: [cat, dog]"}


MAX_COUNT = 2**31 - 1  # the largest epoch or batch count TensorFlow's 32-bit counters hold


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
        _refuse_code_objects(self.kwargs)
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


def _refuse_code_objects(value: Any, seen: Optional[set[int]] = None) -> None:
    """Walk the kwargs once: a node shared through YAML aliases is visited once, and one that contains
    itself (from Python) ends the walk instead of recursing forever."""
    seen = set() if seen is None else seen
    if not isinstance(value, (dict, list)) or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in REFUSED_OBJECT_KEYS:
                raise ValueError(f"'{key}: {_short(inner)}' is refused: configs must not load code")
            _refuse_code_objects(inner, seen)
    else:
        for inner in value:
            _refuse_code_objects(inner, seen)


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_layer_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of layers, e.g. [Flatten, {{Dense: {{units: 10}}}}] (got {value!r})")
    return [_parse_layer_entry(entry) for entry in value]


class OptimizerConfig(BaseModel):
    """`{name: adam, learning_rate: 0.001, ...}`: any keras.optimizers class and its kwargs."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    name: str = Field("adam", description="any keras.optimizers name, e.g. adam, adamw, sgd")
    learning_rate: float = Field(0.001, gt=0, description="the learning rate (where lr_schedule starts)")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def kwargs(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, **(self.model_extra or {})}


class LossConfig(BaseModel):
    """`{name: categorical_crossentropy, label_smoothing: 0.1}`: any keras.losses class and its kwargs."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    name: str = Field(description="any keras.losses name, e.g. categorical_crossentropy")

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EarlyStoppingConfig(Section):
    monitor: str = Field("val_loss", description="the value watched, e.g. val_loss or val_accuracy")
    patience: int = Field(3, ge=0, description="epochs without improvement before training stops")
    min_delta: float = Field(0.0, ge=0, description="the smallest change that counts as an improvement")
    restore_best_weights: bool = Field(True, description="end with the best epoch's weights")


class ReduceLROnPlateauConfig(Section):
    monitor: str = Field("val_loss", description="the value watched, e.g. val_loss or val_accuracy")
    factor: float = Field(0.5, gt=0, lt=1, description="multiplies the learning rate at each plateau")
    patience: int = Field(2, ge=0, description="epochs without improvement before the learning rate drops")
    min_lr: float = Field(0.0, ge=0, description="the learning rate never drops below this")


class TensorBoardConfig(Section):
    """`train.tensorboard`: TensorBoard logs in the run folder's tensorboard/ (Keras' TensorBoard callback)."""

    histogram_freq: int = Field(0, ge=0, description="weight histograms every N epochs; 0: none")


class FoldConfig(Section):
    """One fold of a stratified K-fold split of the training data; `cnnctl cv` sets it for each fold's run."""

    index: int = Field(ge=1, description="this fold (1..folds) is held out as the run's test split")
    folds: int = Field(ge=2, description="K")

    @model_validator(mode="after")
    def _index_in_range(self) -> "FoldConfig":
        if self.index > self.folds:
            raise ValueError(f"index must be 1..{self.folds} (got {self.index})")
        return self


def _square_size(value: Any) -> Any:
    return [value, value] if isinstance(value, int) else value


def _positive_size(value: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
    if value is not None and min(value) <= 0:
        raise ValueError(f"must be two positive integers [height, width] (got {list(value)})")
    return value


# [height, width] of an image; a single number means a square.
ImageSize = Annotated[Optional[tuple[int, int]], BeforeValidator(_square_size), AfterValidator(_positive_size)]


def _positive_dimensions(value: Optional[list[int]], example: str) -> Optional[list[int]]:
    """A shape is positive sizes: a negative or zero one would reach numpy's reshape or Keras as a traceback."""
    if value is not None and (not value or min(value) <= 0):
        raise ValueError(f"must be a list of positive sizes, e.g. {example} (got {list(value)})")
    return value


class DataConfig(Section):
    source: str = Field(
        "digits", description="a built-in or file source, one registered from Python, or `arrays` (from Python)"
    )
    path: Optional[str] = Field(
        None, description="npz | npy | idx | csv | folder | manifest; relative to the config file"
    )
    val_path: Optional[str] = Field(
        None,
        description="folder: a separate folder of class folders for the validation split (relative to the config file)",
    )
    test_path: Optional[str] = Field(
        None,
        description="folder: a separate folder of class folders for the test split "
        "(relative to the config file), e.g. a published set's val/",
    )
    image_size: ImageSize = Field(None, description="folder, manifest: resize target (height, width)")
    color_mode: Literal["grayscale", "rgb"] = Field("rgb", description="folder, manifest: channels after decoding")
    validation_split: float = Field(0.1, ge=0, lt=1, description="carved from train, stratified, seeded")
    test_split: Optional[float] = Field(None, gt=0, lt=1, description="carved first, when the source has no test set")
    normalize: bool = Field(True, description="scale pixel values to [0, 1]")
    label_column: Union[str, int] = Field("label", description="csv, manifest: name or index of the label column")
    file_column: str = Field("file", description="manifest: the column of file paths (relative to the manifest)")
    split_column: Optional[str] = Field(
        None, description="manifest: a column of train | val | test (empty: carved from train)"
    )
    shape: Optional[list[int]] = Field(None, description="csv: shape of one example, e.g. [28, 28]")
    augment: list[LayerSpec] = Field(default_factory=list, description="keras preprocessing layers, training only")
    fold: Optional[FoldConfig] = Field(
        None, description="cv: {index, folds}: test on this fold of train (cnnctl cv sets it)"
    )

    @field_validator("augment", mode="before")
    @classmethod
    def _parse_augment(cls, value: Any) -> Any:
        return _parse_layer_list(value)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        registered = [name for name in registered_sources() if name != ARRAYS_SOURCE]
        known = [*BUILTIN_SOURCES, *FILE_SOURCES, *registered]
        if value in known or value == ARRAYS_SOURCE:
            return value
        listed = ", ".join(f"'{name}'" for name in known[:-1]) + f" or '{known[-1]}'"
        hint = did_you_mean(value, known) or "; or register it from Python first: cnnctl.register_source(name, loader)"
        raise ValueError(f"must be one of {listed} (got {value}){hint}")

    @field_validator("shape")
    @classmethod
    def _positive_shape(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        return _positive_dimensions(value, "[28, 28]")

    @model_validator(mode="after")
    def _path_when_needed(self) -> "DataConfig":
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"source '{self.source}' needs data.path (a file or folder)")
        for key in ("val_path", "test_path"):
            if getattr(self, key) is not None and self.source != "folder":
                raise ValueError(
                    f"{key} is for source folder (a separate folder of class folders); source "
                    f"'{self.source}' gives its splits itself"
                )
        return self


class BackboneConfig(BaseModel):
    """`model.backbone`: a keras.applications network (include_top=False + pooling) in front of `model.layers`,
    which become its head. Any other key goes to the application itself (e.g. `alpha: 0.75` for MobileNetV3)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    name: str = Field(description="any keras.applications class, e.g. MobileNetV3Small, ResNet50, EfficientNetB0")
    weights: Optional[str] = Field(
        "imagenet",
        description=(
            "imagenet (downloaded once into ~/.keras/models) | null (random) | a weights file path (.weights.h5 or "
            ".h5; relative to the config file)"
        ),
    )
    input_size: ImageSize = Field(
        None,
        description=(
            "[height, width] the backbone sees; the model resizes its inputs. null: the data's size, raised to the "
            "backbone's minimum (32 for most, 75 for InceptionV3)"
        ),
    )
    pooling: Literal["avg", "max"] = Field("avg", description="how the backbone's last feature map becomes a vector")
    trainable: bool = Field(False, description="false: frozen, and batch norm stays in inference mode")

    @field_validator("weights", mode="before")
    @classmethod
    def _null_spellings(cls, value: Any) -> Any:
        return None if value in (None, False, "null", "none", "None") else value

    def options(self) -> dict[str, Any]:
        """The keys passed to the application as they are (alpha, minimalistic, ...)."""
        return dict(self.model_extra or {})


class FromRunConfig(Section):
    """`model.from_run`: start from a previous run's weights, layer by layer by name."""

    run: str = Field(description="a run folder, a run id in the runs dir, or last (the newest run)")
    skip_mismatched: bool = Field(
        False,
        description=(
            "false: a layer whose weight shapes differ is an error; true: such layers keep their fresh weights"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_run_name(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, str) else value


class ModelConfig(Section):
    input_shape: Optional[list[int]] = Field(None, description="inferred from the data when omitted")
    backbone: Optional[BackboneConfig] = Field(
        None,
        description=(
            "a pretrained keras.applications network; model.layers become its head, e.g. {name: MobileNetV3Small, "
            "weights: imagenet}"
        ),
    )
    from_run: Optional[FromRunConfig] = Field(
        None,
        description=(
            "RUN (a folder, run id or last) or {run, skip_mismatched}: every layer whose name matches a layer of that "
            "run's model.keras starts from its weights"
        ),
    )
    layers: list[LayerSpec] = Field(
        min_length=1, description="each entry: LayerName: {kwargs}, any keras.layers class; a bare name means no kwargs"
    )

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        return _positive_dimensions(value, "[28, 28, 1]")

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        return _parse_layer_list(value)


class FineTuneConfig(Section):
    """`train.fine_tune`: a second phase after the first, as in the Keras transfer-learning guide: the frozen
    layers are unfrozen and training continues, recompiled with a lower learning rate."""

    epochs: int = Field(gt=0, le=MAX_COUNT, description="epochs of the fine-tuning phase, after train.epochs")
    unfreeze: Union[Literal["all"], int, str] = Field(
        "all",
        description=(
            "all | N (the last N layers of the backbone, or of the model without one) | a layer name (that layer and "
            "every one after it)"
        ),
    )
    learning_rate: Optional[float] = Field(
        None, gt=0, description=("the fine-tuning learning rate; null: a tenth of train.optimizer.learning_rate")
    )

    @field_validator("unfreeze", mode="before")
    @classmethod
    def _not_a_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would take true for 1 layer
            raise ValueError(
                f"must be all, a number of layers or a layer name (got {str(value).lower()}); "
                "fine-tuning is on whenever train.fine_tune is given"
            )
        return value

    @field_validator("unfreeze")
    @classmethod
    def _positive_count(cls, value: Any) -> Any:
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"must be all, a positive number of layers or a layer name (got {value})")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be all, a positive number of layers or a layer name (got an empty name)")
        return value


class TrainConfig(Section):
    epochs: int = Field(10, gt=0, le=MAX_COUNT, description="passes over the training data")
    # Keras and TensorFlow count examples in 32-bit integers: a larger batch passes pydantic and fails in the graph.
    batch_size: int = Field(64, gt=0, le=MAX_COUNT, description="examples per training step")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="any keras optimizer + its kwargs: a name, or {name, ...}"
    )
    loss: Union[str, LossConfig] = Field(
        "sparse_categorical_crossentropy",
        description=("a name, or {name, **kwargs}; categorical_crossentropy → labels one-hot encoded for you"),
    )
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"], description="keras metric names")
    early_stopping: Optional[EarlyStoppingConfig] = Field(
        default_factory=EarlyStoppingConfig,
        description="keras.callbacks.EarlyStopping: {monitor, patience, min_delta, restore_best_weights}; false "
        "disables it",
    )
    reduce_lr_on_plateau: Optional[ReduceLROnPlateauConfig] = Field(
        None,
        description=(
            "keras.callbacks.ReduceLROnPlateau when given as {monitor, factor, patience, min_lr} (or "
            "true for its defaults); false (the default) leaves the learning rate alone"
        ),
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description=("cosine: learning_rate decays to 0 over the epochs")
    )
    class_weight: Union[Literal["balanced"], dict[int, float], None] = Field(
        None, description=("balanced | {class_index: weight}")
    )
    jit_compile: Union[Literal["auto"], bool] = Field(
        "auto",
        description=(
            "XLA: auto = on with JAX, and with TensorFlow on a GPU (off on TensorFlow's CPU, where XLA's "
            "convolutions are slower) | true | false"
        ),
    )
    steps_per_execution: Union[Literal["auto"], int] = Field(
        "auto", description=("batches per compiled call: auto = 16 (1 under MirroredStrategy) | N")
    )
    mixed_precision: Literal["auto", "off", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto", description=("auto (mixed_float16 on a GPU, float32 on a CPU) | off | mixed_float16 | mixed_bfloat16")
    )
    tensorboard: Optional[TensorBoardConfig] = Field(
        None, description=("true (or {histogram_freq: N}): logs in the run's tensorboard/")
    )
    distribute: Literal["auto", "none", "mirrored", "data_parallel"] = Field(
        "auto",
        description=(
            "auto (every local GPU, or several processes: split each batch over them) | none (one device) | mirrored "
            "(TensorFlow's MirroredStrategy) | data_parallel (Keras' DataParallel, JAX); batch_size is the global batch"
        ),
    )
    fine_tune: Optional[FineTuneConfig] = Field(
        None,
        description=(
            "{epochs, unfreeze, learning_rate}: after train.epochs, unfreeze the frozen backbone (or layers) and "
            "continue at a lower learning rate"
        ),
    )

    @field_validator("class_weight")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = next(((index, weight) for index, weight in value.items() if not weight > 0), None)
            if bad is not None:
                raise ValueError(
                    f"class {bad[0]} has weight {bad[1]:g}; a class weight must be above 0 (e.g. "
                    "{0: 1.0, 1: 3.0}, or balanced)"
                )
        return value

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_name_or_options(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("name"), str)):
            return value
        raise ValueError(
            f"must be a loss name or {{name, options}}, e.g. sparse_categorical_crossentropy or "
            f"{{name: categorical_crossentropy, label_smoothing: 0.1}} (got {value!r})"
        )

    @property
    def loss_name(self) -> str:
        return self.loss if isinstance(self.loss, str) else self.loss.name

    @property
    def total_epochs(self) -> int:
        """The last epoch of the run: train.epochs, plus the fine-tuning epochs when there are some."""
        return self.epochs + (self.fine_tune.epochs if self.fine_tune else 0)

    @property
    def fine_tune_learning_rate(self) -> float:
        tuned = self.fine_tune.learning_rate if self.fine_tune else None
        return tuned if tuned is not None else self.optimizer.learning_rate / 10

    @model_validator(mode="after")
    def _one_learning_rate_policy(self) -> "TrainConfig":
        if self.lr_schedule != "constant" and self.reduce_lr_on_plateau is not None:
            raise ValueError(
                f"lr_schedule: {self.lr_schedule} already sets the learning rate every step; "
                "set reduce_lr_on_plateau: false or lr_schedule: constant"
            )
        return self

    @field_validator("mixed_precision", "distribute", mode="before")
    @classmethod
    def _false_spelling(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads an unquoted `off` (and `no`) as false: the setting's own word for "not this".
        return {"mixed_precision": "off", "distribute": "none"}[info.field_name] if value is False else value

    @field_validator("steps_per_execution")
    @classmethod
    def _positive_steps(cls, value: Any) -> Any:
        if value != "auto" and value <= 0:
            raise ValueError(f"must be a positive integer or auto (got {value})")
        return value

    @field_validator("early_stopping", "reduce_lr_on_plateau", "tensorboard", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_serializer("early_stopping", "reduce_lr_on_plateau", "tensorboard")
    def _none_means_false(self, value: Any) -> Any:
        return False if value is None else value


class EvaluateConfig(Section):
    top_k: list[int] = Field(
        default_factory=lambda: [1, 5], description="k larger than the number of classes is dropped"
    )
    split: Optional[Literal["test", "val"]] = Field(
        None,
        description=(
            "The split `train` scores at the end: test when the data has one, else val. `val` while tuning keeps the "
            "test set untouched until the final run."
        ),
    )
    tta: Literal["off", "flip"] = Field(
        "off",
        description=(
            "flip: also score every example mirrored along its last spatial axis (left-right for images, reversed in "
            "time for signals) and average the two predictions: test-time augmentation, for classes that keep their "
            "meaning in a mirror (clothes, objects; not digits or letters). Used by train's evaluation, evaluate, "
            "predict."
        ),
    )

    calibrate: Literal["off", "temperature"] = Field(
        "off",
        description=(
            "temperature: after training, fit one temperature on the validation split (minimising its negative "
            "log-likelihood) and fold it into model.keras's output layer, so its probabilities are calibrated wherever "
            "it is loaded; argmaxes never change"
        ),
    )

    @field_validator("tta", "calibrate", mode="before")
    @classmethod
    def _off_spellings(cls, value: Any) -> Any:
        return "off" if value is None or value is False else value

    @field_validator("top_k")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(k <= 0 for k in values):
            raise ValueError(f"every k must be a positive integer (got {values})")
        return values


SEARCH_SPACE_KINDS = ("log_uniform", "uniform", "int", "choice")


class SearchSpace(Section):
    """One entry of `tune:`: the values `cnnctl tune` tries for one config path, written `{kind: values}`:
    `{log_uniform: [1e-4, 1e-2]}`, `{uniform: [0.1, 0.5]}`, `{int: [16, 64]}` (both ends included) or
    `{choice: [16, 32, 64]}` (numbers, strings, booleans or null)."""

    kind: Literal["log_uniform", "uniform", "int", "choice"]
    values: list[Any]

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, value: Any) -> Any:
        if isinstance(value, SearchSpace):
            return value
        example = "e.g. {log_uniform: [1e-4, 1e-2]}, {uniform: [0.1, 0.5]}, {int: [16, 64]} or {choice: [16, 32]}"
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"must be one search space, {example} (got {value!r})")
        ((kind, values),) = value.items()
        if kind not in SEARCH_SPACE_KINDS:
            hint = did_you_mean(str(kind), SEARCH_SPACE_KINDS) or f"; {example}"
            raise ValueError(f"unknown search space '{kind}': must be one of {', '.join(SEARCH_SPACE_KINDS)}{hint}")
        if kind == "choice":
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"choice: must be a non-empty list of values, e.g. {{choice: [16, 32, 64]}} (got {values!r})"
                )
            if any(isinstance(item, (list, dict)) for item in values):
                raise ValueError(
                    f"choice: every value must be a number, string, boolean or null (got {values!r}); "
                    "tune a list's entries one path at a time, e.g. model.layers[0].Conv2D.kernel_size"
                )
            return {"kind": kind, "values": values}
        numbers = (
            isinstance(values, list)
            and len(values) == 2
            and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in values)
        )
        if not numbers:
            raise ValueError(f"{kind}: must be two numbers [low, high], e.g. {{{kind}: [1, 10]}} (got {values!r})")
        low, high = values
        if not low < high:
            raise ValueError(f"{kind}: low must be below high (got [{low}, {high}])")
        if kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: both ends must be positive (got [{low}, {high}]); use uniform for 0")
        if kind == "int" and not all(float(item).is_integer() for item in values):
            raise ValueError(f"int: both ends must be whole numbers (got [{low}, {high}])")
        return {"kind": kind, "values": [int(low), int(high)] if kind == "int" else [float(low), float(high)]}

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: list(self.values)}


class Config(Section):
    # The `--set` lines this config was read with: a mistake found later (building a layer) names the one that wrote
    # the value instead of the file (cnnctl.config.loading.set_by).
    _overrides: list[str] = PrivateAttr(default_factory=list)
    name: Optional[str] = Field(
        None, description="run name; default: the config file's stem (`run` for a config given as a dict)"
    )
    seed: int = Field(
        42,
        strict=True,  # `seed: true` is a mistake, not the number 1
        ge=0,
        le=2**32 - 1,
        description="seeds Python, NumPy and Keras "
        "(keras.utils.set_random_seed) and the data splits; 0 to 4294967295 (NumPy's range)",
    )
    backend: Optional[Literal["tensorflow", "jax"]] = Field(
        None,
        description=("the Keras backend to train on; null: KERAS_BACKEND, else ~/.keras/keras.json, else tensorflow"),
    )
    data: DataConfig = Field(
        default_factory=DataConfig, description="where the examples come from and how they are split"
    )
    model: ModelConfig = Field(description="the network: an optional input shape and the layers in order")
    train: TrainConfig = Field(default_factory=TrainConfig, description="how the network is fitted")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="how the model is scored")
    tune: dict[str, SearchSpace] = Field(
        default_factory=dict,
        description=(
            "cnnctl tune: config path → search space, e.g. `train.optimizer.learning_rate: {log_uniform: [1e-4, 1e-2]}`; "
            "`cnnctl train` ignores it and trains the values written in the config."
        ),
    )

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
        if data["backend"] is None:  # written only by configs that choose one
            del data["backend"]
        for optional in ("backbone", "from_run"):  # written only by configs that use them
            if data["model"][optional] is None:
                del data["model"][optional]
        if data["train"]["fine_tune"] is None:
            del data["train"]["fine_tune"]
        if self.tune:
            data["tune"] = {path: space.to_yaml() for path, space in self.tune.items()}
        else:
            del data["tune"]  # only configs written for `cnnctl tune` carry the section
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
