"""Tests for cnnctl.plots: every figure renders to a real, non-blank PNG of the promised size, and what a user
reads off a figure (AUCs, cell counts, the best epoch, the verdict) matches an independent computation."""

import io
import json
import os
import re
import stat
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from cnnctl.reporting import curves, grids, plots, scores

RNG_SEED = 0


# ---------------------------------------------------------------- helpers and inputs


def render(fig: Figure, tmp_path, name: str = "figure.png") -> np.ndarray:
    """Save through save_figure, read the PNG back, check its size against figsize × DPI; return pixels."""
    path = plots.save_figure(fig, tmp_path / name)
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    expected_width, expected_height = np.round(fig.get_size_inches() * plots.DPI)
    height, width, _ = pixels.shape
    assert abs(width - expected_width) <= 1 and abs(height - expected_height) <= 1
    return pixels


def texts_of(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.findobj(Text)]


def legend_of(ax):
    """The axes' legend, or the figure's (the ROC and PR figures put theirs beside the plot)."""
    return ax.get_legend() or ax.get_figure().legends[0]


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in legend_of(ax).get_texts()]


def legend_scores(ax, name: str) -> dict[str, float]:
    """Legend entries like "cat (AUC = 0.912)" → {"cat": 0.912}."""
    scores = {}
    for text in legend_texts(ax):
        match = re.fullmatch(rf"(.+) \({name} = ([0-9.]+)\)", text)
        if match:
            scores[match.group(1)] = float(match.group(2))
    return scores


def overfitting_history(epochs: int = 12, turn: int = 6) -> dict[str, list[float]]:
    """Validation loss falls until 0-based epoch `turn - 1`, then rises; training loss keeps falling."""
    val = [1.0 - 0.1 * min(epoch, turn - 1) + 0.05 * max(0, epoch - turn + 1) for epoch in range(epochs)]
    return {
        "epoch": list(range(epochs)),
        "loss": [1.0 / (epoch + 1) for epoch in range(epochs)],
        "val_loss": val,
        "accuracy": [0.5 + 0.04 * epoch for epoch in range(epochs)],
        "val_accuracy": [0.5 + 0.03 * min(epoch, turn) for epoch in range(epochs)],
    }


