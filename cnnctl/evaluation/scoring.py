"""Evaluation: a model and a split → probabilities; model.keras loaded safely; a run re-evaluated from its folder.

`evaluate_run` rebuilds everything from the run folder alone (config.yaml → same data splits, model.keras
loaded in Keras' safe mode, fed as data.json's `scaling` says: examples as stored, or divided by pixel_scale
for run folders saved before models carried their scaling). Test-time augmentation (`evaluate.tta: flip`) is
one Keras model around the trained one, used by evaluate and predict alike.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from cnnctl import runtime
from cnnctl.data.limits import memory_bytes
from cnnctl.errors import ConfigError, RunError, first_line, in_config_file
from cnnctl.evaluation.calibration import as_class_probabilities
from cnnctl.evaluation.metrics import write_evaluation
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, readable_file


def predict_probabilities(
    model: Any, dataset: Any, split: str, train_batch_size: int, tta: str = "off", scale_outside: bool = False
) -> np.ndarray:
    """The outputs of the model that `evaluate.tta` asks for (`scoring_model`) for every example of the split.
    `scale_outside`: the model predates in-model scaling, so the examples are divided by pixel_scale first."""
    batches = dataset.pipeline(split, runtime.inference_batch_size(train_batch_size), scale_outside=scale_outside)
    return scoring_model(model, dataset.input_shape, tta).predict(batches, verbose=0)


def scoring_model(model: Any, input_shape: Sequence[int], tta: str) -> Any:
    """The trained model as it is, or for `tta: flip` a model around it whose output is the average of the
    trained model's outputs on each example and on its mirror image (one place for evaluate and predict)."""
    if tta != "flip":
        return model
    import keras

    axis = mirror_axis(input_shape)
    inputs = keras.Input(tuple(input_shape))
    mirrored = keras.ops.flip(inputs, axis=axis)
    return keras.Model(inputs, keras.layers.Average()([model(inputs), model(mirrored)]))


def mirror_axis(input_shape: Sequence[int]) -> int:
    """The batch axis `evaluate.tta: flip` reverses: the last spatial axis of channels-last examples (an image's
    or a volume's width, a signal's time)."""
    if len(input_shape) < 2:
        raise ConfigError(
            f"evaluate.tta: flip needs examples with a spatial and a channel axis (images, signals, "
            f"volumes), not flat vectors of shape {list(input_shape)}; set evaluate.tta: off"
        )
    return len(input_shape) - 1


def load_model(run: Run) -> Any:
    """model.keras in Keras' safe mode: a file that carries code (a Lambda layer) or names a class that is not
    Keras' own (`module: os`) is refused with one line."""
    runtime.quiet_backend_import()  # before Keras, which would import TensorFlow with its start-up noise
    import keras

    run.require(contract.MODEL)
    path = check_model_file(run.file(contract.MODEL))
    if not zipfile.is_zipfile(path):  # else Keras answers "File not found" for a file that is there
        raise RunError(
            f"{path}: not a Keras model file (a .keras file is a zip archive); it is damaged or was "
            "never finished; train the run again or resume it"
        ) from None
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise RunError(
                f"{path}: refused: the model contains code (a Lambda layer), which cnnctl never "
                "loads; rebuild it from a config"
            ) from None
        raise RunError(f"{path}: cannot load the model ({text.splitlines()[0] if text else 'ValueError'})") from None
    except TypeError as exc:
        # Keras' answer to a config naming a class it does not know: `module: os`, a numpy type, a class
        # someone registered elsewhere. In safe mode nothing of it was imported or run.
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(exc))
        named = f" ({unknown.group(1)!r})" if unknown else ""
        raise RunError(
            f"{path}: refused: its config names a class that is not one of Keras' own{named}, which "
            "cnnctl never loads; rebuild it from a config"
        ) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RunError(
            f"{path}: cannot load the model ({type(exc).__name__}: {first_line(exc)}); the file may be damaged"
        ) from None
    except RecursionError:
        raise RunError(f"{path}: refused: its config is nested too deeply to be a model cnnctl wrote") from None


# A .keras file is a zip of config.json, metadata.json and model.weights.h5. Keras reads config.json whole and builds
# every layer it names before any weight is read, so both are bounded before Keras sees the file.
MAX_MODEL_CONFIG_BYTES = 64 * 2**20


def check_model_file(path: Path) -> Path:
    """model.keras (or any .keras file cnnctl is asked to load), checked before Keras opens it: a regular file, a zip
    whose members do not inflate past this machine's memory, with a config of at most MAX_MODEL_CONFIG_BYTES.
    Raises RunError naming the file."""
    readable_file(path, max_bytes=memory_bytes())
    if not zipfile.is_zipfile(path):
        return path  # load_model says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RunError(f"{path}: not a readable Keras model file ({first_line(exc)})") from None
    total = sum(member.file_size for member in members)
    if total > memory_bytes():
        raise RunError(
            f"{path}: refused: its members inflate to {total / 2**30:,.1f} GiB, more than this machine's "
            f"{memory_bytes() / 2**30:,.1f} GiB of memory"
        )
    config = next((member for member in members if member.filename == "config.json"), None)
    if config is not None and config.file_size > MAX_MODEL_CONFIG_BYTES:
        raise RunError(
            f"{path}: refused: its config.json is {config.file_size / 2**20:,.0f} MiB; a model's config "
            f"is at most {MAX_MODEL_CONFIG_BYTES // 2**20} MiB"
        )
    return path


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
    metrics = write_evaluation(
        run,
        split,
        data.y,
        y_prob,
        dataset.class_names,
        config.evaluate.top_k,
        x=data.x,
        tta=config.evaluate.tta,
        extra=kept,
    )
    from cnnctl.evaluation.gradcam import write_evaluation_gradcam

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
