"""Model: `train:` → optimizer, loss and metrics through Keras' own namespaces and `get()` functions."""

from __future__ import annotations

import inspect
import re
from typing import Any, Sequence, Union

import keras

from cnnctl.config.schema import Config, LossConfig, TrainConfig
from cnnctl.errors import ConfigError, closest, did_you_mean, first_line


def needs_one_hot(loss: str) -> bool:
    """categorical_crossentropy and friends want one-hot labels; sparse_* and binary_* want indices."""
    return re.sub(r"[_\s]", "", loss).lower().startswith("categorical")


def one_hot_labels(config: Config) -> bool:
    """Whether training batches carry one-hot labels: for a categorical loss, and for data.mix, whose mixed labels
    are soft (multi-label data already comes as a 0/1 matrix)."""
    mixed = config.data.mix is not None and not config.data.multi_label
    return mixed or needs_one_hot(config.train.loss_name)


def soft_label_loss(spec: Union[str, LossConfig]) -> Union[str, LossConfig]:
    """The loss the fit uses with data.mix: sparse_categorical_crossentropy scores class indices, so it becomes
    categorical_crossentropy (the same loss on one-hot labels); any other loss as it is (the config refuses other
    sparse losses)."""
    name = spec if isinstance(spec, str) else spec.name
    if re.sub(r"[_\s]", "", name).lower() != "sparsecategoricalcrossentropy":
        return spec
    if isinstance(spec, str):
        return "categorical_crossentropy"
    options = spec.kwargs()
    if "ignore_class" in options:
        raise ConfigError(
            "train.loss.ignore_class: data.mix trains on mixed labels, which have no class to ignore; remove one of them"
        )
    return LossConfig(name="categorical_crossentropy", **options)


def compile_model(
    model: keras.Model,
    train_cfg: TrainConfig,
    jit_compile: Any = "auto",
    steps_per_execution: int = 1,
    steps_per_epoch: int = 1,
    soft_labels: bool = False,
) -> keras.Model:
    """`soft_labels`: the fit trains on mixed labels (data.mix): see `soft_label_loss`."""
    from cnnctl.model.fused_batch_norm import use_fused_batch_norm

    use_fused_batch_norm(model)  # same numbers as Keras' batch-norm, one kernel instead of several: faster steps
    model.compile(
        optimizer=make_optimizer(train_cfg, steps_per_epoch),
        loss=resolve_loss(soft_label_loss(train_cfg.loss) if soft_labels else train_cfg.loss),
        metrics=resolve_metrics(train_cfg.metrics, train_cfg.loss_name),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def make_optimizer(train_cfg: TrainConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The optimizer named in train.optimizer with its kwargs; `lr_schedule: cosine` turns the learning rate into
    keras' CosineDecay over all training steps; `train.ema` makes it keep a moving average of the weights."""
    spec = train_cfg.optimizer
    names = [
        name
        for name, value in vars(keras.optimizers).items()
        if inspect.isclass(value)
        and issubclass(value, keras.optimizers.Optimizer)
        and name not in ("Optimizer", "LossScaleOptimizer")
    ]
    cls = next((getattr(keras.optimizers, name) for name in names if name.lower() == spec.name.lower()), None)
    if cls is None:
        suggestion = closest(spec.name, names)
        hint = f"did you mean '{suggestion.lower()}'? " if suggestion else ""
        raise ConfigError(
            f"train.optimizer.name: unknown optimizer '{spec.name}'; {hint}"
            f"available: {', '.join(name.lower() for name in names)}"
        )
    kwargs = spec.kwargs()
    if train_cfg.ema is not None:  # the averages live in the optimizer; callbacks.AveragedWeights swaps them in
        kwargs.update(use_ema=True, ema_momentum=train_cfg.ema.momentum)
    if train_cfg.lr_schedule == "cosine":
        kwargs["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=spec.learning_rate, decay_steps=max(1, train_cfg.epochs * steps_per_epoch)
        )
    try:
        return keras.optimizers.get({"class_name": cls.__name__, "config": kwargs})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.optimizer ({cls.__name__}): {first_line(exc)}") from None


def resolve_loss(spec: Union[str, LossConfig]) -> Any:
    """`train.loss`: a keras.losses name as given, or `{name, **kwargs}` built as that loss's class with the kwargs
    (label_smoothing lives on the class, not on the function)."""
    name = spec if isinstance(spec, str) else spec.name
    try:
        loss = keras.losses.get(name)
    except (TypeError, ValueError):
        choices = [
            key
            for key, value in vars(keras.losses).items()
            if not key.startswith("_")
            and key not in ("get", "serialize", "deserialize", "Loss", "Reduction")
            and callable(value)
        ]
        raise ConfigError(f"train.loss: unknown loss '{name}'{did_you_mean(name, choices)}") from None
    if isinstance(spec, str):
        return loss
    # The class of a loss function shares its name without underscores (aliases like mse resolve first).
    squashed = re.sub(r"[_\s]", "", getattr(loss, "__name__", name)).lower()
    cls = next(
        (
            value
            for key, value in vars(keras.losses).items()
            if key.lower() == squashed and inspect.isclass(value) and issubclass(value, keras.losses.Loss)
        ),
        None,
    )
    if cls is None:
        raise ConfigError(f"train.loss.name: '{name}' takes no options; write it as a plain name (loss: {name})")
    try:
        return cls(**spec.kwargs())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.loss ({cls.__name__}): {first_line(exc)}") from None


def resolve_metrics(names: Sequence[str], loss_name: str = "") -> list[Any]:
    # Strings go to compile() as given: Keras turns "accuracy" into the variant that matches the labels' shape, and
    # for (N, K) labels that is categorical accuracy (the argmax). With a binary loss every output is a label of its
    # own (multi-label), so "accuracy" is binary accuracy: the share of labels right at 0.5, named as written.
    if loss_name.lower().startswith("binary"):
        names = [keras.metrics.BinaryAccuracy(name=name) if name in ("accuracy", "acc") else name for name in names]
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue
        try:
            keras.metrics.get(name)
        except (TypeError, ValueError):
            choices = [
                key
                for key in vars(keras.metrics)
                if not key.startswith("_") and key not in ("get", "serialize", "deserialize", "Metric")
            ] + ["accuracy"]
            raise ConfigError(f"train.metrics[{index}]: unknown metric '{name}'{did_you_mean(name, choices)}") from None
    return list(names)
