"""`train.mlflow` against a real `mlflow server` (SQLite store, local artefacts) on a free port: parameters, every
epoch equal to history.csv, final metrics equal to metrics.json and the run's files arrive; a resumed run appends to
the same MLflow run; with the server down training completes with one warning, and once a server answers `cnnctl
sync` sends exactly what was missing, and nothing twice."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

pytestmark = pytest.mark.xdist_group(__name__)
runner = CliRunner()

CONFIG = {
    "name": "tracked",
    "seed": 3,
    "data": {"source": "digits", "validation_split": 0.2},
    "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {"epochs": 2, "batch_size": 64, "early_stopping": False},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(store: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:port with a SQLite store and artefacts proxied into store/artifacts."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(store / f"server-{port}.log", "ab"),  # noqa: SIM115 - the server's own log, kept for a failure
    )
    deadline = time.monotonic() + 120  # the first start creates the database (about 20 s on 2 busy cores)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    server.kill()
    raise AssertionError((store / f"server-{port}.log").read_text()[-3000:])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow-store")


@pytest.fixture(scope="module")
def server(store):
    port = free_port()
    process = start_server(store, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def train(tmp_path: Path, uri: str, *extra: str):
    config = tmp_path / "tracked.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "mlflow": uri}}))
    return runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), *extra], terminal_width=200)


def history_columns(run: Path) -> dict[str, list[float]]:
    lines = (run / "history.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    rows = [[float(value) for value in line.split(",")] for line in lines[1:]]
    return {name: [row[index] for row in rows] for index, name in enumerate(header)}


def assert_run_matches_folder(client, run_id: str, run: Path) -> None:
    """Everything the folder holds is on the server once: params, each epoch, the final metrics, the files."""
    logged = client.get_run(run_id)
    assert logged.data.params["train.epochs"] == "2"  # MLflow keeps a parameter's first value
    assert logged.data.params["data.source"] == "digits" and logged.data.params["model.layers"].startswith("[")
    history = history_columns(run)
    for name in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
        points = client.get_metric_history(run_id, name)
        assert [point.step for point in points] == [int(epoch) for epoch in history["epoch"]], name  # once each
        assert [point.value for point in points] == pytest.approx(history[name]), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert logged.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
    assert logged.data.metrics["test/f1_macro"] == pytest.approx(metrics["f1_macro"])
    files = {item.path for item in client.list_artifacts(run_id)}
    assert {"report.html", "model.keras", "metrics.json", "config.yaml", "loss_curve.png"} <= files
    assert logged.data.tags["cnnctl.status"] == "completed" and logged.info.status == "FINISHED"
    assert logged.data.tags["cnnctl.run"] == run.name


def test_a_tracked_run_arrives_whole_and_a_resume_appends_to_it(server, tmp_path):
    from mlflow import MlflowClient

    result = train(tmp_path, server)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and "View run" not in result.output  # nothing but cnnctl's own lines
    (run,) = (tmp_path / "runs").iterdir()
    state = json.loads((run / "mlflow.json").read_text())
    client = MlflowClient(server)
    assert_run_matches_folder(client, state["run_id"], run)
    assert client.get_experiment(state["experiment_id"]).name == "tracked"

    resumed = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=3"], terminal_width=200)
    assert resumed.exit_code == 0, resumed.output
    again = json.loads((run / "mlflow.json").read_text())
    assert again["run_id"] == state["run_id"] and again["epochs_sent"] == 3
    assert_run_matches_folder(client, state["run_id"], run)  # epochs 1, 2, 3: each once
    assert client.get_run(state["run_id"]).data.tags["cnnctl.resumed_with"] == "train.epochs=3"


def test_a_server_that_is_down_costs_one_warning_and_sync_sends_the_rest(server, store, tmp_path):
    from mlflow import MlflowClient

    port = free_port()  # nothing listens here yet
    result = train(tmp_path, f"http://127.0.0.1:{port}")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and f"cnnctl sync {tmp_path / 'runs'}" in warnings[0], result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "environment.json").read_text())["status"] == "completed"
    state = json.loads((run / "mlflow.json").read_text())
    assert "run_id" not in state and state["epochs_sent"] == 0 and state["last_error"]

    refused = runner.invoke(app, ["sync", str(run)])
    assert refused.exit_code == 2 and refused.output.startswith(
        f"error: MLflow at http://127.0.0.1:{port}: cannot send"
    )

    restarted = start_server(store, port)  # the server is back, on the same address
    try:
        sent = runner.invoke(app, ["sync", str(run)])
        assert sent.exit_code == 0, sent.output
        assert "sent 2 epochs, the parameters, the final metrics and files" in sent.output
        state = json.loads((run / "mlflow.json").read_text())
        assert_run_matches_folder(MlflowClient(f"http://127.0.0.1:{port}"), state["run_id"], run)
        twice = runner.invoke(app, ["sync", str(run)])
        assert twice.exit_code == 0 and "sent 0 epochs to MLflow run" in twice.output, twice.output
        assert_run_matches_folder(MlflowClient(f"http://127.0.0.1:{port}"), state["run_id"], run)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)


def test_a_folder_store_receives_the_run(tmp_path, monkeypatch):
    """MLflow 3 refuses its file store unless allowed: every run to file:///... warned "did not answer" and sync
    could never send it. The user named the folder; the run is logged there, whole."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    result = train(tmp_path, uri)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    (run,) = (tmp_path / "runs").iterdir()
    state = json.loads((run / "mlflow.json").read_text())
    assert_run_matches_folder(MlflowClient(uri), state["run_id"], run)


def test_mlflow_settings_are_checked_before_a_folder_exists(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "mlflow": True}}))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "train.mlflow: no tracking server named" in result.output
    assert not (tmp_path / "runs").exists()
    config.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "mlflow": "ht!tp::/x y"}}))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "train.mlflow.tracking_uri: 'ht!tp::/x y' is not a tracking URI; give http(s)://HOST:PORT" in result.output
    assert not (tmp_path / "runs").exists()
    untracked = runner.invoke(app, ["sync", str(tmp_path / "nowhere")])
    assert untracked.exit_code == 2 and untracked.output.startswith("error:")


def test_a_tracked_search_is_a_parent_run_with_its_trials_as_children(server, tmp_path):
    from mlflow import MlflowClient

    config = tmp_path / "search.yaml"
    tracked = {**CONFIG, "name": "searched", "train": {**CONFIG["train"], "epochs": 1, "mlflow": server}}
    config.write_text(yaml.safe_dump({**tracked, "tune": {"train.batch_size": {"choice": [32, 64]}}}))
    result = runner.invoke(app, ["tune", str(config), "--trials", "2", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (search,) = (tmp_path / "runs").iterdir()
    client = MlflowClient(server)
    parent = client.get_run(json.loads((search / "mlflow.json").read_text())["run_id"])
    summary = json.loads((search / "tune_summary.json").read_text())
    assert parent.data.metrics["best_value"] == pytest.approx(summary["best"]["value"])
    assert parent.info.status == "FINISHED" and "tune_summary.json" in {
        f.path for f in client.list_artifacts(parent.info.run_id)
    }
    for trial in summary["trials"]:
        child = client.get_run(json.loads((search / trial["run"] / "mlflow.json").read_text())["run_id"])
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.metrics["val/accuracy"] == pytest.approx(trial["value"])  # scored on val, as the search
        epochs = client.get_metric_history(child.info.run_id, "val_accuracy")  # the epochs' own series, untouched
        assert [point.step for point in epochs] == [1]
