"""Evaluation: a model and a split → probabilities; a run re-evaluated from its folder.

`evaluate_run` rebuilds everything from the run folder alone (config.yaml → same data splits, model.keras
loaded in Keras' safe mode, fed as data.json's `scaling` says: examples as stored, or divided by pixel_scale
for run folders saved before models carried their scaling). Test-time augmentation (`evaluate.tta: flip`) is
one Keras model around the trained one, used by evaluate and predict alike.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from cnnctl import runtime
from cnnctl.errors import RunError, in_config_file
from cnnctl.evaluation.calibration import as_class_probabilities
from cnnctl.evaluation.metrics import write_evaluation
from cnnctl.evaluation.predict import other_input_shape
from cnnctl.model.tta import scoring_model
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.runs.model_file import load_model


def predict_probabilities(
    model: Any, dataset: Any, split: str, train_batch_size: int, tta: str = "off", scale_outside: bool = False
) -> np.ndarray:
    """The outputs of the model that `evaluate.tta` asks for (`scoring_model`) for every example of the split.
    `scale_outside`: the model predates in-model scaling, so the examples are divided by pixel_scale first."""
    batches = dataset.pipeline(split, runtime.inference_batch_size(train_batch_size), scale_outside=scale_outside)
    return scoring_model(model, dataset.input_shape, tta).predict(batches, verbose=0)


def label_thresholds(
    model: Any, dataset: Any, train_batch_size: int, tta: str = "off", scale_outside: bool = False
) -> tuple[np.ndarray, str]:
    """Multi-label: each label's decision threshold, the one that maximises its F1 on the validation split, and
    where it came from (metrics.json's `thresholds_from`). Without a validation split every label keeps 0.5."""
    from cnnctl.evaluation.multilabel import DEFAULT_THRESHOLD, choose_thresholds

    if "val" not in dataset.splits:
        return np.full(dataset.num_classes, DEFAULT_THRESHOLD), "default 0.5: the data has no validation split"
    p_val = predict_probabilities(model, dataset, "val", train_batch_size, tta, scale_outside=scale_outside)
    return choose_thresholds(dataset.splits["val"].y, p_val), "val: each label's F1 maximised"


def evaluate_run(run: Run, split: Optional[str] = None, model: Any = None) -> dict[str, Any]:
    """Recompute predictions and every report file from the run folder alone (`model`: the run's model.keras
    when the caller has loaded it already); returns the metrics of the split scored.

    The run's own split (evaluate.split, else test) is its headline: metrics.json, the reports, predictions.npz
    and the figures describe it. Another split asked for (`--split val` on a run scored on test) is kept beside
    it, in metrics.json's `other_splits`, and changes nothing else: `cnnctl runs` and report.html go on showing
    the headline, with the other split next to it."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data, scaled_outside_model

    run.require(contract.CONFIG, contract.MODEL)
    config = load_config(run.file(contract.CONFIG))
    model = model if model is not None else load_model(run)
    with in_config_file(str(run.file(contract.CONFIG))):  # e.g. the data moved since training
        dataset = load_data(config)
        headline = dataset.evaluation_split(config.evaluate.split)
    takes = other_input_shape(model, config.model.input_shape or dataset.input_shape)
    if takes is not None or model.output_shape[-1] != dataset.num_classes:
        raise RunError(
            f"{run.file(contract.CONFIG)}: its data ({config.data.source}: examples of shape "
            f"{list(dataset.input_shape)}, {dataset.num_classes} classes) is not what model.keras takes "
            f"({takes or list(model.input_shape[1:])}, {model.output_shape[-1]} outputs); config.yaml was edited "
            "after training: put back its data section"
        )
    split = split or headline
    if split not in dataset.splits:
        raise RunError(f"--split {split}: this run has no {split} split (it has {', '.join(dataset.splits)})")
    scale_outside = run.has(contract.DATA) and scaled_outside_model(run.read_json(contract.DATA))
    y_prob = predict_probabilities(
        model, dataset, split, config.train.batch_size, config.evaluate.tta, scale_outside=scale_outside
    )
    data = dataset.splits[split]
    existing = run.read_json(contract.METRICS) if run.has(contract.METRICS) else {}
    if split != headline and existing.get("split") == headline:
        return _beside_the_headline(run, existing, split, data.y, y_prob, dataset.class_names, config)
    kept: dict[str, Any] = {}  # what metrics.json already held that this evaluation does not recompute
    previous = existing.get("temperature")
    if isinstance(previous, dict) and isinstance(previous.get("value"), (int, float)) and previous["value"] > 0:
        from cnnctl.evaluation.temperature import carried_over

        kept["temperature"] = carried_over(previous, data.y, as_class_probabilities(y_prob))
    if isinstance(existing.get("other_splits"), dict):
        kept["other_splits"] = {name: value for name, value in existing["other_splits"].items() if name != split}
    return write_split_evaluation(run, model, dataset, config, split, y_prob, scale_outside, kept)


def write_split_evaluation(
    run: Run,
    model: Any,
    dataset: Any,
    config: Any,
    split: str,
    y_prob: np.ndarray,
    scale_outside: bool = False,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Every evaluation file of the split scored (`y_prob`: the model's outputs on it), as training and `evaluate`
    write them: multi-label thresholds chosen on val first, then metrics.json, the reports, predictions.npz and
    gradcam.npz. `extra` joins metrics.json. Returns the metrics."""
    from cnnctl.evaluation.gradcam_examples import write_evaluation_gradcam

    extra = dict(extra or {})
    thresholds = None
    if dataset.multi_label:
        thresholds, extra["thresholds_from"] = label_thresholds(
            model, dataset, config.train.batch_size, config.evaluate.tta, scale_outside
        )
    data = dataset.splits[split]
    metrics = write_evaluation(
        run,
        split,
        data.y,
        y_prob,
        dataset.class_names,
        config.evaluate.top_k,
        x=data.x,
        tta=config.evaluate.tta,
        extra=extra,
        thresholds=thresholds,
    )
    write_evaluation_gradcam(run, model, dataset, split, y_prob, scale_outside=scale_outside)
    return metrics


def _beside_the_headline(
    run: Run,
    existing: dict[str, Any],
    split: str,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    class_names: Sequence[str],
    config: Any,
) -> dict[str, Any]:
    """The numbers of a split other than the run's headline, written into metrics.json's `other_splits` only."""
    from cnnctl.evaluation.metrics import compute_metrics, confidence_metrics

    if y_true.ndim == 2:  # multi-label: scored at the headline's thresholds, chosen on val
        from cnnctl.evaluation.multilabel import multilabel_metrics, saved_thresholds

        scored = multilabel_metrics(y_true, y_prob, saved_thresholds(existing, class_names), class_names)
        metrics = {"split": split, "tta": config.evaluate.tta, "multi_label": True, **scored}
        metrics["thresholds_from"] = (
            f"the {existing.get('split')} evaluation's: {existing.get('thresholds_from', '0.5')}"
        )
    else:
        y_prob = as_class_probabilities(y_prob)
        metrics = {
            "split": split,
            "tta": config.evaluate.tta,
            **compute_metrics(y_true, y_prob, class_names, config.evaluate.top_k),
            **confidence_metrics(y_true, y_prob, split),
        }
    other = existing.get("other_splits") if isinstance(existing.get("other_splits"), dict) else {}
    run.write_json(contract.METRICS, {**existing, "other_splits": {**other, split: metrics}})
    return metrics
