"""Build the network from `model.layers`, compile it from `train`, and describe it layer by layer.

Layers are resolved in the keras.layers namespace and built with the class itself (`cls(**kwargs)`): every
Keras layer works and there is no table of ours to fall behind Keras. Optimizers, losses and metrics go
through Keras' own `get()` functions. Every error names its YAML path.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from cnnctl.config import LayerSpec, LossConfig, ModelConfig, TrainConfig
from cnnctl.errors import ConfigError
from cnnctl.runtime import import_tensorflow

import_tensorflow()  # quietly, before Keras pulls TensorFlow in with its start-up noise
import keras  # noqa: E402


def layer_classes() -> dict[str, type]:
    """Every public Layer class in keras.layers, by the name a config uses (aliases included)."""
    return {name: value for name, value in vars(keras.layers).items()
            if inspect.isclass(value) and issubclass(value, keras.layers.Layer) and not name.startswith("_")}


def closest(name: str, choices: Sequence[str]) -> Optional[str]:
    """Case-insensitive exact match first (`conv2d` → `Conv2D`), then the nearest spelling."""
    for choice in choices:
        if choice.lower() == name.lower():
            return choice
    lowered = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def make_layer(spec: LayerSpec, where: str, defaults: Optional[dict[str, Any]] = None) -> keras.layers.Layer:
    """`where` is the YAML path shown in errors, e.g. `model.layers[3]`; `defaults` yield to the config's kwargs."""
    classes = layer_classes()
    cls = classes.get(spec.name)
    if cls is None:
        suggestion = closest(spec.name, list(classes))
        hint = f"; did you mean {suggestion}?" if suggestion else "; see the keras.layers documentation for names"
        raise ConfigError(f"{where}: unknown layer '{spec.name}'{hint}")
    try:
        return cls(**{**(defaults or {}), **spec.kwargs})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} ({spec.name}): {_explain_layer_error(exc, cls)}") from None
    except Exception as exc:  # noqa: BLE001 - Keras raises whatever its code hits: `.lower()` on a null, ...
        raise ConfigError(f"{where} ({spec.name}): an argument has the wrong type or value "
                          f"({type(exc).__name__}: {_keras_message(exc)}); given {_flow(spec.kwargs)}") from None


def _flow(kwargs: dict) -> str:
    import yaml

    return yaml.safe_dump(kwargs, default_flow_style=True, width=10_000).strip()


def _keras_message(exc: BaseException) -> str:
    """The cause inside Keras' "Exception encountered when calling X.call()" wrapper (shown in bold), else the
    first line."""
    inner = re.search(r"\x1b\[1m(.*?)\x1b\[0m", str(exc), re.S)
    return " ".join(inner.group(1).split()) if inner else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _explain_layer_error(exc: BaseException, cls: type) -> str:
    message = _first_line(exc)
    unknown = re.search(r"Unrecognized keyword arguments passed to \w+: (\{.*\})", message)
    if unknown:
        keys = re.findall(r"'(\w+)':", unknown.group(1))
        accepted = _accepted_kwargs(cls)
        hints = []
        for key in keys:
            guess = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6) or [
                name for name in accepted if name.startswith(key) or key.startswith(name)][:1]
            hints.append(f"'{key}' (did you mean '{guess[0]}'?)" if guess else f"'{key}'")
        return (f"unknown argument {', '.join(hints)}; {cls.__name__} accepts: {', '.join(accepted)}")
    identifier = re.search(r"Could not interpret (\w+)(?: function)? identifier: (.+)$", message)
    if identifier:
        kind, value = identifier.groups()
        namespace = getattr(keras, kind + "s", None) or getattr(keras, kind, None)
        names = [name for name in vars(namespace) if not name.startswith("_")] if namespace else []
        names = [name for name in names if name not in ("get", "serialize", "deserialize")]
        suggestion = closest(value, names)
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        return f"unknown {kind} '{value}'{hint}"
    return message