def make_scores(
    n_samples: int, n_classes: int, seed: int = RNG_SEED, margin: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax-like probabilities that favour the true class by `margin` logits, so curves are
    informative (a margin of 3.5 makes every one-vs-rest AUC exceed 0.99)."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n_samples)
    logits = rng.normal(size=(n_samples, n_classes))
    logits[np.arange(n_samples), y_true] += margin
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, prob


# ---------------------------------------------------------------- every figure renders


def _rng():
    return np.random.default_rng(RNG_SEED)


def _confusion(n):
    y_true, prob = make_scores(40 * n, n)
    return confusion_matrix(y_true, prob.argmax(axis=1), labels=range(n))


# (case id, figure factory, minimum width, minimum height) in pixels.
RENDER_CASES = [
    ("loss", lambda: curves.loss_curve(overfitting_history(), best_epoch=6), 600, 400),
    (
        "loss+diagnosis",
        lambda: curves.loss_curve(
            overfitting_history(),
            6,
            {"verdict": "overfitting", "summary": "Validation loss rose after epoch 6.", "turn_epoch": 7},
        ),
        600,
        400,
    ),
    ("accuracy", lambda: curves.metric_curve(overfitting_history(), "accuracy", best_epoch=7), 600, 400),
    ("confusion counts", lambda: scores.confusion_matrix_figure(_confusion(4), list("abcd"), False), 500, 500),
    ("roc", lambda: scores.roc_figure(*make_scores(200, 3), ["cat", "dog", "bird"]), 500, 500),
    ("pr", lambda: scores.pr_figure(*make_scores(200, 3), ["cat", "dog", "bird"]), 500, 500),
    (
        "grid gray",
        lambda: grids.example_grid(
            _rng().random((5, 8, 8, 1)), [f"true: {i}\npred: 0 (0.97)" for i in range(5)], ["red"] * 5, ncols=4
        ),
        500,
        250,
    ),
    ("grid signals", lambda: grids.example_grid(_rng().normal(size=(3, 50, 2)).cumsum(axis=1)), 300, 140),
    ("grid empty", lambda: grids.example_grid([]), 300, 100),
    ("filters conv2d", lambda: grids.filters_figure(_rng().normal(size=(3, 3, 1, 4))), 300, 150),
    ("filters conv1d", lambda: grids.filters_figure(_rng().normal(size=(5, 1, 4))), 400, 150),
    (
        "feature maps",
        lambda: grids.feature_maps_figure(
            [("conv2d", _rng().random((6, 6, 4))), ("conv1d", _rng().random((20, 3))), ("dense", _rng().random(5))]
        ),
        500,
        300,
    ),
    ("compare", lambda: curves.compare_figure({"a": overfitting_history(), "b": overfitting_history(8, 3)}), 600, 400),
    (
        "filter demo",
        lambda: grids.filter_demo_figure(
            [
                ("original", _rng().random((8, 8))),
                ("convolution", _rng().normal(size=(6, 6))),
                ("pooled", _rng().random((3, 3))),
            ]
        ),
        600,
        250,
    ),
]


@pytest.mark.parametrize(
    "factory, min_width, min_height", [case[1:] for case in RENDER_CASES], ids=[case[0] for case in RENDER_CASES]
)
def test_figure_renders_to_a_non_blank_png_of_its_size(tmp_path, factory, min_width, min_height):
    fig = factory()
    assert isinstance(fig, Figure)
    pixels = render(fig, tmp_path)
    height, width, _ = pixels.shape
    assert width >= min_width and height >= min_height
    assert pixels.mean(axis=2).std() > 5, "the PNG is (nearly) blank"


# ---------------------------------------------------------------- save_figure


def test_save_figure_replaces_the_target_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "nested" / "loss_curve.png"
    # The cheapest figures to render: this test is about the file, not the drawing.
    first = grids.example_grid([])
    second = grids.filter_demo_figure([("one", np.eye(3))])
    assert plots.save_figure(first, target) == target
    before = target.read_bytes()
    plots.save_figure(second, target)
    assert target.read_bytes() != before
    assert [path.name for path in target.parent.iterdir()] == ["loss_curve.png"]
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Readable by others: the temp file's private mode must not carry over to the image.
    assert stat.S_IMODE(os.stat(target).st_mode) & 0o044 == 0o044


def test_save_figure_keeps_the_old_image_when_rendering_fails(tmp_path, monkeypatch):
    target = tmp_path / "roc.png"
    fig = grids.example_grid([])
    plots.save_figure(fig, target)
    before = target.read_bytes()

    def broken_savefig(target, **kwargs):
        # Half an image into whatever save_figure renders to: a file, or a buffer it writes out afterwards.
        if hasattr(target, "write"):
            target.write(b"\x89PNG half")
        else:
            with open(target, "wb") as handle:
                handle.write(b"\x89PNG half")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        plots.save_figure(fig, target)
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["roc.png"]


# ---------------------------------------------------------------- training curves


@pytest.mark.parametrize("monitor, expected", [("val_loss", 6), ("loss", 12), ("val_accuracy", 7), ("missing", None)])
def test_find_best_epoch_is_one_based_and_direction_aware(monitor, expected):
    assert curves.find_best_epoch(overfitting_history(epochs=12, turn=6), monitor) == expected


def test_loss_curve_plots_one_based_epochs_and_marks_the_best_epoch():
    history = overfitting_history(epochs=12, turn=6)
    fig = curves.loss_curve(history, best_epoch=6)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["train loss"].get_xdata()) == list(range(1, 13))
    assert list(lines["validation loss"].get_ydata()) == history["val_loss"]
    [marker_label] = [label for label in lines if label.startswith("best epoch")]
    assert marker_label == f"best epoch 6 (val_loss {history['val_loss'][5]:.4g})"
    assert list(lines[marker_label].get_xdata()) == [6]
    assert list(lines[marker_label].get_ydata()) == [history["val_loss"][5]]
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [6, 6]]
    assert len(vertical) == 1
    assert marker_label in legend_texts(ax)
    assert ax.get_xlabel() == "Epoch" and ax.get_ylabel() == "Loss" and ax.get_title() == "Loss per epoch"


def test_loss_curve_rejects_a_best_epoch_outside_the_history():
    expected = r"best_epoch must be a 1-based epoch of the history \(1\.\.12\). Received: 13"
    with pytest.raises(ValueError, match=expected):
        curves.loss_curve(overfitting_history(), best_epoch=13)


def caption_of(fig: Figure) -> str:
    """The diagnosis caption, with the line wrapping undone."""
    return " ".join(fig.get_supxlabel().split())


def test_loss_curve_shades_overfitting_from_the_turn_epoch_and_captions_the_verdict():
    summary = "Validation loss rose for 6 epochs after epoch 6 while training loss kept falling."
    fig = curves.loss_curve(overfitting_history(), 6, {"verdict": "overfitting", "summary": summary, "turn_epoch": 7})
    ax = fig.axes[0]
    [shade] = ax.collections
    x = shade.get_paths()[0].vertices[:, 0]
    assert (x.min(), x.max()) == (7, 12)
    assert "overfitting from epoch 7" in legend_texts(ax)
    assert caption_of(fig) == f"Overfitting. {summary}"


def test_loss_curve_does_not_repeat_a_verdict_the_summary_already_opens_with():
    summary = "Overfitting: validation loss bottomed out at epoch 6 and rose 30% by epoch 12."
    fig = curves.loss_curve(overfitting_history(), 6, {"verdict": "overfitting", "summary": summary, "turn_epoch": 6})
    assert caption_of(fig) == summary


