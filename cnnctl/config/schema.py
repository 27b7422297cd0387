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
    field_validator,
    model_validator,
)

from cnnctl.config.layer_spec import (  # noqa: F401 - the schema's names, importable from here as before
    FILE_READING_ARGUMENTS,
    REFUSED_LAYERS,
    REFUSED_OBJECT_KEYS,
    LayerSpec,
    _parse_layer_list,
)
from cnnctl.config.search_space import SEARCH_SPACE_KINDS, SearchSpace, key_path_problem  # noqa: F401
from cnnctl.config.section import MAX_COUNT, Section  # noqa: F401
from cnnctl.config.sources import (
    ARRAYS_SOURCE,
    BUILTIN_SOURCES,
    FILE_SOURCES,
    registered_sources,
)
from cnnctl.config.train_schema import (  # noqa: F401
    EarlyStoppingConfig,
    FineTuneConfig,
    LossConfig,
    OptimizerConfig,
    ReduceLROnPlateauConfig,
    TensorBoardConfig,
    TrainConfig,
)
from cnnctl.errors import did_you_mean


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
    multi_label: bool = Field(
        False,
        description="several labels per example: manifest labels written car|bicycle, or a 0/1 matrix y (N, K) in "
        "npz/npy/arrays; a sigmoid output layer, binary cross-entropy, a decision threshold per label",
    )
    label_separator: str = Field(
        "|", min_length=1, max_length=8, description="manifest: what separates an example's labels (multi_label)"
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
        if self.multi_label and self.source in ("folder", "idx", "csv", *BUILTIN_SOURCES):
            raise ValueError(
                f"multi_label: source {self.source} gives one label per example; several labels per example come as "
                "source: manifest (labels written car|bicycle) or npz/npy with a 0/1 matrix y of shape (N, K)"
            )
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

    @field_validator("tune")
    @classmethod
    def _tune_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path in value:
            problem = key_path_problem(path)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"must be letters, digits, '.', '_' or '-' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _multi_label_training(self) -> "Config":
        """Multi-label: binary cross-entropy unless another binary loss is chosen; what needs one label per example
        is refused by name."""
        if not self.data.multi_label:
            return self
        if "loss" not in self.train.model_fields_set:
            self.train.loss = "binary_crossentropy"
        elif not self.train.loss_name.lower().startswith("binary"):
            raise ValueError(
                f"train.loss: {self.train.loss_name} picks one class per example; data.multi_label needs a loss over "
                "independent labels: binary_crossentropy (the default) or binary_focal_crossentropy"
            )
        if self.train.class_weight is not None:
            raise ValueError(
                "train.class_weight: does not apply to multi-label data (a weight per class needs one class per "
                "example); remove it"
            )
        if self.evaluate.calibrate != "off":
            raise ValueError(
                "evaluate.calibrate: temperature scales one softmax over classes; it does not apply to multi-label "
                "data, whose labels have a decision threshold each (chosen on val); set evaluate.calibrate: off"
            )
        return self

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
