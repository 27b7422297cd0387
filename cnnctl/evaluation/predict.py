"""Evaluation: classify new inputs with a trained run, bringing them to the units and layout of its training data.

model.keras divides its inputs by the data's `pixel_scale` itself (its first layer, "scale_inputs"), so
`predict` only has to hand it examples in the training data's own units. What that takes is recorded in the
run folder, so `predict` needs nothing else:

- data.json `input_shape` (height, width, channels): image files are decoded by the same function that
  decodes a `source: folder` run's training images: RGB, bilinear resize to that size, then grayscale when
  the model takes one channel, rounded to 8 bits;
- data.json `full_scale`: an image's 8-bit pixels are mapped onto the training data's units by rule, 255 to
  the data's full-scale value: x = pixel * full_scale / 255. For 8-bit training data (full scale 255) the
  pixels are taken as they are; for scikit-learn's digits (full scale 16) a 0..255 PNG becomes 0..16;
- config.yaml `model.input_shape` and the first layer family: an .npz's examples get the channel axis or the
  reshape that training gave them. Their values are taken as given, in the training data's units (the digits
  run expects 0..16), with a warning when they lie far outside the training data's range.

Run folders saved before models carried their scaling (data.json without `scaling`) still work: for them the
examples are divided by `pixel_scale` here, as their training pipeline did.

Inputs are image files, folders of images (searched recursively, in sorted order), or .npz files holding
examples under `x` or `x_test`. An example holding NaN or infinite values gets NaN probabilities and a note
naming it: whatever the model made of it would look like an ordinary prediction.

Example:

    predictions = predict_run(resolve_run("last"), ["digit.png", "more_digits/"])
    for label, probabilities, ranked in zip(predictions.labels, predictions.probabilities, predictions.top_k(3)):
        print(label, [(predictions.class_names[c], probabilities[c]) for c in ranked])
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cnnctl import runtime
from cnnctl.data.dataset import pixel_scale, scaled_outside_model
from cnnctl.data.limits import check_npz, image_problem, npy_problem
from cnnctl.errors import ConfigError, DataError, RunError, first_line, printable, shown_path
from cnnctl.evaluation.predictions import Predictions
from cnnctl.files import not_regular_reason
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.runs.model_file import load_model
from cnnctl.runtime import inference_batch_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what TensorFlow's image decoder reads


NPZ_KEYS = ("x", "x_test")  # where an .npz keeps the examples to classify, first match wins


@dataclass(frozen=True)
class Preprocessing:
    """How the run's training data reached the model, read back from data.json and config.yaml."""

    input_shape: tuple[int, ...]  # one example, channel axis included: (8, 8, 1)
    pixel_scale: float  # what the model divides its inputs by (1.0: nothing)
    full_scale: float  # the training data's full-scale value: an 8-bit 255 maps to it
    class_names: list[str]
    value_range: Optional[tuple[float, float]]  # min and max of the raw training data
    reshape_to: Optional[tuple[int, ...]]  # config model.input_shape: examples were reshaped to it
    batch_size: int
    tta: str = "off"  # config evaluate.tta: flip averages with the mirrored example
    scale_outside: bool = False  # an older run's model takes examples divided by pixel_scale
    thresholds: Optional[tuple[float, ...]] = None  # multi-label: each label's decision threshold (metrics.json)

    @classmethod
    def of_run(cls, run: Run) -> "Preprocessing":
        from cnnctl.config.loading import load_config

        run.require(contract.CONFIG, contract.DATA)
        config = load_config(run.file(contract.CONFIG))
        data = run.read_json(contract.DATA)  # types and ranges checked as it is read (cnnctl/runs/facts.py)
        missing = [key for key in ("input_shape", "class_names") if data.get(key) is None]
        if missing:
            raise RunError(
                f"{run.file(contract.DATA)}: no {' or '.join(missing)}; the file was edited or is not cnnctl's"
            )
        value_range = data.get("value_range")
        return cls(
            input_shape=tuple(int(d) for d in data["input_shape"]),
            pixel_scale=float(data.get("pixel_scale", 1.0)),
            full_scale=_full_scale(data),
            class_names=[str(name) for name in data["class_names"]],
            value_range=tuple(value_range) if value_range else None,
            reshape_to=tuple(config.model.input_shape) if config.model.input_shape else None,
            batch_size=inference_batch_size(config.train.batch_size),
            tta=config.evaluate.tta,
            scale_outside=scaled_outside_model(data),
            thresholds=_label_thresholds(run, data) if data.get("multi_label") else None,
        )

    def load_model(self, run: Run) -> Any:
        """The run's model.keras, when it takes the examples data.json describes; else RunError (an edited
        data.json would otherwise meet Keras' own shape error, or be read into images of another size)."""
        model = load_model(run)
        takes = other_input_shape(model, self.reshape_to or self.input_shape)
        if takes is not None:
            raise RunError(
                f"{run.file(contract.DATA)}: input_shape {list(self.input_shape)}, but model.keras takes "
                f"{takes}; the run folder is inconsistent (data.json edited, or files of two runs)"
            )
        return model

    @property
    def channels(self) -> Optional[int]:
        """1 (grayscale) or 3 (RGB) when the model takes (height, width, channels) images, else None."""
        if len(self.input_shape) != 3 or self.input_shape[-1] not in (1, 3):
            return None
        return self.input_shape[-1]

    def from_8bit(self, pixels: np.ndarray) -> np.ndarray:
        """Decoded 8-bit pixels → the training data's units, float32: 255 becomes the full-scale value."""
        if self.full_scale == 255:
            return pixels.astype(np.float32)
        return (pixels.astype(np.float64) * self.full_scale / 255).astype(np.float32)

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Examples in the training data's units → what the first configured layer sees: float32 divided by
        pixel_scale, as the model's scaling layer does."""
        x = x.astype(np.float32)
        if self.pixel_scale != 1:
            x = x / np.float32(self.pixel_scale)
        return x

    def model_inputs(self, x: np.ndarray) -> np.ndarray:
        """Examples in the training data's units → what model.keras takes: float32, divided by pixel_scale only
        for a run saved before models carried their scaling."""
        return self.scale(x) if self.scale_outside else x.astype(np.float32)


