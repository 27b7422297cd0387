"""Model: keras.Input → the input scaling → each configured layer → a checked output; plus augmentation."""

from __future__ import annotations

import re
from typing import Optional, Sequence

import keras

from cnnctl import runtime
from cnnctl.config.schema import LayerSpec, ModelConfig
from cnnctl.errors import ConfigError
from cnnctl.model.backbone import add_backbone, copy_weights_from_run
from cnnctl.model.layers import flow_text, keras_message, make_layer, shape_text

SCALING_LAYER = "scale_inputs"  # the Rescaling layer build_model puts first; not one of the config's layers


def build_augmenter(specs: Sequence[LayerSpec]) -> Optional[keras.Sequential]:
    """`data.augment` as one Sequential, applied to training batches in the tf.data pipeline only, so it
    is never part of the saved model's inference."""
    if not specs:
        return None
    return keras.Sequential(
        [make_layer(spec, f"data.augment[{index}]") for index, spec in enumerate(specs)], name="augment"
    )


def build_model(
    model_cfg: ModelConfig,
    input_shape: Sequence[int],
    num_classes: int,
    name: str = "cnn",
    pixel_scale: float = 1.0,
    full_scale: Optional[float] = None,
    weights_missing_ok: bool = False,
    notes: Optional[list[str]] = None,
    starting_weights: bool = True,
) -> keras.Model:
    """keras.Input(input_shape), the input scaling, then each configured layer; shape problems are reported per
    layer, with the config's index. With `model.backbone`, a functional model: the scaled input goes through the
    keras.applications network (see cnnctl/model/backbone.py) and the configured layers are its head. With
    `model.from_run`, matching layers start from that run's weights.

    Args:
        pixel_scale: the model divides its inputs by this first (a `Rescaling` layer named "scale_inputs"), so
            model.keras takes examples in the data's own units (0..255 for 8-bit images) wherever it is
            loaded. Defaults to 1.0: no scaling layer.
        full_scale: the data's full-scale value (255 for 8-bit images), mapped onto the backbone's 0..255.
            Defaults to None: `pixel_scale`.
        weights_missing_ok: a backbone's imagenet weights that cannot be downloaded give random weights and a
            note instead of an error (cnnctl check). Defaults to False.
        notes: what the user should know (weights not downloaded, layers reused) is appended here.
        starting_weights: False when a checkpoint will overwrite every weight (a resumed run): the backbone is
            built with random weights and model.from_run is not read, so a resume needs neither the weights
            file, nor the download, nor the run the training started from. Defaults to True.
    """
    shape = tuple(model_cfg.input_shape or input_shape)
    inputs = keras.Input(shape=shape)
    model = None  # functional with a backbone (it is called with training=False), else Sequential
    if not model_cfg.backbone:
        model = keras.Sequential(name=_keras_name(name))
        model.add(inputs)
    x = inputs
    if pixel_scale != 1:
        # float32 whatever the precision policy: raw values above 65504 would overflow float16; the next layer
        # casts the [0, 1] result to its own compute dtype.
        scaling = keras.layers.Rescaling(1.0 / pixel_scale, name=SCALING_LAYER, dtype="float32")
        x = scaling(x)
        if model is not None:
            model.add(scaling, rebuild=False)
    if model_cfg.backbone:
        units = 255.0 * pixel_scale / (full_scale or pixel_scale)  # what one unit of x is in 0..255 pixels
        backbone = model_cfg.backbone if starting_weights else model_cfg.backbone.model_copy(update={"weights": None})
        x, _, note = add_backbone(x, backbone, shape, units, weights_missing_ok)
        if note and notes is not None:
            notes.append(note)
    before = (None,) + shape if model is not None else tuple(x.shape)
    # Under mixed precision the output layer computes in float32, as Keras' guide advises: softmax
    # probabilities in float16/bfloat16 are too coarse for ROC curves and top-k ties.
    mixed = keras.mixed_precision.global_policy().compute_dtype != "float32"
    last = len(model_cfg.layers) - 1
    weights = 0  # of the configured layers so far
    for index, spec in enumerate(model_cfg.layers):
        where = f"model.layers[{index}]"
        layer = make_layer(spec, where, {"dtype": "float32"} if mixed and index == last else None)
        _check_training_memory(weights + _weights_before_building(spec, where, before), where, spec)
        try:
            # Called on the symbolic tensor, layer by layer, so a shape mistake names its layer; a Sequential
            # rebuilt at every add would call every earlier layer again (500 layers: 70 s instead of a few).
            x = layer(x)
            after = tuple(x.shape)
            if model is not None:
                model.add(layer, rebuild=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} ({spec.name}): {_explain_shape_error(exc, spec, before)}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. ZeroDivisionError for strides: 0, from Keras' shape code
            if runtime.out_of_memory(exc):
                raise ConfigError(
                    f"{where} ({spec.name}): its weights do not fit in this machine's memory "
                    f"({runtime.memory_bytes() / 2**30:,.1f} GiB); given {flow_text(spec.kwargs)}: use fewer units, "
                    "filters or a smaller kernel"
                ) from None
            raise ConfigError(
                f"{where} ({spec.name}): cannot be applied to its input {shape_text(before)} "
                f"({type(exc).__name__}: {keras_message(exc)}); given {flow_text(spec.kwargs)}"
            ) from None
        weights += layer.count_params()
        if any(dim is not None and dim <= 0 for dim in after[1:]):
            raise ConfigError(
                f"{where} ({spec.name}): output shape {shape_text(after)} is empty: the kernel or pool "
                f"window is larger than its input {shape_text(before)}; use padding: same or a smaller size"
            )
        before = after
    if model is None:
        model = keras.Model(inputs, x, name=_keras_name(name))
    else:
        model.build((None, *shape))  # once, now that every layer is in
    check_output(model, model_cfg.layers, num_classes)
    if model_cfg.from_run and starting_weights:
        reused, skipped = copy_weights_from_run(model, model_cfg.from_run)
        if notes is not None:
            kept = f"; kept fresh weights for {', '.join(skipped)} (shapes differ)" if skipped else ""
            notes.append(f"model.from_run: {reused} layers start from {model_cfg.from_run.run}{kept}")
    return model


