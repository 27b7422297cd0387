"""Evaluation: the diagnosis' advice for a run with a pretrained backbone, worded from what its config says — frozen
or trained on, ImageNet weights, a file or random ones, a head that normalizes its features or not — so the advice
never calls a fine-tuned backbone frozen or asks for imagenet weights the user replaced with their own file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

# Head layers that rescale the backbone's features before the first Dense layer sees them.
NORMALIZING_LAYERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization")


@dataclass(frozen=True)
class Backbone:
    """What the advice needs to know of a run's `model.backbone`.

    name: the keras.applications class. weights: "imagenet", None (random) or the weights file as written.
    trains: its weights change during the run (`trainable: true` or `train.fine_tune`); None: unknown.
    head_normalized: a normalization layer comes before the head's first weights; None: unknown."""

    name: str
    weights: Optional[str] = "imagenet"
    trains: Optional[bool] = None
    head_normalized: Optional[bool] = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optional["Backbone"]:
        """From a run's config.yaml (as loaded by YAML): None without a backbone."""
        model = config.get("model") or {}
        backbone = model.get("backbone") or {}
        if not backbone.get("name"):
            return None
        return cls(
            name=str(backbone["name"]),
            weights=backbone.get("weights", "imagenet"),
            trains=bool(backbone.get("trainable")) or bool((config.get("train") or {}).get("fine_tune")),
            head_normalized=_normalized_before_weights(model.get("layers") or []),
        )


def _normalized_before_weights(layers: list) -> bool:
    """A normalization layer comes before the head's first layer with weights (Dense, a convolution)."""
    for entry in layers:  # `- BatchNormalization` or `- BatchNormalization: {momentum: 0.9}`
        name = str(next(iter(entry), "") if isinstance(entry, dict) else entry)
        if name in NORMALIZING_LAYERS:
            return True
        if name.startswith(("Dense", "Conv", "SeparableConv", "DepthwiseConv", "EinsumDense")):
            return False
    return False


def as_backbone(backbone: Union[str, Backbone, None]) -> Optional[Backbone]:
    """`diagnose(backbone=...)` takes the name alone (nothing else known) or a Backbone."""
    return Backbone(backbone) if isinstance(backbone, str) else backbone


def underfitting_advice(backbone: Backbone) -> str:
    """In place of the transfer-learning advice: what to change about the backbone the run already has."""
    if backbone.trains is None:
        state = f"The backbone ({backbone.name}) did not carry the model far enough"
        change = "let more of it train (train.fine_tune)"
    elif backbone.trains:
        state = f"The backbone ({backbone.name}) trained on and the model still underfits"
        change = (
            "fine-tune fewer layers or at a lower learning rate (train.fine_tune.unfreeze, "
            "train.fine_tune.learning_rate)"
        )
    else:
        state = f"The backbone ({backbone.name}) is frozen, and its features did not separate these classes well"
        change = "let it train after the head (train.fine_tune: {epochs: 5})"
    return (
        f"{state}: {change}, try another one (model.backbone.name, e.g. EfficientNetB0) or a larger "
        f"model.backbone.input_size.{_weights_clause(backbone)}{_head_clause(backbone)}"
    )


def chance_advice(backbone: Optional[Backbone]) -> list[str]:
    """A run at chance: the likely causes, the backbone's first where it has one."""
    advice = []
    if backbone is not None and backbone.weights is None and backbone.trains is False:
        advice.append(
            f"The frozen backbone ({backbone.name}) has random weights (model.backbone.weights: null, trainable: "
            "false): the head gets random features it cannot learn from: use weights: imagenet, or let it train "
            "(train.fine_tune)."
        )
    rate = (
        "Lower the learning rate about 10x (train.optimizer.learning_rate): a rate far too high keeps a network at "
        "chance."
    )
    advice.append(rate + (_head_clause(backbone) if backbone is not None else ""))
    advice.append("Check the data: labels match the examples (shuffled labels also train to chance).")
    return advice


def _weights_clause(backbone: Backbone) -> str:
    if backbone.weights is None:
        return " Its weights are random (model.backbone.weights: null): pretrained ones (weights: imagenet) help most."
    if backbone.weights != "imagenet":
        return (
            f" Check that {backbone.weights} holds {backbone.name} weights pretrained on many images (a file of "
            "random or little-trained weights loads just the same)."
        )
    return ""


def _head_clause(backbone: Optional[Backbone]) -> str:
    """A pretrained backbone's pooled features can have norms in the hundreds; Adam at 1e-3 then swings the head
    from one class to another. Seen on VGG16 (norm ~280), fixed by a BatchNormalization before the head's Dense."""
    if backbone is None or backbone.head_normalized:
        return ""
    return (
        " A pretrained backbone's features can be large (norms in the hundreds): make BatchNormalization the first "
        "layer of the head (model.layers) so its steps stay small."
    )