def test_loss_curve_uses_row_numbers_when_the_epoch_column_is_not_increasing():
    history = {"epoch": [0, 1, 0, 1], "loss": [1.0, 0.8, 0.7, 0.6], "val_loss": [1.1, 0.9, 0.8, 0.85]}
    assert curves.find_best_epoch(history) == 3
    lines = curves.loss_curve(history, best_epoch=3).axes[0].get_lines()
    assert list(lines[0].get_xdata()) == [1, 2, 3, 4]


@pytest.mark.parametrize("verdict", ["underfitting", "good fit", "still improving"])
def test_loss_curve_captions_other_verdicts_without_shading(verdict):
    diagnosis = {"verdict": verdict, "summary": "One sentence.", "turn_epoch": 7}
    fig = curves.loss_curve(overfitting_history(), None, diagnosis)
    assert len(fig.axes[0].collections) == 0
    assert caption_of(fig) == f"{verdict.capitalize()}. One sentence."


def test_loss_curve_rejects_an_unknown_verdict():
    with pytest.raises(ValueError, match=r"verdict must be one of 'overfitting', .* Received: 'overfit'"):
        curves.loss_curve(overfitting_history(), None, {"verdict": "overfit", "summary": ""})


def test_metric_curve_without_validation_column_draws_training_only():
    fig = curves.metric_curve({"epoch": [0, 1, 2], "accuracy": [0.2, 0.5, 0.7]}, best_epoch=3)
    ax = fig.axes[0]
    assert "train accuracy" in legend_texts(ax)
    assert "validation accuracy" not in legend_texts(ax)
    assert "best epoch 3 (accuracy 0.7)" in legend_texts(ax)


def test_metric_curve_names_the_columns_it_has_when_the_metric_is_missing():
    with pytest.raises(ValueError, match=r"no 'auc' or 'val_auc' column; it has: epoch, loss"):
        curves.metric_curve({"epoch": [0], "loss": [1.0]}, "auc")


def test_compare_figure_gives_each_run_one_colour_validation_solid_train_dashed():
    fig = curves.compare_figure({"baseline": overfitting_history(), "wider": overfitting_history(8, 3)})
    ax = fig.axes[0]
    assert legend_texts(ax) == ["baseline", "wider", "validation", "train"]
    lines = ax.get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color() == lines[3].get_color()
    assert len(lines[2].get_xdata()) == 8


# ---------------------------------------------------------------- classification results


def test_confusion_matrix_cells_show_the_counts_with_readable_text_colour():
    y_true, prob = make_scores(300, 4)
    counts = confusion_matrix(y_true, prob.argmax(axis=1))
    fig = scores.confusion_matrix_figure(counts, ["cat", "dog", "bird", "fish"], normalized=False)
    ax = fig.axes[0]
    assert [text.get_text() for text in ax.texts] == [str(value) for value in counts.ravel()]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["cat", "dog", "bird", "fish"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["cat", "dog", "bird", "fish"]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        f"Confusion matrix (n={len(y_true)}), counts",
        "Predicted",
        "True",
    )
    colors = np.array([text.get_color() for text in ax.texts]).reshape(counts.shape)
    darkest, lightest = np.unravel_index(counts.argmax(), counts.shape), np.unravel_index(counts.argmin(), counts.shape)
    assert (colors[darkest], colors[lightest]) == ("white", "black")
    assert len(fig.axes) == 2, "a colorbar is drawn"


def test_confusion_matrix_normalized_shows_row_fractions_and_zero_for_absent_classes():
    counts = np.array([[8, 2, 0], [1, 1, 2], [0, 0, 0]])
    fig = scores.confusion_matrix_figure(counts, ["a", "b", "c"], normalized=True, split="val")
    ax = fig.axes[0]
    expected = ["0.80", "0.20", "0.00", "0.25", "0.25", "0.50", "0.00", "0.00", "0.00"]
    assert [text.get_text() for text in ax.texts] == expected
    assert ax.get_title() == "Confusion matrix — val split (n=14), row-normalized"


def test_confusion_matrix_title_names_the_split_and_its_example_count():
    y_true, prob = make_scores(250, 3)
    counts = confusion_matrix(y_true, prob.argmax(axis=1))
    ax = scores.confusion_matrix_figure(counts, ["a", "b", "c"], split="test").axes[0]
    assert ax.get_title() == "Confusion matrix — test split (n=250), counts"


def test_confusion_matrix_with_many_classes_drops_cell_text_and_grows():
    names = [f"class{i}" for i in range(scores.MAX_ANNOTATED_CLASSES + 1)]
    big = scores.confusion_matrix_figure(_confusion(len(names)), names, normalized=False)
    small = scores.confusion_matrix_figure(_confusion(5), names[:5], normalized=False)
    assert len(big.axes[0].texts) == 0
    assert big.get_size_inches()[0] > small.get_size_inches()[0]
    assert all(label.get_rotation() == 45 for label in big.axes[0].get_xticklabels())


