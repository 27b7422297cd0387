"""Model: `train.fine_tune.unfreeze` → the layers the fine-tuning phase trains (prepare.py recompiles).

As in the Keras transfer-learning guide: the first phase trains the head on a frozen backbone; the second sets
the chosen layers trainable and recompiles with a low learning rate. Batch normalization layers stay frozen in
both phases, so they keep normalizing with, and never update, the statistics learned on the pretraining data: a
small batch of new images would otherwise wreck them. (The guide gets this from calling the backbone with
`training=False`; in Keras 3 that call alone does not reach the layers inside a nested model once they are
trainable — measured: their moving statistics moved — so cnnctl leaves them frozen instead.)

What can be unfrozen: the backbone's layers when the model has one, else the model's own layers (a layer given
`trainable: false` in model.layers). cnnctl's own fixed layers (the backbone's preprocessing) stay frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import keras

from cnnctl.config.schema import Config
from cnnctl.errors import ConfigError, did_you_mean
from cnnctl.model.backbone import CNNCTL_LAYERS
from cnnctl.model.build import SCALING_LAYER


@dataclass(frozen=True)
class FineTunePlan:
    layers: list  # the layers the second phase makes trainable
    where: str  # "MobileNetV3Small" or "the model"
    added_params: int  # parameters that become trainable
    batch_norms: int = 0  # batch-normalization layers in the chosen range, kept frozen

    def describe(self, config: Config) -> str:
        """One line for `cnnctl check` and the run header."""
        tune = config.train.fine_tune
        which = (
            "all layers"
            if tune.unfreeze == "all"
            else f"the last {tune.unfreeze} layers"
            if isinstance(tune.unfreeze, int)
            else f"from layer {tune.unfreeze} on"
        )
        return (
            f"then fine-tune {tune.epochs} epoch{'s' if tune.epochs != 1 else ''} at learning rate "
            f"{config.train.fine_tune_learning_rate:g}, unfreezing {which} of {self.where} "
            f"({_count(self.weighted_layers, 'layer')} with weights{self.frozen_text}; +{self.added_params:,} "
            "trainable parameters)"
        )

    @property
    def weighted_layers(self) -> int:
        """The chosen layers that have weights to train (pooling, activations and the like have none)."""
        return sum(1 for layer in self.layers if layer.weights)

    @property
    def frozen_text(self) -> str:
        return f", {_count(self.batch_norms, 'batch normalization layer')} kept frozen" if self.batch_norms else ""


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def plan_fine_tune(model: keras.Model, config: Config) -> FineTunePlan:
    """Which layers `train.fine_tune` unfreezes, checked against the built model; the model is left as it was.
    Raises ConfigError for a layer name the model lacks, more layers than there are, or nothing to unfreeze."""
    tune = config.train.fine_tune
    backbone = config.model.backbone
    container = model.get_layer(backbone.name) if backbone else model
    where = backbone.name if backbone else "the model"
    candidates = [
        layer
        for layer in container.layers
        if layer.name not in (*CNNCTL_LAYERS, SCALING_LAYER) and not isinstance(layer, keras.layers.InputLayer)
    ]
    if tune.unfreeze == "all":
        chosen = candidates
    elif isinstance(tune.unfreeze, int):
        if tune.unfreeze > len(candidates):
            raise ConfigError(
                f"train.fine_tune.unfreeze: {tune.unfreeze} layers, but {where} has "
                f"{len(candidates)}; give at most {len(candidates)}, or all"
            )
        chosen = candidates[-tune.unfreeze :]
    else:
        names = [layer.name for layer in candidates]
        if tune.unfreeze not in names:
            hint = did_you_mean(tune.unfreeze, names) or f"; its layers run from {names[0]} to {names[-1]}"
            raise ConfigError(f"train.fine_tune.unfreeze: {where} has no layer '{tune.unfreeze}'{hint}")
        chosen = candidates[names.index(tune.unfreeze) :]
    batch_norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in chosen)
    chosen = [layer for layer in chosen if not isinstance(layer, keras.layers.BatchNormalization)]
    before = _trainable_count(model)
    with _trial(model):
        unfreeze(model, config, chosen)
        added = _trainable_count(model) - before
    if added == 0:
        frozen_how = (
            "model.backbone.trainable: false"
            if backbone
            else "model.backbone (frozen), or trainable: false on the layers the first phase keeps"
        )
        raise ConfigError(
            f"train.fine_tune: nothing to unfreeze: the chosen layers of {where} already train in "
            f"the first phase; freeze them for it with {frozen_how}, or remove train.fine_tune"
        )
    return FineTunePlan(chosen, where, added, batch_norms)


def unfreeze(model: keras.Model, config: Config, layers: list) -> None:
    """Make `layers` trainable (a backbone's container too, or its layers would stay frozen within it)."""
    backbone = config.model.backbone
    if backbone:
        container = model.get_layer(backbone.name)
        frozen = {id(layer) for layer in container.layers} - {id(layer) for layer in layers}
        container.trainable = True  # sets every layer inside; those not chosen are frozen again below
        for layer in container.layers:
            if id(layer) in frozen:
                layer.trainable = False
    else:
        for layer in layers:
            layer.trainable = True


def _trainable_count(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)


class _trial:
    """Puts every layer's `trainable` back as it was when the block ends."""

    def __init__(self, model: keras.Model):
        self.flags = [(layer, layer.trainable) for layer in _every_layer(model)]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        for layer, trainable in self.flags:  # outer layers first: setting one resets those inside it
            layer.trainable = trainable


def _every_layer(layer: Any) -> Iterator[Any]:
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from _every_layer(inner)
