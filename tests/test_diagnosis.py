"""diagnosis: synthetic training histories of known shape in, verdict and evidence out."""

import csv
import json
import math
import re

import numpy as np
import pytest

from cnnctl.errors import RunError
from cnnctl.evaluation.diagnosis import diagnose, read_history_csv
from cnnctl.runs.contract import VERDICTS

NAN = float("nan")


def decay(n, start, end, rate):
    """Exponential fall from `start` towards `end`, `rate` epochs per e-fold: the usual loss curve."""
    t = np.arange(n)
    return end + (start - end) * np.exp(-t / rate)


def u_shape(n, turn, start=1.8, bottom=0.4, climb=0.03):
    """Falls to `bottom` at 0-based epoch `turn`, then climbs `climb` per epoch: a net that overfits."""
    t = np.arange(n)
    falling = bottom + (start - bottom) * (1 - t / turn) ** 2
    return np.where(t <= turn, falling, bottom + climb * (t - turn))


def noisy(values, sigma, seed):
    """Multiplicative noise of relative size `sigma`, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return values * (1 + sigma * rng.standard_normal(len(values)))


def history(loss, val_loss=None, **extra):
    columns = {"epoch": list(range(len(loss))), "loss": list(map(float, loss))}
    if val_loss is not None:
        columns["val_loss"] = list(map(float, val_loss))
    columns.update({name: list(map(float, values)) for name, values in extra.items()})
    return columns


N = 30
TRAIN = decay(N, 2.0, 0.08, 5)
# Early stopping with patience 3: the best epoch (12), then three slightly worse ones.
EARLY_STOPPED = np.r_[decay(12, 1.9, 0.35, 2.5), decay(12, 1.9, 0.35, 2.5)[-1] * np.array([1.02, 1.03, 1.05])]

# (id, history, diagnose kwargs, expected verdict)
cases = [
    # Overfitting: validation loss turns upward while training loss keeps falling ...
    ("overfit-u", history(TRAIN, u_shape(N, 10)), {}, "overfitting"),
    ("overfit-late-turn", history(TRAIN, u_shape(N, 18, climb=0.04)), {}, "overfitting"),
    (
        "overfit-short-run",
        history([1.2, 0.6, 0.35, 0.2, 0.12, 0.07, 0.04], [1.1, 0.7, 0.5, 0.45, 0.52, 0.6, 0.68]),
        {},
        "overfitting",
    ),
    *[
        (
            f"overfit-noisy-{seed}",
            history(noisy(TRAIN, 0.01, seed), noisy(u_shape(N, 10), 0.04, 100 + seed)),
            {},
            "overfitting",
        )
        for seed in range(4)
    ],
    # ... or flattens far above a training loss that keeps falling: a large gap that grows.
    ("overfit-gap", history(decay(N, 2.0, 0.02, 4), decay(N, 2.0, 0.9, 3)), {}, "overfitting"),
    *[
        (
            f"overfit-gap-noisy-{seed}",
            history(decay(N, 2.0, 0.02, 4), noisy(decay(N, 2.0, 0.9, 3), 0.03, seed)),
            {},
            "overfitting",
        )
        for seed in range(3)
    ],
    # Underfitting: both losses stay high ...
    ("underfit-flat", history(decay(N, 2.3, 2.1, 3), decay(N, 2.25, 2.1, 3)), {}, "underfitting"),
    *[
        (
            f"underfit-noisy-{seed}",
            history(noisy(decay(N, 2.3, 2.1, 3), 0.01, seed), noisy(decay(N, 2.25, 2.12, 3), 0.03, 50 + seed)),
            {},
            "underfitting",
        )
        for seed in range(3)
    ],
    # ... or accuracy ends near what guessing the majority class gets ...
    (
        "underfit-accuracy",
        history(
            decay(N, 0.69, 0.66, 3), decay(N, 0.69, 0.67, 3), accuracy=np.full(N, 0.52), val_accuracy=np.full(N, 0.53)
        ),
        {"baseline_accuracy": 0.5},
        "underfitting",
    ),
    (
        "underfit-accuracy-custom-key",
        history(decay(N, 2.0, 0.9, 3), decay(N, 2.0, 1.0, 3), acc=np.full(N, 0.2), val_acc=np.full(N, 0.21)),
        {"baseline_accuracy": 0.1, "accuracy_key": "acc"},
        "underfitting",
    ),
    # ... or training became unstable and lost its fit, or diverged to NaN.
    (
        "underfit-unstable",
        history([2, 1, 0.6, 0.5, 0.6, 0.9, 1.2, 1.5], [1.8, 1.0, 0.7, 0.6, 0.8, 1.0, 1.3, 1.6]),
        {},
        "underfitting",
    ),
    ("underfit-diverged", history([2.0, 1.5, 1.2, NAN, NAN], [1.9, 1.4, 1.3, NAN, NAN]), {}, "underfitting"),
    ("underfit-diverged-from-start", history([NAN] * 4, [NAN] * 4), {}, "underfitting"),
    # Still improving: validation loss is still falling at the last epoch.
    ("still-slow-decay", history(decay(N, 2.0, 0.1, 15), decay(N, 2.1, 0.15, 15)), {}, "still improving"),
    ("still-short-run", history(decay(8, 2.0, 0.1, 5), decay(8, 2.1, 0.2, 5)), {}, "still improving"),
    *[
        (
            f"still-noisy-{seed}",
            history(noisy(decay(40, 2.0, 0.1, 15), 0.01, seed), noisy(decay(40, 2.1, 0.15, 15), 0.03, 200 + seed)),
            {},
            "still improving",
        )
        for seed in range(4)
    ],
    ("still-no-validation", history(decay(10, 2.0, 0.1, 4)), {}, "still improving"),
    ("still-one-epoch", history([2.1], [1.9]), {}, "still improving"),
    ("still-two-epochs", history([2.1, 1.5], [1.9, 1.4]), {}, "still improving"),
    # Good fit: validation loss flattened near its minimum, close to training loss.
    ("good-converged", history(decay(N, 2.0, 0.3, 4), decay(N, 1.9, 0.35, 3)), {}, "good fit"),
    (
        "good-with-accuracy",
        history(decay(N, 2.0, 0.3, 4), decay(N, 1.9, 0.35, 3), accuracy=np.full(N, 0.9), val_accuracy=np.full(N, 0.88)),
        {"baseline_accuracy": 0.1},
        "good fit",
    ),
    ("good-early-stopped", history(decay(15, 2.0, 0.3, 3), EARLY_STOPPED), {}, "good fit"),
    *[
        (
            f"good-noisy-{seed}",
            history(noisy(decay(N, 2.0, 0.3, 4), 0.01, seed), noisy(decay(N, 1.9, 0.35, 3), 0.05, 300 + seed)),
            {},
            "good fit",
        )
        for seed in range(4)
    ],
    ("good-tiny-losses", history(decay(N, 0.3, 0.02, 3), decay(N, 0.12, 0.04, 2)), {}, "good fit"),
    (
        "good-accurate-but-low-first-loss",
        history(decay(N, 0.05, 0.04, 3), decay(N, 0.06, 0.05, 3), accuracy=np.full(N, 0.99)),
        {},
        "good fit",
    ),
    ("good-no-validation", history(decay(N, 2.0, 0.1, 4)), {}, "good fit"),
]


@pytest.mark.parametrize("case_id, run, kwargs, expected", cases, ids=[case[0] for case in cases])
def test_verdict(case_id, run, kwargs, expected):
    report = diagnose(run, **kwargs)
    assert report["verdict"] == expected, report["summary"]
    assert report["verdict"] in VERDICTS
    json.dumps(report, allow_nan=False)  # the dict goes to metrics.json as it is
    summary = report["summary"]
    assert summary.endswith(".") and ". " not in summary, "one sentence"
    assert report["advice"] and all(isinstance(line, str) for line in report["advice"])


@pytest.mark.parametrize("case_id, run, kwargs, expected", cases, ids=[case[0] for case in cases])
def test_evidence(case_id, run, kwargs, expected):
    """The numbers a student checks on the curve, recomputed here from the history itself."""
    report = diagnose(run, **kwargs)
    loss = np.array(run["loss"])
    val = np.array(run["val_loss"]) if "val_loss" in run else None
    finite_loss = loss[np.isfinite(loss)]
    assert report["epochs"] == len(loss)
    assert report["final_train_loss"] == (pytest.approx(finite_loss[-1]) if len(finite_loss) else None)
    if val is not None and np.isfinite(val).any():
        finite_val = val[np.isfinite(val)]
        assert report["min_val_loss"] == pytest.approx(finite_val.min())
        assert report["final_val_loss"] == pytest.approx(finite_val[-1])
        assert report["best_epoch"] == int(np.nanargmin(val)) + 1
        gap = finite_val[-1] - finite_loss[-1]
        assert report["generalization_gap"]["absolute"] == pytest.approx(gap)
        assert report["generalization_gap"]["relative"] == pytest.approx(gap / finite_val[-1])
        assert report["val_loss_rise"] == pytest.approx((finite_val[-1] - finite_val.min()) / finite_val.min())
    else:
        assert report["final_val_loss"] is None and report["generalization_gap"] is None
    if expected == "overfitting" and report["turn_epoch"] is not None:
        assert report["turn_epoch"] < len(loss)
        assert f"epoch {report['turn_epoch']}" in report["summary"]
    if expected in ("good fit", "still improving"):
        assert report["turn_epoch"] is None
    if kwargs.get("baseline_accuracy") is not None:
        assert report["baseline_accuracy"] == kwargs["baseline_accuracy"]
    else:
        assert "baseline_accuracy" not in report
    key = kwargs.get("accuracy_key", "accuracy")
    if key in run:
        assert report["final_train_accuracy"] == pytest.approx(run[key][-1])
    else:
        assert "final_train_accuracy" not in report


# (id, history, 1-based epoch where validation loss turned upward)
turn_cases = [
    ("clean-u", history(TRAIN, u_shape(N, 10)), 11),
    ("clean-late", history(TRAIN, u_shape(N, 18, climb=0.04)), 19),
    ("short", history([1.2, 0.6, 0.35, 0.2, 0.12, 0.07, 0.04], [1.1, 0.7, 0.5, 0.45, 0.52, 0.6, 0.68]), 4),
    *[
        (f"noisy-{seed}", history(noisy(TRAIN, 0.01, seed), noisy(u_shape(N, 10), 0.04, 100 + seed)), 11)
        for seed in range(4)
    ],
]


@pytest.mark.parametrize("case_id, run, turn", turn_cases, ids=[case[0] for case in turn_cases])
def test_turn_epoch(case_id, run, turn):
    report = diagnose(run)
    assert report["verdict"] == "overfitting"
    noise_free = case_id.startswith(("clean", "short"))
    if noise_free:
        assert report["turn_epoch"] == turn == report["best_epoch"]
    else:
        # Noise can move the lowest point an epoch or two; the turn stays next to the true one.
        assert abs(report["turn_epoch"] - turn) <= 2
    val = np.array(run["val_loss"])
    turn_loss = val[report["turn_epoch"] - 1]
    assert f"bottomed out at {turn_loss:.3g} at epoch {report['turn_epoch']}" in report["summary"]
    assert f"{(val[-1] - turn_loss) / turn_loss:.0%} above it" in report["summary"]
    assert "use the epoch-" in report["summary"]


def test_gap_overfitting_reports_no_turn():
    report = diagnose(history(decay(N, 2.0, 0.02, 4), decay(N, 2.0, 0.9, 3)))
    assert report["verdict"] == "overfitting"
    assert report["turn_epoch"] is None
    assert report["generalization_gap"]["relative"] > 0.5


def test_epoch_column_numbers_resumed_runs():
    """A history that continues at epoch 10 (rows 1-9 dropped): the report uses the epoch column."""
    run = history(TRAIN, u_shape(N, 10))
    run["epoch"] = [10 + i for i in range(N)]
    report = diagnose(run)
    assert report["best_epoch"] == report["turn_epoch"] == 10 + 10
    assert "epoch 20" in report["summary"]


def test_an_older_cnnctl_history_counting_from_0_is_shifted_to_count_from_1():
    run = history(TRAIN, u_shape(N, 10))
    run["epoch"] = list(range(N))  # Keras' CSVLogger numbering, which cnnctl wrote before
    assert diagnose(run)["best_epoch"] == 11


def test_without_epoch_column_counts_rows():
    run = history(TRAIN, u_shape(N, 10))
    del run["epoch"]
    assert diagnose(run)["best_epoch"] == 11


def test_one_epoch_says_too_little_history():
    report = diagnose(history([2.1], [1.9]))
    assert report["verdict"] == "still improving"
    assert "too little history" in report["summary"].lower()
    assert "1 epoch" in report["summary"]
    assert report["best_epoch"] == 1 and report["turn_epoch"] is None


def test_missing_val_loss_uses_training_loss_and_says_so():
    report = diagnose(history(decay(N, 2.0, 0.1, 4)))
    assert report["monitor"] == "loss"
    assert report["best_epoch"] == N
    assert report["final_val_loss"] is None and report["min_val_loss"] is None
    assert "without validation data" in report["summary"]
    assert any("no val_loss" in note for note in report["notes"])
    assert any("validation_split" in line for line in report["advice"])


def test_nan_epochs_are_flagged_and_left_out():
    clean = history(TRAIN, u_shape(N, 10))
    holed = history(TRAIN, u_shape(N, 10))
    holed["val_loss"][5] = NAN
    holed["loss"][20] = NAN
    report, reference = diagnose(holed), diagnose(clean)
    assert report["nan_epochs"] == [6, 21]
    assert any("6, 21" in note for note in report["notes"])
    assert report["verdict"] == reference["verdict"] == "overfitting"
    assert report["turn_epoch"] == reference["turn_epoch"]
    assert reference["nan_epochs"] == [] and reference["notes"] == []


def test_sparse_validation_falls_back_to_training_loss():
    """`validation_freq` leaves NA in most rows: too few validation points for a trend."""
    val = [NAN] * N
    val[14], val[29] = 0.5, 0.4
    report = diagnose(history(decay(N, 2.0, 0.1, 4), val))
    assert report["monitor"] == "loss"
    assert report["final_val_loss"] == 0.4 and report["min_val_loss"] == 0.4
    assert any("only 2 of 30" in note for note in report["notes"])


def test_divergence_points_at_last_good_weights():
    report = diagnose(history([2.0, 1.5, 1.2, NAN, NAN], [1.9, 1.4, 1.3, NAN, NAN]))
    assert report["verdict"] == "underfitting"
    assert "diverged" in report["summary"] and "epoch 4" in report["summary"]
    assert "epoch-3 weights" in report["summary"]
    assert report["best_epoch"] == 3 and report["nan_epochs"] == [4, 5]
    assert any("learning rate" in line for line in report["advice"])


def test_baseline_decides_between_underfitting_and_good_fit():
    loss, val = decay(N, 2.0, 1.2, 4), decay(N, 2.0, 1.25, 4)
    near_guessing = history(loss, val, accuracy=np.full(N, 0.24), val_accuracy=np.full(N, 0.25))
    learned = history(loss, val, accuracy=np.full(N, 0.6), val_accuracy=np.full(N, 0.58))
    # Headroom rule: 0.1 + 0.2 * (1 - 0.1) = 0.28.
    assert diagnose(near_guessing, baseline_accuracy=0.1)["verdict"] == "underfitting"
    assert (
        "validation accuracy 0.25 at epoch 30 is barely above always answering the majority class, 0.1"
        in diagnose(near_guessing, baseline_accuracy=0.1)["summary"]
    )
    assert diagnose(learned, baseline_accuracy=0.1)["verdict"] == "good fit"
    assert diagnose(near_guessing, baseline_accuracy=0.2)["final_val_accuracy"] == 0.25


@pytest.mark.parametrize(
    "run, kwargs, message",
    [
        ({"val_loss": [1.0]}, {}, "no 'loss' column. Available columns are: val_loss"),
        ({"loss": [], "val_loss": []}, {}, "no epochs"),
        ({"loss": [1.0, 0.5], "val_loss": [1.0]}, {}, "one value per epoch"),
        ({"loss": [1.0]}, {"baseline_accuracy": 1.5}, "Received: baseline_accuracy=1.5"),
    ],
)
def test_bad_input_is_refused(run, kwargs, message):
    with pytest.raises(ValueError, match=message):
        diagnose(run, **kwargs)


def test_accepts_numpy_arrays_and_none():
    run = {"loss": np.array([2.0, 1.0, 0.8, 0.7, 0.69]), "val_loss": [2.0, 1.1, None, 0.8, 0.8]}
    report = diagnose(run)
    assert report["nan_epochs"] == [3]
    json.dumps(report, allow_nan=False)


# ---------------------------------------------------------------- read_history_csv


def write_keras_csv(path, header, rows):
    """What keras.callbacks.CSVLogger writes: a header row, then one row per epoch."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_read_history_csv_round_trip(tmp_path):
    header = ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    rng = np.random.default_rng(7)
    values = rng.uniform(0.01, 2.0, size=(12, 5))
    rows = [[epoch, *map(repr, map(float, row))] for epoch, row in enumerate(values)]
    rows[4][5] = "NA"  # Keras' marker for a metric missing that epoch (validation_freq > 1)
    rows[7][3] = "nan"  # a diverged loss
    path = tmp_path / "history.csv"
    write_keras_csv(path, header, rows)

    read = read_history_csv(path)

    assert list(read) == header
    assert read["epoch"] == [float(epoch) for epoch in range(12)]
    for column, name in enumerate(header[1:]):
        expected = values[:, column].tolist()
        if name == "val_loss":
            expected[4] = NAN
        if name == "loss":
            expected[7] = NAN
        assert len(read[name]) == 12
        for got, want in zip(read[name], expected):
            assert (math.isnan(got) and math.isnan(want)) or got == want  # repr round-trips exactly
    assert diagnose(read)["nan_epochs"] == [5, 8]


