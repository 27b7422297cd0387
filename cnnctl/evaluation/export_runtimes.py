"""Evaluation: the runtimes an exported artefact is checked with — tf.saved_model.load, onnxruntime, the LiteRT
interpreter — each loading the file as a user would, and saying which runtime and version it was."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnnctl import runtime
from cnnctl.errors import ConfigError

EXTRA = 'pip install "cnnctl[export]"'


def runtime_loader(fmt: Any) -> Callable[[Path], tuple[str, Callable[[np.ndarray], np.ndarray], dict]]:
    """The function that reloads an artefact of `fmt` with its own runtime: (runtime and version, predict,
    input and output names). Raises the one-line error naming the extra when a package is missing."""
    missing = [name for name in fmt.packages if not importable(name)]
    if missing:
        needs = ", ".join(fmt.packages[:-1]) + f" and {fmt.packages[-1]}" if len(fmt.packages) > 1 else fmt.packages[0]
        raise ConfigError(f"{fmt.label} export needs {needs} (missing: {', '.join(missing)}): {EXTRA}")
    if fmt.name == "saved_model":
        return _saved_model_runtime
    if fmt.name == "onnx":
        return _onnx_runtime
    if not importable("ai_edge_litert.interpreter") and not hasattr(runtime.import_tensorflow().lite, "Interpreter"):
        raise ConfigError(
            f"TFLite export needs ai-edge-litert to check the model (this TensorFlow has no "
            f"tf.lite.Interpreter): {EXTRA}"
        )
    return _tflite_runtime


def _saved_model_runtime(path: Path) -> tuple[str, Callable, dict]:
    tf = runtime.import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    names = {
        "input": next(iter(signature.structured_input_signature[1]), None),
        "output": next(iter(signature.structured_outputs), None),
        "endpoint": "serve",
    }
    return f"tensorflow {tf.__version__} (tf.saved_model.load)", lambda x: loaded.serve(x).numpy(), names


def _onnx_runtime(path: Path) -> tuple[str, Callable, dict]:
    import onnxruntime

    # A name that is not UTF-8 (bytes a Latin-1 system wrote) cannot cross into the runtime: its bytes can.
    source = str(path) if _utf8(path) else path.read_bytes()
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    return (
        f"onnxruntime {onnxruntime.__version__}",
        lambda x: session.run([output_name], {input_name: x})[0],
        {"input": input_name, "output": output_name},
    )


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tflite_runtime(path: Path) -> tuple[str, Callable, dict]:
    if importable("ai_edge_litert.interpreter"):
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        name = f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '')}".strip()
    else:
        tf = runtime.import_tensorflow()
        Interpreter, name = tf.lite.Interpreter, f"tensorflow {tf.__version__} (tf.lite.Interpreter)"
    with warnings.catch_warnings(), runtime._silence_native_stderr():  # deprecation notice, XNNPACK's "INFO:"
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path)) if _utf8(path) else Interpreter(model_content=path.read_bytes())
    source, result = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def predict(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(result["index"]).copy()

    return name, predict, {"input": source["name"], "output": result["name"]}


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