def test_confusion_matrix_rejects_a_shape_that_does_not_match_the_class_names():
    with pytest.raises(ValueError, match=r"matrix must be \(3, 3\) for 3 class names. Received shape: \(2, 2\)"):
        scores.confusion_matrix_figure(np.eye(2), ["a", "b", "c"], normalized=False)


def test_roc_legend_shows_the_auc_of_each_class_and_both_averages():
    y_true, prob = make_scores(400, 4)
    names = ["cat", "dog", "bird", "fish"]
    ax = scores.roc_figure(y_true, prob, names).axes[0]
    shown = legend_scores(ax, "AUC")
    one_hot = np.eye(4)[y_true]
    for label, name in enumerate(names):
        assert shown[name] == pytest.approx(roc_auc_score(y_true == label, prob[:, label]), abs=6e-4)
    assert shown["micro-average"] == pytest.approx(roc_auc_score(one_hot, prob, average="micro"), abs=6e-4)
    assert shown["macro-average"] == pytest.approx(roc_auc_score(one_hot, prob, average="macro"), abs=6e-4)
    assert shown["chance"] == 0.5


def test_roc_skips_classes_absent_from_y_true():
    y_true, prob = make_scores(300, 4)
    y_true[y_true == 2] = 0
    ax = scores.roc_figure(y_true, prob, ["cat", "dog", "bird", "fish"]).axes[0]
    shown = legend_scores(ax, "AUC")
    assert "bird" not in shown and {"cat", "dog", "fish"} <= set(shown)
    present = [0, 1, 3]
    expected_macro = np.mean([roc_auc_score(y_true == label, prob[:, label]) for label in present])
    assert shown["macro-average"] == pytest.approx(expected_macro, abs=6e-4)


@pytest.mark.parametrize("shape", ["two columns", "sigmoid column"])
def test_roc_binary_draws_one_curve_for_the_positive_class(shape):
    y_true, prob = make_scores(300, 2)
    y_prob = prob if shape == "two columns" else prob[:, 1:]
    ax = scores.roc_figure(y_true, y_prob, ["benign", "malignant"]).axes[0]
    shown = legend_scores(ax, "AUC")
    assert set(shown) == {"chance", "malignant"}
    assert shown["malignant"] == pytest.approx(roc_auc_score(y_true, prob[:, 1]), abs=6e-4)


def test_roc_with_many_classes_names_only_the_weakest():
    y_true, prob = make_scores(1500, 30)
    names = [f"c{i}" for i in range(30)]
    ax = scores.roc_figure(y_true, prob, names).axes[0]
    texts = legend_texts(ax)
    assert len(texts) == 3 + 1 + scores.WEAKEST_CLASSES_SHOWN
    assert f"{30 - scores.WEAKEST_CLASSES_SHOWN} other classes" in texts
    aucs = {names[label]: roc_auc_score(y_true == label, prob[:, label]) for label in range(30)}
    weakest = sorted(aucs, key=aucs.get)[: scores.WEAKEST_CLASSES_SHOWN]
    assert set(legend_scores(ax, "AUC")) - {"chance", "micro-average", "macro-average"} == set(weakest)


def test_roc_with_a_single_class_in_y_true_says_so():
    fig = scores.roc_figure(np.zeros(10, dtype=int), np.full((10, 2), 0.5), ["neg", "pos"])
    assert any("ROC undefined" in text for text in texts_of(fig))


def test_roc_rejects_probabilities_that_do_not_match_the_class_names():
    with pytest.raises(ValueError, match=r"y_prob must be \(N, C\) = \(5, 3\) .* Received shape: \(5, 4\)"):
        scores.roc_figure(np.zeros(5, dtype=int), np.full((5, 4), 0.25), ["a", "b", "c"])


def test_roc_of_a_near_perfect_model_zooms_into_the_top_left_corner():
    y_true, prob = make_scores(600, 4, margin=3.5)
    aucs = [roc_auc_score(y_true == label, prob[:, label]) for label in range(4)]
    assert 0.99 <= min(aucs) < 1  # near perfect, not perfect: the zoom has something to show
    ax = scores.roc_figure(y_true, prob, ["cat", "dog", "bird", "fish"]).axes[0]
    (inset,) = ax.child_axes
    left, right = inset.get_xlim()
    bottom, top = inset.get_ylim()
    assert left <= 0 and right == pytest.approx(scores.ZOOM_FPR) and top >= 1 and 0.5 <= bottom <= 0.9
    # Every curve is drawn again in the inset, in the same colour and style.
    assert [(line.get_color(), line.get_linestyle()) for line in inset.get_lines()] == [
        (line.get_color(), line.get_linestyle()) for line in ax.get_lines()
    ]
    # Binary too.
    binary = scores.roc_figure((y_true == 1).astype(int), prob[:, 1], ["other", "dog"]).axes[0]
    assert len(binary.child_axes) == 1


