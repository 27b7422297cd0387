"""Training: a rehearsal of the first training step on two examples, before any run folder exists.

Some mistakes only show when Keras runs a step: a loss that does not fit the labels (binary_crossentropy for ten
classes), a metric that needs one-hot labels (precision on integer labels), augmentation that changes an example's
shape (a Dense layer in data.augment), an optimizer setting of the wrong type (beta_1: x), the abstract `Loss`.
Inside `fit` they are tracebacks from a compiled graph, after the run folder was made. Here each is one ConfigError
naming the config key, raised by `prepare`, so `cnnctl check` finds exactly what `cnnctl train` would.

The rehearsal changes nothing fit depends on: the model is called in inference mode (no weight or batch-norm
statistic moves), the metrics are reset afterwards, and the optimizer step is taken by a throwaway copy of the
configured optimizer on a throwaway variable.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, ContextManager

import keras
import numpy as np

from cnnctl.config.schema import Config
from cnnctl.data.dataset import Dataset, Split
from cnnctl.errors import ConfigError, first_line
from cnnctl.model.build import build_augmenter
from cnnctl.model.compile import make_optimizer, one_hot_labels
from cnnctl.model.mixing import build_mixer

EXAMPLES = 2  # enough for a batch dimension that is not 1; few enough to cost milliseconds

# Metrics compile() resolves from the loss and label shapes itself: never the culprit on their own.
_RESOLVED_BY_COMPILE = {"accuracy", "acc", "crossentropy", "ce"}


def rehearse(
    config: Config, dataset: Dataset, model: keras.Model, scope: Callable[[], ContextManager] = contextlib.nullcontext
) -> None:
    """Run augmentation, the forward pass, the loss and the metrics on two training examples as fit would, and
    one optimizer update on a copy; raise ConfigError naming the config key that a failure comes from.
    `scope`: the model's distribution scope (train.distribute), inside which its metric variables are reset (on
    JAX, a reset outside it would move them to one device, and fit would refuse the mix)."""
    x, y = _tiny_batch(config, dataset)
    with scope():
        y_pred = model(x, training=False)
        try:
            model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        except Exception as exc:  # noqa: BLE001 - any failure here is the loss not fitting the model and labels
            raise ConfigError(_loss_message(config, dataset, y, y_pred, exc)) from None
        try:
            model.compute_metrics(x, y, y_pred, sample_weight=None)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(_metric_message(config, y, y_pred, exc)) from None
        finally:
            model.reset_metrics()
    # Outside the scope: the throwaway optimizer's step is not a distributed one (MirroredStrategy refuses it).
    _rehearse_optimizer(config)


def _tiny_batch(config: Config, dataset: Dataset) -> tuple[Any, Any]:
    """Two training examples through the pipeline fit uses (dtype, one-hot labels, augmentation)."""
    train = dataset.splits["train"]
    tiny = dataclasses.replace(dataset, splits={"train": Split(train.x[:EXAMPLES], train.y[:EXAMPLES])})
    augmenter = build_augmenter(config.data.augment)
    mixer = build_mixer(config.data.mix, dataset.input_shape, config.seed)
    try:
        x, y = next(
            iter(tiny.pipeline("train", EXAMPLES, one_hot=one_hot_labels(config), augment=augmenter, mix=mixer))
        )
    except Exception as exc:  # noqa: BLE001 - only the augmentation and mixing layers can fail on valid loaded data
        if augmenter is None and mixer is None:
            raise
        raise ConfigError(
            f"data.{'augment' if augmenter is not None else 'mix'}: cannot augment a batch of training examples of shape "
            f"{_shape(dataset.input_shape)}: {first_line(exc)}"
        ) from None
    if tuple(x.shape[1:]) != tuple(dataset.input_shape):
        raise ConfigError(
            f"data.augment: the augmentation layers turn an example of shape "
            f"{_shape(dataset.input_shape)} into {_shape(x.shape[1:])}; augmentation must keep the "
            "shape (use layers such as RandomFlip, RandomRotation, RandomZoom, RandomContrast)"
        )
    return x, y


def _loss_message(config: Config, dataset: Dataset, y: Any, y_pred: Any, exc: Exception) -> str:
    name = config.train.loss_name
    outputs = int(y_pred.shape[-1])
    hint = (
        "for single-label classification use sparse_categorical_crossentropy (integer labels) or "
        "categorical_crossentropy (one-hot)"
    )
    if "binary" in name.lower() and outputs > 1:
        hint = (
            f"binary losses score one output per class independently; for {dataset.num_classes} classes with "
            f"a softmax output, {hint}"
        )
    return (
        f"train.loss: {name} cannot score the model's output {_shape(y_pred.shape[1:])} against the labels "
        f"{_shape(y.shape[1:])} ({first_line(exc) or type(exc).__name__}); {hint}"
    )


def _metric_message(config: Config, y: Any, y_pred: Any, exc: Exception) -> str:
    index, name = _culprit_metric(config.train.metrics, y, y_pred)
    where = f"train.metrics[{index}]: {name}" if index is not None else "train.metrics"
    labels = "one-hot labels" if len(y.shape) > 1 else "integer class labels"
    return (
        f"{where} cannot be computed on the model's output {_shape(y_pred.shape[1:])} with {labels} "
        f"{_shape(y.shape[1:])} ({first_line(exc) or type(exc).__name__}); Keras' {name or 'metric'} needs "
        "labels shaped like the output (train.loss: categorical_crossentropy gives one-hot labels), or drop "
        "it: cnnctl's evaluation writes per-class precision, recall, F1 and ROC-AUC after training anyway"
    )


def _culprit_metric(names: list[str], y: Any, y_pred: Any) -> tuple[Any, Any]:
    for index, name in enumerate(names):
        if name.lower() in _RESOLVED_BY_COMPILE:
            continue
        metric = keras.metrics.get(name)
        metric = metric() if isinstance(metric, type) else metric
        try:
            if isinstance(metric, keras.metrics.Metric):
                metric.update_state(y, y_pred)
            else:
                metric(y, y_pred)
        except Exception:  # noqa: BLE001
            return index, name
    return None, None


def _rehearse_optimizer(config: Config) -> None:
    """One update of a throwaway variable by a fresh copy of the configured optimizer: a setting of the wrong type
    (beta_1: x) fails here, not after the first batch of the real run."""
    optimizer = make_optimizer(config.train)
    variable = keras.Variable(np.zeros(2, np.float32), name="rehearsal")
    try:
        optimizer.apply([keras.ops.ones((2,), dtype="float32")], [variable])
    except Exception as exc:  # noqa: BLE001
        spec = config.train.optimizer
        given = ", ".join(f"{key}: {value!r}" for key, value in spec.kwargs().items()) or "its defaults"
        raise ConfigError(
            f"train.optimizer ({spec.name}): cannot take a step with {given} "
            f"({first_line(exc) or type(exc).__name__}); each setting must be a number where "
            "Keras expects one"
        ) from None


def _shape(shape: Any) -> str:
    return str(tuple(int(size) if size is not None else None for size in shape))
