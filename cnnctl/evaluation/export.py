"""Evaluation: export a run's model.keras for serving without cnnctl, checked against the model itself.

`export_run` hands model.keras (loaded in Keras' safe mode, as evaluate and predict load it) to Keras' own
`model.export`: a TensorFlow SavedModel, an ONNX file (through tf2onnx) or a LiteRT/TFLite flatbuffer
(TensorFlow's converter). Beside the artefact goes `<artefact>.json`: the class names, what an input must be
(shape without the batch axis, dtype, value range: model.keras divides by the data's pixel_scale itself, so
it takes examples in the training data's own units), what the output means, and the check.

The check reloads the artefact with its own runtime (`tf.saved_model.load`, `onnxruntime`, the LiteRT
interpreter), feeds it up to 256 examples of the run's test split (val when there is none) and compares its
probabilities with model.keras's: the largest absolute difference must stay within the format's tolerance.

Nothing is half-written: the artefact and its JSON are made and checked in a hidden folder beside the
destination and renamed into place only when the check passes; an existing destination is never overwritten.

Example:

    result = export_run(resolve_run("last"), "onnx")   # runs/<id>/export/model.onnx and model.onnx.json
    print(result.path, result.max_abs_diff)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from cnnctl import runtime
from cnnctl.errors import (
    ConfigError,
    RunError,
    did_you_mean,
    first_line,
    in_config_file,
)
from cnnctl.evaluation.export_runtimes import EXTRA, importable, runtime_loader
from cnnctl.evaluation.predict import Preprocessing
from cnnctl.runs import contract
from cnnctl.runs.folder import Run

CHECK_EXAMPLES = 256  # examples of the test split each artefact is checked on
CHECK_BATCH = 64  # examples per call of the artefact's runtime


@dataclass(frozen=True)
class ExportFormat:
    name: str  # --format value
    label: str  # its name in messages
    keras_format: str  # what keras.Model.export calls it
    file_name: str  # its name inside RUN/export/
    tolerance: float  # largest |probability difference| from model.keras that the check accepts
    packages: tuple[str, ...]  # modules it needs beyond TensorFlow (cnnctl[export] installs them)


FORMATS = {
    "saved_model": ExportFormat("saved_model", "SavedModel", "tf_saved_model", "saved_model", 1e-4, ()),
    "onnx": ExportFormat("onnx", "ONNX", "onnx", "model.onnx", 1e-4, ("tf2onnx", "onnx", "onnxruntime")),
    # TensorFlow converts; the interpreter is ai_edge_litert's (cnnctl[export]), else TensorFlow's own.
    "tflite": ExportFormat("tflite", "TFLite", "litert", "model.tflite", 1e-3, ()),
}


SERVING = {  # how to run each artefact without cnnctl; x: float32 examples, (N, *input shape)
    "saved_model": [
        "import tensorflow as tf",
        'model = tf.saved_model.load("{path}")  # keep it: its functions go with it',
        "probabilities = model.serve(x).numpy()",
    ],
    "onnx": [
        "import onnxruntime",
        'session = onnxruntime.InferenceSession("{path}")',
        "probabilities = session.run(None, {{session.get_inputs()[0].name: x}})[0]",
    ],
    "tflite": [
        "from ai_edge_litert.interpreter import Interpreter",
        'interpreter = Interpreter(model_path="{path}")',
        'source = interpreter.get_input_details()[0]["index"]',
        "interpreter.resize_tensor_input(source, x.shape); interpreter.allocate_tensors()",
        "interpreter.set_tensor(source, x); interpreter.invoke()",
        'probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])',
    ],
}


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path  # the artefact: a SavedModel folder or a file
    info_path: Path  # <artefact>.json beside it
    info: dict[str, Any]  # what the JSON holds
    max_abs_diff: float  # largest |probability difference| from model.keras on the checked examples
    tolerance: float
    examples: int  # how many examples of `split` were checked
    split: str
    runtime: str  # what reloaded the artefact, with its version


def export_format(name: str) -> ExportFormat:
    """The format called `name` (saved_model, onnx, tflite); a miss lists them with a did-you-mean."""
    if name in FORMATS:
        return FORMATS[name]
    aliases = {"tf_saved_model": "saved_model", "savedmodel": "saved_model", "litert": "tflite"}
    alias = aliases.get(name.lower())
    hint = f"; did you mean '{alias}'?" if alias else did_you_mean(name, list(FORMATS))
    raise ConfigError(f"--format {name}: not an export format; choose one of {', '.join(FORMATS)}{hint}")


def export_path(run: Run, fmt: ExportFormat, out: Optional[Union[str, Path]] = None) -> Path:
    """Where the artefact goes: `out`, else RUN/export/<file name>; refused when it (or its JSON) exists."""
    path = Path(out) if out is not None else run.file(contract.EXPORT) / fmt.file_name
    if fmt.name == "tflite" and path.suffix != ".tflite":  # Keras' LiteRT exporter insists on it
        raise ConfigError(
            f"--out {path}: a TFLite model's name must end in .tflite, e.g. --out {path.with_suffix('.tflite')}"
        )
    for taken in (path, info_path(path)):
        if taken.exists() or taken.is_symlink():
            raise RunError(f"{taken}: already exists; cnnctl export never overwrites: remove it or give another --out")
    if out is not None and not path.parent.is_dir():
        raise ConfigError(f"--out {path}: the folder {path.parent} does not exist; create it or give another --out")
    return path


def info_path(path: Path) -> Path:
    """The JSON beside an artefact: model.onnx → model.onnx.json, saved_model/ → saved_model.json."""
    return path.with_name(path.name + ".json")


def export_run(
    run: Run, format: str, out: Optional[Union[str, Path]] = None, *, examples: int = CHECK_EXAMPLES
) -> ExportResult:
    """Export the run's model.keras as `format`, write its serving JSON beside it, and check it.

    Args:
        run: the run folder.
        format: "saved_model", "onnx" or "tflite".
        out: the artefact's path. Defaults to RUN/export/saved_model (a folder), model.onnx or model.tflite.
        examples: how many examples of the test split (val when there is none) the check feeds both the
            artefact and model.keras. Defaults to 256.

    Returns:
        ExportResult with the artefact's `path`, `info_path` (the JSON) and the check's `max_abs_diff`.
    """
    fmt = export_format(format)
    target = export_path(run, fmt, out)
    run.require(contract.CONFIG, contract.DATA, contract.MODEL)
    other_backend_needed(fmt, run)
    runtime.require_tensorflow("cnnctl export")  # quietly, before tf2onnx or Keras import it
    load_runtime = runtime_loader(fmt)  # a missing package is reported before anything is loaded or written

    preprocessing = Preprocessing.of_run(run)
    model = preprocessing.load_model(run)
    x, split = check_examples(run, preprocessing, examples, _input_dtype(model))
    expected = model.predict(x, batch_size=CHECK_BATCH, verbose=0)
    model(x[:1])  # a direct call: Keras on JAX exports only a model that has been called (predict does not count)

    made_folder = not target.parent.exists()
    try:
        target.parent.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export.", dir=target.parent))
    except OSError as exc:
        raise RunError(f"{target.parent}: cannot write the export there ({exc.strerror or exc})") from None
    try:
        # A plain name while converters and runtimes work on it (some refuse names that are not UTF-8); the
        # target's own name only when it is put in place.
        staged = staging / f"artefact{target.suffix}"
        _keras_export(model, staged, fmt)
        runtime_name, predict, names = load_runtime(staged)
        with runtime._silence_native_stderr():  # the LiteRT interpreter announces its CPU delegate on first use
            actual = np.concatenate(
                [predict(x[start : start + CHECK_BATCH]) for start in range(0, len(x), CHECK_BATCH)]
            )
        max_abs_diff = float(np.max(np.abs(actual.astype(np.float64) - expected))) if len(x) else 0.0
        if not max_abs_diff <= fmt.tolerance:
            raise RunError(
                f"{target}: the {fmt.label} export differs from model.keras by up to {max_abs_diff:.3g} "
                f"in probability on {len(x)} {split} examples (tolerance {fmt.tolerance:g}); nothing "
                "was written"
            )
        check = {
            "runtime": runtime_name,
            "split": split,
            "examples": len(x),
            "max_abs_diff": max_abs_diff,
            "tolerance": fmt.tolerance,
            "same_top_class": float(np.mean(actual.argmax(-1) == expected.argmax(-1))) if len(x) else 1.0,
        }
        info = serving_info(run, fmt, target, model, preprocessing, names, check)
        info_path(staged).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _publish(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made_folder and target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
    return ExportResult(
        fmt.name, target, info_path(target), info, max_abs_diff, fmt.tolerance, len(x), split, runtime_name
    )


def check_examples(run: Run, preprocessing: Preprocessing, limit: int, dtype: str) -> tuple[np.ndarray, str]:
    """The first `limit` examples of the run's test split (val when there is none), as model.keras takes them."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    config = load_config(run.file(contract.CONFIG))
    with in_config_file(str(run.file(contract.CONFIG))):  # e.g. the data moved since training
        dataset = load_data(config)
        split = dataset.evaluation_split()
    x = np.asarray(dataset.splits[split].x[:limit])
    return preprocessing.model_inputs(x).astype(dtype), split


