"""The bad-input catalogue: each mistake a user can make, through the CLI, gives exactly one `error:` line
that says what is wrong, where, and what would be right; exit code 2; no traceback.

Most cases fail before training (`check` validates, loads the data and builds the model), so the table is
cheap. `{d}` in an expected message is the test's temporary folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

LAYERS = """model:
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""


def layers(*entries: str) -> str:
    return "model: {layers: [" + ", ".join(entries) + "]}\n"


class Workspace:
    """Builds the bad inputs of one case inside a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"

    def config(self, text: str, name: str = "c.yaml") -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)

    def npz_config(self, extra: str = "", sections: str = "", **arrays: np.ndarray) -> str:
        np.savez(self.root / "data.npz", **arrays)
        return self.config("data: {source: npz, path: data.npz" + extra + "}\n" + sections + LAYERS)

    def run(
        self, name: str = "20260101-000000-r", environment: object = None, checkpoint: object = None, **files: bytes
    ) -> str:
        """A fake run folder: a valid config.yaml, the given environment.json (or none), other files as given."""
        path = self.runs / name
        path.mkdir(parents=True)
        (path / "config.yaml").write_text(LAYERS)
        if environment is not None:
            text = environment if isinstance(environment, str) else json.dumps(environment)
            (path / "environment.json").write_text(text)
        if checkpoint is not None:
            (path / "checkpoints").mkdir()
            (path / "checkpoints" / "training_metadata.json").write_text(json.dumps(checkpoint))
        for file_name, content in files.items():
            (path / file_name.replace("_", ".", 1)).write_bytes(content)
        return str(path)


def images(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 8, 8)).astype(np.float32)


def labels(n: int, classes: int = 10) -> np.ndarray:
    return np.arange(n) % classes


@dataclass
class Case:
    id: str
    args: Callable[[Workspace], list[str]]
    expected: str  # the whole output, `{d}` standing for the temporary folder


CASES = [
    # ---------------------------------------------------------------- YAML syntax (with line numbers)
    Case(
        "yaml-unclosed-bracket",
        lambda w: ["check", w.config("model: {layers: [Flatten\n")],
        "error: {d}/c.yaml: line 2, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    Case(
        "yaml-tab-indent",
        lambda w: ["check", w.config("model:\n\tlayers: [Flatten]\n")],
        "error: {d}/c.yaml: line 2, column 1: invalid YAML: found character '\\t' that cannot start any token",
    ),
    Case(
        "yaml-duplicate-key",
        lambda w: ["check", w.config(LAYERS + "train: {epochs: 2}\ntrain: {epochs: 3}\n")],
        "error: {d}/c.yaml: line 7, column 1: invalid YAML: 'train' appears twice in the same mapping "
        "(first on line 6); keep one",
    ),
    Case(
        "yaml-python-tag",
        lambda w: ["check", w.config("model: !!python/object/apply:os.system ['echo hi']\n")],
        "error: {d}/c.yaml: line 1, column 8: invalid YAML: the tag !!python/object/apply:os.system is refused: "
        "configs are plain YAML and never create Python objects",
    ),
    Case(
        "yaml-empty-file",
        lambda w: ["check", w.config("")],
        "error: {d}/c.yaml: the file is empty; it needs at least a model.layers list",
    ),
    Case(
        "yaml-top-level-list",
        lambda w: ["check", w.config("- a\n- b\n")],
        "error: {d}/c.yaml: the top level must be a mapping of sections (name, seed, data, model, train, "
        "evaluate), got list",
    ),
    Case(
        "yaml-not-utf8",
        lambda w: ["check", (Path(w.config("")).write_bytes(b"name: caf\xe9\n"), w.root / "c.yaml")[1]],
        "error: {d}/c.yaml: not UTF-8 text (byte 0xe9 at position 9); save the file as UTF-8",
    ),
    # ---------------------------------------------------------------- wrong types and values
    Case(
        "epochs-not-a-number",
        lambda w: ["check", w.config(LAYERS + "train: {epochs: ten}\n")],
        "error: {d}/c.yaml: train.epochs: must be an integer (got ten)",
    ),
    Case(
        "epochs-zero",
        lambda w: ["check", w.config(LAYERS + "train: {epochs: 0}\n")],
        "error: {d}/c.yaml: train.epochs: must be greater than 0 (got 0)",
    ),
    Case(
        "batch-size-negative",
        lambda w: ["check", w.config(LAYERS + "train: {batch_size: -5}\n")],
        "error: {d}/c.yaml: train.batch_size: must be greater than 0 (got -5)",
    ),
    Case(
        "validation-split-above-one",
        lambda w: ["check", w.config(LAYERS + "data: {validation_split: 1.5}\n")],
        "error: {d}/c.yaml: data.validation_split: must be less than 1 (got 1.5)",
    ),
    Case(
        "layers-not-a-list",
        lambda w: ["check", w.config("model: {layers: Conv2D}\n")],
        "error: {d}/c.yaml: model.layers: must be a list of layers, e.g. [Flatten, {Dense: {units: 10}}] "
        "(got 'Conv2D')",
    ),
    Case(
        "seed-a-list",
        lambda w: ["check", w.config(LAYERS + "seed: [1]\n")],
        "error: {d}/c.yaml: seed: must be an integer (got [1])",
    ),
    Case(
        "normalize-not-bool",
        lambda w: ["check", w.config(LAYERS + "data: {normalize: maybe}\n")],
        "error: {d}/c.yaml: data.normalize: must be true or false (got maybe)",
    ),
    Case(
        "layer-kwargs-not-a-mapping",
        lambda w: ["check", w.config(layers("{Conv2D: 32}", "Flatten", "{Dense: {units: 10}}"))],
        "error: {d}/c.yaml: model.layers: the arguments of Conv2D must be a mapping like {filters: 32} (got 32)",
    ),
    Case(
        "top-k-zero",
        lambda w: ["check", w.config(LAYERS + "evaluate: {top_k: [0]}\n")],
        "error: {d}/c.yaml: evaluate.top_k: every k must be a positive integer (got [0])",
    ),
    Case(
        "patience-negative",
        lambda w: ["check", w.config(LAYERS + "train: {early_stopping: {patience: -1}}\n")],
        "error: {d}/c.yaml: train.early_stopping.patience: must be greater than or equal to 0 (got -1)",
    ),
    Case(
        "run-name-with-slash",
        lambda w: ["check", w.config(LAYERS + "name: ../evil\n")],
        "error: {d}/c.yaml: name: must be letters, digits, '.', '_' or '-' (got '../evil')",
    ),
    Case(
        "file-source-without-path",
        lambda w: ["check", w.config(LAYERS + "data: {source: npz}\n")],
        "error: {d}/c.yaml: data: source 'npz' needs data.path (a file or folder)",
    ),
    # ---------------------------------------------------------------- unknown names
    Case(
        "unknown-section",
        lambda w: ["check", w.config(LAYERS + "trian: {epochs: 2}\n")],
        "error: {d}/c.yaml: trian: unknown key; did you mean 'train'?",
    ),
    Case(
        "unknown-key",
        lambda w: ["check", w.config(LAYERS + "train: {epoch: 2}\n")],
        "error: {d}/c.yaml: train.epoch: unknown key; did you mean 'epochs'? (e.g. epochs: 10)",
    ),
    Case(
        "unknown-source",
        lambda w: ["check", w.config(LAYERS + "data: {source: mnistt}\n")],
        "error: {d}/c.yaml: data.source: must be one of 'digits', 'mnist', 'fashion_mnist', 'cifar10', "
        "'cifar100', 'npz', 'npy', 'idx', 'csv', 'folder' or 'manifest' (got mnistt); did you mean 'mnist'?",
    ),
    Case(
        "layer-wrong-case",
        lambda w: [
            "check",
            w.config(layers("{conv2d: {filters: 4, kernel_size: 3}}", "Flatten", "{Dense: {units: 10}}")),
        ],
        "error: {d}/c.yaml: model.layers[0]: unknown layer 'conv2d'; did you mean Conv2D?",
    ),
    Case(
        "layer-unknown",
        lambda w: ["check", w.config(layers("{Convolution9D: {filters: 4}}", "Flatten", "{Dense: {units: 10}}"))],
        "error: {d}/c.yaml: model.layers[0]: unknown layer 'Convolution9D'; did you mean Convolution3D?",
    ),
    Case(
        "augment-layer-unknown",
        lambda w: ["check", w.config(LAYERS + "data: {augment: [RandomFlipp]}\n")],
        "error: {d}/c.yaml: data.augment[0]: unknown layer 'RandomFlipp'; did you mean RandomFlip?",
    ),
    Case(
        "optimizer-unknown",
        lambda w: ["check", w.config(LAYERS + "train: {optimizer: adamm}\n")],
        "error: {d}/c.yaml: train.optimizer.name: unknown optimizer 'adamm'; did you mean 'adam'? available: "
        "adadelta, adafactor, adagrad, adam, adamax, adamw, ftrl, lamb, lion, multioptimizer, muon, nadam, "
        "rmsprop, schedulefreeadamw, sgd",
    ),
    Case(
        "loss-unknown",
        lambda w: ["check", w.config(LAYERS + "train: {loss: sparse_categorical_crossentropi}\n")],
        "error: {d}/c.yaml: train.loss: unknown loss 'sparse_categorical_crossentropi'; did you mean "
        "'sparse_categorical_crossentropy'?",
    ),
    Case(
        "activation-unknown",
        lambda w: [
            "check",
            w.config(
                layers("{Conv2D: {filters: 4, kernel_size: 3, activation: rellu}}", "Flatten", "{Dense: {units: 10}}")
            ),
        ],
        "error: {d}/c.yaml: model.layers[0] (Conv2D): unknown activation 'rellu'; did you mean 'relu'?",
    ),
    Case(
        "metric-unknown",
        lambda w: ["check", w.config(LAYERS + "train: {metrics: [acuracy]}\n")],
        "error: {d}/c.yaml: train.metrics[0]: unknown metric 'acuracy'; did you mean 'accuracy'?",
    ),
    # ---------------------------------------------------------------- code in a config
    Case(
        "lambda-layer",
        lambda w: ["check", w.config(layers("{Lambda: {function: print}}", "Flatten", "{Dense: {units: 10}}"))],
        "error: {d}/c.yaml: model.layers[0] (Lambda): Lambda is refused: configs must not run code (the model "
        "input is added for you from model.input_shape)",
    ),
    Case(
        "module-key-in-kwargs",
        lambda w: [
            "check",
            w.config(
                layers(
                    "{Conv2D: {filters: 4, kernel_size: 3, kernel_initializer: {class_name: Evil, module: os}}}",
                    "Flatten",
                    "{Dense: {units: 10}}",
                )
            ),
        ],
        "error: {d}/c.yaml: model.layers[0] (Conv2D): 'module: os' is refused: configs must not load code",
    ),
    # ---------------------------------------------------------------- bad layer arguments
    Case(
        "kwarg-stride",
        lambda w: [
            "check",
            w.config(layers("{Conv2D: {filters: 4, kernel_size: 3, stride: 2}}", "Flatten", "{Dense: {units: 10}}")),
        ],
        "error: {d}/c.yaml: model.layers[0] (Conv2D): unknown argument 'stride' (did you mean 'strides'?); "
        "Conv2D accepts: filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation, "
        "use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, "
        "activity_regularizer, kernel_constraint, bias_constraint, rank, lora_rank, lora_alpha, trainable, "
        "dtype, autocast, name",
    ),
    Case(
        "dense-negative-units",
        lambda w: ["check", w.config(layers("Flatten", "{Dense: {units: -3}}"))],
        "error: {d}/c.yaml: model.layers[1] (Dense): Received an invalid value for `units`, expected a positive "
        "integer. Received: units=-3",
    ),
    Case(
        "dropout-rate-above-one",
        lambda w: ["check", w.config(layers("Flatten", "{Dropout: {rate: 2}}", "{Dense: {units: 10}}"))],
        "error: {d}/c.yaml: model.layers[1] (Dropout): Invalid value received for argument `rate`. Expected a "
        "float value between 0 and 1. Received: rate=2",
    ),
    # ---------------------------------------------------------------- impossible shapes
    Case(
        "kernel-larger-than-input",
        lambda w: [
            "check",
            w.config(layers("{Conv2D: {filters: 4, kernel_size: 10}}", "Flatten", "{Dense: {units: 10}}")),
        ],
        "error: {d}/c.yaml: model.layers[0] (Conv2D): the kernel or pool window is larger than its input "
        "(None, 8, 8, 1); use padding: same, a smaller kernel_size, or fewer pooling layers before it",
    ),
    Case(
        "dense-before-flatten",
        lambda w: ["check", w.config(layers("{Conv2D: {filters: 4, kernel_size: 3}}", "{Dense: {units: 10}}"))],
        "error: {d}/c.yaml: model.layers[1] (Dense): output shape (None, 6, 6, 10) is not flat: add Flatten (or "
        "GlobalAveragePooling) before the Dense layers",
    ),
    Case(
        "wrong-final-units",
        lambda w: ["check", w.config(layers("Flatten", "{Dense: {units: 5}}"))],
        "error: {d}/c.yaml: model.layers[1] (Dense): gives 5 outputs but the data has 10 classes; set units: 10 "
        "on the last layer",
    ),
    Case(
        "input-shape-does-not-fit",
        lambda w: ["check", w.config("model: {input_shape: [5, 5, 1], layers: [Flatten, {Dense: {units: 10}}]}\n")],
        "error: {d}/c.yaml: model.input_shape: [5, 5, 1] does not fit x_train examples of shape [8, 8]",
    ),
    Case(
        "class-weight-out-of-range",
        lambda w: ["check", w.config(LAYERS + "train: {class_weight: {12: 2.0}}\n")],
        "error: {d}/c.yaml: train.class_weight: class index 12 is out of range; the data has 10 classes (0..9)",
    ),
    # ---------------------------------------------------------------- data
    Case(
        "data-file-missing",
        lambda w: ["check", w.config("data: {source: npz, path: nothere.npz}\n" + LAYERS)],
        "error: {d}/c.yaml: data.path: {d}/nothere.npz does not exist",
    ),
    Case(
        "data-file-empty",
        lambda w: [
            "check",
            ((w.root / "data.npz").write_bytes(b""), w.config("data: {source: npz, path: data.npz}\n" + LAYERS))[1],
        ],
        "error: {d}/c.yaml: data.path: {d}/data.npz: not a readable .npz file (No data left in file)",
    ),
    Case(
        "csv-file-empty",
        lambda w: [
            "check",
            ((w.root / "e.csv").write_text(""), w.config("data: {source: csv, path: e.csv, shape: [8, 8]}\n" + LAYERS))[
                1
            ],
        ],
        "error: {d}/c.yaml: data.path: {d}/e.csv is empty; expected a header or data row like label,pixel1,pixel2,...",
    ),
    Case(
        "data-without-labels",
        lambda w: ["check", w.npz_config(x_train=images(20))],
        "error: {d}/c.yaml: data.path: {d}/data.npz has arrays ['x_train']; it needs x_train and y_train (and optionally "
        "x_test, y_test, x_val, y_val)",
    ),
    Case(
        "test-labels-out-of-range",
        lambda w: [
            "check",
            w.npz_config(x_train=images(40), y_train=labels(40), x_test=images(10), y_test=np.full(10, 12)),
        ],
        "error: {d}/c.yaml: data: y_test has labels [12] that never occur in y_train",
    ),
    Case(
        "only-one-class",
        lambda w: ["check", w.npz_config(x_train=images(40), y_train=np.zeros(40, int))],
        "error: {d}/c.yaml: data: y_train has only one class (0); a classifier needs at least two",
    ),
    Case(
        "x-y-lengths-differ",
        lambda w: ["check", w.npz_config(x_train=images(40), y_train=labels(30))],
        "error: {d}/c.yaml: data: x_train has 40 examples but y_train has 30 labels",
    ),
    Case(
        "nan-in-data",
        lambda w: [
            "check",
            w.npz_config(
                x_train=np.where(np.arange(40 * 64).reshape(40, 8, 8) == 70, np.nan, 0.5).astype(np.float32),
                y_train=labels(40),
            ),
        ],
        "error: {d}/c.yaml: data: x_train has NaN or infinite values in 1 of 40 examples (first at index 1); clean or drop them",
    ),
    Case(
        "non-integer-labels",
        lambda w: ["check", w.npz_config(x_train=images(40), y_train=labels(40) + 0.5)],
        "error: {d}/c.yaml: data: y_train has non-integer labels (e.g. [0.5]); labels must be class indices or names",
    ),
    Case(
        "text-instead-of-pixels",
        lambda w: ["check", w.npz_config(x_train=np.full((40, 8, 8), "a"), y_train=labels(40))],
        "error: {d}/c.yaml: data: x_train has dtype <U1; expected numbers",
    ),
    Case(
        "split-leaves-class-empty",
        lambda w: [
            "check",
            w.npz_config(x_train=images(201), y_train=np.r_[labels(200, 9), 9], x_test=images(20), y_test=labels(20)),
        ],
        "error: {d}/c.yaml: data.validation_split: class '9' has only 1 example, so the split would leave one side without "
        "it; stratified splits need at least 2 examples per class",
    ),
    Case(
        "split-too-small-for-classes",
        lambda w: [
            "check",
            w.npz_config(
                ", validation_split: 0.01",
                x_train=images(200),
                y_train=labels(200),
                x_test=images(20),
                y_test=labels(20),
            ),
        ],
        "error: {d}/c.yaml: data.validation_split: 0.01 of 200 examples is 2, too small to hold all 10 classes; use at "
        "least 0.05, or more data",
    ),
    Case(
        "evaluate-split-absent",
        lambda w: [
            "check",
            w.npz_config(
                ", validation_split: 0",
                "evaluate: {split: val}\n",
                x_train=images(200),
                y_train=labels(200),
                x_test=images(20),
                y_test=labels(20),
            ),
        ],
        "error: {d}/c.yaml: evaluate.split: this data has no val split (it has train, test); choose one of those",
    ),
    Case(
        "evaluate-split-unknown",
        lambda w: ["check", w.config("evaluate: {split: train}\n" + LAYERS)],
        "error: {d}/c.yaml: evaluate.split: must be one of 'test' or 'val' (got train)",
    ),
    # ---------------------------------------------------------------- paths and the command line
    Case(
        "config-is-a-folder",
        lambda w: ["check", str(w.root)],
        "error: {d}: is a folder; give a YAML config file such as configs/digits.yaml",
    ),
    Case("config-missing", lambda w: ["check", str(w.root / "nope.yaml")], "error: {d}/nope.yaml: no such config file"),
    Case(
        "set-without-equals",
        lambda w: ["check", w.config(LAYERS), "--set", "train.epochs"],
        "error: --set train.epochs: expected key.path=value, e.g. --set train.epochs=3",
    ),
    Case(
        "set-without-key",
        lambda w: ["check", w.config(LAYERS), "--set", "=3"],
        "error: --set =3: expected key.path=value, e.g. --set train.epochs=3",
    ),
    Case(
        "set-unknown-key",
        lambda w: ["check", w.config(LAYERS), "--set", "train.epohcs=3"],
        "error: --set train.epohcs=3: train.epohcs: unknown key; did you mean 'epochs'? (e.g. epochs: 10)",
    ),
    Case(
        "set-missing-list-entry",
        lambda w: ["check", w.config(LAYERS), "--set", "model.layers[7].Dense.units=3"],
        "error: --set model.layers[7].Dense.units=3: model.layers[7]: no such list entry",
    ),
    Case(
        "set-negative-epochs",
        lambda w: ["check", w.config(LAYERS), "--set", "train.epochs=-2"],
        "error: --set train.epochs=-2: train.epochs: must be greater than 0 (got -2)",
    ),
    Case(
        "train-without-config",
        lambda w: ["train", "--runs-dir", str(w.runs)],
        "error: train: give a config file, e.g. cnnctl train configs/digits.yaml, or --resume RUN",
    ),
    # ---------------------------------------------------------------- run folders
    Case(
        "run-missing-model",
        lambda w: ["evaluate", w.run(environment={})],
        "error: {d}/runs/20260101-000000-r: missing model.keras; is this a finished cnnctl run? (`cnnctl runs` "
        "lists them)",
    ),
    Case(
        "not-a-run-folder",
        lambda w: ["plot", str(w.root)],
        "error: {d}: not a cnnctl run folder (no config.yaml and environment.json)",
    ),
    Case(
        "run-without-environment",
        lambda w: ["plot", w.run()],
        "error: {d}/runs/20260101-000000-r: not a cnnctl run folder (no config.yaml and environment.json)",
    ),
    Case(
        "run-id-escapes-runs-dir",
        lambda w: ["evaluate", "../x", "--runs-dir", str(w.runs)],
        "error: ../x: no such run folder",
    ),
    Case(
        "unknown-run-id",
        lambda w: ["evaluate", (w.run(environment={}), "20260101-000000-q")[1], "--runs-dir", str(w.runs)],
        "error: 20260101-000000-q: no such run in {d}/runs; did you mean 20260101-000000-r?",
    ),
    Case(
        "last-without-runs",
        lambda w: ["plot", "last", "--runs-dir", str(w.root / "none")],
        "error: no runs in {d}/none; train one first: cnnctl train configs/digits.yaml",
    ),
    Case(
        "evaluate-unknown-split",
        lambda w: ["evaluate", "last", "--split", "train"],
        "error: --split train: must be test or val",
    ),
    Case(
        "damaged-model-file",
        lambda w: ["evaluate", w.run(environment={}, model_keras=b"garbage")],
        "error: {d}/runs/20260101-000000-r/model.keras: not a Keras model file (a .keras file is a zip archive); "
        "it is damaged or was never finished; train the run again or resume it",
    ),
    # ---------------------------------------------------------------- resume
    Case(
        "resume-without-checkpoints",
        lambda w: ["train", "--resume", w.run(environment={"status": "interrupted"})],
        "error: {d}/runs/20260101-000000-r: no training state in checkpoints/ to resume from (the run stopped "
        "before its first epoch ended, or an older cnnctl made it); train it anew: cnnctl train "
        "{d}/runs/20260101-000000-r/config.yaml",
    ),
    Case(
        "resume-with-config-too",
        lambda w: ["train", w.config(LAYERS), "--resume", "last"],
        "error: train: give CONFIG or --resume RUN, not both; a resumed run uses its own config.yaml (drop {d}/c.yaml)",
    ),
    Case(
        "resume-with-name",
        lambda w: ["train", "--resume", "last", "--name", "other"],
        "error: --name: a resumed run keeps its folder and name; drop --name",
    ),
    Case(
        "resume-changing-the-model",
        lambda w: ["train", "--resume", "last", "--set", "model.layers=[]"],
        "error: --set model.layers=[]: a resumed run keeps its config; only train.epochs, train.batch_size and "
        "train.fine_tune.epochs can change (e.g. --set train.epochs=20)",
    ),
    Case(
        "resume-fewer-epochs",
        lambda w: [
            "train",
            "--resume",
            w.run(environment={"status": "interrupted"}, checkpoint={"epoch": 3, "weights": "epoch-0003.weights.h5"}),
            "--set",
            "train.epochs=2",
        ],
        "error: --set train.epochs=2: {d}/runs/20260101-000000-r has already trained 3 epochs; give more than 3 "
        "to extend it",
    ),
    Case(
        "resume-diverged-run",
        lambda w: [
            "train",
            "--resume",
            w.run(environment={"status": "failed", "error": "loss became NaN or infinite"}),
        ],
        "error: {d}/runs/20260101-000000-r: cannot resume: its loss became NaN or infinite and would again; train "
        "anew with a lower learning rate: cnnctl train {d}/runs/20260101-000000-r/config.yaml "
        "--set train.optimizer.learning_rate=0.0001",
    ),
    Case(
        "resume-damaged-environment",
        lambda w: ["train", "--resume", w.run(environment="{not json")],
        "error: {d}/runs/20260101-000000-r/environment.json: not valid JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))",
    ),
]


def test_the_catalogue_is_big_and_distinct():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    assert len({case.expected for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_error_line(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `last` and the default runs dir look here, never in the repository
    monkeypatch.delenv("CNNCTL_RUNS_DIR", raising=False)
    args = [str(arg) for arg in case.args(Workspace(tmp_path))]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert result.output.strip() == case.expected.replace("{d}", str(tmp_path))
