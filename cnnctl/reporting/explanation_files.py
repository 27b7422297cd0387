"""Reporting: what `cnnctl explain` leaves — one overlay PNG per input (the input, its Grad-CAM heat, the predicted
class and probability, the true class when known) and explain.npz with every number behind them.
"""

from __future__ import annotations

import numpy as np

from cnnctl.evaluation.explain import Explanation
from cnnctl.reporting import plots
from cnnctl.reporting.trust_plots import explanation_figure
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.output import write_output_bytes


def write_explanation(explanation: Explanation) -> Explanation:
    """The overlays and explain.npz in `explanation.folder`; files in a folder the user named are never replaced
    without `explanation.replace`. Returns the explanation with its `figures`."""
    names, replace = explanation.file_names, explanation.replace
    explanation.folder.mkdir(parents=True, exist_ok=True)
    if (
        not explanation.user_folder
    ):  # RUN/explain holds the last explanation only: overlays of an earlier, longer call would stay
        for stale in explanation.folder.glob("[0-9][0-9][0-9]-*.png"):
            if stale.name not in names and stale.is_file() and not stale.is_symlink():
                stale.unlink()
    class_names = explanation.class_names
    for index, name in enumerate(names):
        predicted = int(explanation.y_pred[index])
        title = f"pred: {class_names[predicted]} ({explanation.y_prob[index, predicted]:.2f})"
        if explanation.class_index[index] != predicted:
            title += f", explaining: {class_names[int(explanation.class_index[index])]}"
        if explanation.y_true[index] >= 0:
            title += f", true: {class_names[int(explanation.y_true[index])]}"
        figure = explanation_figure(
            explanation.examples[index], explanation.heatmaps[index], f"{explanation.inputs[index]}\n{title}"
        )
        path = explanation.folder / name
        explanation.figures.append(
            write_output_bytes(path, plots.png_bytes(figure), overwrite=replace)
            if explanation.user_folder
            else plots.save_figure(figure, path)
        )
    with atomic_path(explanation.npz, replace=replace) as temp:
        np.savez_compressed(
            temp,
            heatmaps=explanation.heatmaps,
            y_pred=explanation.y_pred,
            y_prob=explanation.y_prob.astype(np.float32),
            class_index=explanation.class_index,
            y_true=explanation.y_true,
            inputs=np.array(explanation.inputs),
            class_names=np.array(class_names),
            layer=np.array(explanation.layer),
        )
    return explanation