def other_input_shape(model: Any, shape: Sequence[int]) -> Optional[list]:
    """The shape of one example `model` takes, when it is not `shape` (None: it takes `shape`, or any size where
    its shape says None)."""
    takes = getattr(model, "input_shape", None)
    if not isinstance(takes, tuple) or not all(size is None or isinstance(size, int) for size in takes):
        return None  # several inputs: not a model cnnctl builds
    if len(takes) - 1 != len(shape) or any(t is not None and t != g for t, g in zip(takes[1:], shape)):
        return list(takes[1:])
    return None


@dataclass
class Inputs:
    """Examples in the model's layout and the training data's units, one label each (a file path, or
    `file.npz[i]`)."""

    labels: list[str]
    x: np.ndarray
    notes: list[str] = field(default_factory=list)  # things the user should know (skipped files, ranges)


def predict_run(run: Run, paths: Sequence[Union[str, Path]], arrays: Optional[np.ndarray] = None) -> Predictions:
    """Load, preprocess and classify every input with the run's model: the files of `paths`, then the examples
    of `arrays` (one per row, in the training data's units, labelled `array[i]`)."""
    from cnnctl.evaluation.metrics import as_class_probabilities
    from cnnctl.model.tta import scoring_model

    preprocessing = Preprocessing.of_run(run)
    inputs = load_inputs(paths, preprocessing, arrays)
    x = preprocessing.model_inputs(inputs.x)
    # As the run's evaluation scored it (test-time augmentation included).
    model = scoring_model(preprocessing.load_model(run), x.shape[1:], preprocessing.tta)
    probabilities = model.predict(x, batch_size=preprocessing.batch_size, verbose=0)
    if preprocessing.thresholds is None:  # a multi-label model's sigmoids are each a label's own probability
        probabilities = as_class_probabilities(probabilities)
    if probabilities.shape[1] != len(preprocessing.class_names):
        raise DataError(
            f"{run.file(contract.MODEL)}: the model has {probabilities.shape[1]} outputs but data.json "
            f"names {len(preprocessing.class_names)} classes; the run folder is inconsistent"
        )
    notes = inputs.notes + not_finite_note(inputs, probabilities)
    thresholds = None if preprocessing.thresholds is None else np.array(preprocessing.thresholds)
    return Predictions(inputs.labels, probabilities, preprocessing.class_names, notes, thresholds=thresholds)


def not_finite_note(inputs: Inputs, probabilities: np.ndarray) -> list[str]:
    """A warning naming the examples that hold NaN or infinite values, whose probabilities are set to NaN here:
    the model's output for them would look like an ordinary prediction but means nothing."""
    bad, shown = not_finite_inputs(inputs)
    if not bad.size:
        return []
    probabilities[bad] = np.nan
    return [
        f"{len(bad)} of {len(inputs.x)} inputs hold NaN or infinite values ({shown}); their probabilities are "
        "given as nan, not a prediction"
    ]


