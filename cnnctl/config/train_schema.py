"""Config: the `train:` section — optimizer, loss, callbacks, schedules, precision, distribution, fine-tuning."""

from __future__ import annotations

import os
import re
from typing import Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from cnnctl.config.section import MAX_COUNT, Section


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


class MlflowConfig(Section):
    """`train.mlflow`: log the run to an MLflow tracking server (cnnctl/workflows/tracking.py)."""

    tracking_uri: Optional[str] = Field(
        None, description="the tracking server, e.g. http://mlflow.internal:5000; null: MLFLOW_TRACKING_URI"
    )
    experiment: Optional[str] = Field(None, description="the MLflow experiment; null: the config's name")
    run_name: Optional[str] = Field(None, description="the MLflow run's name; null: the run folder's id")

    def uri(self) -> Optional[str]:
        """The server: tracking_uri, else the MLFLOW_TRACKING_URI environment variable (None when neither is set)."""
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None

    @model_validator(mode="before")
    @classmethod
    def _from_uri(cls, value: Any) -> Any:
        return {"tracking_uri": value} if isinstance(value, str) else value  # `true` is TrainConfig's {}

    @field_validator("tracking_uri")
    @classmethod
    def _a_uri_or_a_folder(cls, value: Optional[str]) -> Optional[str]:
        # A scheme (http://, sqlite:///, file:///, databricks) or a folder: anything else with a colon is a typo
        # that MLflow would report only when the first epoch is sent.
        if value is not None and ":" in value and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
            raise ValueError(
                f"{value!r} is not a tracking URI; give http(s)://HOST:PORT, sqlite:///PATH or a folder such as mlruns"
            )
        return value


class EmaConfig(Section):
    """`train.ema`: an exponential moving average of the weights (Polyak averaging, Keras' optimizer `use_ema`),
    which is what the run validates, early-stops on, checkpoints, saves and exports."""

    momentum: float = Field(
        0.999, gt=0, lt=1, description="how much of the average each step keeps; 0.999 averages ~1000 steps"
    )


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
        "auto",
        description=(
            "auto (mixed_float16 on a GPU; mixed_bfloat16 on a CPU with AMX-BF16 or AVX512-BF16, on TensorFlow; else "
            "float32) | off | mixed_float16 | mixed_bfloat16"
        ),
    )
    tensorboard: Optional[TensorBoardConfig] = Field(
        None, description=("true (or {histogram_freq: N}): logs in the run's tensorboard/")
    )
    mlflow: Optional[MlflowConfig] = Field(
        None,
        description=(
            "log the run to MLflow: a tracking URI, true (MLFLOW_TRACKING_URI) or {tracking_uri, experiment, "
            "run_name}: parameters, every epoch, the final metrics and the run's files (pip install 'cnnctl[mlflow]')"
        ),
    )
    distribute: Literal["auto", "none", "mirrored", "data_parallel"] = Field(
        "auto",
        description=(
            "auto (every local GPU, or several processes: split each batch over them) | none (one device) | mirrored "
            "(TensorFlow's MirroredStrategy) | data_parallel (Keras' DataParallel, JAX); batch_size is the global batch"
        ),
    )
    ema: Optional[EmaConfig] = Field(
        None,
        description=(
            "true (or {momentum: 0.999}): validate, checkpoint and save an exponential moving average of the "
            "weights instead of the last step's; false (the default): the weights as trained"
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

    @field_validator("optimizer")
    @classmethod
    def _ema_in_its_own_place(cls, value: OptimizerConfig) -> OptimizerConfig:
        # The optimizer's own switch would average the weights but validate and checkpoint the unaveraged ones.
        given = [
            key for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency") if key in (value.model_extra or {})
        ]
        if given:
            raise ValueError(
                f"{given[0]} is set by cnnctl: write train.ema: {{momentum: 0.999}} instead (or true), and the "
                "averaged weights are the ones validated, checkpointed and saved"
            )
        return value

    @field_validator("early_stopping", "reduce_lr_on_plateau", "tensorboard", "mlflow", "ema", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_serializer("early_stopping", "reduce_lr_on_plateau", "tensorboard", "ema")
    def _none_means_false(self, value: Any) -> Any:
        return False if value is None else value