def serving_info(
    run: Run,
    fmt: ExportFormat,
    target: Path,
    model: Any,
    preprocessing: Preprocessing,
    names: dict[str, str],
    check: dict[str, Any],
) -> dict[str, Any]:
    """What <artefact>.json holds: enough to feed the artefact and read its answer without cnnctl."""
    scale = preprocessing.pixel_scale if preprocessing.scale_outside else 1.0
    low, high = preprocessing.value_range or (0.0, preprocessing.full_scale)
    if preprocessing.scale_outside:
        units = (
            f"the training data's units divided by {preprocessing.pixel_scale:g}: this run predates models "
            "that scale their own inputs"
        )
    elif preprocessing.pixel_scale != 1:
        units = (
            f"the training data's own units; the model divides them by {preprocessing.pixel_scale:g} itself "
            "(its first layer, scale_inputs)"
        )
    else:
        units = "the training data's own units; the model does no scaling"
    info = {
        "format": fmt.name,
        "artefact": target.name,
        "class_names": preprocessing.class_names,
        "input": {
            "name": names.get("input"),
            "shape": list(preprocessing.input_shape),
            "batch_axis": "first, any size: (N, " + ", ".join(str(d) for d in preprocessing.input_shape) + ")",
            "dtype": _input_dtype(model),
            "value_range": [low / scale, high / scale],
            "units": units,
            "from_8bit_pixels": f"x = pixels * {preprocessing.full_scale / scale:g} / 255",
        },
        "output": {
            "name": names.get("output"),
            "shape": [len(preprocessing.class_names)],
            "meaning": output_meaning(model, preprocessing.class_names),
        },
        "serving": "\n".join(SERVING[fmt.name]).format(path=target.name),
        "check": check,
        "run": str(run.path.resolve()),
        "versions": runtime.versions(),
    }
    if preprocessing.thresholds is not None:  # multi-label: the thresholds the run's evaluation chose on val
        info["output"]["meaning"] = (
            "multi-label: one independent probability per label, in class_names order (sigmoid); a label is "
            "present when its probability reaches its threshold in `thresholds`"
        )
        info["thresholds"] = dict(zip(preprocessing.class_names, preprocessing.thresholds))
    if preprocessing.tta != "off":
        info["note"] = (
            f"the run scores with evaluate.tta: {preprocessing.tta}; the artefact is the model alone: average its "
            f"outputs on x and on x reversed along axis {len(preprocessing.input_shape) - 1} (the last "
            "spatial axis, counting the batch axis as 0)"
            + (
                ", with equal weight to the average of both moved one step forward and one back along every spatial "
                "axis (reflect padding)"
                if preprocessing.tta == "flip_translate"
                else ""
            )
            + " to reproduce the run's metrics"
        )
    return info