def test_read_history_csv_then_diagnose(tmp_path):
    run = history(TRAIN, u_shape(N, 10))
    path = tmp_path / "history.csv"
    write_keras_csv(path, list(run), zip(*run.values()))
    assert diagnose(read_history_csv(path)) == diagnose(run)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "missing; the run has no training history"),
        ("", "empty; expected a header"),
        ("epoch,val_loss\n0,1.0\n", "no `loss` column; the columns are epoch, val_loss"),
        ("epoch,loss\n0,1.0\n1,oops\n", "line 3, column loss: 'oops' is not a number"),
        ("epoch,loss\n0,1.0,2.0\n", "line 2: 3 values for 2 columns"),
    ],
)
def test_read_history_csv_errors(tmp_path, content, message):
    path = tmp_path / "history.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RunError, match=message) as error:
        read_history_csv(path)
    assert str(path) in str(error.value)


def test_module_example_runs():
    import doctest

    import cnnctl.evaluation.diagnosis

    assert doctest.testmod(cnnctl.evaluation.diagnosis).failed == 0


# ---------------------------------------------------------------- every number a sentence states, from history.csv

NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"

# The two runs of issue 17: a 3-epoch digits run whose validation loss ended just above its best epoch, and a
# 30-epoch photo run whose test accuracy (0.59) is barely above the majority class (0.54).
DIGITS_3 = history(
    [0.95, 0.27, 0.16], [0.483, 0.188, 0.197], accuracy=[0.74, 0.93, 0.96], val_accuracy=[0.86, 0.95, 0.94]
)
PHOTOS_30 = history(
    noisy(decay(N, 0.69, 0.52, 6), 0.01, 1),
    noisy(decay(N, 0.69, 0.66, 5), 0.01, 2),
    accuracy=np.linspace(0.55, 0.72, N),
    val_accuracy=np.linspace(0.54, 0.62, N),
)

