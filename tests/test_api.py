"""cnnctl from Python: train on a config file, a dict or numpy arrays, silently; evaluate, predict and resume a
run; register a data source; mistakes raise the CLI's one-line errors as exceptions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

import cnnctl
from cnnctl.cli.app import app

# Its module-scoped training runs once: every test of this file on the same xdist worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group(__name__)

ROOT = Path(__file__).resolve().parent.parent

SMALL_CNN = [
    {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    "Flatten",
    {"Dense": {"units": 2, "activation": "softmax"}},
]


def halves(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """12×12 uint8 images whose bright half (left or right) is the class: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 12, 12)).astype(np.uint8)
    for image, label in zip(x, y):
        (image[:, 6:] if label else image[:, :6])[...] += 150
    return {"x_train": x, "y_train": np.where(y == 1, "right", "left")}


def config(**train) -> dict:
    return {
        "name": "halves",
        "seed": 1,
        "model": {"layers": SMALL_CNN},
        "train": {"epochs": 3, "batch_size": 32, **train},
        "evaluate": {"top_k": [1]},
    }


@pytest.fixture(scope="module")
def arrays_run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    data = halves(300)
    handler = signal.getsignal(signal.SIGTERM)
    given = config()
    result = cnnctl.train(given, arrays=data, runs_dir=runs_dir)
    assert given == config(), "the caller's dict must not change"
    assert signal.getsignal(signal.SIGTERM) is handler, "the library must not install signal handlers"
    return result, data


def test_training_on_arrays_returns_the_run_model_history_and_metrics(arrays_run):
    result, _ = arrays_run
    assert result.metrics["accuracy"] > 0.9  # the bright half is easy
    assert result.history["epoch"] == [1.0, 2.0, 3.0] and len(result.history["val_loss"]) == 3
    saved = np.load(result.path / "predictions.npz")
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(saved["y_true"], saved["y_prob"].argmax(1)))
    assert json.loads((result.path / "metrics.json").read_text())["accuracy"] == result.metrics["accuracy"]
    assert json.loads((result.path / "data.json").read_text())["class_names"] == ["left", "right"]
    assert result.model.output_shape == (None, 2)


def test_a_run_trained_on_arrays_rebuilds_from_its_folder_alone(arrays_run):
    result, data = arrays_run
    with np.load(result.path / "arrays.npz") as kept:
        assert np.array_equal(kept["x_train"], data["x_train"]) and list(kept["y_train"][:3]) == list(
            data["y_train"][:3]
        )
    assert "source: npz" in (result.path / "config.yaml").read_text()
    # A fresh process knows nothing of the arrays: the folder is enough for evaluate.
    out = CliRunner().invoke(app, ["evaluate", str(result.path)])
    assert out.exit_code == 0, out.output
    assert json.loads((result.path / "metrics.json").read_text())["accuracy"] == result.metrics["accuracy"]
    assert cnnctl.evaluate(result)["accuracy"] == result.metrics["accuracy"]


def test_predict_takes_an_array_in_training_units(arrays_run):
    result, data = arrays_run
    predictions = cnnctl.predict(result, data["x_train"][:20])
    assert predictions.class_names == ["left", "right"] and predictions.probabilities.shape == (20, 2)
    expected = result.model.predict(data["x_train"][:20, ..., None].astype("float32"), verbose=0).argmax(1)
    assert list(predictions.probabilities.argmax(1)) == list(expected)


def test_resume_extends_a_completed_run_and_says_when_there_is_nothing_to_do(arrays_run):
    result, _ = arrays_run
    nothing = cnnctl.resume(result)
    assert nothing.model is None and "already completed (3 epochs of 3)" in nothing.note
    longer = cnnctl.resume(result.path, epochs=4)
    assert longer.history["epoch"] == [1.0, 2.0, 3.0, 4.0] and longer.note is None


