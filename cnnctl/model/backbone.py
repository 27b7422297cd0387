"""Model: `model.backbone` → a keras.applications network inside the model; `model.from_run` → weights.

The application is looked up by name in `keras.applications` (no table of ours) and built with
`include_top=False` and pooling. What it expects of its input is placed in the model, in standard layers, so
model.keras still takes examples in the data's own units:

    Input → scale_inputs (Rescaling) → backbone_resize (Resizing, when the size differs)
          → backbone_preprocess (a frozen Dense(3) on the channel axis) → the application (training=False) → head

`backbone_preprocess` is the application's own `preprocess_input`, found by probing it, not by a table: every
mode Keras uses ("tf": [-1, 1]; "torch": per-channel mean/std; "caffe": RGB→BGR and mean subtraction; none for
networks that carry their preprocessing, such as EfficientNet, MobileNetV3 and ConvNeXt) is an affine map of each
pixel's channels, so four probe pixels give its matrix and offset. The same layer turns the model's [0, 1] values
back into the 0..255 pixels the application was trained on, and repeats a grayscale channel into three.
"""

from __future__ import annotations

import inspect
import os
import re
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import keras
import numpy as np

from cnnctl.config.schema import BackboneConfig, FromRunConfig
from cnnctl.errors import ConfigError, RunError, did_you_mean, first_line, printable
from cnnctl.files import not_regular_reason
from cnnctl.runs.folder import resolve_run
from cnnctl.runs.model_file import check_weights_file, load_model
from cnnctl.runtime import memory_bytes

RESIZE_LAYER = "backbone_resize"
PREPROCESS_LAYER = "backbone_preprocess"
CNNCTL_LAYERS = (RESIZE_LAYER, PREPROCESS_LAYER)  # computed from the data, never copied from another run


def application_classes() -> dict[str, Callable]:
    """Every network in keras.applications by name (ResNet50, MobileNetV3Small, ...)."""
    return {name: value for name, value in vars(keras.applications).items() if callable(value) and name[:1].isupper()}


def application(name: str) -> Callable:
    classes = application_classes()
    if name not in classes:
        hint = did_you_mean(name, list(classes), quote=False) or f"; one of {', '.join(sorted(classes))}"
        raise ConfigError(f"model.backbone.name: unknown keras.applications network '{name}'{hint}")
    return classes[name]


def preprocess_input_of(name: str) -> Callable:
    """The `preprocess_input` of the keras.applications module that holds the network."""
    network = application(name)
    modules = [module for module in vars(keras.applications).values() if isinstance(module, types.ModuleType)]
    home = network.__module__.rsplit(".", 1)[-1]  # e.g. mobilenet_v3, also public as keras.applications.mobilenet_v3
    for module in modules:
        if (getattr(module, name, None) is network or module.__name__.rsplit(".", 1)[-1] == home) and hasattr(
            module, "preprocess_input"
        ):
            return module.preprocess_input
    raise ConfigError(f"model.backbone.name: {name} has no preprocess_input in keras.applications")


