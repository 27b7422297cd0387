"""Model: test-time augmentation (`evaluate.tta: flip | flip_translate`) as one Keras model around the trained one —
the average of its outputs on several views of each example — so evaluate and predict score alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from cnnctl.errors import ConfigError


def scoring_model(model: Any, input_shape: Sequence[int], tta: str) -> Any:
    """The trained model as it is, or a model around it that averages the trained model's outputs over several
    views of each example (one place for evaluate and predict):
    - `flip`: the example and its mirror image;
    - `flip_translate`: those two (half the weight), and each moved by one step along every spatial axis, forward
      and back, mirrored at the edge (the other half): the views airbench's test-time augmentation averages."""
    if tta not in ("flip", "flip_translate"):
        return model
    axis = mirror_axis(input_shape)
    inputs = keras.Input(tuple(input_shape))
    views = [inputs, keras.ops.flip(inputs, axis=axis)]
    outputs = keras.layers.Average()([model(view) for view in views])
    if tta == "flip_translate":
        moved = [_translated(view, len(input_shape), step) for view in views for step in (1, -1)]
        outputs = keras.layers.Average()([outputs, keras.layers.Average()([model(view) for view in moved])])
    return keras.Model(inputs, outputs)


def _translated(x: Any, rank: int, step: int) -> Any:
    """`x` (batch, *spatial, channels) moved by `step` along every spatial axis; the row it uncovers mirrors its neighbour."""
    spatial = range(1, rank)  # the example's axes before its channels, counting the batch axis as 0
    widths = [(0, 0)] + [(max(step, 0), max(-step, 0)) for _ in spatial] + [(0, 0)]
    padded = keras.ops.pad(x, widths, mode="reflect")
    index = tuple([slice(None)] + [slice(max(-step, 0), max(-step, 0) + x.shape[axis]) for axis in spatial])
    return padded[index + (slice(None),)]


def mirror_axis(input_shape: Sequence[int]) -> int:
    """The batch axis `evaluate.tta: flip` reverses: the last spatial axis of channels-last examples (an image's
    or a volume's width, a signal's time)."""
    if len(input_shape) < 2:
        raise ConfigError(
            f"evaluate.tta: flip needs examples with a spatial and a channel axis (images, signals, "
            f"volumes), not flat vectors of shape {list(input_shape)}; set evaluate.tta: off"
        )
    return len(input_shape) - 1
