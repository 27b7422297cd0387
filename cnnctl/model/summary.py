"""Model: the layer table — output shape, parameters, receptive field, jump and FLOPs per layer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import keras

from cnnctl.model.backbone import CNNCTL_LAYERS
from cnnctl.model.build import is_scaling_layer
from cnnctl.model.layers import shape_text


@dataclass
class LayerRow:
    index: Optional[int]  # the config's model.layers index; None for the input scaling cnnctl adds
    name: str  # keras layer name
    kind: str  # class name
    output_shape: str
    params: int
    receptive_field: str  # size of the input window one output unit sees, e.g. "5×5"
    jump: str  # distance in input pixels between neighbouring output units
    flops: int  # per example, multiply and add counted separately


@dataclass
class ModelSummary:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    flops: int  # per example, forward pass

    @property
    def frozen_params(self) -> int:
        """Parameters training leaves alone: a frozen backbone, batch norm's moving statistics."""
        return self.total_params - self.trainable_params


def describe(model: keras.Model) -> ModelSummary:
    """Per layer: output shape, parameters, receptive field and jump, FLOPs; plus the totals."""
    input_shape = model.input_shape
    spatial = len(input_shape) - 2
    field = [1] * spatial
    jump = [1] * spatial
    flattened = False
    rows = []
    previous_shape = input_shape
    config_index = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):  # listed by a functional model (one with a backbone)
            continue
        output_shape = layer.output.shape
        field, jump, flattened = _grow_receptive_field(layer, field, jump, flattened, previous_shape)
        index = None if is_scaling_layer(layer) or layer.name in CNNCTL_LAYERS else config_index
        if isinstance(layer, keras.Model):  # the backbone: pooled, so one output unit sees the whole input
            index, flattened = None, True
        config_index += index is not None
        rows.append(
            LayerRow(
                index=index,
                name=layer.name,
                kind=type(layer).__name__,
                output_shape=shape_text(output_shape),
                params=layer.count_params(),
                receptive_field="all" if flattened else _dims(field),
                jump="—" if flattened else _dims(jump),
                flops=_model_flops(layer)
                if isinstance(layer, keras.Model)
                else _layer_flops(layer, previous_shape, output_shape),
            )
        )
        previous_shape = output_shape
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    return ModelSummary(
        rows=rows, total_params=model.count_params(), trainable_params=trainable, flops=sum(row.flops for row in rows)
    )


def _model_flops(model: keras.Model) -> int:
    """A nested model's (the backbone's) FLOPs: the sum over its layers, each at the shapes it was built with."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _model_flops(layer)
        elif any("kernel" in weight.path.rsplit("/", 1)[-1] for weight in layer.weights):
            total += _layer_flops(layer, layer.input.shape, layer.output.shape)
    return total


def _tuple(value: Any, spatial: int) -> list[int]:
    if value is None:
        return [1] * spatial
    if isinstance(value, int):
        return [value] * spatial
    values = list(value)
    return values if len(values) == spatial else [values[0]] * spatial


def _grow_receptive_field(
    layer: keras.layers.Layer, field: list[int], jump: list[int], flattened: bool, input_shape: Sequence
) -> tuple[list[int], list[int], bool]:
    """r_out = r_in + (k_eff - 1) * j_in ; j_out = j_in * stride  (per spatial axis)."""
    if flattened or not field:
        return field, jump, flattened
    config = layer.get_config()
    kind = type(layer).__name__
    if kind.startswith(("Flatten", "Global", "Dense")) and not (kind == "Dense" and len(input_shape) > 2):
        return field, jump, True
    spatial = len(field)
    kernel = config.get("kernel_size") or config.get("pool_size")
    if kernel is None:
        if kind.startswith("UpSampling"):
            size = _tuple(config.get("size"), spatial)
            return field, [j / s for j, s in zip(jump, size)], False
        return field, jump, False
    kernel = _tuple(kernel, spatial)
    # Pooling layers default their stride to the window; convolutions to 1.
    strides = _tuple((config.get("strides") or kernel) if "pool_size" in config else config.get("strides"), spatial)
    dilation = _tuple(config.get("dilation_rate", 1), spatial)
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if "Transpose" in kind:
        jump = [j / s for j, s in zip(jump, strides)]
        return [r + (k - 1) * j for r, k, j in zip(field, effective, jump)], jump, False
    field = [r + (k - 1) * j for r, k, j in zip(field, effective, jump)]
    return field, [j * s for j, s in zip(jump, strides)], False


def _dims(values: list) -> str:
    shown = [f"{value:g}" if isinstance(value, float) else str(value) for value in values]
    return "×".join(shown) if shown else "—"


def _layer_flops(layer: keras.layers.Layer, input_shape: Sequence, output_shape: Sequence) -> int:
    """2 × kernel size × output positions for every kernel (conv, depthwise, separable, dense)."""
    positions_shape = input_shape if "Transpose" in type(layer).__name__ else output_shape
    positions = math.prod(dim for dim in positions_shape[1:-1] if dim) if len(positions_shape) > 2 else 1
    total = 0
    for weight in layer.weights:
        if "kernel" in weight.path.rsplit("/", 1)[-1]:
            total += 2 * math.prod(weight.shape) * positions
    return total