def preprocessing_affine(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(matrix 3×3, offset 3) with preprocess_input(rgb) == rgb @ matrix + offset for 0..255 RGB pixels."""
    preprocess = preprocess_input_of(name)
    probe = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 200, 77]]], np.float32)
    out = np.asarray(preprocess(probe.copy()), dtype=np.float64)[0]
    offset = out[0]
    matrix = (out[1:4] - offset) / 255.0
    if not np.allclose(probe[0, 4] @ matrix + offset, out[4], atol=1e-3):
        raise ConfigError(
            f"model.backbone.name: {name}'s preprocess_input is not a per-pixel affine map; cnnctl "
            "cannot place it in the model"
        )
    return matrix, offset


def backbone_input_size(cfg: BackboneConfig, data_size: Sequence[int]) -> tuple[int, int]:
    """The configured input_size, else the data's, raised to the smallest size the application accepts (it
    says so itself: "Input size must be at least 32x32", 75 for InceptionV3)."""
    if cfg.input_size:
        return tuple(cfg.input_size)
    try:  # a 1×1 input is refused before a single layer is built
        application(cfg.name)(
            input_shape=(1, 1, 3), include_top=False, weights=None, pooling=cfg.pooling, **cfg.options()
        )
    except ValueError as exc:
        least = re.search(r"at least (\d+)x(\d+)", str(exc))
        if least:
            return max(data_size[0], int(least.group(1))), max(data_size[1], int(least.group(2)))
    except Exception:  # noqa: BLE001 - a real mistake (a wrong option) is reported by the build itself
        pass
    return tuple(data_size)


def build_backbone(
    cfg: BackboneConfig, size: Sequence[int], weights_missing_ok: bool = False
) -> tuple[keras.Model, Optional[str]]:
    """The application at `size` with its weights, frozen unless `trainable`; and a note when imagenet weights
    are not downloaded and `weights_missing_ok` (cnnctl check) built it with random weights instead."""
    network = application(cfg.name)
    local = cfg.weights not in (None, "imagenet")
    reason = not_regular_reason(cfg.weights) if local else None
    if reason is not None:  # a FIFO would hang the reader, /dev/zero never ends: only a regular file is opened
        run_like = Path(cfg.weights).is_dir() or Path(cfg.weights).name == "last"
        instead = (
            f"; to start from a previous run's model, use model.from_run: {Path(cfg.weights).name}" if run_like else ""
        )
        said = "no such file" if reason == "does not exist" else reason
        raise ConfigError(
            f"model.backbone.weights: {printable(cfg.weights)}: {said}; give imagenet, null or a "
            f"weights file (.weights.h5){instead}"
        )
    size_on_disk = os.path.getsize(cfg.weights) if local else 0
    if size_on_disk > memory_bytes():
        raise ConfigError(
            f"model.backbone.weights: {printable(cfg.weights)}: {size_on_disk / 2**30:,.1f} GiB, more "
            f"than this machine's {memory_bytes() / 2**30:,.1f} GiB of memory; no backbone's weights are that large"
        )
    note = None
    try:
        backbone = _call(network, cfg, size, None if local else cfg.weights)
    except _DownloadFailed as exc:
        if not weights_missing_ok:
            raise ConfigError(str(exc)) from None
        note = f"{exc}; checked with random weights instead (`cnnctl train` needs the file)"
        backbone = _call(network, cfg, size, None)
    if local:
        try:
            check_weights_file(Path(cfg.weights))
        except RunError as exc:
            raise ConfigError(f"model.backbone.weights: {exc}") from None
        try:
            with warnings.catch_warnings():  # a file for another network: one line below, not Keras' per-layer notes
                warnings.simplefilter("ignore")
                backbone.load_weights(cfg.weights)
        except Exception as exc:  # noqa: BLE001 - h5py/Keras raise ValueError, KeyError, OSError ...
            raise ConfigError(
                f"model.backbone.weights: {cfg.weights} does not fit {cfg.name} at input size "
                f"{list(size)} ({first_line(exc)})"
            ) from None
    backbone.name = cfg.name  # not Keras' `mobilenet_0.25_224`: the same name at any size, for model.from_run
    backbone.trainable = cfg.trainable
    return backbone, note


class _DownloadFailed(Exception):
    pass


def _call(network: Callable, cfg: BackboneConfig, size: Sequence[int], weights: Optional[str]) -> keras.Model:
    where = f"model.backbone ({cfg.name})"
    try:
        with warnings.catch_warnings():  # "Weights for input shape (224, 224) will be loaded": they fit any size
            warnings.simplefilter("ignore", UserWarning)
            return network(
                input_shape=(*size, 3), include_top=False, weights=weights, pooling=cfg.pooling, **cfg.options()
            )
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown:
            accepted = [
                p
                for p in inspect.signature(network).parameters
                if p not in ("input_shape", "include_top", "weights", "pooling", "input_tensor", "classes")
            ]
            key = unknown.group(1)
            hint = did_you_mean(key, [*BackboneConfig.model_fields, *accepted])
            raise ConfigError(
                f"{where}: unknown key '{key}'{hint}; {cfg.name} also accepts: {', '.join(accepted)}"
            ) from None
        raise ConfigError(f"{where}: {first_line(exc)}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - Keras' get_file raises a bare Exception for a failed download
        fetch = re.search(r"URL fetch failure on (\S+?):? ", str(exc))
        if weights != "imagenet" or not fetch:
            raise
        url = fetch.group(1).rstrip(":")
        file_name = url.rsplit("/", 1)[-1]
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        reason = first_line(exc).rsplit(" -- ", 1)[-1]
        raise _DownloadFailed(
            f"model.backbone.weights: could not download {cfg.name}'s imagenet weights, {file_name} ({reason}); "
            f"without internet, download {url} elsewhere and place it at {cache / file_name}, or set "
            "weights: null"
        ) from None


def add_backbone(
    x: Any, cfg: BackboneConfig, data_shape: Sequence[int], units: float, weights_missing_ok: bool = False
) -> tuple[Any, keras.Model, Optional[str]]:
    """The backbone applied to the symbolic tensor `x` (examples × `units` = 0..255 pixels); returns its output,
    the application model and a note (see build_backbone)."""
    if len(data_shape) != 3 or data_shape[-1] not in (1, 3):
        raise ConfigError(
            f"model.backbone: {cfg.name} needs images of shape (height, width, 1 or 3 channels); "
            f"the data has examples of shape {list(data_shape)}"
        )
    size = backbone_input_size(cfg, data_shape[:2])
    backbone, note = build_backbone(cfg, size, weights_missing_ok)
    if tuple(size) != tuple(data_shape[:2]):
        x = keras.layers.Resizing(*size, name=RESIZE_LAYER, dtype="float32")(x)
    matrix, offset = preprocessing_affine(cfg.name)
    kernel = matrix.sum(axis=0, keepdims=True) if data_shape[-1] == 1 else matrix  # gray: the same value in R, G, B
    preprocess = keras.layers.Dense(3, name=PREPROCESS_LAYER, trainable=False, dtype="float32")
    x = preprocess(x)
    preprocess.set_weights([(kernel * units).astype(np.float32), offset.astype(np.float32)])
    return backbone(x, training=False), backbone, note


def locate_from_run(cfg: FromRunConfig, runs_dir: Any) -> None:
    """`model.from_run` as a folder: a run id or `last` is looked up in `runs_dir` (the command's --runs-dir),
    where the run that follows it is written."""
    try:
        cfg.run = str(resolve_run(cfg.run, runs_dir).path.resolve())
    except RunError as exc:
        raise ConfigError(f"model.from_run: {exc}") from None


def copy_weights_from_run(model: keras.Model, cfg: FromRunConfig) -> tuple[int, list[str]]:
    """Every layer of `model` whose name matches a layer of the run's model.keras starts from its weights.
    Names are compared as a fresh process gives them (`conv2d`, `conv2d_1`, ... per class, in order), so the
    process-wide counters Keras numbers layers with do not matter. Returns (layers reused, layers skipped)."""
    try:
        run = resolve_run(cfg.run)
        previous = load_model(run)
    except RunError as exc:
        raise ConfigError(f"model.from_run: {exc}") from None
    previous_names = _stable_names(previous)
    source_layers = {previous_names[id(layer)]: layer for layer in _weighted_layers(previous)}
    names = _stable_names(model)
    reused, skipped = 0, []
    for layer in _weighted_layers(model):
        match = source_layers.get(names[id(layer)])
        if match is None or layer.name in CNNCTL_LAYERS:
            continue
        ours = [tuple(w.shape) for w in layer.weights]
        theirs = [tuple(w.shape) for w in match.weights]
        if ours != theirs:
            if cfg.skip_mismatched:
                skipped.append(layer.name)
                continue
            raise ConfigError(
                f"model.from_run: layer '{layer.name}' has weights of shape {_shapes(ours)} here but "
                f"{_shapes(theirs)} in {run.path}; make the layers agree, or set "
                "model.from_run.skip_mismatched: true to keep its fresh weights"
            )
        layer.set_weights(match.get_weights())
        reused += 1
    if reused == 0:
        raise ConfigError(
            f"model.from_run: no layer of this model matches one of {run.path}'s model by name and "
            "shape; nothing would be reused"
        )
    cfg.run = str(run.path.resolve())  # the saved config names the folder, not `last`
    return reused, skipped


def _weighted_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.weights]


def _stable_names(model: keras.Model) -> dict[int, str]:
    """Layer id → its name, with Keras' automatic `_N` suffix replaced by the layer's ordinal in this model."""
    counts: dict[str, int] = {}
    names = {}
    for layer in model.layers:
        base = re.sub(r"_\d+$", "", layer.name)
        if base != _snake_case(type(layer).__name__):  # a name given in the config is kept as it is
            names[id(layer)] = layer.name
            continue
        count = counts.get(base, 0)
        counts[base] = count + 1
        names[id(layer)] = f"{base}_{count}" if count else base
    return names


def _snake_case(class_name: str) -> str:
    """How Keras names a layer of this class automatically (Conv2D → conv2d, MaxPooling2D → max_pooling2d)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _shapes(shapes: list[tuple]) -> str:
    return ", ".join("(" + ", ".join(str(d) for d in shape) + ")" for shape in shapes)
