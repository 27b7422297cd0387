"""Evaluation: where a trained run looked at new inputs — `cnnctl explain`, Grad-CAM overlays and explain.npz.

Inputs are read exactly as `predict` reads them (image files, folders, .npz/.npy, arrays), so a heat map belongs
to the prediction `predict` gives, without test-time flips: Grad-CAM explains the model itself. The maps come from
cnnctl/evaluation/gradcam.py, which gives the same numbers on TensorFlow and JAX.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cnnctl.errors import ConfigError, DataError, did_you_mean, shown_path
from cnnctl.evaluation.gradcam import gradcam
from cnnctl.evaluation.predict import Preprocessing, load_inputs, not_finite_inputs
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.runs.output import check_output_path

NPZ_LABEL_KEYS = ("y", "y_test")
GRADCAM_BATCH = 32  # a backward pass holds every activation of the batch: smaller than prediction's batches  # where an .npz given to `explain` keeps the true classes of its examples


@dataclass
class Explanation:
    """What `explain` found: per input its heat map, prediction and (when known) true class, and the files."""

    inputs: list[str]  # an input's name: its file, or `file.npz[i]`
    heatmaps: np.ndarray  # (N, *the input's spatial shape), float32 in [0, 1]
    y_pred: np.ndarray  # (N,) the predicted class
    y_prob: np.ndarray  # (N, K) class probabilities
    class_index: np.ndarray  # (N,) the class each heat map explains
    y_true: np.ndarray  # (N,) the true class, -1 where unknown
    class_names: list[str]
    layer: str  # the layer the maps come from
    folder: Path  # where the overlays and explain.npz go (cnnctl/reporting/explanation_files.py writes them)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    examples: Optional[np.ndarray] = None  # the inputs as read, drawn under the heat maps
    file_names: list[str] = field(default_factory=list)  # an overlay's file name per input
    replace: bool = False  # existing files in `folder` may be replaced
    user_folder: bool = False  # `folder` is the user's --out (each file checked), not RUN/explain

    @property
    def npz(self) -> Path:
        return self.folder / contract.EXPLAIN_NPZ


def explain_run(
    run: Run,
    paths: Sequence[Union[str, Path]] = (),
    arrays: Optional[np.ndarray] = None,
    *,
    layer: Optional[str] = None,
    class_name: Optional[Union[str, int]] = None,
    out: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
) -> Explanation:
    """Grad-CAM for every input, nothing written yet: the files to write — one overlay PNG each (the input, the heat
    over it, predicted class and probability, the true class when known) and explain.npz (heatmaps, y_pred, y_prob,
    class_index, y_true, inputs, class_names, layer) in `out` — are checked here, before the model is loaded, and
    written by cnnctl/reporting/explanation_files.py.

    Args:
        run: the run folder.
        paths: image files, folders of images, .npz or .npy files, as `predict` takes them.
        arrays: examples already in memory, one per row, in the training data's units. Defaults to None.
        layer: the layer to read (a name, or "backbone/name"). Defaults to None: the last convolution.
        class_name: explain this class (a name, or an index) instead of each input's predicted class.
            Defaults to None.
        out: the folder for the files. Defaults to RUN/explain. Existing files are replaced only with `overwrite`.
        overwrite: replace existing files in `out` (never a run's own files). Defaults to False.
    """
    folder = Path(out) if out is not None else run.file(contract.EXPLAIN)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"--out {shown_path(folder)}: is a file; give a folder for the overlays and "
            f"{contract.EXPLAIN_NPZ}, e.g. --out explained/"
        )
    preprocessing = Preprocessing.of_run(run)
    requested = class_index_of(class_name, preprocessing.class_names)
    loaded = load_inputs(paths, preprocessing, arrays)
    bad, shown = not_finite_inputs(loaded)
    if bad.size:  # a heat map of NaN means nothing, and its overlay cannot be drawn
        raise DataError(
            f"INPUT {shown}: holds NaN or infinite values; Grad-CAM needs finite inputs (`cnnctl predict` marks "
            "such inputs and goes on)"
        )
    names = overlay_names(loaded.labels)
    if out is not None:  # every file is checked before the model is loaded; RUN/explain is the run's own
        for name in [*names, contract.EXPLAIN_NPZ]:
            check_output_path(folder / name, overwrite=overwrite, option="--out", example="explained/")
    model = preprocessing.load_model(run)
    maps = gradcam(
        model,
        preprocessing.model_inputs(loaded.x),
        layer=layer,
        class_index=requested,
        batch_size=min(GRADCAM_BATCH, preprocessing.batch_size),
    )
    explanation = Explanation(
        loaded.labels,
        maps.heatmaps,
        maps.y_pred,
        maps.y_prob,
        maps.class_index,
        true_classes(paths, loaded.labels, preprocessing.class_names),
        preprocessing.class_names,
        maps.layer,
        folder,
        notes=list(loaded.notes),
        examples=loaded.x,
        file_names=names,
        replace=overwrite or out is None,
        user_folder=out is not None,
    )
    return explanation


def class_index_of(class_name: Optional[Union[str, int]], class_names: Sequence[str]) -> Optional[int]:
    """`--class C`: a class name (exactly as data.json has it) or an index 0..K-1."""
    if class_name is None:
        return None
    text = str(class_name)
    if text in class_names:
        return list(class_names).index(text)
    if re.fullmatch(r"-?\d+", text) and 0 <= int(text) < len(class_names):
        return int(text)
    shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
    raise ConfigError(
        f"--class {text}: not a class of this run; give a name ({shown}) or an index "
        f"0..{len(class_names) - 1}{did_you_mean(text, list(class_names))}"
    )


def overlay_names(labels: Sequence[str]) -> list[str]:
    """A file name per input: its position, then its name made safe (`003-seven.png`, `012-digits.npz-4.png`)."""
    names = []
    for index, label in enumerate(labels):
        name = re.sub(r"\.(png|jpe?g|bmp|gif|webp)$", "", Path(label).name, flags=re.IGNORECASE)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "input"
        names.append(f"{index:03d}-{stem}.png")
    return names


def true_classes(paths: Sequence[Union[str, Path]], labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """The true class of each input where the inputs say it: an .npz's `y` (or `y_test`) beside its examples, or
    an image in a folder named after a class (`cat/1.jpg`, as a folder source keeps them); -1 elsewhere."""
    known = np.full(len(labels), -1, dtype=np.int64)
    npz_labels = {}
    for spec in paths:
        if str(spec).lower().endswith(".npz"):
            with contextlib.suppress(OSError, ValueError, KeyError, EOFError):
                with np.load(spec, allow_pickle=False) as archive:
                    key = next((key for key in NPZ_LABEL_KEYS if key in archive.files), None)
                    if key is not None:
                        npz_labels[str(spec)] = np.asarray(archive[key]).reshape(-1)
    for index, label in enumerate(labels):
        match = re.fullmatch(r"(.*)\[(\d+)\]", label)
        if match and match.group(1) in npz_labels:
            values, position = npz_labels[match.group(1)], int(match.group(2))
            if position < len(values):
                known[index] = _class_of(values[position], class_names)
        elif not match:
            parent = Path(label).parent.name
            if parent in class_names:
                known[index] = list(class_names).index(parent)
    return known


def _class_of(value: Any, class_names: Sequence[str]) -> int:
    text = str(value.item() if hasattr(value, "item") else value)
    if text in class_names:
        return list(class_names).index(text)
    if re.fullmatch(r"\d+", text) and int(text) < len(class_names):
        return int(text)
    return -1
