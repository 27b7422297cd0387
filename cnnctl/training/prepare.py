"""Training: a Config → data loaded, model built and compiled; every mistake found before a run folder exists."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from cnnctl import runtime
from cnnctl.config.loading import set_by
from cnnctl.config.schema import Config, TrainConfig
from cnnctl.data.dataset import Dataset, load_data
from cnnctl.data.folders import ImageFiles
from cnnctl.errors import ConfigError, in_config_file
from cnnctl.model.build import build_augmenter, build_model
from cnnctl.model.compile import compile_model
from cnnctl.model.mixing import build_mixer
from cnnctl.model.output_layer import check_multi_label_output, temperature_layer
from cnnctl.model.tta import mirror_axis
from cnnctl.model.unfreeze import FineTunePlan, plan_fine_tune, unfreeze
from cnnctl.training import distribute
from cnnctl.training.distribute import Placement
from cnnctl.training.rehearsal import rehearse


@dataclass
class Prepared:
    """Everything validated and built, before a run folder exists."""

    config: Config
    dataset: Dataset
    model: Any
    policy: str
    devices: list[str]
    notes: list[str] = field(default_factory=list)  # from building the model: weights not downloaded, layers reused
    fine_tune: Optional[FineTunePlan] = None  # train.fine_tune checked against the model: what phase 2 unfreezes
    fine_tuning: bool = False  # the model is unfrozen and compiled for the fine-tuning phase
    placement: Placement = field(default_factory=Placement)  # train.distribute resolved: one device, or several
    policy_reason: str = ""  # why `policy`: "auto: the CPU has amx_bf16", "train.mixed_precision", ...

    def enter_fine_tune(self) -> None:
        """Unfreeze the layers prepare() planned and recompile for the fine-tuning phase: a fresh optimizer at its
        learning rate, its slots built for the new trainable weights (a checkpoint of the phase loads into them).
        Once: a resume enters the phase before fit() would."""
        if not self.fine_tuning:
            with self.placement.scope():
                unfreeze(self.model, self.config, self.fine_tune.layers)
                compile_for_training(
                    self.model,
                    fine_tune_settings(self.config),
                    len(self.dataset.splits["train"]),
                    self.placement,
                    soft_labels=self.config.data.mix is not None,
                )
                self.model.optimizer.build(self.model.trainable_variables)
            self.fine_tuning = True


def prepare(
    config: Config, origin: str = "", stand_in_when_missing: bool = False, starting_weights: bool = True
) -> Prepared:
    """Load data and build + compile the model; config and data mistakes are raised with `origin` (the file)
    in front. Seeds Python, NumPy and the backend with `config.seed` (keras.utils.set_random_seed), so a run
    is repeatable. Joins a multi-process job's other processes first (jax.distributed; see distribute.py), and
    places the model on the devices train.distribute asks for. `stand_in_when_missing` (cnnctl check): a built-in
    dataset that is not downloaded is replaced by zero images of its shape (see load_data). `starting_weights=False` (a resume, whose checkpoint holds every
    weight): no pretrained weights are loaded (see build_model)."""
    with in_config_file(origin):
        runtime.use_backend(config.backend)  # the commands applied it before importing Keras; here it is checked
        distribute.join_processes()  # before JAX's first device query
    runtime.seed_everything(config.seed)
    with in_config_file(origin, set_by(config)):
        if config.train.tensorboard:  # keras.callbacks.TensorBoard writes through TensorFlow
            runtime.require_tensorflow("train.tensorboard")
        if config.train.mlflow is not None:
            if config.train.mlflow.uri() is None:
                raise ConfigError(
                    "train.mlflow: no tracking server named; give one, e.g. train.mlflow: http://mlflow.internal:5000, "
                    "or set MLFLOW_TRACKING_URI"
                )
            runtime.require_package("mlflow", "train.mlflow", "pip install 'cnnctl[mlflow]'")
        dataset = load_data(config, stand_in_when_missing=stand_in_when_missing)
        class_weights(config.train.class_weight, dataset)  # checked now, not after the run folder exists
        dataset.evaluation_split(config.evaluate.split)  # a split the data lacks: said now, not after training
        if config.evaluate.tta != "off":
            mirror_axis(dataset.input_shape)  # flat examples cannot be mirrored: said before training
        placement = distribute.place(config.train, in_memory=not isinstance(dataset.splits["train"].x, ImageFiles))
        notes: list[str] = []
        with placement.scope(), runtime.precision_policy(config.train.mixed_precision) as policy:
            model = build_and_compile(
                config,
                dataset.input_shape,
                dataset.num_classes,
                train_examples=len(dataset.splits["train"]),
                pixel_scale=dataset.pixel_scale,
                full_scale=dataset.full_scale,
                weights_missing_ok=stand_in_when_missing,
                notes=notes,
                starting_weights=starting_weights,
                placement=placement,
            )
        backbone = config.model.backbone
        if backbone is not None and backbone.weights is None and not backbone.trainable and not config.train.fine_tune:
            notes.append(
                f"model.backbone: {backbone.name} with weights: null and trainable: false stays random and frozen: "
                "its features carry nothing the head can learn from, so the run will stay at chance; use weights: "
                "imagenet, or trainable: true"
            )
        ema_note = short_average_note(config, len(dataset.splits["train"]))
        if ema_note:
            notes.append(ema_note)
        if dataset.multi_label:
            layers = config.model.layers
            check_multi_label_output(model, f"model.layers[{len(layers) - 1}] ({layers[-1].name})", dataset.num_classes)
        rehearse(config, dataset, model, placement.scope)  # mistakes Keras finds only when it runs a step
        if config.evaluate.calibrate == "temperature":  # said now, not after training
            if "val" not in dataset.splits:
                raise ConfigError(
                    "evaluate.calibrate: temperature is fitted on the validation split, and this data "
                    "has none; set data.validation_split (e.g. 0.1) or evaluate.calibrate: off"
                )
            temperature_layer(model)
        plan = plan_fine_tune(model, config) if config.train.fine_tune else None
    reason = runtime.precision_reason(config.train.mixed_precision)
    return Prepared(
        config, dataset, model, policy, runtime.devices(), notes, plan, placement=placement, policy_reason=reason
    )


def short_average_note(config: Config, train_examples: int) -> Optional[str]:
    """train.ema with a momentum too high for the run's steps: Keras' average starts from the weights of the first
    step, with no correction, so after n steps they still weigh momentum**n in it. A note when that is above 5%,
    with a momentum that brings it under 0.1% by half the run. None when it fits."""
    if config.train.ema is None:
        return None
    momentum = config.train.ema.momentum
    steps = config.train.total_epochs * math.ceil(train_examples / config.train.batch_size)
    if momentum**steps <= 0.05:
        return None
    suggested = 0.001 ** (1 / max(1, steps / 2))
    return (
        f"train.ema: with momentum {momentum:g}, the first steps' weights still make up {momentum**steps:.0%} of "
        f"the average after this run's {steps:,} steps; use a smaller momentum, e.g. --set "
        f"train.ema.momentum={math.floor(suggested * 1000) / 1000:g}"
    )


def build_and_compile(
    config: Config,
    input_shape: tuple,
    num_classes: int,
    train_examples: int = 0,
    pixel_scale: float = 1.0,
    full_scale: Optional[float] = None,
    weights_missing_ok: bool = False,
    notes: Optional[list[str]] = None,
    starting_weights: bool = True,
    placement: Optional[Placement] = None,
) -> Any:
    """The compiled model; it divides its inputs by `pixel_scale` itself (the data's, see build_model). Build it
    inside `placement.scope()` when there is one."""
    build_augmenter(config.data.augment)  # augmentation mistakes are config mistakes: report them before training
    build_mixer(config.data.mix, input_shape, config.seed)  # and so are mixing ones (images only)
    model = build_model(
        config.model,
        input_shape,
        num_classes,
        name=config.name or "cnn",
        pixel_scale=pixel_scale,
        full_scale=full_scale,
        weights_missing_ok=weights_missing_ok,
        notes=notes,
        starting_weights=starting_weights,
    )
    return compile_for_training(
        model, config.train, train_examples, placement or Placement(), soft_labels=config.data.mix is not None
    )


def compile_for_training(
    model: Any, train_cfg: TrainConfig, train_examples: int, placement: Placement, soft_labels: bool = False
) -> Any:
    """`soft_labels`: data.mix (see compile_model)."""
    return compile_model(
        model,
        train_cfg,
        soft_labels=soft_labels,
        jit_compile=runtime.resolve_jit_compile(train_cfg.jit_compile),
        steps_per_execution=placement.steps_per_execution(train_cfg.steps_per_execution),
        steps_per_epoch=math.ceil(train_examples / train_cfg.batch_size),
    )


def fine_tune_settings(config: Config) -> TrainConfig:
    """train: as the fine-tuning phase compiles it: its learning rate, and its epochs for a cosine schedule."""
    optimizer = config.train.optimizer.model_copy(update={"learning_rate": config.train.fine_tune_learning_rate})
    return config.train.model_copy(update={"optimizer": optimizer, "epochs": config.train.fine_tune.epochs})


def class_weights(setting: Any, dataset: Dataset) -> Optional[dict[int, float]]:
    if setting is None:
        return None
    if setting == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        y = dataset.splits["train"].y
        classes = np.arange(dataset.num_classes)
        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        mapping = dict(zip(present.tolist(), weights.tolist()))
        return {int(c): float(mapping.get(int(c), 1.0)) for c in classes}
    unknown = [k for k in setting if not 0 <= k < dataset.num_classes]
    if unknown:
        raise ConfigError(
            f"train.class_weight: class index {unknown[0]} is out of range; the data has "
            f"{dataset.num_classes} classes (0..{dataset.num_classes - 1})"
        )
    return {c: float(setting.get(c, 1.0)) for c in range(dataset.num_classes)}