def not_finite_inputs(inputs: Inputs) -> tuple[np.ndarray, str]:
    """The rows of `inputs` that hold NaN or infinite values, and their labels as a message shows them."""
    flat = inputs.x.reshape(len(inputs.x), -1)
    if not np.issubdtype(flat.dtype, np.floating) or np.isfinite(flat).all():
        return np.zeros(0, dtype=int), ""
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    shown = ", ".join(inputs.labels[i] for i in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    return bad, shown


def load_inputs(
    paths: Sequence[Union[str, Path]], preprocessing: Preprocessing, given: Optional[np.ndarray] = None
) -> Inputs:
    """Every example named by `paths` (image files, folders of images, .npz files), in the order given, then
    the examples of the array `given`."""
    if not paths and given is None:
        raise ConfigError("predict: give at least one INPUT: an image file, a folder of images or an .npz file")
    labels: list[str] = []
    arrays: list[np.ndarray] = []
    notes: list[str] = []
    for spec in paths:
        path = Path(spec)
        reason = not_regular_reason(path)  # a FIFO would block forever, /dev/zero would never end
        if reason == "is a folder":
            files = image_files(path)
            if not files:
                raise DataError(
                    f"INPUT {shown_path(path)}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})"
                )
            for file in files:
                arrays.append(preprocessing.from_8bit(read_image(file, preprocessing))[np.newaxis])
                labels.append(printable(file))
        elif reason == "does not exist":
            raise DataError(f"INPUT {shown_path(path)}: no such file or folder")
        elif reason is not None:
            raise DataError(f"INPUT {shown_path(path)}: {reason}; give an image file, a folder or an .npz file")
        elif path.suffix.lower() == ".npy":
            x = read_npy(path, preprocessing)
            notes.extend(range_note(x, preprocessing, f"INPUT {shown_path(path)}"))
            arrays.append(x)
            labels.extend(f"{printable(path)}[{i}]" for i in range(len(x)))
        elif path.suffix.lower() == ".npz":
            x, _ = read_npz(path, preprocessing)
            notes.extend(range_note(x, preprocessing, f"INPUT {shown_path(path)}"))
            arrays.append(x)
            labels.extend(f"{printable(path)}[{i}]" for i in range(len(x)))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            arrays.append(preprocessing.from_8bit(read_image(path, preprocessing))[np.newaxis])
            labels.append(printable(path))
        else:
            raise DataError(f"INPUT {shown_path(path)}: not an image ({', '.join(IMAGE_SUFFIXES)}), .npz or .npy file")
    if given is not None:
        x = examples(np.asarray(given), preprocessing, "array")
        notes.extend(range_note(x, preprocessing, "array"))
        arrays.append(x)
        labels.extend(f"array[{i}]" for i in range(len(x)))
    x = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return Inputs(labels, x, notes)


def image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def read_image(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """One image file → (height, width, channels) uint8, decoded and resized exactly as `source: folder`
    decodes training images (TensorFlow's decoder, RGB, bilinear resize, then grayscale when the model takes
    one channel)."""
    from cnnctl.data.folders import decode_image_file

    channels = preprocessing.channels
    if channels is None:
        raise DataError(
            f"INPUT {path}: this run's model takes examples of shape {list(preprocessing.input_shape)}, "
            "not images; give an .npz file with the examples under `x`"
        )
    problem = image_problem(path)  # checked on the file and its header, before decoding
    if problem is not None:
        raise DataError(f"INPUT {shown_path(path)}: cannot read as an image ({problem})")
    tf = runtime.require_tensorflow("reading image files")
    try:
        with runtime._silence_native_stderr():  # libjpeg prints its complaints straight to file descriptor 2
            # The path as bytes: TensorFlow takes str paths as UTF-8 text, which a name from another system may not be.
            return decode_image_file(os.fsencode(path), preprocessing.input_shape[:2], channels).numpy()
    except tf.errors.OpError as exc:
        raise DataError(f"INPUT {shown_path(path)}: cannot read as an image ({_tf_reason(exc.message)})") from None


def read_npz(path: Path, preprocessing: Preprocessing) -> tuple[np.ndarray, str]:
    """The examples of an .npz (under `x` or `x_test`), in the model's layout; returns them and the key."""
    check_npz(path, f"INPUT {shown_path(path)}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = next((name for name in NPZ_KEYS if name in archive.files), None)
            if key is None:
                raise DataError(
                    f"INPUT {path}: no array named {' or '.join(NPZ_KEYS)} (it has "
                    f"{', '.join(archive.files) or 'no arrays'}); save the examples under x"
                )
            x = archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a cut .npz
        raise DataError(f"INPUT {shown_path(path)}: not a readable .npz file ({first_line(exc)})") from None
    return examples(x, preprocessing, f"INPUT {shown_path(path)}: {key}"), key


def read_npy(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """The examples of an .npy file (one array, examples along its first axis), in the model's layout."""
    where = f"INPUT {shown_path(path)}"
    with open(path, "rb") as handle:
        problem = npy_problem(handle, path.stat().st_size)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a cut .npz
        raise DataError(f"{where}: not a readable .npy file ({first_line(exc)})") from None
    return examples(x, preprocessing, where)


def examples(x: np.ndarray, preprocessing: Preprocessing, where: str) -> np.ndarray:
    """An array of examples, one per row, checked and put in the model's layout (`where` names it in errors)."""
    # Real numbers only: a complex array's imaginary part would be dropped without a word (train refuses it too).
    real = np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)
    if not (real or x.dtype == bool) or x.ndim < 2:
        raise DataError(
            f"{where} has shape {list(x.shape)} and dtype {x.dtype}; expected real numbers, one example per row"
        )
    if len(x) == 0:
        raise DataError(f"{where} holds 0 examples (shape {list(x.shape)}); nothing to classify")
    return to_input_layout(x, preprocessing, where)


def to_input_layout(x: np.ndarray, preprocessing: Preprocessing, where: str) -> np.ndarray:
    """Give examples the layout training gave them: the missing channel axis, or model.input_shape."""
    target = preprocessing.input_shape
    example = tuple(x.shape[1:])
    if example == target:
        return x
    if example + (1,) == target:
        return x[..., np.newaxis]
    if preprocessing.reshape_to is not None and math.prod(example) == math.prod(target):
        return x.reshape((len(x),) + target)
    raise DataError(f"{where} examples have shape {list(example)}; this run's model takes {list(target)}")


def range_note(x: np.ndarray, preprocessing: Preprocessing, where: str) -> list[str]:
    """A warning (or none) when an array's examples are far outside the training data's values: arrays and
    .npz files are taken as given, so the usual cause is other units (0..255 given to the digits run, which
    expects 0..16)."""
    if preprocessing.value_range is None or not x.size:
        return []
    low, high = preprocessing.value_range
    span = max(high - low, 1e-12)
    x_low, x_high = float(np.min(x)), float(np.max(x))
    if x_high <= high + 0.5 * span and x_low >= low - 0.5 * span:
        return []
    return [
        f"{where}: values range {x_low:g}..{x_high:g} but the training data ranged {low:g}..{high:g}; arrays "
        "and .npz files are taken as given, so give them in the training data's units (image files are "
        "mapped to them for you)"
    ]


def _label_thresholds(run: Run, data: dict[str, Any]) -> tuple[float, ...]:
    """A multi-label run's decision thresholds, one per label, as its evaluation chose them (metrics.json); 0.5
    for a label the file does not name (a run not evaluated yet)."""
    from cnnctl.evaluation.multilabel import saved_thresholds

    metrics = run.read_json(contract.METRICS) if run.has(contract.METRICS) else {}
    return tuple(saved_thresholds(metrics, data["class_names"]))


def _full_scale(data: dict[str, Any]) -> float:
    """data.json's `full_scale`; for run folders saved before it was recorded, what `pixel_scale()` computed:
    the divisor when the data were normalized, else from the stored dtype and value range."""
    if "full_scale" in data:
        return float(data["full_scale"])
    if float(data.get("pixel_scale", 1.0)) != 1:
        return float(data["pixel_scale"])
    if data.get("dtype") == "uint8":
        return 255.0
    return pixel_scale(np.asarray(data.get("value_range") or [1.0], dtype=np.float64))


def _tf_reason(message: str) -> str:
    """TensorFlow's op error without its graph-node prefix and op suffix: "Unknown image file format. ..." """
    message = re.sub(r"\{\{.*?\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:.*$", "", message, flags=re.S).strip()
    return message.splitlines()[0] if message else "not a decodable image"
