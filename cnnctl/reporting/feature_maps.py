"""Reporting: feature_maps.png: what each convolution and pooling layer of a trained run outputs for one input.

The input is prepared as `cnnctl predict` does (the run's size, colour mode and units), then one `keras.Model`
with the same input and the conv/pool layers' outputs returns every activation in one pass.

Example:

    path = draw_feature_maps(resolve_run("last"), "digit.png")   # runs/<id>/feature_maps.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from cnnctl import runtime
from cnnctl.errors import DataError
from cnnctl.reporting import grids, plots
from cnnctl.runs import contract
from cnnctl.runs.folder import Run


def is_feature_layer(layer: Any) -> bool:
    """Convolutions (Conv1D/2D/3D, separable, depthwise, transposed) and pooling layers (max, average, global)."""
    kind = type(layer).__name__
    return "Conv" in kind or "Pooling" in kind


def layer_activations(model: Any, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(layer name, activation) for each conv/pool layer, for one model input `x` (no batch axis; in the
    training data's units for a model that scales its inputs itself)."""
    runtime.quiet_backend_import()  # quietly, before Keras imports it
    import keras

    layers = [layer for layer in model.layers if is_feature_layer(layer)]
    if not layers:
        return []
    probe = keras.Model(inputs=model.inputs, outputs=[layer.output for layer in layers])
    outputs = probe.predict(x[np.newaxis], verbose=0)
    if not isinstance(outputs, (list, tuple)):  # one output layer: Keras returns the array itself
        outputs = [outputs]
    return [(layer.name, np.asarray(output[0], dtype=np.float32)) for layer, output in zip(layers, outputs)]


def draw_feature_maps(run: Run, input_path: Union[str, Path]) -> tuple[Path, list[tuple[str, tuple]], list[str]]:
    """Write the run's feature_maps.png for the first example of `input_path` (an image or an .npz).

    Returns the path, (layer name, activation shape) per layer, and notes for the user.
    """
    from cnnctl.evaluation.predict import Preprocessing, load_inputs

    preprocessing = Preprocessing.of_run(run)
    inputs = load_inputs([input_path], preprocessing)
    notes = list(inputs.notes)
    if len(inputs.labels) > 1:
        notes.append(
            f"{input_path} holds {len(inputs.labels)} examples; feature maps show the first, {inputs.labels[0]}"
        )
    model = preprocessing.load_model(run)
    activations = layer_activations(model, preprocessing.model_inputs(inputs.x)[0])
    if not activations:
        raise DataError(f"{run.path}: the model has no convolution or pooling layers to show feature maps of")
    # The input first, as the configured layers see it (scaled), so each row can be read against it.
    figure = grids.feature_maps_figure([("input", preprocessing.scale(inputs.x)[0])] + activations)
    figure.suptitle(f"Feature maps of {inputs.labels[0]}", fontsize=10)
    path = plots.save_figure(figure, run.file(contract.FEATURE_MAPS))
    return path, [(name, tuple(activation.shape)) for name, activation in activations], notes
