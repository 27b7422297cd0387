"""Multi-label classification (`data.multi_label`): generated pictures in which a circle, a square and a triangle
are each present or absent are learnt to micro-F1 ≥ 0.9; every number of metrics.json is recomputed from
predictions.npz with scikit-learn; predict, the figures, the report, cv and tune work on label sets; and every
mistake that needs one label per example is one line that says what to do instead."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_quiet_console import new_user_runs
from typer.testing import CliRunner

from cnnctl.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from make_shapes_multilabel import SHAPES, write_shapes_multilabel  # noqa: E402

pytestmark = pytest.mark.xdist_group(__name__)
runner = CliRunner()

LAYERS = [
    {"Conv2D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Conv2D": {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Conv2D": {"filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    "GlobalMaxPooling2D",
    {"Dense": {"units": 3, "activation": "sigmoid"}},
]
TRAIN = {"epochs": 8, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.003}, "early_stopping": False}


def shapes_config(path: Path, **changes) -> dict:
    config = {
        "name": "shapes",
        "seed": 42,
        "data": {
            "source": "manifest",
            "path": str(path),
            "label_column": "labels",
            "split_column": "split",
            "multi_label": True,
            "color_mode": "grayscale",
            "validation_split": 0.15,
        },
        "model": {"layers": LAYERS},
        "train": TRAIN,
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def write(tmp_path: Path, config: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shapes")
    write_shapes_multilabel(folder, count=600, seed=0)
    return folder


@pytest.fixture(scope="module")
def shapes_run(shapes, tmp_path_factory) -> tuple[Path, str]:
    """The shipped configs/shapes_multilabel.yaml on the generated pictures, 8 epochs (about 15 s on 2 cores): the
    run folder and the console."""
    tmp_path = tmp_path_factory.mktemp("shapes-run")
    shipped = ROOT / "configs" / "shapes_multilabel.yaml"
    overrides = [f"data.path={shapes / 'manifest.csv'}", "train.epochs=8", "train.early_stopping=false", "name=shapes"]
    result = runner.invoke(
        app,
        ["train", str(shipped), "--runs-dir", str(tmp_path / "runs"), *[f"--set={value}" for value in overrides]],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    return run, result.output


def test_three_independent_shapes_are_learnt_to_micro_f1_of_0_9(shapes_run):
    run, output = shapes_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["multi_label"] is True and metrics["split"] == "test" and metrics["num_examples"] == 120
    assert metrics["f1_micro"] >= 0.9, metrics["f1_micro"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["loss"] == "binary_crossentropy"  # the multi-label default, written down
    assert "f1 micro" in output and "subset accuracy" in output and "each label at its decision threshold" in output
    data = json.loads((run / "data.json").read_text())
    assert data["multi_label"] is True and data["class_names"] == list(SHAPES)


def test_every_multi_label_metric_is_recomputed_from_the_predictions(shapes_run):
    from sklearn import metrics as skm

    run, _ = shapes_run
    metrics = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as saved:
        y_true, y_prob, y_pred, thresholds = saved["y_true"], saved["y_prob"], saved["y_pred"], saved["thresholds"]
        assert [str(name) for name in saved["class_names"]] == list(SHAPES)
    assert y_true.shape == y_prob.shape == y_pred.shape == (120, 3)
    assert np.array_equal(y_pred, (y_prob >= thresholds).astype(np.uint8))
    assert metrics["thresholds"] == pytest.approx(dict(zip(SHAPES, thresholds.tolist())))
    assert metrics["subset_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert metrics["hamming_loss"] == pytest.approx(skm.hamming_loss(y_true, y_pred))
    for average in ("micro", "macro", "weighted", "samples"):
        assert metrics[f"f1_{average}"] == pytest.approx(skm.f1_score(y_true, y_pred, average=average))
    for average in ("micro", "macro"):
        assert metrics[f"precision_{average}"] == pytest.approx(skm.precision_score(y_true, y_pred, average=average))
        assert metrics[f"recall_{average}"] == pytest.approx(skm.recall_score(y_true, y_pred, average=average))
    assert metrics["mean_average_precision"] == pytest.approx(skm.average_precision_score(y_true, y_prob))
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, y_prob))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for k, name in enumerate(SHAPES):
        label = metrics["per_label"][name]
        assert (label["precision"], label["recall"], label["f1"]) == pytest.approx((precision[k], recall[k], f1[k]))
        assert label["support"] == support[k] and label["threshold"] == pytest.approx(float(thresholds[k]))
    report = json.loads((run / "classification_report.json").read_text())
    assert report["micro avg"]["f1-score"] == pytest.approx(metrics["f1_micro"])


def test_thresholds_come_from_the_validation_split_and_maximise_each_labels_f1(shapes, shapes_run):
    """Each label's threshold gives the best F1 of any threshold on the validation split's probabilities."""
    import cnnctl
    from cnnctl.data.dataset import load_data
    from cnnctl.evaluation.scoring import predict_probabilities
    from cnnctl.runs.folder import Run
    from cnnctl.runs.model_file import load_model

    run, _ = shapes_run
    config = cnnctl.load(str(run / "config.yaml"))
    dataset = load_data(config)
    y_val = dataset.splits["val"].y
    p_val = predict_probabilities(load_model(Run(run)), dataset, "val", 32)
    chosen = json.loads((run / "metrics.json").read_text())["thresholds"]
    for k, name in enumerate(SHAPES):
        truth, scores = y_val[:, k], p_val[:, k]
        best = max(_f1(truth, scores >= cut) for cut in np.unique(scores))
        assert _f1(truth, scores >= chosen[name]) == pytest.approx(best)
    assert json.loads((run / "metrics.json").read_text())["thresholds_from"].startswith("val")


def _f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    true_positive = float(np.sum(truth.astype(bool) & predicted))
    return 2 * true_positive / max(float(truth.sum() + predicted.sum()), 1.0)


def test_the_split_column_is_honoured_and_labels_reach_every_split(shapes):
    import cnnctl
    from cnnctl.data.dataset import load_data

    rows = list(csv.DictReader((shapes / "manifest.csv").open()))
    given_test = {str(shapes / row["file"]) for row in rows if row["split"] == "test"}
    dataset = load_data(cnnctl.load(shapes_config(shapes / "manifest.csv")))
    names = {split: set(dataset.splits[split].x.paths) for split in ("train", "val", "test")}
    assert names["test"] == given_test and not (names["train"] | names["val"]) & given_test
    labels = {str(shapes / row["file"]): set(row["labels"].split("|")) for row in rows}
    test = dataset.splits["test"]
    for path, row in zip(test.x.paths, test.y):
        assert {SHAPES[k] for k in np.flatnonzero(row)} == labels[str(path)]
    for split in ("train", "val", "test"):  # stratified by each example's rarest label: every label on each side
        assert dataset.splits[split].y.sum(axis=0).min() > 0


def test_predict_gives_label_sets_at_the_thresholds_and_refuses_min_confidence(shapes, shapes_run, tmp_path):
    run, _ = shapes_run
    files = [str(shapes / "images" / f"{index:05d}.png") for index in range(4)]
    out = tmp_path / "labels.csv"
    result = runner.invoke(app, ["predict", str(run), *files, "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Labels predicted" in result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 * 3 and list(rows[0]) == [
        "input",
        "label_index",
        "label",
        "probability",
        "threshold",
        "present",
    ]
    for row in rows:
        assert int(row["present"]) == int(float(row["probability"]) >= float(row["threshold"]))
    truth = {row["file"]: row["labels"] for row in csv.DictReader((shapes / "manifest.csv").open())}
    predicted = {
        file: "|".join(row["label"] for row in rows if row["input"] == file and row["present"] == "1") for file in files
    }
    right = sum(predicted[file] == truth[f"images/{Path(file).name}"] for file in files)
    assert right >= 3, (predicted, truth)
    refused = runner.invoke(app, ["predict", str(run), files[0], "--min-confidence", "0.9"])
    assert refused.exit_code == 2
    assert "error: --min-confidence: does not apply to a multi-label run" in refused.output


def test_figures_and_report_show_labels_not_a_confusion_matrix(shapes_run):
    from PIL import Image

    run, _ = shapes_run
    for name in ("label_confusion.png", "pr_curve.png", "loss_curve.png"):
        with Image.open(run / name) as image:
            assert image.size[0] > 200
    for absent in ("confusion_matrix.png", "confusion_matrix.csv", "roc_curve.png", "gradcam.npz", "reliability.png"):
        assert not (run / absent).exists(), absent
    page = (run / "report.html").read_text()
    assert "F1 (micro)" in page and "subset accuracy" in page and "Decision thresholds" in page
    assert "need one label per example" in page and "Not evaluated yet" not in page


def test_evaluate_again_gives_the_same_numbers_and_export_carries_the_thresholds(shapes_run, tmp_path):
    import shutil

    run, _ = shapes_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    before = json.loads((copy / "metrics.json").read_text())
    result = runner.invoke(app, ["evaluate", str(copy)], terminal_width=200)
    assert result.exit_code == 0, result.output
    after = json.loads((copy / "metrics.json").read_text())
    for key in ("f1_micro", "subset_accuracy", "hamming_loss", "mean_average_precision"):
        assert after[key] == pytest.approx(before[key], abs=1e-6)
    assert after["thresholds"] == pytest.approx(before["thresholds"], abs=1e-6)
    val = runner.invoke(app, ["evaluate", str(copy), "--split", "val"], terminal_width=200)
    assert val.exit_code == 0, val.output
    beside = json.loads((copy / "metrics.json").read_text())
    assert beside["split"] == "test" and beside["f1_micro"] == pytest.approx(after["f1_micro"])  # headline kept
    assert beside["other_splits"]["val"]["thresholds"] == pytest.approx(after["thresholds"])  # scored at test's
    assert "the test evaluation's: val" in " ".join(val.output.split())


def test_a_label_matrix_in_an_npz_trains_and_cv_says_how_folds_are_stratified(shapes, tmp_path):
    config = shapes_config(
        shapes / "shapes_arrays.npz",
        data={"source": "npz", "path": str(shapes / "shapes_arrays.npz"), "label_column": "label"},
        train={"epochs": 1},
    )
    del config["data"]["split_column"]
    result = runner.invoke(
        app,
        ["cv", str(write(tmp_path, config)), "--folds", "2", "--runs-dir", str(tmp_path / "runs")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    (cv,) = (tmp_path / "runs").iterdir()
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary["stratified_by"] == "each example's rarest label (multi-label)"
    assert {"f1_micro", "subset_accuracy", "hamming_loss"} <= set(summary["mean"]) and "accuracy" not in summary["mean"]
    folds = [json.loads((cv / f"fold-{index}" / "metrics.json").read_text()) for index in (1, 2)]
    assert summary["mean"]["f1_micro"] == pytest.approx(np.mean([fold["f1_micro"] for fold in folds]))
    assert "2 folds stratified by each example's rarest label (multi-label)" in " ".join(result.output.split())
    assert "f1 micro" in result.output


def test_tune_scores_multi_label_trials_on_micro_f1(shapes, tmp_path):
    """Run as a new user's shell runs it: tune prints only cnnctl's own lines (issue 30 part 8; new_user_runs)."""
    config = shapes_config(shapes / "manifest.csv", train={"epochs": 1})
    config["tune"] = {"train.optimizer.learning_rate": {"choice": [0.003, 0.01]}}
    done = new_user_runs(
        "tune", write(tmp_path, config), "--trials", "2", "--runs-dir", tmp_path / "runs", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stderr == ""
    (tune,) = (tmp_path / "runs").iterdir()
    summary = json.loads((tune / "tune_summary.json").read_text())
    assert summary["objective"].startswith("metrics.json f1_micro") and summary["objective_name"] == "val F1 (micro)"
    for trial in summary["trials"]:
        scored = json.loads((tune / trial["run"] / "metrics.json").read_text())
        assert scored["split"] == "val" and trial["value"] == pytest.approx(scored["f1_micro"])
    assert "val F1 (micro)" in done.stdout


BAD_CONFIGS = [
    (
        {"model": {"layers": [*LAYERS[:-1], {"Dense": {"units": 3, "activation": "softmax"}}]}},
        "model.layers[6] (Dense): activation softmax does not fit data.multi_label: softmax makes the labels compete",
    ),
    (
        {"model": {"layers": [*LAYERS[:-1], {"Dense": {"units": 4, "activation": "sigmoid"}}]}},
        "gives 4 outputs but the data has 3",
    ),
    (
        {"train": {"loss": "categorical_crossentropy"}},
        "train.loss: categorical_crossentropy picks one class per example",
    ),
    ({"train": {"class_weight": "balanced"}}, "train.class_weight: does not apply to multi-label data"),
    ({"evaluate": {"calibrate": "temperature"}}, "evaluate.calibrate: temperature scales one softmax"),
    ({"data": {"source": "digits", "path": None}}, "multi_label: source digits gives one label per example"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS, ids=[message[:30] for _, message in BAD_CONFIGS])
def test_what_needs_one_label_per_example_is_refused_in_one_line(shapes, tmp_path, change, message):
    config = shapes_config(shapes / "manifest.csv")
    for section, values in change.items():
        config[section] = {**config.get(section, {}), **values}
    result = runner.invoke(app, ["check", str(write(tmp_path, config))], terminal_width=400)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output


BAD_MANIFESTS = [
    ("file,labels\na.png,circle||square\n", True, "has an empty label between its '|' separators"),
    ("file,labels\na.png,circle|square\n", False, "set data.multi_label: true for several labels per example"),
    ('{"file": "a.png", "labels": "circle"}\nnot json\n', True, "line 2 is not JSON"),
]


def test_an_empty_label_cell_is_an_example_with_none_of_the_labels(tmp_path):
    """A picture with no shape is a multi-label example too; it could not be written (the cell was refused)."""
    from PIL import Image

    from cnnctl import api

    rows = ["file,labels"]
    for index, labels in enumerate(["circle", "square", "triangle|square", ""] * 6):
        Image.fromarray(np.full((8, 8), index * 9, dtype=np.uint8)).save(tmp_path / f"{index}.png")
        rows.append(f"{index}.png,{labels}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    config = shapes_config(tmp_path / "m.csv", data={"validation_split": 0, "test_split": 0.25})
    del config["data"]["split_column"]
    dataset = api.check(config).prepared.dataset
    assert dataset.class_names == ["circle", "square", "triangle"]
    y = np.concatenate([dataset.splits[name].y for name in ("train", "test")])
    assert len(y) == 24 and (y.sum(axis=1) == 0).sum() == 6  # the six empty cells: no label at all


@pytest.mark.parametrize("text, multi_label, message", BAD_MANIFESTS, ids=[case[2][:28] for case in BAD_MANIFESTS])
def test_a_bad_multi_label_manifest_is_one_line(tmp_path, text, multi_label, message):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    manifest = tmp_path / ("m.jsonl" if text.startswith("{") else "m.csv")
    manifest.write_text(text)
    config = shapes_config(manifest, data={"multi_label": multi_label})
    del config["data"]["split_column"]
    result = runner.invoke(app, ["check", str(write(tmp_path, config))], terminal_width=400)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("error:") == 1, result.output


@pytest.mark.parametrize(
    "y, message",
    [
        (lambda n: np.full((n, 3), 2), "holds 2; a multi-label matrix holds only 0 (label absent) and 1 (present)"),
        (lambda n: np.arange(n) % 3, "multi-label data needs a 0/1 matrix of shape (N, K)"),
    ],
    ids=["not 0/1", "one label each"],
)
def test_a_label_matrix_that_is_not_0_1_is_one_line(tmp_path, y, message):
    x = np.zeros((30, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y(30))
    config = shapes_config(tmp_path / "bad.npz", data={"source": "npz", "path": str(tmp_path / "bad.npz")})
    del config["data"]["split_column"]
    result = runner.invoke(app, ["check", str(write(tmp_path, config))], terminal_width=400)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_multi_hot_matrix_without_multi_label_says_to_set_it(tmp_path):
    y = np.zeros((30, 3), dtype=np.uint8)
    y[:, 0], y[::2, 1] = 1, 1
    np.savez(tmp_path / "hot.npz", x_train=np.zeros((30, 8, 8), dtype=np.uint8), y_train=y)
    config = {
        "data": {"source": "npz", "path": str(tmp_path / "hot.npz")},
        "model": {"layers": ["Flatten", {"Dense": {"units": 3, "activation": "softmax"}}]},
    }
    result = runner.invoke(app, ["check", str(write(tmp_path, config))], terminal_width=400)
    assert result.exit_code == 2 and "set data.multi_label: true" in result.output, result.output