def test_the_inset_marks_its_corner_without_lines_across_the_plot():
    """Issue 30: the inset's connector lines crossed the main plot; a box marks the zoomed corner instead."""
    from matplotlib.patches import ConnectionPatch, Rectangle

    y_true, prob = make_scores(600, 4, margin=3.5)
    fig = scores.roc_figure(y_true, prob, ["cat", "dog", "bird", "fish"])
    fig.draw_without_rendering()
    ax = fig.axes[0]
    # matplotlib ≥ 3.10 keeps connector lines in an InsetIndicator (`connectors`); older versions add them as patches.
    lines = [line for child in ax.get_children() for line in (getattr(child, "connectors", None) or [child])]
    assert not [line for line in lines if isinstance(line, ConnectionPatch) and line.get_visible()]
    (inset,) = ax.child_axes
    # matplotlib ≥ 3.10 wraps the box in an InsetIndicator (its `rectangle`); older versions add it as a patch.
    marks = [getattr(child, "rectangle", child) for child in ax.get_children()]
    box = [mark for mark in marks if isinstance(mark, Rectangle) and mark.get_edgecolor()[:3] == to_rgb("0.3")]
    (x, y), width, height = box[0].get_xy(), box[0].get_width(), box[0].get_height()
    (left, right), (bottom, top) = inset.get_xlim(), inset.get_ylim()
    assert (x, y, x + width, y + height) == pytest.approx((left, bottom, right, top))


@pytest.mark.parametrize("names", [["a", "b", "c", "d"], [f"a much longer class name {i}" for i in range(4)]])
def test_roc_and_pr_plots_are_square_with_no_empty_bands(names, tmp_path):
    """Issue 30: an equal-aspect plot in a fixed-size figure left wide bands of empty canvas above and below it
    (short names) or squeezed it (long names). The width now fits the legend; the plot is square either way."""
    from cnnctl.reporting.multilabel_plots import label_pr_figure

    y_true, prob = make_scores(300, 4)
    multi_true = np.eye(4, dtype=int)[y_true] | (np.random.default_rng(1).random((300, 4)) < 0.2)
    figures = [
        scores.roc_figure(y_true, prob, names),
        scores.pr_figure(y_true, prob, names),
        label_pr_figure(multi_true, prob, np.full(4, 0.5), names),
    ]
    for number, fig in enumerate(figures):
        pixels = render(fig, tmp_path, f"{number}.png")
        blank_rows = np.flatnonzero(~(pixels < 250).any(axis=(1, 2)))
        height = len(pixels)
        top = np.sum(blank_rows == np.arange(len(blank_rows)))  # blank rows from the top edge down
        bottom = np.sum(blank_rows[::-1] == np.arange(height - 1, height - 1 - len(blank_rows), -1))
        assert top + bottom < 0.04 * height, (number, top, bottom)
        box = fig.axes[0].get_position()
        width_in, height_in = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
        assert width_in == pytest.approx(height_in, rel=0.01), number


def test_roc_of_an_ordinary_model_has_no_inset():
    y_true, prob = make_scores(400, 4)
    assert not scores.roc_figure(y_true, prob, ["cat", "dog", "bird", "fish"]).axes[0].child_axes


def test_no_class_curve_looks_like_the_chance_line():
    names = [f"class{i}" for i in range(scores.MAX_LABELLED_CLASSES)]
    y_true, prob = make_scores(1000, len(names))
    for figure in (scores.roc_figure, scores.pr_figure):
        lines = {line.get_label(): line for line in figure(y_true, prob, names).axes[0].get_lines()}
        classes = [line for label, line in lines.items() if label.split(" (")[0] in names]
        assert len(classes) == len(names)
        chance = [line for label, line in lines.items() if label.startswith("chance")]
        for line in classes:
            red, green, blue = to_rgb(line.get_color())
            assert not red == green == blue, f"{line.get_label()} is drawn in gray {line.get_color()}"
            assert all(to_rgb(line.get_color()) != to_rgb(other.get_color()) for other in chance)
        # Ten classes, ten looks: no two curves share both colour and line style.
        looks = {(to_rgb(line.get_color()), line.get_linestyle()) for line in classes}
        assert len(looks) == len(names)


@pytest.mark.parametrize("case", ["roc", "roc binary", "roc near-perfect", "pr", "pr binary"])
def test_score_legends_sit_outside_the_curves_and_inside_the_image(case):
    y_true, prob = make_scores(600, 10, margin=3.5) if "near-perfect" in case else make_scores(600, 10)
    names = [f"class{i}" for i in range(10)]
    if "binary" in case:
        y_true, prob, names = (y_true == 1).astype(int), prob[:, 1], ["other", "class1"]
    fig = (scores.pr_figure if case.startswith("pr") else scores.roc_figure)(y_true, prob, names)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    legend = legend_of(ax).get_window_extent()
    plot_area = ax.get_window_extent()
    assert legend.x0 >= plot_area.x1 or legend.y1 <= plot_area.y0, "the legend covers the plot"
    image = fig.bbox
    assert image.x0 <= legend.x0 and legend.x1 <= image.x1 and image.y0 <= legend.y0 and legend.y1 <= image.y1


