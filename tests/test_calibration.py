"""Calibration numbers checked against computations written here independently (a plain loop over the bins, the
Brier score one example and one class at a time) and against scikit-learn; temperature scaling on synthetic
predictions whose miscalibration is known; the coverage curve and its sentence on cases worked out by hand."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, log_loss

from cnnctl.errors import ConfigError, DataError
from cnnctl.evaluation.calibration import (
    apply_temperature,
    calibration_metrics,
    coverage_curve,
    coverage_sentence,
    fit_temperature,
)

BRIER_MULTICLASS = "labels" in inspect.signature(brier_score_loss).parameters  # scikit-learn 1.7 and later


def predictions(count: int, classes: int, sharpness: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits), and the predictions softmax(sharpness × logits) as float32, as a model
    gives them: calibrated when sharpness is 1, overconfident above 1, underconfident below."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(count, classes)) * 2
    truth = softmax(logits, axis=1)
    y_true = np.array([rng.choice(classes, p=row) for row in truth])
    return y_true, softmax(sharpness * logits, axis=1).astype(np.float32)


def calibration_by_loop(y_true, y_prob, bins=15) -> tuple[float, float]:
    """ECE and MCE as Guo et al. write them: bin m holds confidences in ((m - 1)/M, m/M]."""
    gaps, total = [], len(y_true)
    for m in range(1, bins + 1):
        lower, upper = (m - 1) / bins, m / bins
        members = [i for i in range(total) if lower < max(y_prob[i]) <= upper or (m == 1 and max(y_prob[i]) == 0)]
        if members:
            accuracy = sum(int(np.argmax(y_prob[i]) == y_true[i]) for i in members) / len(members)
            confidence = sum(float(max(y_prob[i])) for i in members) / len(members)
            gaps.append((len(members), abs(accuracy - confidence)))
    return sum(n * gap for n, gap in gaps) / total, max(gap for _, gap in gaps)


def brier_by_loop(y_true, y_prob) -> float:
    total = 0.0
    for label, row in zip(y_true, y_prob):
        for k, probability in enumerate(row):
            total += (float(probability) - (1.0 if k == label else 0.0)) ** 2
    return total / len(y_true)


CASES = [  # (name, labels, probabilities)
    ("overconfident 10 classes", *predictions(500, 10, 3.0)),
    ("calibrated 3 classes", *predictions(300, 3, 1.0, seed=1)),
    ("two columns", *predictions(200, 2, 2.0, seed=2)),
    # confidences exactly on bin edges (0.6 = 9/15, 0.8 = 12/15) and at 1.0 fall in the bin they close
    ("edges", np.array([0, 1, 1, 0, 1]), np.array([[0.6, 0.4], [0.2, 0.8], [0.0, 1.0], [0.4, 0.6], [0.5, 0.5]])),
]


@pytest.mark.parametrize("name, y_true, y_prob", CASES, ids=[case[0] for case in CASES])
def test_ece_and_mce_agree_with_a_plain_loop_over_the_bins(name, y_true, y_prob):
    metrics = calibration_metrics(y_true, y_prob)
    ece, mce = calibration_by_loop(y_true, y_prob)
    assert metrics["ece"] == pytest.approx(ece, abs=1e-6)
    assert metrics["mce"] == pytest.approx(mce, abs=1e-6)
    assert len(metrics["bins"]) == 15 and sum(row["count"] for row in metrics["bins"]) == len(y_true)
    assert metrics["bins"][0]["lower"] == 0 and metrics["bins"][-1]["upper"] == 1


def test_the_edges_case_fills_the_bins_it_should():
    metrics = calibration_metrics(CASES[3][1], CASES[3][2])
    counts = {index: row["count"] for index, row in enumerate(metrics["bins"]) if row["count"]}
    assert counts == {7: 1, 8: 2, 11: 1, 14: 1}  # 0.5 → (7/15, 8/15]; 0.6 → (8/15, 9/15]; 0.8 → (11/15, 12/15]
    assert metrics["bins"][8] == pytest.approx(
        {"lower": 8 / 15, "upper": 9 / 15, "count": 2, "accuracy": 0.5, "confidence": 0.6}
    )
    assert metrics["bins"][0]["accuracy"] is None and metrics["bins"][0]["confidence"] is None


@pytest.mark.parametrize("name, y_true, y_prob", CASES, ids=[case[0] for case in CASES])
def test_brier_and_nll_agree_with_scikit_learn_and_a_loop(name, y_true, y_prob):
    metrics = calibration_metrics(y_true, y_prob)
    classes = y_prob.shape[1]
    # Summed over classes, not divided by K; halved for two classes (the binary Brier score of P(class 1)).
    expected = brier_by_loop(y_true, y_prob) / (2 if classes == 2 else 1)
    assert metrics["brier"] == pytest.approx(expected, rel=1e-6)
    if classes == 2:
        assert metrics["brier"] == pytest.approx(np.mean((y_prob[:, 1] - y_true) ** 2), rel=1e-6)
    if BRIER_MULTICLASS:
        assert metrics["brier"] == pytest.approx(
            brier_score_loss(y_true, y_prob, labels=list(range(classes))), rel=1e-5
        )
    probabilities = y_prob.astype(np.float64)
    expected_nll = log_loss(
        y_true, probabilities / probabilities.sum(axis=1, keepdims=True), labels=list(range(classes))
    )
    assert metrics["nll"] == pytest.approx(expected_nll, rel=1e-6)


def test_a_single_sigmoid_column_counts_as_two_classes():
    y_true, two_columns = CASES[2][1], CASES[2][2]
    one_column = two_columns[:, 1:]
    single, double = calibration_metrics(y_true, one_column), calibration_metrics(y_true, two_columns)
    for key in ("ece", "mce", "brier", "nll"):
        assert single[key] == pytest.approx(double[key], abs=1e-6)
    assert apply_temperature(one_column, 2.0).shape == one_column.shape


def test_labels_stored_as_whole_floats_are_class_indices():
    y_true, y_prob = CASES[1][1], CASES[1][2]
    as_floats = calibration_metrics(y_true.astype(np.float32), y_prob)
    assert as_floats == calibration_metrics(y_true, y_prob)


def test_temperature_scaling_softens_an_overconfident_model_and_keeps_every_prediction():
    y_true, y_prob = predictions(2000, 5, 3.0, seed=3)
    temperature = fit_temperature(y_true, y_prob)
    assert 2.4 < temperature < 3.6  # the predictions are the truth's logits × 3
    scaled = apply_temperature(y_prob, temperature)
    before, after = calibration_metrics(y_true, y_prob), calibration_metrics(y_true, scaled)
    assert after["nll"] < before["nll"] - 0.1
    assert after["ece"] < before["ece"] / 2
    np.testing.assert_array_equal(scaled.argmax(axis=1), y_prob.argmax(axis=1))
    np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-12)


def test_temperature_scaling_sharpens_an_underconfident_model_and_one_changes_nothing():
    y_true, y_prob = predictions(2000, 5, 0.5, seed=4)
    temperature = fit_temperature(y_true, y_prob)
    assert 0.4 < temperature < 0.6
    assert (
        calibration_metrics(y_true, apply_temperature(y_prob, temperature))["nll"]
        < calibration_metrics(y_true, y_prob)["nll"]
    )
    np.testing.assert_allclose(apply_temperature(y_prob, 1.0), y_prob, atol=1e-6)


def test_temperature_on_two_classes_divides_the_logit():
    probability = np.array([[0.1, 0.9], [0.7, 0.3]])
    logit = np.log(probability[:, 1] / probability[:, 0])
    expected = 1 / (1 + np.exp(-logit / 2.5))
    np.testing.assert_allclose(apply_temperature(probability, 2.5)[:, 1], expected, rtol=1e-12)


def test_the_coverage_curve_answers_the_most_confident_first():
    y_true, y_prob = predictions(1000, 4, 2.0, seed=5)
    curve = coverage_curve(y_true, y_prob)
    coverage, accuracy, threshold = (np.array(curve[key]) for key in ("coverage", "accuracy", "threshold"))
    np.testing.assert_allclose(coverage, np.arange(1, 101) / 100)  # 1000 distinct confidences: 10 more per point
    assert np.all(np.diff(threshold) < 0)
    confidence, correct = y_prob.max(axis=1), y_prob.argmax(axis=1) == y_true
    for share, rate, lowest in zip(coverage, accuracy, threshold):
        answered = confidence >= lowest
        assert share == pytest.approx(answered.mean()) and rate == pytest.approx(correct[answered].mean())
    assert accuracy[-1] == pytest.approx(correct.mean())
    assert accuracy[0] > accuracy[-1]  # the most confident answers are the better ones


def test_examples_of_equal_confidence_are_answered_together():
    rng = np.random.default_rng(6)
    confidence = rng.choice([0.55, 0.7, 0.85, 0.95], size=300)
    y_prob = np.stack([confidence, 1 - confidence], axis=1)
    y_true = (rng.uniform(size=300) > confidence).astype(int)  # right with probability `confidence`
    curve = coverage_curve(y_true, y_prob)
    assert curve["threshold"] == [0.95, 0.85, 0.7, 0.55]
    for share, rate, lowest in zip(curve["coverage"], curve["accuracy"], curve["threshold"]):
        answered = confidence >= lowest
        assert share == pytest.approx(answered.mean()) and rate == pytest.approx((y_true[answered] == 0).mean())


def test_the_coverage_sentence_says_how_much_is_answered_at_the_target():
    # 100 examples, confidence falling from 0.995; the 82 most confident right, the 18 others wrong.
    confidence = np.linspace(0.995, 0.6, 100)
    y_prob = np.stack([confidence, 1 - confidence], axis=1)
    y_true = np.where(np.arange(100) < 82, 0, 1)
    curve = coverage_curve(y_true, y_prob)
    assert coverage_sentence(curve) == (
        "At 99 % accuracy the model answers 82 % of the test set (those with confidence ≥ 0.672)."
    )
    assert coverage_sentence(curve, 0.985, examples="the validation set").startswith(
        "At 98.5 % accuracy the model answers 83 % of the validation set"
    )  # 82 right of 83
    y_true[:3] = 1  # the three most confident answers wrong: at best 79 right of the 82 most confident
    assert coverage_sentence(coverage_curve(y_true, y_prob)) == (
        "The model never reaches 99 % accuracy on the test set: at best 96 %, answering 82 % of it "
        "(confidence ≥ 0.672)."
    )


def test_wrong_inputs_are_one_line_errors():
    y_true, y_prob = np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])
    cases = [
        (lambda: calibration_metrics(y_true, y_prob, bins=0), ConfigError, "bins must be at least 1; given 0"),
        (
            lambda: calibration_metrics(y_true[:1], y_prob),
            DataError,
            "y_true must hold one class index per row of y_prob (2); given shape [1]",
        ),
        (
            lambda: calibration_metrics(np.array([0.5, 1]), y_prob),
            DataError,
            "y_true must hold class indices 0..1 for y_prob's 2 columns",
        ),
        (
            lambda: coverage_curve([], np.zeros((0, 3))),
            DataError,
            "y_prob must be (N, K) probabilities of at least one example; given shape [0, 3]",
        ),
        (
            lambda: calibration_metrics(np.array([0, 2]), y_prob),
            DataError,
            "y_true must hold class indices 0..1 for y_prob's 2 columns",
        ),
        (
            lambda: calibration_metrics(y_true, np.array([[2.0, -1.0], [0.5, 0.5]])),
            DataError,
            (
                "y_prob must hold probabilities, each row summing to 1; row 0 holds -1 (are these logits? apply a "
                "softmax first)"
            ),
        ),
        (
            lambda: fit_temperature(y_true, np.array([[3.0, 1.0], [0.5, 0.5]])),
            DataError,
            (
                "y_prob must hold probabilities, each row summing to 1; row 0 sums to 4 (are these logits? apply a "
                "softmax first)"
            ),
        ),
        (lambda: apply_temperature(y_prob, 0), ConfigError, "temperature must be positive; given 0"),
        (
            lambda: apply_temperature(np.array([[3.0, 1.0]]), 2),
            DataError,
            (
                "y_prob must hold probabilities, each row summing to 1; row 0 sums to 4 (are these logits? apply a "
                "softmax first)"
            ),
        ),
        (
            lambda: coverage_sentence(coverage_curve(y_true, y_prob), 99),
            ConfigError,
            "target_accuracy must be in (0, 1]; given 99",
        ),
    ]
    for make_error, error, message in cases:
        with pytest.raises(error) as caught:
            make_error()
        assert str(caught.value) == message


def test_fitted_temperature_stays_within_its_bounds():
    # Every answer confidently wrong: the likelihood keeps improving as T grows, up to the search's upper bound.
    y_prob = np.array([[0.999, 0.001]] * 20)
    assert math.isclose(fit_temperature(np.ones(20, dtype=int), y_prob), 20.0, rel_tol=1e-3)