# (id, history, diagnose kwargs, expected verdict)
issue_cases = [
    ("digits-3-epochs", DIGITS_3, {"baseline_accuracy": 0.1, "accuracy": 0.95, "split": "test"}, "good fit"),
    ("photos-near-baseline", PHOTOS_30, {"baseline_accuracy": 0.54, "accuracy": 0.59, "split": "test"}, "underfitting"),
    ("photos-below-baseline", PHOTOS_30, {"baseline_accuracy": 0.54, "accuracy": 0.5, "split": "val"}, "underfitting"),
    (
        "overfit-near-baseline",
        history(TRAIN, u_shape(N, 10)),
        {"baseline_accuracy": 0.5, "accuracy": 0.52},
        "overfitting",
    ),
    (
        "still-near-baseline",
        history(decay(N, 2.0, 0.1, 15), decay(N, 2.1, 0.15, 15)),
        {"baseline_accuracy": 0.1, "accuracy": 0.12, "split": "test"},
        "still improving",
    ),
    ("nan-holes", {**history(TRAIN, u_shape(N, 10)), "loss": [*TRAIN[:20], NAN, *TRAIN[21:]]}, {}, "overfitting"),
]


def epoch_rows(run):
    """1-based epoch → row, counted here the way people count: cnnctl's `epoch` column as it is, Keras' own
    CSVLogger's (which starts at 0) + 1, else rows + 1."""
    if "epoch" in run:
        shift = 1 if int(run["epoch"][0]) == 0 else 0
        epochs = [int(e) + shift for e in run["epoch"]]
    else:
        epochs = range(1, len(run["loss"]) + 1)
    return {epoch: row for row, epoch in enumerate(epochs)}