def test_pr_legend_shows_average_precision_per_class_and_micro_average():
    y_true, prob = make_scores(400, 3)
    names = ["cat", "dog", "bird"]
    fig = scores.pr_figure(y_true, prob, names)
    ax = fig.axes[0]
    shown = legend_scores(ax, "AP")
    for label, name in enumerate(names):
        assert shown[name] == pytest.approx(average_precision_score(y_true == label, prob[:, label]), abs=6e-4)
    one_hot = np.eye(3)[y_true]
    assert shown["micro-average"] == pytest.approx(average_precision_score(one_hot, prob, average="micro"), abs=6e-4)
    macro = average_precision_score(one_hot, prob, average="macro")
    assert ax.get_title() == f"Precision-recall (one-vs-rest), macro AP = {macro:.3f}"


def test_pr_binary_compares_the_positive_class_with_its_prevalence():
    y_true, prob = make_scores(300, 2)
    shown = legend_scores(scores.pr_figure(y_true, prob, ["neg", "pos"]).axes[0], "AP")
    assert shown["pos"] == pytest.approx(average_precision_score(y_true, prob[:, 1]), abs=6e-4)
    assert shown["chance"] == pytest.approx(y_true.mean(), abs=6e-4)


# ---------------------------------------------------------------- examples and what the network sees


def test_example_grid_titles_colours_and_per_image_scaling():
    examples = np.stack([np.full((4, 4, 1), 10.0), np.arange(16.0).reshape(4, 4, 1) * 100])
    fig = grids.example_grid(examples, ["true: 3\npred: 8 (0.97)", "true: 1\npred: 7 (0.51)"], ["red", "green"])
    first, second = fig.axes
    assert first.get_title() == "true: 3\npred: 8 (0.97)" and first.title.get_color() == "red"
    assert second.title.get_color() == "green"
    # A constant image shows as flat black instead of crashing; the ramp spans the full gray range.
    assert np.all(first.images[0].get_array() == 0)
    shown = second.images[0].get_array()
    assert (shown.min(), shown.max()) == (0.0, 1.0)
    assert second.images[0].get_cmap().name == "gray"


def test_example_grid_draws_each_kind_of_input():
    rng = _rng()
    rgb = grids.example_grid(rng.random((1, 6, 6, 3))).axes[0]
    assert rgb.images[0].get_array().shape == (6, 6, 3)
    signal = grids.example_grid(rng.random((1, 40, 3))).axes[0]
    assert len(signal.get_lines()) == 3 and not signal.images
    volume = rng.random((1, 5, 6, 6, 1))
    volume_ax = grids.example_grid(volume).axes[0]
    middle = volume[0, 2, :, :, 0]
    expected = (middle - middle.min()) / (middle.max() - middle.min())
    np.testing.assert_allclose(volume_ax.images[0].get_array(), expected)
    forced = grids.example_grid(rng.random((1, 40, 3)), kind="image").axes[0]
    assert forced.images


def test_example_grid_lays_out_rows_of_ncols_and_hides_spare_cells():
    fig = grids.example_grid(_rng().random((10, 5, 5)), ncols=4)
    assert len(fig.axes) == 12
    assert [ax.axison for ax in fig.axes[10:]] == [False, False]
    assert all(ax.images for ax in fig.axes[:10])


def test_example_grid_without_examples_says_so():
    assert "no examples" in texts_of(grids.example_grid(np.empty((0, 8, 8))))


def test_grid_titles_fit_their_panels_and_the_figure_even_when_long():
    """The grids are laid out by fixed margins (no layout engine): long class names widen the panels so that
    neighbouring titles do not overlap, and a long figure title over a single panel stays on the canvas."""
    names = ["T-shirt/top (cotton)", "Ankle boot (leather)", "Pullover (wool)", "Sneaker (canvas)"]
    titles = [f"true: {names[i]}\npred: {names[(i + 1) % 4]} (0.97)" for i in range(4)]
    row = grids.example_grid(_rng().random((4, 8, 8)), titles, ncols=4, title="Most confidently wrong (4 of 9)")
    single = grids.example_grid(
        _rng().random((1, 8, 8)),
        ["true: 3\npred: 8 (0.97)"],
        title="Most confidently wrong (1 of 1 errors) on the test split",
    )
    for fig in (row, single):
        renderer = FigureCanvasAgg(fig).get_renderer()
        panel_titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
        assert all(left.x1 < right.x0 for left, right in zip(panel_titles, panel_titles[1:])), "titles overlap"
        for box in [fig.get_suptitle() and fig._suptitle.get_window_extent(renderer), *panel_titles]:
            assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, "a title is cut off"


