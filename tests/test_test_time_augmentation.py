"""`evaluate.tta: flip`: every example is scored as it is and mirrored along its last spatial axis, and the two
predictions are averaged, by `evaluate` and `predict` alike; checked against the model run by hand on flipped
arrays. Flat examples cannot be mirrored, which is said before any training."""

from __future__ import annotations

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()


def set_tta(run_path, value):
    config = yaml.safe_load((run_path / "config.yaml").read_text())
    config["evaluate"]["tta"] = value
    (run_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def by_hand(run_path):
    """The test split's probabilities without and with mirroring, from model.keras and the raw digits (0..16)."""
    import keras

    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    x = load_data(load_config(run_path / "config.yaml")).splits["test"].x.astype(np.float32)  # the model scales
    model = keras.saving.load_model(run_path / "model.keras")
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1, :], verbose=0)  # (N, height, width, channels): width reversed
    return x, plain, (plain + mirrored) / 2


def test_evaluate_averages_each_example_with_its_mirror_image(digits_run_copy):
    _, plain, averaged = by_hand(digits_run_copy)
    with np.load(digits_run_copy / "predictions.npz") as archive:
        assert np.allclose(archive["y_prob"], plain, atol=1e-5)  # trained without tta
    assert json.loads((digits_run_copy / "metrics.json").read_text())["tta"] == "off"
    set_tta(digits_run_copy, "flip")
    result = runner.invoke(app, ["evaluate", str(digits_run_copy)])
    assert result.exit_code == 0, result.output
    with np.load(digits_run_copy / "predictions.npz") as archive:
        y_true, y_prob = archive["y_true"], archive["y_prob"]
    assert np.allclose(y_prob, averaged, atol=1e-5)
    assert not np.allclose(y_prob, plain, atol=1e-3)  # digits are not mirror-symmetric: the flip changed them
    metrics = json.loads((digits_run_copy / "metrics.json").read_text())
    assert metrics["accuracy"] == np.mean(averaged.argmax(axis=1) == y_true)
    assert metrics["tta"] == "flip"  # the numbers say how they were made
    assert "test-time augmentation" in result.output and "flip" in result.output


def test_predict_scores_inputs_the_way_the_run_was_evaluated(digits_run_copy, tmp_path):
    x, _, averaged = by_hand(digits_run_copy)
    set_tta(digits_run_copy, "flip")
    archive = tmp_path / "digits.npz"
    np.savez(archive, x=x[:5])  # in the training data's units, 0..16
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(digits_run_copy), str(archive), "--top-k", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    found = np.zeros((5, 10))
    for name, _, index, _, probability in rows:
        found[int(name.rsplit("[", 1)[1].rstrip("]")), int(index)] = float(probability)
    assert np.allclose(found, averaged[:5], atol=1e-5)


def test_flat_examples_cannot_be_mirrored_and_nothing_is_trained(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    np.savez(tmp_path / "flat.npz", x_train=x, y_train=(x[:, 0] > 0).astype(int))
    config = {
        "data": {"source": "npz", "path": "flat.npz", "test_split": 0.2, "normalize": False},
        "model": {"input_shape": [16], "layers": [{"Dense": {"units": 2, "activation": "softmax"}}]},
        "train": {"epochs": 1},
        "evaluate": {"tta": "flip"},
    }
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["train", str(tmp_path / "flat.yaml"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {tmp_path / 'flat.yaml'}: evaluate.tta: flip needs examples with a spatial and a channel axis "
        "(images, signals, volumes), not flat vectors of shape [16]; set evaluate.tta: off"
    )
    assert not (tmp_path / "runs").exists()


def test_flip_translate_averages_six_views_computed_here_with_numpy():
    # A random model on 6×5 two-channel images: the scoring model's output against the views made by hand (the
    # mirror, and each of the two moved one pixel down-right and up-left with the uncovered row mirrored).
    import keras

    from cnnctl.model.tta import scoring_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6, 5, 2)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(), keras.layers.Dense(4, "softmax")]
    )
    x = np.random.default_rng(0).random((3, 6, 5, 2)).astype(np.float32)

    def moved(v, step):
        padded = np.pad(v, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
        return padded[:, 1 - step : 7 - step, 1 - step : 6 - step]

    views = [x, x[:, :, ::-1]]
    scores = [model.predict(view, verbose=0) for view in views]
    shifted = [model.predict(moved(view, step), verbose=0) for view in views for step in (1, -1)]
    expected = 0.5 * np.mean(scores, axis=0) + 0.5 * np.mean(shifted, axis=0)
    found = scoring_model(model, x.shape[1:], "flip_translate").predict(x, verbose=0)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(found, scoring_model(model, x.shape[1:], "flip").predict(x, verbose=0), atol=1e-4)