def shown(value, text):
    """`value` written at the precision of `text`, the way a reader rounds what they look up."""
    if text.endswith("%"):
        decimals = len(text[:-1].partition(".")[2])
        return f"{100 * value:.{decimals}f}%"
    if text.endswith("x"):
        return f"{value:.1f}x"
    return f"{value:.3g}"


def check_sentence(sentence, run, kwargs):
    """Every number in `sentence` is matched to the history (or the accuracy and baseline passed in) and
    recomputed from it; whatever digits are left over were not accounted for and fail the test."""
    rows = epoch_rows(run)
    monitored = np.array(
        run["val_loss"] if "val_loss" in run and np.isfinite(run["val_loss"]).sum() >= 3 else run["loss"], dtype=float
    )
    numeric = {name: np.array(values, dtype=float) for name, values in run.items() if name != "epoch"}
    stated = []  # the exact history values behind every "VALUE at epoch E"
    rest = sentence

    def consume(pattern, check):
        nonlocal rest
        for match in re.finditer(pattern, rest):
            check(*match.groups())
        rest = re.sub(pattern, " ", rest)

    def accuracy(value):
        expected = kwargs.get("accuracy")
        assert expected is not None and shown(expected, value) == value, sentence

    def at_epoch(value, epoch):
        row = rows[int(epoch)]
        matches = [column[row] for column in numeric.values() if shown(column[row], value) == value]
        assert matches, f"{value} is no column's value at epoch {epoch}: {sentence}"
        stated.append(matches[0])

    def lowest(value, epoch):
        assert shown(np.nanmin(monitored), value) == value and np.nanargmin(monitored) == rows[int(epoch)], sentence
        stated.append(np.nanmin(monitored))

    def best_before(first_recent, value, epoch):
        earlier = monitored[: rows[int(first_recent)]]
        assert shown(np.nanmin(earlier), value) == value and np.nanargmin(earlier) == rows[int(epoch)], sentence
        stated.append(np.nanmin(earlier))

    def weights(epoch):
        assert np.nanargmin(monitored) == rows[int(epoch)], sentence

    def blew_up(epoch):
        assert not np.isfinite(run["loss"][rows[int(epoch)]]), sentence

    def count(number):
        assert int(number) in (len(run["loss"]), int(np.isfinite(monitored).sum())), sentence

    def nan_epochs(listed):
        for epoch in re.findall(r"\d+", listed):
            row = rows[int(epoch)]
            assert not all(np.isfinite(run[name][row]) for name in ("loss", "val_loss") if name in run), sentence

    consume(rf"({NUMBER}) at the last epoch", lambda v: None)  # not produced; a guard against loose wording
    consume(rf"(?:lowest|lowest in the final epochs|lowest at the last epoch), ({NUMBER}) at epoch (\d+)", lowest)
    consume(rf"best before epoch (\d+), ({NUMBER}) at epoch (\d+)", best_before)
    consume(rf"(?<!-)accuracy ({NUMBER})(?![\d.]| at)", accuracy)
    consume(rf"majority class, ({NUMBER})", lambda v: _equal_baseline(v, kwargs, sentence))
    # Values are checked in order of appearance so the percentages and ratios below can use them.
    for match in re.finditer(rf"({NUMBER}) at epoch (\d+)", rest):
        at_epoch(*match.groups())
    rest = re.sub(rf"({NUMBER}) at epoch (\d+)", " ", rest)
    pairs = [(a, b) for a in stated for b in stated if b]
    consume(rf"({NUMBER}%)", lambda p: _any(p, [abs(a - b) / abs(b) for a, b in pairs], sentence))
    consume(rf"\(({NUMBER}x)\)", lambda r: _any(r, [a / b for a, b in pairs], sentence))
    consume(r"epoch-(\d+) weights", weights)
    consume(r"(?:NaN|infinite) at epoch (\d+)", blew_up)
    consume(r"only (\d+) epochs? (?:ran|have)", count)
    consume(r"epoch\(s\) ([\d, ]+(?: and \d+ more)?)", nan_epochs)
    consume(
        r"finite in only (\d+) of (\d+) epochs",
        lambda finite, total: _equal(int(finite), int(np.isfinite(run["val_loss"]).sum()), sentence),
    )
    consume(r"after epoch (\d+)", lambda epoch: _equal(int(epoch) in rows, True, sentence))
    assert not re.search(r"\d", rest), f"unchecked number left in {rest!r} (from {sentence!r})"


