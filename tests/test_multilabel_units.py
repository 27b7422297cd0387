"""Tests for cnnctl.evaluation.multilabel and cnnctl.reporting.multilabel_plots on small synthetic arrays: the
thresholds are the best F1 a brute-force search finds, every metric equals scikit-learn called here directly, and
both figures draw one panel or curve per label and save as a readable PNG. No TensorFlow: these run in a second."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from sklearn import metrics as skm

from cnnctl.evaluation import multilabel
from cnnctl.reporting import multilabel_plots, plots

NAMES = ["cat", "dog", "sky"]


def synthetic(examples: int = 80, labels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and noisy probabilities that lean towards them: informative, far from perfect."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((examples, labels)) < np.linspace(0.2, 0.6, labels)).astype(int)
    logits = 1.5 * (2 * y_true - 1) + rng.normal(0, 1.6, y_true.shape) - 0.8
    return y_true, 1 / (1 + np.exp(-logits))


def f1_at(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float(skm.f1_score(y_true, (scores >= threshold).astype(int), zero_division=0))


def saved_png_size(fig: Figure, tmp_path, name: str) -> tuple[int, int]:
    path = plots.save_figure(fig, tmp_path / name)
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def drawn_axes(fig: Figure) -> list:
    """Axes that show something: an image or a line with data (blank grid cells are switched off)."""
    return [ax for ax in fig.axes if ax.axison and (ax.images or any(len(line.get_xdata()) for line in ax.get_lines()))]


# ---------------------------------------------------------------- thresholds and metrics


def test_chosen_thresholds_are_the_best_f1_a_brute_force_search_finds():
    y_true, y_prob = synthetic()
    thresholds = multilabel.choose_thresholds(y_true, y_prob)
    assert thresholds.shape == (3,) and thresholds.dtype == float
    for label in range(3):
        truth, scores = y_true[:, label], y_prob[:, label]
        # Every distinct score is a threshold worth trying; one above them all predicts nothing.
        candidates = np.append(np.unique(scores), scores.max() + 1)
        best = max(f1_at(truth, scores, t) for t in candidates)
        chosen = f1_at(truth, scores, thresholds[label])
        assert chosen == pytest.approx(best, abs=1e-12)
        assert chosen >= f1_at(truth, scores, multilabel.DEFAULT_THRESHOLD)
    # The data is noisy enough that tuning actually moves at least one threshold off 0.5.
    assert np.any(thresholds != multilabel.DEFAULT_THRESHOLD)


def test_a_label_with_one_class_only_keeps_the_default_threshold():
    y_true, y_prob = synthetic()
    y_true[:, 1] = 0
    y_true[:, 2] = 1
    thresholds = multilabel.choose_thresholds(y_true.astype(float), y_prob)
    assert thresholds[1] == thresholds[2] == multilabel.DEFAULT_THRESHOLD == 0.5
    assert thresholds[0] != 0.5


def test_every_metric_equals_scikit_learn():
    y_true, y_prob = synthetic(examples=90, labels=3, seed=1)
    thresholds = multilabel.choose_thresholds(y_true, y_prob)
    metrics = multilabel.multilabel_metrics(y_true.astype(float), y_prob, thresholds, NAMES)
    y_pred = (y_prob >= thresholds).astype(int)
    np.testing.assert_array_equal(multilabel.predicted_labels(y_prob, thresholds), y_pred)

    expected = {
        "subset_accuracy": skm.accuracy_score(y_true, y_pred),
        "hamming_loss": skm.hamming_loss(y_true, y_pred),
        "mean_average_precision": skm.average_precision_score(y_true, y_prob, average="macro"),
        "roc_auc": skm.roc_auc_score(y_true, y_prob, average="macro"),
        "label_cardinality": y_true.sum() / len(y_true),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        expected[f"f1_{average}"] = skm.f1_score(y_true, y_pred, average=average, zero_division=0)
    for average in ("micro", "macro"):
        expected[f"precision_{average}"] = skm.precision_score(y_true, y_pred, average=average, zero_division=0)
        expected[f"recall_{average}"] = skm.recall_score(y_true, y_pred, average=average, zero_division=0)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    assert metrics["num_labels"] == 3 and metrics["num_examples"] == 90
    assert metrics["thresholds"] == {name: float(t) for name, t in zip(NAMES, thresholds)}

    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for k, name in enumerate(NAMES):
        row = metrics["per_label"][name]
        assert row["precision"] == pytest.approx(precision[k], abs=1e-12)
        assert row["recall"] == pytest.approx(recall[k], abs=1e-12)
        assert row["f1"] == pytest.approx(f1[k], abs=1e-12)
        assert row["support"] == support[k] == y_true[:, k].sum()
        assert row["average_precision"] == pytest.approx(skm.average_precision_score(y_true[:, k], y_prob[:, k]))
        assert row["threshold"] == float(thresholds[k])

    # JSON-ready: plain Python numbers all the way down, and a round trip through json changes nothing.
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(type(key) is str and plain(item) for key, item in value.items())
        return value is None or type(value) in (float, int, str)

    assert plain(metrics)
    assert json.loads(json.dumps(metrics)) == metrics


def test_labels_without_positives_or_negatives_leave_the_averages_they_cannot_enter():
    y_true, y_prob = synthetic(examples=70, labels=4, seed=2)
    y_true[:, 1] = 0  # no positive: no AP, no AUC
    y_true[:, 3] = 1  # no negative: an AP (of 1.0), no AUC
    names = ["a", "b", "c", "d"]
    thresholds = multilabel.choose_thresholds(y_true, y_prob)
    metrics = multilabel.multilabel_metrics(y_true, y_prob, thresholds, names)
    assert metrics["per_label"]["b"]["average_precision"] is None
    assert metrics["per_label"]["b"]["threshold"] == 0.5 and metrics["per_label"]["b"]["support"] == 0
    assert metrics["per_label"]["d"]["threshold"] == 0.5
    with_positive, with_both = [0, 2, 3], [0, 2]
    assert metrics["mean_average_precision"] == pytest.approx(
        skm.average_precision_score(y_true[:, with_positive], y_prob[:, with_positive], average="macro")
    )
    assert metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true[:, with_both], y_prob[:, with_both], average="macro")
    )
    # Nothing to average at all: None, not 0 and not an exception.
    empty = multilabel.multilabel_metrics(np.zeros((5, 2)), np.full((5, 2), 0.3), 0.5, ["x", "y"])
    assert empty["mean_average_precision"] is None and empty["roc_auc"] is None
    assert empty["subset_accuracy"] == 1.0 and empty["label_cardinality"] == 0.0


def test_predicted_labels_and_label_sets():
    y_prob = np.array([[0.9, 0.2, 0.6], [0.1, 0.5, 0.4]])
    predicted = multilabel.predicted_labels(y_prob, [0.5, 0.5, 0.7])
    np.testing.assert_array_equal(predicted, [[1, 0, 0], [0, 1, 0]])
    assert predicted.dtype.kind == "i"
    np.testing.assert_array_equal(multilabel.predicted_labels(y_prob, 0.5), [[1, 0, 1], [0, 1, 0]])
    assert multilabel.label_sets([1, 0, 1], NAMES) == ["cat", "sky"]
    assert multilabel.label_sets(np.zeros(3, dtype=int), NAMES) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: multilabel.choose_thresholds(np.zeros(4), np.zeros(4)), "must be \\(N, K\\)"),
        (lambda: multilabel.choose_thresholds(np.zeros((4, 2)), np.zeros((4, 3))), "same shape"),
        (lambda: multilabel.choose_thresholds(np.full((4, 2), 2), np.zeros((4, 2))), "0/1"),
        (lambda: multilabel.multilabel_metrics(np.zeros((4, 2)), np.zeros((4, 2)), 0.5, ["a"]), "class_names"),
        (lambda: multilabel.multilabel_metrics(np.zeros((4, 2)), np.zeros((4, 2)), 0.5, ["a", "a"]), "distinct"),
        (lambda: multilabel.predicted_labels(np.zeros((4, 2)), [0.5, 0.5, 0.5]), "one per label"),
        (lambda: multilabel.label_sets([1, 0], NAMES), "one entry per class name"),
    ],
)
def test_bad_inputs_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- figures


def test_confusion_figure_has_one_panel_per_label_with_sklearn_counts(tmp_path):
    y_true, y_prob = synthetic()
    y_pred = multilabel.predicted_labels(y_prob, 0.5)
    fig = multilabel_plots.label_confusion_figure(y_true, y_pred, NAMES)
    assert isinstance(fig, Figure)
    panels = drawn_axes(fig)
    assert [ax.get_title() for ax in panels] == NAMES
    for ax, counts in zip(panels, skm.multilabel_confusion_matrix(y_true, y_pred)):
        texts = sorted(text.get_text() for text in ax.texts)
        (tn, fp), (fn, tp) = counts
        assert texts == sorted([f"TN\n{tn}", f"FP\n{fp}", f"FN\n{fn}", f"TP\n{tp}"])
    width, height = saved_png_size(fig, tmp_path, "confusion.png")
    assert width > 0 and height > 0


def test_confusion_figure_caps_the_panels_and_says_so():
    y_true, y_prob = synthetic(examples=30, labels=45)
    names = [f"label{k}" for k in range(45)]
    fig = multilabel_plots.label_confusion_figure(y_true, y_prob >= 0.5, names)
    assert len(drawn_axes(fig)) == multilabel_plots.MAX_LABEL_PANELS == 40
    assert "first 40 of 45 labels" in fig.get_suptitle()


def test_pr_figure_draws_a_curve_and_a_threshold_dot_per_label_and_skips_labels_without_positives(tmp_path):
    y_true, y_prob = synthetic(labels=4)
    y_true[:, 2] = 0
    names = ["cat", "dog", "rain", "sky"]
    thresholds = multilabel.choose_thresholds(y_true, y_prob)
    fig = multilabel_plots.label_pr_figure(y_true, y_prob, thresholds, names)
    (ax,) = drawn_axes(fig)
    assert "1 without a positive example skipped: rain" in fig.get_suptitle()
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    for k in (0, 1, 3):
        assert f"{names[k]} (AP = {skm.average_precision_score(y_true[:, k], y_prob[:, k]):.3f})" in legend
    assert not any(text.startswith("rain") for text in legend)
    # The dots sit at the precision and recall that the chosen thresholds give.
    dots = [line for line in ax.get_lines() if line.get_marker() == "o" and len(line.get_xdata()) == 1]
    assert len(dots) == 3
    for line, k in zip(dots, (0, 1, 3)):
        predicted = (y_prob[:, k] >= thresholds[k]).astype(int)
        assert line.get_xdata()[0] == pytest.approx(skm.recall_score(y_true[:, k], predicted))
        assert line.get_ydata()[0] == pytest.approx(skm.precision_score(y_true[:, k], predicted))
    width, height = saved_png_size(fig, tmp_path, "pr.png")
    assert width > 0 and height > 0


def test_pr_figure_with_many_labels_is_a_grid_of_one_panel_per_label(tmp_path):
    y_true, y_prob = synthetic(examples=60, labels=12)
    names = [f"label{k}" for k in range(12)]
    fig = multilabel_plots.label_pr_figure(y_true, y_prob, 0.5, names)
    panels = drawn_axes(fig)
    assert len(panels) == 12
    assert [ax.get_title().split("\n")[0] for ax in panels] == names
    width, height = saved_png_size(fig, tmp_path, "pr_grid.png")
    assert width > 0 and height > 0


def test_pr_figure_without_any_positive_says_so():
    fig = multilabel_plots.label_pr_figure(np.zeros((5, 2)), np.full((5, 2), 0.3), 0.5, ["x", "y"])
    assert isinstance(fig, Figure)
    assert "no label has a positive example" in " ".join(text.get_text() for ax in fig.axes for text in ax.texts)


def test_saved_thresholds_fall_back_to_one_half_for_what_metrics_json_does_not_hold():
    from cnnctl.evaluation.multilabel import saved_thresholds

    metrics = {"thresholds": {"cat": 0.3, "dog": 7, "sky": True}}
    assert saved_thresholds(metrics, ["cat", "dog", "sky", "car"]) == [0.3, 0.5, 0.5, 0.5]
    assert saved_thresholds({}, ["cat"]) == [0.5] and saved_thresholds({"thresholds": "x"}, ["cat"]) == [0.5]


def test_a_label_only_in_the_test_split_is_refused_by_name():
    """Single-label data refuses a class y_train never has; multi-label data scored it as an F1 of 0 silently."""
    from cnnctl.data.arrays import encode_multi_labels
    from cnnctl.errors import DataError

    train = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    test = np.array([[1, 0, 1], [0, 1, 0]])
    with pytest.raises(DataError, match=r"^data: y_test has labels 'hexagon' that never occur in y_train; a model"):
        encode_multi_labels({"train": train, "test": test}, ["circle", "square", "hexagon"])
    encoded, _ = encode_multi_labels({"train": train, "test": test[1:]}, ["circle", "square", "hexagon"])
    assert encoded["test"].shape == (1, 3)  # a label no split has is left alone
