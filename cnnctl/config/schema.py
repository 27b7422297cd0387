"""Config: the schema — every section of the YAML, its defaults and the rules each value follows.

This module imports no TensorFlow: layer, optimizer and loss *names* are checked when the model is built
(cnnctl/model); here only shapes of values are checked (types, ranges, which keys exist). Layers whose
config would run code or load foreign objects are refused here, before anything is built.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from cnnctl.config.data_schema import (  # noqa: F401 - the schema's names, importable from here as before
    DataConfig,
    FoldConfig,
    ImageSize,
    MixConfig,
    _positive_dimensions,
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
from cnnctl.config.train_schema import (  # noqa: F401
    EarlyStoppingConfig,
    EmaConfig,
    FineTuneConfig,
    LossConfig,
    OptimizerConfig,
    ReduceLROnPlateauConfig,
    TensorBoardConfig,
    TrainConfig,
)
from cnnctl.errors import printable


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
    tta: Literal["off", "flip", "flip_translate"] = Field(
        "off",
        description=(
            "flip: also score every example mirrored along its last spatial axis (left-right for images, reversed in "
            "time for signals) and average the two predictions: test-time augmentation, for classes that keep their "
            "meaning in a mirror (clothes, objects; not digits or letters). flip_translate: those two views and each "
            "moved one pixel (step) forward and back along every spatial axis, six in all. Used by train's "
            "evaluation, evaluate, predict."
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


# A run folder is `YYYYmmdd-HHMMSS-<name>` plus `-tune`, `-cv` or `-2` at most; file systems allow 255 bytes.
MAX_RUN_NAME = 200


def run_name_problem(value: str) -> Optional[str]:
    """What is wrong with a run name (`name:` or --name), or None: it names a folder."""
    if len(value) > MAX_RUN_NAME:
        return (
            f"{len(value):,} characters; a run name may have at most {MAX_RUN_NAME} (the run folder is named "
            "<date>-<time>-<name>, and file systems allow 255 bytes)"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        return f"must be letters, digits, '.', '_' or '-' (got {printable(value)!r})"
    return None


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
        problem = None if value is None else run_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _mix_needs_soft_labels(self) -> "Config":
        """data.mix trains on mixed (soft) labels: sparse_categorical_crossentropy becomes categorical_crossentropy
        for the fit (cnnctl/model/compile.py); any other loss that takes class indices cannot learn from them."""
        loss = re.sub(r"[_\s]", "", self.train.loss_name).lower()
        if self.data.mix is not None and loss.startswith("sparse") and loss != "sparsecategoricalcrossentropy":
            raise ValueError(
                f"train.loss: {self.train.loss_name} takes class indices, and data.mix trains on mixed labels; "
                "use categorical_crossentropy (or remove data.mix)"
            )
        return self

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
