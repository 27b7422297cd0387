"""Keras 3 backends: the same cnnctl on JAX (KERAS_BACKEND=jax, the `cnnctl[jax]` extra) with TensorFlow hidden
from the import system, as on a machine that has only JAX — train, resume and predict in one fresh interpreter
(the backend is chosen once per process). TensorFlow installed beside JAX (tf.data batches fed to JAX) was tried
by hand (benchmarks/RESULTS.md). `evaluate` and `cv` run the same
functions as train's evaluation and training (tried on JAX by hand: benchmarks/RESULTS.md); each JAX run costs
seconds of XLA compiling on CPU, so the suite runs the smallest slice that crosses every backend-specific path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnctl import runtime

ROOT = Path(__file__).resolve().parent.parent

SLICE = """
import importlib.abc, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):  # `import tensorflow` fails, as where it is not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import cnnctl

config = {
    "name": "jax-slice", "seed": 3,
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {"layers": [{"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, "Flatten",
                         {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.01}},
}
runs = sys.argv[1]
first = cnnctl.train(config, runs_dir=runs)
resumed = cnnctl.resume(first.path, epochs=2)
predictions = cnnctl.predict(first.path, np.load(sys.argv[2]))
import keras
print(json.dumps({
    "backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules, "path": str(first.path), "first_accuracy": first.metrics["accuracy"],
    "resumed_epochs": resumed.history["epoch"],
    "resumed_accuracy": resumed.metrics["accuracy"], "predicted": predictions.probabilities.tolist(),
}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install 'cnnctl[jax]')")
def test_train_resume_and_predict_on_jax_without_tensorflow(tmp_path):
    from sklearn.datasets import load_digits

    images = load_digits().images[:6, :, :, None]
    np.save(tmp_path / "six.npy", images)
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SLICE, str(tmp_path / "runs"), str(tmp_path / "six.npy")],
                          capture_output=True, text=True, cwd=ROOT, env=environment, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and result["tensorflow"] is False
    run = Path(result["path"])
    environment_json = json.loads((run / "environment.json").read_text())
    assert environment_json["backend"] == "jax" and "jax" in environment_json["versions"]
    assert "tensorflow" not in environment_json["versions"]
    assert environment_json["status"] == "completed" and environment_json["resumed"]
    assert result["resumed_epochs"] == [1.0, 2.0] and result["resumed_accuracy"] > 0.8  # digits after 2 epochs
    # model.keras is backend-neutral: TensorFlow (this process) loads it and predicts what JAX predicted.
    from cnnctl.evaluation.scoring import load_model
    from cnnctl.runs.folder import Run

    runtime.import_tensorflow()
    probabilities = load_model(Run(run)).predict(np.load(tmp_path / "six.npy").astype(np.float32), verbose=0)
    np.testing.assert_allclose(result["predicted"], probabilities, atol=1e-5)