def test_a_registered_source_is_read_and_its_name_is_checked(tmp_path, monkeypatch):
    from cnnctl.config import sources

    monkeypatch.setattr(sources, "_registered", {})  # the registration ends with this test, not with the worker
    calls = []

    def loader(data_cfg):
        calls.append(data_cfg.source)
        return halves(200, seed=3)

    cnnctl.register_source("halves_py", loader)
    result = cnnctl.train({**config(epochs=1), "data": {"source": "halves_py"}}, runs_dir=tmp_path)
    assert calls == ["halves_py"] and (result.path / "model.keras").is_file()
    assert json.loads((result.path / "data.json").read_text())["source"] == "halves_py"
    with pytest.raises(cnnctl.ConfigError, match=r"is a built-in source"):
        cnnctl.register_source("digits", loader)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda d: cnnctl.train({"model": {"layers": ["Flatten"]}, "train": {"epoch": 2}}, runs_dir=d),
            cnnctl.ConfigError,
            "config: train.epoch: unknown key; did you mean 'epochs'? (e.g. epochs: 10)",
        ),
        (
            lambda d: cnnctl.train({**config(), "data": {"source": "digits"}}, arrays=halves(50), runs_dir=d),
            cnnctl.ConfigError,
            "data.source: digits, but arrays were passed too",
        ),
        (
            lambda d: cnnctl.train(config(), arrays={"x_train": np.zeros((4, 12, 12))}, runs_dir=d),
            cnnctl.DataError,
            "arrays passed to cnnctl.train needs x_train and y_train",
        ),
        (
            lambda d: cnnctl.train({**config(), "data": {"source": "arrays"}}, runs_dir=d),
            cnnctl.DataError,
            "data.source: arrays are passed from Python",
        ),
        (
            lambda d: cnnctl.train({**config(), "data": {"source": "nowhere"}}, runs_dir=d),
            cnnctl.ConfigError,
            "or register it from Python first: cnnctl.register_source(name, loader)",
        ),
        (lambda d: cnnctl.evaluate(d / "no-such-run"), cnnctl.RunError, "no such run"),
        # Arguments of the wrong type were raw TypeErrors from pathlib, or a string read a character at a time.
        (lambda d: cnnctl.train(5, runs_dir=d), cnnctl.ConfigError, "config: int 5: give a YAML file's path"),
        (lambda d: cnnctl.check(None), cnnctl.ConfigError, "config: NoneType None: give a YAML file's path"),
        (
            lambda d: cnnctl.train(config(), arrays=halves(50), overrides="train.epochs=1", runs_dir=d),
            cnnctl.ConfigError,
            "overrides: 'train.epochs=1': give a list of key.path=value strings",
        ),
        (lambda d: cnnctl.lr_find(None), cnnctl.ConfigError, "config: NoneType None"),
        (
            lambda d: cnnctl.train(config(), arrays={**halves(50), "x_val": np.zeros((4, 12, 12))}, runs_dir=d),
            cnnctl.DataError,
            "data: arrays passed to cnnctl.train has only one of x_val and y_val; give both or neither",
        ),
    ],
)
def test_mistakes_raise_the_command_lines_one_line_errors(tmp_path, call, error, message):
    with pytest.raises(error) as caught:
        call(tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "data.path" not in str(caught.value) or "data.path" in message
    assert not any(tmp_path.iterdir()), "a mistake leaves no run folder behind"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda run: cnnctl.predict(run, None), "inputs: NoneType None: give a path, a list of paths or a numpy array"),
        (lambda run: cnnctl.predict(run, 5), "inputs: int 5: give a path"),
        (lambda run: cnnctl.predict(run, np.zeros((2, 12, 12)), top_k="3"), "--top-k '3': give a whole number"),
        (lambda run: cnnctl.predict(run, np.zeros((2, 12, 12)), min_confidence="0.9"), "give a probability"),
        (lambda run: cnnctl.predict(run, np.zeros((2, 12, 12)) * 1j), "dtype complex128; expected real numbers"),
        (lambda run: cnnctl.explain(run, None), "inputs: NoneType None"),
    ],
    ids=["none", "int", "top-k-text", "confidence-text", "complex", "explain-none"],
)
def test_predict_arguments_of_the_wrong_kind_are_one_line(arrays_run, call, message):
    with pytest.raises((cnnctl.ConfigError, cnnctl.DataError)) as caught:
        call(arrays_run[0].run)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda run: cnnctl.cross_validate(run / "config.yaml", folds="5"), "--folds '5': give a whole number"),
        (lambda run: cnnctl.explain(run, np.zeros((1, 12, 12)), layer=3), "--layer 3: give a layer's name"),
        (lambda run: cnnctl.export(run, None), "--format None: give saved_model, onnx or tflite"),
        (lambda run: cnnctl.filter_image(None), "IMAGE None: give a picture's path"),
        (lambda run: cnnctl.plot(run, feature_maps=np.zeros((8, 8))), "--feature-maps <ndarray>: give an image"),
        (lambda run: cnnctl.describe_data(run / "config.yaml", 5), "--out 5: give a PNG's path"),
    ],
    ids=["folds", "layer", "format", "image", "feature-maps", "out"],
)
def test_arguments_of_the_wrong_type_name_the_argument(arrays_run, call, message):
    """Each was a raw TypeError or AttributeError from pathlib, numpy or str methods."""
    with pytest.raises(cnnctl.ConfigError) as caught:
        call(arrays_run[0].run.path)
    assert str(caught.value).startswith(message)


def test_predict_takes_nested_lists_as_an_array(arrays_run):
    x = np.random.default_rng(0).random((3, 12, 12)).astype(np.float32)
    run = arrays_run[0].run
    from_lists = cnnctl.predict(run, x.tolist())
    np.testing.assert_allclose(from_lists.probabilities, cnnctl.predict(run, x).probabilities, atol=1e-6)


def test_building_leaves_keras_global_precision_as_it_was():
    import keras

    from cnnctl.training.prepare import prepare

    before = keras.mixed_precision.global_policy().name
    prepared = prepare(
        cnnctl.load_config(
            {
                **config(mixed_precision="mixed_bfloat16"),
                "data": {"source": "digits"},
                "model": {"layers": ["Flatten", {"Dense": {"units": 10}}]},
            }
        )
    )
    assert prepared.policy == "mixed_bfloat16" and prepared.model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before


def test_help_and_import_stay_light():
    code = (
        "import sys, cnnctl; print(sorted(m for m in ('numpy', 'pydantic', 'tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "[]"
