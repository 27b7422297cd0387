"""Model: `data.mix` — Keras' MixUp and CutMix layers, built for the training batches (never part of the model).

Each mixes a batch with a shuffled copy of itself, images and labels in the same proportion, so labels become soft:
the fit then trains on one-hot labels, with categorical cross-entropy in place of the sparse one
(`soft_label_loss`). Validation, test metrics, confusion matrices and the diagnosis see the unmixed data.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from cnnctl.config.data_schema import MixConfig
from cnnctl.errors import ConfigError


def build_mixer(mix: Optional[MixConfig], input_shape: Sequence[int], seed: int) -> Optional[list]:
    """The mixing layers of `data.mix` (one or two; with two, each batch gets one of them at random), or None.
    float32 whatever the mixed-precision policy: they feed the model's input, which casts for itself."""
    if mix is None:
        return None
    if len(input_shape) != 3:
        raise ConfigError(
            f"data.mix: MixUp and CutMix mix 2-D images (height, width, channels); these examples have shape "
            f"({', '.join(str(size) for size in input_shape)}): remove data.mix"
        )
    layers = []
    if mix.mixup is not None:
        layers.append(keras.layers.MixUp(alpha=mix.mixup, seed=seed, dtype="float32", name="mixup"))
    if mix.cutmix is not None:  # Keras draws CutMix's alpha from the range `factor`: a range of one value
        layers.append(
            keras.layers.CutMix(factor=(mix.cutmix, mix.cutmix), seed=seed + 1, dtype="float32", name="cutmix")
        )
    return layers