def test_example_grid_needs_one_title_per_example():
    with pytest.raises(ValueError, match=r"titles must have one entry per example \(2\). Received 1"):
        grids.example_grid(np.zeros((2, 4, 4)), ["only one"])


def test_filters_figure_has_one_titled_panel_per_filter():
    fig = grids.filters_figure(_rng().normal(size=(3, 3, 2, 5)))
    drawn = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in drawn] == ["0", "1", "2", "3", "4"]
    assert fig.get_suptitle() == "First conv layer: 5 filters of 3×3×2"


def test_filters_figure_shows_rgb_kernels_in_colour_and_caps_the_count():
    kernel = _rng().normal(size=(5, 5, 3, 6))
    fig = grids.filters_figure(kernel, max_filters=4)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4
    # One scale for all six filters, zero at mid-gray: a weight w shows as 0.5 + w / (2 max|w|).
    limit = np.abs(kernel).max()
    np.testing.assert_allclose(drawn[1].images[0].get_array(), 0.5 + kernel[..., 1] / (2 * limit))
    assert (
        fig.get_suptitle() == f"First conv layer: 6 filters of 5×5×3 (first 4 shown), shared scale ±{limit:.3g} "
        "(gray = 0)"
    )


def colorbars_of(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.mark.parametrize("in_channels", [1, 2])
def test_filters_figure_shares_one_scale_centred_at_zero_with_a_colour_bar(in_channels):
    kernel = _rng().normal(size=(3, 3, in_channels, 10))
    kernel[..., 7] *= 4  # one strong filter: the others must look weaker, not be stretched to match it
    fig = grids.filters_figure(kernel)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    shown = kernel.mean(axis=2)  # one input channel, or the mean over them
    limit = np.abs(shown).max()
    assert all(image.get_clim() == pytest.approx((-limit, limit)) for image in images)
    assert {image.get_cmap().name for image in images} == {"RdBu_r"}
    for index, image in enumerate(images):
        np.testing.assert_allclose(image.get_array(), shown[..., index])
    assert np.abs(images[0].get_array()).max() < 0.6 * limit  # a weak filter is drawn pale
    (colorbar,) = colorbars_of(fig)
    assert colorbar.get_ylabel() == "weight" + ("" if in_channels == 1 else ", mean of 2 input channels")
    assert colorbar.get_ylim() == pytest.approx((-limit, limit))


def test_filters_figure_draws_conv1d_bars_on_one_symmetric_axis():
    kernel = _rng().normal(size=(5, 1, 3))
    fig = grids.filters_figure(kernel)
    limit = np.abs(kernel).max()
    assert all(ax.get_ylim() == pytest.approx((-1.05 * limit, 1.05 * limit)) for ax in fig.axes)
    assert fig.get_suptitle().endswith(f"shared scale ±{limit:.3g}")


def test_filters_figure_draws_conv1d_kernels_as_bars_of_the_weights():
    kernel = _rng().normal(size=(5, 1, 3))
    fig = grids.filters_figure(kernel)
    bars = [patch.get_height() for patch in fig.axes[1].patches]
    np.testing.assert_allclose(bars, kernel[:, 0, 1])


def test_filters_figure_rejects_a_dense_kernel():
    with pytest.raises(ValueError, match=r"Received shape: \(10, 4\)"):
        grids.filters_figure(np.zeros((10, 4)))


def panels_of(fig: Figure, rows: int) -> np.ndarray:
    return np.array([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]).reshape(rows, -1)


def test_feature_maps_figure_has_one_labelled_row_per_layer_with_at_most_16_channels():
    rng = _rng()
    signal = rng.random((20, 3))
    fig = grids.feature_maps_figure([("conv2d", rng.random((6, 6, 32))), ("conv1d", signal)])
    rows = panels_of(fig, 2)
    assert rows.shape == (2, 16)
    assert sum(bool(ax.images) for ax in rows[0]) == 16
    assert sum(bool(ax.get_lines()) for ax in rows[1]) == 3
    assert rows[0, 0].get_ylabel() == "conv2d\n(6, 6, 32)\n16 of 32 ch."
    assert rows[1, 0].get_ylabel() == f"conv1d\n(20, 3)\nrange 0 … {signal.max():.3g}"


def test_feature_maps_figure_gives_each_layer_one_shared_scale_and_colour_bar():
    rng = _rng()
    relu = np.maximum(rng.normal(size=(6, 6, 20)), 0)
    relu[..., 3] *= 0.1  # a faint channel stays faint next to the others
    signed = rng.normal(size=(3, 3, 4))
    signal = rng.normal(size=(30, 2))
    fig = grids.feature_maps_figure([("relu", relu), ("signed", signed), ("conv1d", signal)])
    rows = panels_of(fig, 3)
    relu_images = [ax.images[0] for ax in rows[0] if ax.images]
    # The whole layer's maximum, all 20 channels, though 16 are drawn.
    assert all(image.get_clim() == pytest.approx((0, relu.max())) for image in relu_images)
    assert {image.get_cmap().name for image in relu_images} == {"viridis"}
    assert relu_images[3].get_array().max() < 0.5 * relu.max()
    limit = np.abs(signed).max()
    signed_images = [ax.images[0] for ax in rows[1] if ax.images]
    assert len(signed_images) == 4
    assert all(image.get_clim() == pytest.approx((-limit, limit)) for image in signed_images)
    assert {image.get_cmap().name for image in signed_images} == {"RdBu_r"}
    np.testing.assert_allclose(signed_images[2].get_array(), signed[..., 2])
    colorbars = colorbars_of(fig)
    assert [bar.get_ylim() for bar in colorbars] == [pytest.approx((0, relu.max())), pytest.approx((-limit, limit))]
    # Line rows share their y axis, and say its range.
    line_limit = np.abs(signal).max()
    lines = [ax for ax in rows[2] if ax.get_lines()]
    assert len(lines) == 2 and lines[0].get_ylim() == lines[1].get_ylim()
    assert lines[0].get_ylim()[0] < -line_limit + 1e-9 and lines[0].get_ylim()[1] > line_limit - 1e-9
    assert rows[2, 0].get_ylabel().endswith(f"range {-line_limit:.3g} … {line_limit:.3g}")


def test_filter_demo_figure_titles_panels_and_shows_their_sizes():
    rng = _rng()
    fig = grids.filter_demo_figure([("original", rng.random((8, 8))), ("max-pool 2", rng.random((4, 4, 1)))])
    assert [ax.get_title() for ax in fig.axes] == ["original", "max-pool 2"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["8 × 8", "4 × 4"]


# ---------------------------------------------------------------- drawn from a trained run's files


def drawn_figures(monkeypatch) -> dict[str, Figure]:
    """Keep every figure figures.py hands to save_figure, by file name, instead of writing it."""
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=plots.DPI: drawn.setdefault(Path(path).name, fig))
    return drawn


def test_run_figures_name_the_split_and_share_the_kernels_scale(trained_digits_run, monkeypatch):
    from cnnctl.reporting import figures
    from cnnctl.runs.folder import Run

    run = trained_digits_run.path
    drawn = drawn_figures(monkeypatch)
    figures.draw_prediction_figures(Run(run))
    figures.draw_filters(Run(run))
    with np.load(run / "predictions.npz") as saved:
        examples, split = len(saved["y_true"]), str(saved["split"])
    assert split == json.loads((run / "metrics.json").read_text())["split"] == "test"
    assert drawn["confusion_matrix.png"].axes[0].get_title() == f"Confusion matrix — test split (n={examples}), counts"
    assert (
        drawn["confusion_matrix_normalized.png"].axes[0].get_title()
        == f"Confusion matrix — test split (n={examples}), row-normalized"
    )
    # The first convolution's kernel, read from model.keras's weights file without Keras.
    with zipfile.ZipFile(run / "model.keras") as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            kernel = weights["layers/conv2d/vars/0"][()]
    assert kernel.shape == (3, 3, 1, 8)
    images = [ax.images[0] for ax in drawn["filters.png"].axes if ax.images]
    limit = float(np.abs(kernel).max())
    assert [image.get_clim() for image in images] == [pytest.approx((-limit, limit))] * 8
    for index, image in enumerate(images):
        np.testing.assert_allclose(image.get_array(), kernel[:, :, 0, index], rtol=1e-6)


def test_confusion_matrix_slants_only_names_wider_than_their_column():
    digits = scores.confusion_matrix_figure(_confusion(10), [str(i) for i in range(10)], normalized=False)
    assert all(label.get_rotation() == 0 for label in digits.axes[0].get_xticklabels())  # "0".."9" fit
    clothes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    worn = scores.confusion_matrix_figure(_confusion(10), clothes, normalized=False)
    assert all(label.get_rotation() == 45 for label in worn.axes[0].get_xticklabels())


@pytest.mark.parametrize("low, high", [(1e-4, 1.5e-4), (3e-5, 6e-4), (2e-4, 8e-3), (0.002, 0.009), (1e-6, 1e-1)])
def test_tune_slice_log_axis_labels_never_overlap(low, high):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnctl.reporting.tune_plots import slice_figure

    tried = list(np.geomspace(low, high, 12))
    path = "train.optimizer.learning_rate"
    fig = slice_figure({path: tried}, [0.5 + 0.01 * i for i in range(12)], ["complete"] * 12, log_params=[path])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    shown = [label for label in ax.get_xticklabels() if label.get_text() and left <= label.get_position()[0] <= right]
    shown += [label for label in ax.xaxis.get_minorticklabels() if label.get_text()]
    boxes = [label.get_window_extent(canvas.get_renderer()) for label in shown]
    assert len(shown) >= 2  # the axis still says where the values lie
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), [t.get_text() for t in shown]