def _equal(got, want, sentence):
    assert got == want, sentence


def _equal_baseline(value, kwargs, sentence):
    assert shown(kwargs["baseline_accuracy"], value) == value, sentence


def _any(text, candidates, sentence):
    assert any(shown(candidate, text) == text for candidate in candidates), f"{text} from no stated pair: {sentence}"


all_cases = cases + issue_cases


@pytest.mark.parametrize("case_id, run, kwargs, expected", all_cases, ids=[case[0] for case in all_cases])
def test_every_number_in_the_sentences_comes_from_the_history(case_id, run, kwargs, expected):
    report = diagnose(run, **kwargs)
    assert report["verdict"] == expected, report["summary"]
    for sentence in [report["summary"], *report["notes"]]:
        check_sentence(sentence, run, kwargs)


@pytest.mark.parametrize("case_id, run, kwargs, expected", all_cases, ids=[case[0] for case in all_cases])
def test_still_improving_only_when_the_last_epochs_beat_the_earlier_best(case_id, run, kwargs, expected):
    report = diagnose(run, **kwargs)
    loss = np.array(run.get("val_loss", run["loss"]), dtype=float)
    if report["verdict"] != "still improving" or len(loss) < 3 or "too little history" in report["summary"]:
        return
    window = max(1, min(3, len(loss) // 4))
    assert np.nanmin(loss[-window:]) < np.nanmin(loss[:-window]) * 0.99, report["summary"]


def test_the_three_epoch_digits_run_is_not_still_falling():
    """Issue 17: 0.483 → 0.188 → 0.197 was called 'still falling … down about 76% per epoch'."""
    report = diagnose(DIGITS_3, baseline_accuracy=0.1, accuracy=0.95, split="test")
    assert "falling" not in report["summary"] and "per epoch" not in report["summary"]
    assert report["best_epoch"] == 2
    assert report["summary"] == (
        "Good fit: validation loss ended at 0.197 at epoch 3, 5% above its lowest, "
        "0.188 at epoch 2, close to training loss, 0.16 at epoch 3."
    )


@pytest.mark.parametrize("accuracy, words", [(0.59, "barely above"), (0.54, "no better than"), (0.5, "no better than")])
def test_accuracy_near_the_majority_class_is_said_plainly(accuracy, words):
    """Issue 17: 0.59 test accuracy against a 0.54 majority class was called a 'good fit … converged'."""
    report = diagnose(PHOTOS_30, baseline_accuracy=0.54, accuracy=accuracy, split="test")
    assert report["verdict"] == "underfitting"
    assert f"test accuracy {accuracy:.3g} is {words} always answering the majority class, 0.54" in report["summary"]
    assert "good fit" not in report["summary"].lower() and "converged" not in report["summary"]
    advice = " ".join(report["advice"])
    for hint in ("more epochs", "learning rate", "pretrained network"):
        assert hint in advice
    assert report["accuracy"] == accuracy and report["split"] == "test"


def test_a_clear_win_over_the_baseline_is_not_flagged():
    report = diagnose(PHOTOS_30, baseline_accuracy=0.54, accuracy=0.9, split="test")
    assert "majority class" not in report["summary"]


def test_no_test_split_advice_when_the_numbers_are_test_numbers():
    good = history(decay(N, 2.0, 0.3, 4), decay(N, 1.9, 0.35, 3))
    on_test = diagnose(good, baseline_accuracy=0.1, accuracy=0.9, split="test")
    on_val = diagnose(good, baseline_accuracy=0.1, accuracy=0.9, split="val")
    assert on_test["verdict"] == on_val["verdict"] == "good fit"
    assert not any("test split" in line or "--split test" in line for line in on_test["advice"])
    assert any("--split test" in line for line in on_val["advice"])


@pytest.mark.parametrize("case_id, run, kwargs, expected", all_cases, ids=[case[0] for case in all_cases])
def test_the_verdict_is_said_once(case_id, run, kwargs, expected):
    from cnnctl.runs.contract import verdict_sentence

    report = diagnose(run, **kwargs)
    line = verdict_sentence(report)
    assert line == report["summary"] and line.lower().count(expected) == 1 + line.lower().count(f"not {expected}")
    assert (
        verdict_sentence({"verdict": "good fit", "summary": "validation loss flattened."})
        == "Good fit: validation loss flattened."
    )


def test_real_history_csv_sentences_check_out(tmp_path, trained_digits_run):
    """The test run's own history.csv, and the issue's digits history written as Keras writes it."""
    metrics = json.loads((trained_digits_run.path / "metrics.json").read_text())
    real = read_history_csv(trained_digits_run.path / "history.csv")
    kwargs = {
        "baseline_accuracy": metrics["diagnosis"]["baseline_accuracy"],
        "accuracy": metrics["accuracy"],
        "split": metrics["split"],
    }
    report = diagnose(real, **kwargs)
    check_sentence(report["summary"], real, kwargs)
    if metrics["split"] == "test":
        assert not any("--split test" in line for line in metrics["diagnosis"]["advice"])
    path = tmp_path / "history.csv"
    write_keras_csv(path, list(DIGITS_3), zip(*DIGITS_3.values()))
    read = read_history_csv(path)
    check_sentence(diagnose(read, baseline_accuracy=0.1)["summary"], read, {"baseline_accuracy": 0.1})


def test_losses_flat_at_ln_k_are_called_chance_not_progress():
    """A frozen random backbone or shuffled labels: both losses sit at ln K epoch after epoch. The slope rules
    alone would call that a good fit or "still improving"; it is underfitting, at chance, with advice for it."""
    import math

    chance = math.log(5)
    wobble = [0.02, -0.01, 0.0, 0.01, -0.005, 0.005, 0.0, -0.01]
    history = {
        "epoch": list(range(1, 9)),
        "loss": [chance + w for w in wobble],
        "val_loss": [chance - w / 2 for w in wobble],
    }
    at_chance = diagnose(history, baseline_accuracy=0.2, accuracy=0.21, split="test", num_classes=5)
    assert at_chance["verdict"] == "underfitting"
    assert at_chance["summary"].startswith("Underfitting: at chance: training loss ")
    assert "sit at ln 5 = 1.61, the loss of guessing uniformly among 5 classes, after 8 epochs" in at_chance["summary"]
    assert not any("backbone" in line for line in at_chance["advice"])  # this run has none
    assert any("learning rate about 10x" in line for line in at_chance["advice"])
    from cnnctl.evaluation.backbone_advice import Backbone

    random_frozen = Backbone("VGG16", weights=None, trains=False, head_normalized=False)
    advice = diagnose(history, baseline_accuracy=0.2, accuracy=0.21, num_classes=5, backbone=random_frozen)["advice"]
    assert advice[0].startswith("The frozen backbone (VGG16) has random weights (model.backbone.weights: null")
    assert "make BatchNormalization the first layer of the head (model.layers)" in advice[1]
    without = diagnose(history, baseline_accuracy=0.2, accuracy=0.21, split="test")
    assert "at chance" not in without["summary"]  # the rule needs K
    learned = diagnose(history, baseline_accuracy=0.2, accuracy=0.9, split="test", num_classes=5)
    assert "at chance" not in learned["summary"]  # an accuracy far above guessing is not chance, whatever the loss


def test_fine_tuning_that_never_beats_the_first_phase_is_said():
    from cnnctl.evaluation.diagnosis import diagnose

    history = {
        "loss": [1.0, 0.7, 0.6, 0.62, 0.61, 0.6],
        "val_loss": [0.9, 0.65, 0.55, 0.58, 0.57, 0.56],
        "phase": [1, 1, 1, 2, 2, 2],
    }
    report = diagnose(history)
    assert report["fine_tuning"] == (
        "fine-tuning (epochs 4–6) never beat the first phase's lowest validation loss, 0.55 at epoch 3: with "
        "restore_best_weights the model is the first phase's; try a lower train.fine_tune.learning_rate or unfreeze "
        "fewer layers"
    )
    assert report["fine_tuning"] in report["notes"]
    history["val_loss"][-1] = 0.5  # the last fine-tuning epoch wins
    assert "fine_tuning" not in diagnose(history)
    assert "fine_tuning" not in diagnose({key: history[key] for key in ("loss", "val_loss")})
