"""cnnctl export: each format reloaded here with its own runtime and compared with model.keras on digits examples;
the serving JSON read back; a missing package, a failed check and an existing --out leave nothing behind."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnctl.cli.app import app

FORMATS = {  # --format: (artefact in RUN/export/, the largest probability difference accepted)
    "saved_model": ("saved_model", 1e-4),
    "onnx": ("model.onnx", 1e-4),
    "tflite": ("model.tflite", 1e-3),
}


def digits_examples(n: int = 32) -> np.ndarray:
    """Digits in the units the run trained on (0..16), channel axis added: what the exported model takes."""
    from sklearn.datasets import load_digits

    return load_digits().images[:n, :, :, np.newaxis].astype(np.float32)


def reload_and_predict(fmt: str, path, x: np.ndarray) -> np.ndarray:
    """The artefact run by its own runtime, without cnnctl."""
    if fmt == "saved_model":
        import tensorflow as tf

        model = tf.saved_model.load(str(path))  # kept: its functions die with the object
        return model.serve(x).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_matches_model_keras_with_its_own_runtime(digits_run_copy, fmt):
    import keras

    name, tolerance = FORMATS[fmt]
    result = CliRunner().invoke(app, ["export", str(digits_run_copy), "--format", fmt])
    assert result.exit_code == 0, result.output
    export = digits_run_copy / "export"
    assert sorted(path.name for path in export.iterdir()) == sorted([name, f"{name}.json"])  # no staging left
    assert "largest probability difference from model.keras" in result.output

    info = json.loads((export / f"{name}.json").read_text())
    data = json.loads((digits_run_copy / "data.json").read_text())
    assert info["class_names"] == data["class_names"]
    assert info["input"]["shape"] == data["input_shape"] == [8, 8, 1]
    assert info["input"]["dtype"] == "float32"
    assert info["input"]["value_range"] == [0.0, 16.0]  # digits' own units: the model divides by 16 itself
    assert info["check"]["split"] == "test" and info["check"]["examples"] == min(256, data["sizes"]["test"])
    assert 0 <= info["check"]["max_abs_diff"] <= tolerance

    x = digits_examples()
    expected = keras.saving.load_model(digits_run_copy / "model.keras", compile=False).predict(x, verbose=0)
    actual = reload_and_predict(fmt, export / name, x)
    assert actual.shape == (len(x), len(info["class_names"]))
    assert np.max(np.abs(actual - expected)) <= tolerance
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, atol=1e-5)  # "probability of each class"


def test_a_missing_package_is_one_line_naming_the_extra_and_leaves_nothing(digits_run_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # `import tf2onnx` now raises ImportError
    result = CliRunner().invoke(app, ["export", str(digits_run_copy), "--format", "onnx"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'error: ONNX export needs tf2onnx, onnx and onnxruntime (missing: tf2onnx): pip install "cnnctl[export]"'
    ]
    assert not (digits_run_copy / "export").exists()


def test_a_failed_check_writes_nothing(digits_run_copy, monkeypatch):
    from cnnctl.evaluation import export

    strict = dataclasses.replace(export.FORMATS["saved_model"], tolerance=-1.0)  # no difference passes
    monkeypatch.setitem(export.FORMATS, "saved_model", strict)
    result = CliRunner().invoke(app, ["export", str(digits_run_copy), "--format", "saved_model"])
    assert result.exit_code == 2
    assert "differs from model.keras" in result.output and "nothing was written" in result.output
    assert not (digits_run_copy / "export").exists()


def test_an_existing_out_is_never_overwritten(trained_digits_run, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_text("keep me")
    result = CliRunner().invoke(app, ["export", str(trained_digits_run.path), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {out}: already exists; cnnctl export never overwrites: remove it or give another --out"
    ]
    assert out.read_text() == "keep me"


@pytest.mark.parametrize(
    "given, hint",
    [
        ("onx", "did you mean 'onnx'?"),
        ("litert", "did you mean 'tflite'?"),
        ("pickle", "choose one of saved_model, onnx, tflite"),
    ],
)
def test_an_unknown_format_says_what_exists(trained_digits_run, given, hint):
    result = CliRunner().invoke(app, ["export", str(trained_digits_run.path), "--format", given])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --format {given}: not an export format") and hint in result.output


def test_the_python_api_exports_to_out(trained_digits_run, tmp_path):
    import cnnctl

    result = cnnctl.export(trained_digits_run.path, "saved_model", out=tmp_path / "digits_model")
    assert result.path == tmp_path / "digits_model" and (result.path / "saved_model.pb").is_file()
    assert result.info_path == tmp_path / "digits_model.json"
    assert json.loads(result.info_path.read_text())["check"]["max_abs_diff"] == result.max_abs_diff <= 1e-4
    assert not (trained_digits_run.path / "export").exists()  # the shared run folder is left as it was


def test_an_out_name_that_is_not_utf8_is_exported_and_checked(trained_digits_run, tmp_path):
    # Bytes a Latin-1 system wrote (0xE9: é): onnxruntime takes no such name, so the artefact is checked under a
    # plain staging name and renamed into place.
    import cnnctl

    out = Path(os.fsdecode(bytes(tmp_path) + b"/mod\xe8le.onnx"))
    result = cnnctl.export(trained_digits_run.path, "onnx", out=out)
    assert os.fsencode(result.path).endswith(b"/mod\xe8le.onnx") and result.max_abs_diff <= 1e-4
    assert sorted(os.listdir(bytes(tmp_path))) == [b"mod\xe8le.onnx", b"mod\xe8le.onnx.json"]
