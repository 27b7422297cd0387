"""`cnnctl tune`: an Optuna search over the config's `tune:` paths, one run folder per trial, scored on val only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.loading import load_config
from cnnctl.data.dataset import Dataset
from cnnctl.errors import ConfigError
from cnnctl.workflows import train as workflow
from cnnctl.workflows.tune_space import check_search_space, trial_config

# Its module-scoped training runs once: every test of this file on the same xdist worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group(__name__)

runner = CliRunner()

# Every trial folder holds what `cnnctl train` writes; FIGURES are left out where a test skips drawing them for time.
RUN_FILES = [
    "config.yaml",
    "environment.json",
    "data.json",
    "model.keras",
    "history.csv",
    "metrics.json",
    "predictions.npz",
    "report.html",
]
FIGURES = ["loss_curve.png", "confusion_matrix.png", "roc_curve.png"]

# Seed 1 with this space draws two near-useless learning rates first, then one the median pruner stops after
# its second epoch (trial 2), then a good one (trial 3): pruning is seen within four trials.
SEARCH = {"train.optimizer.learning_rate": {"log_uniform": [1e-6, 1e-1]}, "train.batch_size": {"choice": [16, 32]}}


def write_config(tmp_path: Path, **changes) -> Path:
    """400 of sklearn's digits (340 train, 60 test; a quarter of train becomes val), a Flatten+Dense model."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images[:400].astype(np.uint8), digits.target[:400]
    np.savez(tmp_path / "digits400.npz", x_train=x[:340], y_train=y[:340], x_test=x[340:], y_test=y[340:])
    config = {
        "name": "tiny",
        "seed": 1,
        "data": {"source": "npz", "path": "digits400.npz", "validation_split": 0.25},
        "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
        "train": {"epochs": 3, "batch_size": 32, "early_stopping": False, "optimizer": {"learning_rate": 0.01}},
        "tune": SEARCH,
    }
    for key, value in changes.items():
        config[key] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Two trials, then --resume to four, with every split the training and evaluation touch recorded.
    Each trial's figures (6 s of its 9) are not drawn here; the workers' test checks them."""
    tmp_path = tmp_path_factory.mktemp("tune")
    config = write_config(tmp_path)
    runs = tmp_path / "runs"
    touched = []
    real_pipeline, real_predict = Dataset.pipeline, workflow.predict_probabilities

    def pipeline(self, split, *args, **kwargs):
        touched.append(split)
        return real_pipeline(self, split, *args, **kwargs)

    def predict(model, dataset, split, *args, **kwargs):
        touched.append(split)
        return real_predict(model, dataset, split, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Dataset, "pipeline", pipeline)
        patch.setattr(workflow, "predict_probabilities", predict)
        patch.setattr(workflow.figures, "draw_run_figures", lambda run, model: [])
        first = runner.invoke(
            app,  # --set the value the file has: the search's results are the same, and best.yaml names it
            ["tune", str(config), "--trials", "2", "--runs-dir", str(runs), "--set", "train.epochs=3"],
            terminal_width=200,
        )
        assert first.exit_code == 0, first.output
        (tune_path,) = list(runs.iterdir())
        after_two = {trial: (tune_path / trial / "metrics.json").read_bytes() for trial in ("trial-0", "trial-1")}
        second = runner.invoke(app, ["tune", "--resume", str(tune_path), "--trials", "4"], terminal_width=200)
        assert second.exit_code == 0, second.output
    summary = json.loads((tune_path / "tune_summary.json").read_text())
    return tune_path, summary, after_two, touched, second.output


def test_every_trial_is_a_complete_run_folder_scored_on_val(search):
    tune_path, summary, _, _, output = search
    assert [trial["number"] for trial in summary["trials"]] == [0, 1, 2, 3]
    for trial in summary["trials"]:
        folder = tune_path / trial["run"]
        assert all((folder / name).is_file() for name in RUN_FILES), trial
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["split"] == "val"
        assert trial["value"] == pytest.approx(metrics["accuracy"])
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        assert "tune" not in saved and saved["evaluate"]["split"] == "val"
        for path, value in trial["params"].items():
            section, *rest = path.split(".")
            node = saved[section]
            for key in rest:
                node = node[key]
            assert node == pytest.approx(value)
    for name in ("tune_history.png", "tune_slice.png", "tune_importance.png", "tune_report.html", "study.db"):
        assert (tune_path / name).is_file(), name
    assert "trial-3" in output and "best: trial" in output


def test_the_test_split_is_never_read(search):
    _, _, _, touched, _ = search
    assert touched and "test" not in touched
    assert set(touched) == {"train", "val"}


def test_a_bad_trial_is_pruned_and_its_folder_says_so(search):
    tune_path, summary, _, _, _ = search
    pruned = [trial for trial in summary["trials"] if trial["state"] == "pruned"]
    assert pruned, summary["trials"]
    for trial in pruned:
        environment = json.loads((tune_path / trial["run"] / "environment.json").read_text())
        assert environment["status"] == "pruned"
        assert environment["pruned_after_epoch"] == trial["pruned_after_epoch"] < 3
        history = (tune_path / trial["run"] / "history.csv").read_text().strip().splitlines()
        assert len(history) - 1 == trial["pruned_after_epoch"]  # header + one row per epoch trained
    best = summary["best"]
    assert best["number"] not in {trial["number"] for trial in pruned}
    complete = [trial["value"] for trial in summary["trials"] if trial["state"] == "complete"]
    assert best["value"] == max(complete)


def test_resume_keeps_the_finished_trials_and_adds_new_ones(search):
    tune_path, summary, after_two, _, _ = search
    for name, content in after_two.items():
        assert (tune_path / name / "metrics.json").read_bytes() == content
    assert sorted(path.name for path in tune_path.glob("trial-*")) == ["trial-0", "trial-1", "trial-2", "trial-3"]


def test_best_yaml_is_the_winner_ready_to_train_on_test(search):
    tune_path, summary, _, _, _ = search
    best = tune_path / "best.yaml"
    config = load_config(best)
    assert config.tune == {} and config.evaluate.split is None
    best_params = summary["best"]["params"]
    assert config.train.optimizer.learning_rate == pytest.approx(best_params["train.optimizer.learning_rate"])
    assert config.train.batch_size == best_params["train.batch_size"]
    result = runner.invoke(app, ["check", str(best)], terminal_width=200)
    assert result.exit_code == 0, result.output
    header = [line for line in best.read_text().splitlines() if line.startswith("#")]
    assert header[2].startswith("# the search ran with --set train.epochs=3; the values below keep them")
    assert summary["set"] == ["train.epochs=3"]  # remembered through --resume, which has no --set of its own
    page = (tune_path / "tune_report.html").read_text()  # the best values as config paths, not a Python dict
    assert f"<code>train.batch_size = {best_params['train.batch_size']}</code>" in page and "{&#x27;" not in page


def test_two_workers_share_one_study_without_duplicates(tmp_path, monkeypatch):
    """This process (worker 1) waits until the extra worker process has taken a trial, so both are seen working."""
    import time

    from cnnctl.workflows import tune as tuning

    real_work = tuning.work

    def work_once_worker_2_started(tune_path, config, trials, **kwargs):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            trial.user_attrs.get("worker") == 2
            for trial in tuning.open_study(tune_path, config).get_trials(deepcopy=False)
        ):
            time.sleep(0.5)
        real_work(tune_path, config, trials, **kwargs)

    monkeypatch.setattr(tuning, "work", work_once_worker_2_started)
    config = write_config(tmp_path, train={"epochs": 1, "batch_size": 32, "early_stopping": False})
    result = runner.invoke(
        app,
        ["tune", str(config), "--trials", "2", "--workers", "2", "--runs-dir", str(tmp_path / "runs")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    (tune_path,) = list((tmp_path / "runs").iterdir())
    summary = json.loads((tune_path / "tune_summary.json").read_text())
    numbers = [trial["number"] for trial in summary["trials"]]
    assert sorted(numbers) == [0, 1]
    assert {trial["worker"] for trial in summary["trials"]} == {1, 2}, summary["trials"]
    assert sorted(path.name for path in tune_path.glob("trial-*")) == ["trial-0", "trial-1"]
    for trial in summary["trials"]:
        assert all((tune_path / trial["run"] / name).is_file() for name in RUN_FILES + FIGURES), trial
    assert all(trial["state"] == "complete" for trial in summary["trials"])
    params = [tuple(sorted(trial["params"].items())) for trial in summary["trials"]]
    assert len(set(params)) == 2
    # The extra worker's log holds what went wrong, if anything: not TensorFlow's start-up lines.
    log = (tune_path / "worker-2.log").read_text()
    assert not any(mark in log for mark in ("I0000", "W0000", "cudart_stub", "oneDNN custom operations")), log[:2000]


@pytest.mark.parametrize(
    "tune, message",
    [
        (
            {"train.optimizer.learnig_rate": {"log_uniform": [1e-4, 1e-2]}},
            "tune['train.optimizer.learnig_rate']: train.optimizer.learnig_rate: no such key in the config; "
            "did you mean 'learning_rate'?",
        ),
        (
            {"model.layers[5].Dense.units": {"int": [8, 64]}},
            "tune['model.layers[5].Dense.units']: model.layers[5]: no such list entry (it has 2)",
        ),
        (
            {"train.batch_size": {"int": [0, 64]}},
            "tune['train.batch_size'] = 0: train.batch_size: must be greater than 0",
        ),
        (
            {"train.optimizer.learning_rate": {"log_uniform": [0, 1]}},
            "tune['train.optimizer.learning_rate']: log_uniform: both ends must be positive",
        ),
        ({"train.epochs": {"between": [1, 3]}}, "unknown search space 'between'"),
        ({"data.validation_split": {"uniform": [0.1, 0.3]}}, "tune['data.validation_split']: cannot be tuned"),
        ({"train": {"choice": [1, 2]}}, "tune['train']: train: is a whole section"),
        (  # each end is built before the first trial: this one has more weights than memory holds
            {"model.layers[1].Dense.units": {"int": [1, 10**20]}},
            "tune['model.layers[1].Dense.units'] = 100000000000000000000: model.layers[1] (Dense): the model has ",
        ),
    ],
)
def test_search_space_mistakes_are_one_line_errors(tmp_path, tune, message):
    hidden = {"layers": ["Flatten", {"Dense": {"units": 16}}, {"Dense": {"units": 10, "activation": "softmax"}}]}
    config = write_config(tmp_path, tune=tune, **({"model": hidden} if "model.layers[1].Dense.units" in tune else {}))
    result = runner.invoke(app, ["tune", str(config), "--trials", "2", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_ranges_written_as_yaml_writes_them_are_numbers(tmp_path):
    """YAML 1.1 reads 1e-4 (no dot) as a string; the search space takes it as the number it means, as the rest of
    the config does (the schema's own example is written so)."""
    config = write_config(tmp_path)
    text = config.read_text().split("tune:")[0]
    config.write_text(
        text + "tune: {train.optimizer.learning_rate: {log_uniform: [1e-4, 1e-2]}, train.epochs: {int: [1, 3]}}\n"
    )
    spaces = load_config(config).tune
    assert spaces["train.optimizer.learning_rate"].values == [1e-4, 1e-2]
    assert spaces["train.epochs"].values == [1, 3]


def test_a_search_needs_a_validation_split_before_anything_runs(tmp_path):
    config = write_config(tmp_path, data={"source": "npz", "path": "digits400.npz", "validation_split": 0})
    result = runner.invoke(app, ["tune", str(config), "--trials", "2", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "cnnctl tune scores every trial on the validation split" in result.output
    assert not (tmp_path / "runs").exists()


def test_trial_config_applies_values_and_forces_val(tmp_path):
    config = load_config(write_config(tmp_path))
    check_search_space(config)
    trial = trial_config(config, {"train.optimizer.learning_rate": 1e-05, "train.batch_size": 16})
    assert trial.train.optimizer.learning_rate == 1e-05 and trial.train.batch_size == 16
    assert trial.evaluate.split == "val" and trial.tune == {}
    with pytest.raises(ConfigError, match="needs a `tune:` section"):
        check_search_space(trial)


def test_an_interrupted_trial_is_not_counted_and_resume_replaces_it(tmp_path, monkeypatch):
    """Training is faked: the second trial is stopped by Ctrl-C; --resume runs a fresh trial in its place."""
    import signal
    from types import SimpleNamespace

    from cnnctl.errors import Interrupted
    from cnnctl.workflows import tune as tuning

    calls = []

    def fake_train_run(config, *args, into=None, **kwargs):
        calls.append(into.path.name)
        if len(calls) == 2:
            raise Interrupted(signal.SIGINT)
        return SimpleNamespace(metrics={"accuracy": 0.1 * len(calls)})

    monkeypatch.setattr(tuning, "train_run", fake_train_run)
    config = load_config(write_config(tmp_path))
    with pytest.raises(Interrupted, match=r"resume with: cnnctl tune --resume .* --trials 3"):
        tuning.tune(config, tmp_path / "runs", 3)
    (tune_path,) = list((tmp_path / "runs").iterdir())
    stopped = json.loads((tune_path / "tune_summary.json").read_text())
    assert stopped["status"] == "interrupted"
    assert [trial["state"] for trial in stopped["trials"]] == ["complete", "interrupted"]
    _, summary = tuning.resume_tune(tune_path, 3)
    assert [trial["state"] for trial in summary["trials"]] == ["complete", "interrupted", "complete", "complete"]
    assert calls == ["trial-0", "trial-1", "trial-2", "trial-3"]
    assert summary["best"]["number"] == 3 and summary["status"] == "completed"


def test_a_failed_trial_says_why_on_the_console(tmp_path, monkeypatch):
    # Every end of a search space is checked before the first trial, so a trial fails only on what no check can
    # foresee; one is made to fail here, as one that ran out of memory while building would.
    from cnnctl.errors import ConfigError
    from cnnctl.workflows import tune as tuning

    real_prepare, calls = tuning.prepare, []

    def prepare_fails_for_trials(config, origin=""):
        calls.append(config)
        if len(calls) > 1:  # the first call checks the config itself before any folder exists
            raise ConfigError("model.layers[1] (Dense): its weights do not fit in this machine's memory")
        return real_prepare(config, origin)

    monkeypatch.setattr(tuning, "prepare", prepare_fails_for_trials)
    config = write_config(tmp_path)
    result = runner.invoke(
        app, ["tune", str(config), "--trials", "1", "--runs-dir", str(tmp_path / "runs")], terminal_width=400
    )
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("trial 0:"))
    assert line == (
        "trial 0: failed, val accuracy n/a (model.layers[1] (Dense): its weights do not fit in this machine's memory)"
    ), line