def _accepted_kwargs(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name != "self":
                if param.name not in names:
                    names.append(param.name)
        if klass is keras.layers.Layer:
            break
    return names


# ---------------------------------------------------------------- building


def build_augmenter(specs: Sequence[LayerSpec]) -> Optional[keras.Sequential]:
    """`data.augment` as one Sequential, applied to training batches in the tf.data pipeline only, so it
    is never part of the saved model's inference."""
    if not specs:
        return None
    return keras.Sequential([make_layer(spec, f"data.augment[{index}]") for index, spec in enumerate(specs)],
                            name="augment")


def build_model(model_cfg: ModelConfig, input_shape: Sequence[int], num_classes: int,
                name: str = "cnn") -> keras.Sequential:
    """keras.Input(input_shape) followed by each configured layer; shape problems are reported per layer."""
    shape = tuple(model_cfg.input_shape or input_shape)
    model = keras.Sequential(name=_keras_name(name))
    model.add(keras.Input(shape=shape))
    before = (None,) + shape
    # Under mixed precision the output layer computes in float32, as Keras' guide advises: softmax
    # probabilities in float16/bfloat16 are too coarse for ROC curves and top-k ties.
    mixed = keras.mixed_precision.global_policy().compute_dtype != "float32"
    last = len(model_cfg.layers) - 1
    for index, spec in enumerate(model_cfg.layers):
        where = f"model.layers[{index}]"
        layer = make_layer(spec, where, {"dtype": "float32"} if mixed and index == last else None)
        try:
            model.add(layer)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} ({spec.name}): {_explain_shape_error(exc, spec, before)}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. ZeroDivisionError for strides: 0, from Keras' shape code
            raise ConfigError(f"{where} ({spec.name}): cannot be applied to its input {_shape(before)} "
                              f"({type(exc).__name__}: {_keras_message(exc)}); given {_flow(spec.kwargs)}") from None
        after = tuple(layer.output.shape)
        if any(dim is not None and dim <= 0 for dim in after[1:]):
            raise ConfigError(f"{where} ({spec.name}): output shape {_shape(after)} is empty: the kernel or pool "
                              f"window is larger than its input {_shape(before)}; use padding: same or a smaller size")
        before = after
    check_output(model, model_cfg.layers, num_classes)
    return model


def _keras_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "cnn"


def _shape(shape: Sequence[Optional[int]]) -> str:
    return "(" + ", ".join("None" if dim is None else str(dim) for dim in shape) + ")"


def _explain_shape_error(exc: BaseException, spec: LayerSpec, before: Sequence) -> str:
    message = _keras_message(exc)
    if "zero or negative" in message or "negative dimension" in message.lower():
        return (f"the kernel or pool window is larger than its input {_shape(before)}; use padding: same, "
                "a smaller kernel_size, or fewer pooling layers before it")
    rank = re.search(r"expected (?:min_)?ndim=(\d+), found ndim=\d+", message)
    kernel = re.search(r"received kernel of shape \(([^)]*)\)", message)
    if rank or kernel:
        expected = rank.group(1) if rank else str(len([d for d in kernel.group(1).split(",") if d.strip()]))
        return (f"expects input of rank {expected} but gets {_shape(before)} (rank {len(before)}); "
                "check the data shape, model.input_shape, or the layer family (Conv1D/2D/3D)")
    return f"{message} (input shape {_shape(before)})"


def check_output(model: keras.Sequential, layers: Sequence[LayerSpec], num_classes: int) -> None:
    """The last layer must give one score per class (or a single sigmoid unit for two classes)."""
    where = f"model.layers[{len(layers) - 1}] ({layers[-1].name})"
    output = model.output_shape
    if len(output) != 2:
        raise ConfigError(f"{where}: output shape {_shape(output)} is not flat: add Flatten (or "
                          "GlobalAveragePooling) before the Dense layers")
    units = output[-1]
    if units != num_classes and not (num_classes == 2 and units == 1):
        raise ConfigError(f"{where}: gives {units} outputs but the data has {num_classes} classes; "
                          f"set units: {num_classes} on the last layer")


# ---------------------------------------------------------------- compiling


def needs_one_hot(loss: str) -> bool:
    """categorical_crossentropy and friends want one-hot labels; sparse_* and binary_* want indices."""
    return re.sub(r"[_\s]", "", loss).lower().startswith("categorical")


