"""Evaluation: gradcam.npz, written by every evaluation — per class, the split's most confident correct example and
its most confidently wrong one, with their Grad-CAM maps, so `cnnctl plot` draws gradcam.png without the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnctl.errors import CnnctlError, DataError
from cnnctl.evaluation.calibration import as_class_probabilities
from cnnctl.evaluation.gradcam import gradcam
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run

EVALUATION_CLASSES = 10  # gradcam.npz holds this many classes at most: one correct and one wrong example each


def write_evaluation_gradcam(
    run: Run, model: Any, dataset: Any, split: str, y_prob: np.ndarray, scale_outside: bool = False
) -> Optional[Path]:
    """gradcam.npz: for up to EVALUATION_CLASSES classes, the split's most confident correct example and its most
    confidently wrong one, with their heat maps, so `plot` draws gradcam.png without the model. `y_prob` is the
    model's output on `dataset`'s `split`; `scale_outside`: a run from before models scaled their inputs (the
    examples are divided by the data's pixel scale first). A model without a convolution gets no file (nothing to
    draw), and neither does one Grad-CAM cannot read; a stale file is removed."""
    target = run.file(contract.GRADCAM_NPZ)
    if dataset.multi_label:  # "a right and a wrong example per class" needs one class per example
        target.unlink(missing_ok=True)
        return None
    x, y_true, class_names = dataset.splits[split].x, dataset.splits[split].y, dataset.class_names
    y_prob = as_class_probabilities(y_prob)
    scale = dataset.pixel_scale if scale_outside else 1.0
    chosen = evaluation_examples(y_true, y_prob)
    try:
        examples = np.asarray(x[chosen]) if len(chosen) else None
        if examples is None:
            raise DataError("no examples")
        maps = gradcam(model, examples.astype(np.float32) / np.float32(scale))
    except CnnctlError:
        target.unlink(missing_ok=True)
        return None
    with atomic_path(target) as temp:
        np.savez_compressed(
            temp,
            x=examples,
            heatmaps=maps.heatmaps,
            index=chosen,
            y_true=y_true[chosen],
            y_prob=y_prob[chosen].astype(np.float32),
            class_names=np.array(list(class_names)),
            layer=np.array(maps.layer),
        )
    return target


def evaluation_examples(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Per class (the first EVALUATION_CLASSES), its most confident correct prediction and its most confidently
    wrong one, where they exist: indices into the split, class by class."""
    predicted, confidence = y_prob.argmax(axis=1), y_prob.max(axis=1)
    chosen = []
    for label in np.unique(y_true)[:EVALUATION_CLASSES]:
        for correct in (True, False):
            members = np.flatnonzero((y_true == label) & ((predicted == label) == correct))
            if len(members):
                chosen.append(int(members[np.argmax(confidence[members])]))
    return np.array(chosen, dtype=np.int64)
