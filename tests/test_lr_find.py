"""`cnnctl lr-find`: the learning-rate range test on digits (a synthetic-enough problem bundled with scikit-learn):
the suggestion lies below the rate where the loss diverges, each batch's loss is its own (not a running mean), the
PNG and its JSON are written as --out promises, and a bad range is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

CONFIG = {
    "name": "ramp",
    "seed": 5,
    "data": {"source": "digits"},
    "model": {
        "layers": [
            "Flatten",
            {"Dense": {"units": 32, "activation": "relu"}},
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"batch_size": 16, "optimizer": {"name": "adam"}},
}


def test_the_suggestion_lies_below_where_the_loss_diverges(tmp_path):
    config = tmp_path / "ramp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "found" / "ramp.png"
    out.parent.mkdir()
    result = runner.invoke(app, ["lr-find", str(config), "--out", str(out), "--max-lr", "100"], terminal_width=200)
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    rates, losses = np.array(record["learning_rates"]), np.array(record["losses"])
    assert np.all(np.diff(rates) > 0) and rates[0] == pytest.approx(1e-7)
    assert record["diverged_at"] is not None and record["suggested_learning_rate"] < record["diverged_at"]
    assert record["suggested_learning_rate"] == pytest.approx(record["lowest_loss_at"] / 10)
    # Where it diverged the loss is far above its best, and near the suggestion training made progress.
    finite = losses[np.isfinite(losses)]
    assert not np.isfinite(losses[-1]) or losses[-1] > finite.min() * 1.5
    assert min(record["smoothed_losses"]) < record["smoothed_losses"][0] * 0.9
    # Each batch's own loss, not Keras' running mean: a mean could not jump between neighbouring batches like this.
    assert np.max(np.abs(np.diff(finite))) > 0.05
    assert f"--set train.optimizer.learning_rate={record['suggested_learning_rate']:.3g}" in result.output
    assert out.stat().st_size > 10_000 and not list(tmp_path.glob("runs*"))  # the plot; no run folder

    again = runner.invoke(app, ["lr-find", str(config), "--out", str(out)])  # never over what exists
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "need 0 < min-lr < max-lr"),
        (["--set", "train.batch_size=1000"], "batches of 1000; the range test needs at least 10"),
        (["--steps", "2"], "error: --steps 2: the range test needs at least 10 steps, e.g. --steps 100"),
        (
            ["--steps", "20", "--max-lr", "1e30"],
            "error: --min-lr 1e-07 --max-lr 1e+30: 20 steps multiply the rate by 88.6 each, too coarse to read",
        ),
    ],
    ids=["inverted", "one-epoch-short", "few-steps", "coarse"],
)
def test_a_range_that_is_no_range_is_one_line(tmp_path, args, message):
    config = tmp_path / "ramp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    result = runner.invoke(app, ["lr-find", str(config), "--out", str(tmp_path / "x.png"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x.png").exists()