def compile_model(model: keras.Model, train_cfg: TrainConfig, jit_compile: Any = "auto",
                  steps_per_execution: int = 1, steps_per_epoch: int = 1) -> keras.Model:
    from cnnctl.fused_batch_norm import use_fused_batch_norm

    use_fused_batch_norm(model)  # same numbers as Keras' batch-norm, one kernel instead of several: faster steps
    model.compile(optimizer=make_optimizer(train_cfg, steps_per_epoch), loss=resolve_loss(train_cfg.loss),
                  metrics=resolve_metrics(train_cfg.metrics), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    return model


def make_optimizer(train_cfg: TrainConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The optimizer named in train.optimizer with its kwargs; `lr_schedule: cosine` turns the learning rate into
    keras' CosineDecay over all training steps."""
    spec = train_cfg.optimizer
    names = [name for name, value in vars(keras.optimizers).items()
             if inspect.isclass(value) and issubclass(value, keras.optimizers.Optimizer)
             and name not in ("Optimizer", "LossScaleOptimizer")]
    cls = next((getattr(keras.optimizers, name) for name in names if name.lower() == spec.name.lower()), None)
    if cls is None:
        suggestion = closest(spec.name, names)
        hint = f"did you mean '{suggestion.lower()}'? " if suggestion else ""
        raise ConfigError(f"train.optimizer.name: unknown optimizer '{spec.name}'; {hint}"
                          f"available: {', '.join(name.lower() for name in names)}")
    kwargs = spec.kwargs()
    if train_cfg.lr_schedule == "cosine":
        kwargs["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=spec.learning_rate, decay_steps=max(1, train_cfg.epochs * steps_per_epoch))
    try:
        return keras.optimizers.get({"class_name": cls.__name__, "config": kwargs})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.optimizer ({cls.__name__}): {_first_line(exc)}") from None


def resolve_loss(spec: Union[str, LossConfig]) -> Any:
    """`train.loss`: a keras.losses name as given, or `{name, **kwargs}` built as that loss's class with the kwargs
    (label_smoothing lives on the class, not on the function)."""
    name = spec if isinstance(spec, str) else spec.name
    try:
        loss = keras.losses.get(name)
    except (TypeError, ValueError):
        choices = [key for key, value in vars(keras.losses).items()
                   if not key.startswith("_") and key not in ("get", "serialize", "deserialize", "Loss", "Reduction")
                   and callable(value)]
        suggestion = closest(name, choices)
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        raise ConfigError(f"train.loss: unknown loss '{name}'{hint}") from None
    if isinstance(spec, str):
        return loss
    # The class of a loss function shares its name without underscores (aliases like mse resolve first).
    squashed = re.sub(r"[_\s]", "", getattr(loss, "__name__", name)).lower()
    cls = next((value for key, value in vars(keras.losses).items() if key.lower() == squashed
                and inspect.isclass(value) and issubclass(value, keras.losses.Loss)), None)
    if cls is None:
        raise ConfigError(f"train.loss.name: '{name}' takes no options; write it as a plain name (loss: {name})")
    try:
        return cls(**spec.kwargs())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.loss ({cls.__name__}): {_first_line(exc)}") from None


def resolve_metrics(names: Sequence[str]) -> list[Any]:
    # Strings go to compile() as given: Keras turns "accuracy" into the variant that matches the loss.
    for index, name in enumerate(names):
        try:
            keras.metrics.get(name)
        except (TypeError, ValueError):
            choices = [key for key in vars(keras.metrics) if not key.startswith("_")
                       and key not in ("get", "serialize", "deserialize", "Metric")] + ["accuracy"]
            suggestion = closest(name, choices)
            hint = f"; did you mean '{suggestion}'?" if suggestion else ""
            raise ConfigError(f"train.metrics[{index}]: unknown metric '{name}'{hint}") from None
    return list(names)


# ---------------------------------------------------------------- describing


@dataclass
class LayerRow:
    index: int           # position in model.layers
    name: str            # keras layer name
    kind: str            # class name
    output_shape: str
    params: int
    receptive_field: str  # size of the input window one output unit sees, e.g. "5×5"
    jump: str             # distance in input pixels between neighbouring output units
    flops: int            # per example, multiply and add counted separately


@dataclass
class ModelSummary:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    flops: int            # per example, forward pass


def describe(model: keras.Model) -> ModelSummary:
    """Per layer: output shape, parameters, receptive field and jump, FLOPs; plus the totals."""
    input_shape = model.input_shape
    spatial = len(input_shape) - 2
    field = [1] * spatial
    jump = [1] * spatial
    flattened = False
    rows = []
    previous_shape = input_shape
    for index, layer in enumerate(model.layers):
        output_shape = layer.output.shape
        field, jump, flattened = _grow_receptive_field(layer, field, jump, flattened, previous_shape)
        rows.append(LayerRow(
            index=index, name=layer.name, kind=type(layer).__name__, output_shape=_shape(output_shape),
            params=layer.count_params(),
            receptive_field="all" if flattened else _dims(field),
            jump="—" if flattened else _dims(jump),
            flops=_layer_flops(layer, previous_shape, output_shape),
        ))
        previous_shape = output_shape
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    return ModelSummary(rows=rows, total_params=model.count_params(), trainable_params=trainable,
                        flops=sum(row.flops for row in rows))


def _tuple(value: Any, spatial: int) -> list[int]:
    if value is None:
        return [1] * spatial
    if isinstance(value, int):
        return [value] * spatial
    values = list(value)
    return values if len(values) == spatial else [values[0]] * spatial


def _grow_receptive_field(layer: keras.layers.Layer, field: list[int], jump: list[int], flattened: bool,
                          input_shape: Sequence) -> tuple[list[int], list[int], bool]:
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