def output_meaning(model: Any, class_names: list[str]) -> str:
    """What the model's output rows are, from its last layer's activation."""
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    units = model.outputs[0].shape[-1]
    if activation == "softmax":
        return "probability of each class, in class_names order (softmax: each row sums to 1)"
    if activation == "sigmoid" and units == 1 and len(class_names) == 2:
        return f"probability of class {class_names[1]!r} (sigmoid); class {class_names[0]!r} has 1 minus it"
    return (
        f"the last layer's outputs ({activation or 'no'} activation), one per class in class_names order; "
        "not normalised to probabilities"
    )


# What Keras' export does off TensorFlow (Keras 3.15 on JAX): SavedModel through jax2tf, ONNX only with jax2onnx,
# no LiteRT. model.keras is the same file on every backend, so the TensorFlow backend exports it in full.
JAX_EXPORTS = {"saved_model": (), "onnx": ("jax2onnx",)}


def other_backend_needed(fmt: ExportFormat, run: Run) -> None:
    """On the JAX backend, a format Keras cannot export there is one line saying how to export it instead."""
    if runtime.backend() != "jax" or (fmt.name in JAX_EXPORTS and all(map(importable, JAX_EXPORTS[fmt.name]))):
        return
    cannot = (
        "needs jax2onnx on the JAX backend (pip install jax2onnx)"
        if fmt.name == "onnx"
        else "is not available on the JAX backend"
    )
    raise ConfigError(
        f"{fmt.label} export {cannot}; model.keras is the same file on either backend, so export it "
        f"with TensorFlow's: KERAS_BACKEND=tensorflow cnnctl export {run.path} --format {fmt.name}"
    )


def _keras_export(model: Any, path: Path, fmt: ExportFormat) -> None:
    try:
        with warnings.catch_warnings(), runtime._silence_native_stderr():  # converter and tf2onnx chatter
            warnings.simplefilter("ignore")
            model.export(str(path), format=fmt.keras_format, verbose=False)
    except ImportError as exc:
        raise ConfigError(f"{fmt.label} export: {first_line(exc)}: {EXTRA}") from None
    except Exception as exc:  # a converter's failure, in whatever class it comes
        raise RunError(f"{path.name}: Keras could not export the model as {fmt.label} ({first_line(exc)})") from None


def _publish(staged: Path, target: Path) -> None:
    """Rename the checked artefact, then its JSON, into place; on a failure neither stays."""
    try:
        if target.exists() or info_path(target).exists():  # made by someone else while this export ran
            raise RunError(
                f"{target}: appeared while exporting; cnnctl export never overwrites: remove it or give another --out"
            )
        os.rename(staged, target)
        try:
            os.rename(info_path(staged), info_path(target))
        except OSError:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
            raise
    except OSError as exc:
        raise RunError(f"{target}: cannot write the export there ({exc.strerror or exc})") from None


def _input_dtype(model: Any) -> str:
    dtype = model.inputs[0].dtype
    return str(getattr(dtype, "name", dtype))