# Training holds each weight four times over: the weight, its gradient and (Adam's) two moment slots.
TRAINING_COPIES = 4


def _check_training_memory(weights: int, where: str, spec: LayerSpec) -> None:
    """Stop at the layer that would take the model past what training could hold in this machine's memory, before
    it allocates anything (a typo such as units: 2000000000 is found here, not by the kernel's OOM killer)."""
    needed = weights * 4 * TRAINING_COPIES  # float32
    if needed > runtime.memory_bytes():
        raise ConfigError(
            f"{where} ({spec.name}): the model has {weights:,} weights up to here; training them needs about "
            f"{needed / 2**30:,.1f} GiB (weights, gradients and optimizer state), more than this machine's "
            f"{runtime.memory_bytes() / 2**30:,.1f} GiB; given {flow_text(spec.kwargs)}: use fewer units or filters"
        )


def _weights_before_building(spec: LayerSpec, where: str, input_shape: Sequence) -> int:
    """The number of weights a layer will have on `input_shape`, counted on a copy without allocating them. The copy
    is named, so it takes no number from Keras' name counter (conv2d_1, ...: names model.from_run matches)."""

    def copy() -> keras.layers.Layer:
        layer = make_layer(spec, where, {"name": "cnnctl_weight_count"})
        layer.build(tuple(input_shape))
        return layer

    return runtime.weights_without_allocating(copy)


def is_scaling_layer(layer: keras.layers.Layer) -> bool:
    """The input scaling build_model adds (a layer of the model, not of the config)."""
    return isinstance(layer, keras.layers.Rescaling) and layer.name == SCALING_LAYER


def _keras_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "cnn"


def _explain_shape_error(exc: BaseException, spec: LayerSpec, before: Sequence) -> str:
    message = keras_message(exc)
    if "zero or negative" in message or "negative dimension" in message.lower():
        return (
            f"the kernel or pool window is larger than its input {shape_text(before)}; use padding: same, "
            "a smaller kernel_size, or fewer pooling layers before it"
        )
    rank = re.search(r"expected (?:min_)?ndim=(\d+), found ndim=\d+", message)
    kernel = re.search(r"received kernel of shape \(([^)]*)\)", message)
    if rank or kernel:
        expected = rank.group(1) if rank else str(len([d for d in kernel.group(1).split(",") if d.strip()]))
        return (
            f"expects input of rank {expected} but gets {shape_text(before)} (rank {len(before)}); "
            "check the data shape, model.input_shape, or the layer family (Conv1D/2D/3D)"
        )
    return f"{message} (input shape {shape_text(before)})"


def check_output(model: keras.Model, layers: Sequence[LayerSpec], num_classes: int) -> None:
    """The last layer must give one score per class (or a single sigmoid unit for two classes)."""
    where = f"model.layers[{len(layers) - 1}] ({layers[-1].name})"
    output = model.output_shape
    if len(output) != 2:
        raise ConfigError(
            f"{where}: output shape {shape_text(output)} is not flat: add Flatten (or "
            "GlobalAveragePooling) before the Dense layers"
        )
    units = output[-1]
    if units != num_classes and not (num_classes == 2 and units == 1):
        raise ConfigError(
            f"{where}: gives {units} outputs but the data has {num_classes} classes; "
            f"set units: {num_classes} on the last layer"
        )
