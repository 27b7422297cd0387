"""Model: test-time augmentation (`evaluate.tta: flip`) as one Keras model around the trained one — the average of
its outputs on each example and on its mirror image — so evaluate and predict score alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from cnnctl.errors import ConfigError


def scoring_model(model: Any, input_shape: Sequence[int], tta: str) -> Any:
    """The trained model as it is, or for `tta: flip` a model around it whose output is the average of the
    trained model's outputs on each example and on its mirror image (one place for evaluate and predict)."""
    if tta != "flip":
        return model
    axis = mirror_axis(input_shape)
    inputs = keras.Input(tuple(input_shape))
    mirrored = keras.ops.flip(inputs, axis=axis)
    return keras.Model(inputs, keras.layers.Average()([model(inputs), model(mirrored)]))


def mirror_axis(input_shape: Sequence[int]) -> int:
    """The batch axis `evaluate.tta: flip` reverses: the last spatial axis of channels-last examples (an image's
    or a volume's width, a signal's time)."""
    if len(input_shape) < 2:
        raise ConfigError(
            f"evaluate.tta: flip needs examples with a spatial and a channel axis (images, signals, "
            f"volumes), not flat vectors of shape {list(input_shape)}; set evaluate.tta: off"
        )
    return len(input_shape) - 1
