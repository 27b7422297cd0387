"""Workflows: `train.mlflow` — a run logged to an MLflow tracking server, where a team compares runs from many
machines: the resolved config as parameters (dotted keys), every epoch of history.csv (step = epoch), the final
metrics of metrics.json (`<split>/<metric>`), tags (cnnctl's version, the run folder's id, backend, status) and the
run's files (report.html, figures, metrics.json, config.yaml, model.keras).

The run folder is the record and the server a copy of it. What was sent is kept in the run's mlflow.json (the MLflow
run id, the last epoch sent, whether the parameters, final metrics and files went), so a resumed run continues the
same MLflow run and nothing is logged twice. A server that is down or refuses never costs a run: one warning line,
training goes on, and `cnnctl sync RUN` sends what is missing later. With several processes only process 0 logs;
a tune trial is a child run of its search's parent run.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Optional

from cnnctl import __version__, runtime
from cnnctl.config.schema import Config
from cnnctl.errors import ConfigError, RunError, first_line
from cnnctl.runs import contract
from cnnctl.runs.folder import Run
from cnnctl.runs.history import read_history_csv

# MLflow retries a failed request for minutes by default: a server that is down must cost a run seconds, not that.
CLIENT_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "🏃 View run ..." on stdout at every finished run
    # A folder given as the store (file:///..., ./mlruns): MLflow 3 raises "maintenance mode" for its file store
    # unless allowed; the user named the folder, so cnnctl logs there (each run warned "did not answer" before).
    "MLFLOW_ALLOW_FILE_STORE": "true",
}
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value
BATCH = 100  # MLflow's limit on parameters per log_batch call (metrics: 1000)
ARTIFACTS = (
    contract.REPORT_HTML,
    contract.METRICS,
    contract.CONFIG,
    contract.DATA,
    contract.HISTORY,
    contract.MODEL,
    contract.REPORT_TXT,
)
FINISHED = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}

Warn = Callable[[str], None]


class Tracker:
    """Sends a run folder's news to its MLflow run; every call is safe: a failure is recorded, warned about once,
    and left for `cnnctl sync`."""

    def __init__(self, run: Run, config: Config, warn: Optional[Warn] = None) -> None:
        self.run, self.config = run, config
        self.warn = warn or _warn
        self.offline = False  # a call failed in this process: the rest waits for `cnnctl sync`
        self.state = _read_state(run)
        self.state.setdefault("tracking_uri", config.train.mlflow.uri() if config.train.mlflow else None)
        self.state.setdefault("epochs_sent", 0)

    @functools.cached_property
    def client(self) -> Any:
        """One MlflowClient for this tracker (every epoch's call reuses it)."""
        for key, value in CLIENT_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        # MLflow's INFO lines ("Creating initial MLflow database tables...") would break the quiet console.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        from mlflow import MlflowClient

        return MlflowClient(self.state["tracking_uri"])

    # ------------------------------------------------------------ what training calls

    def start(self) -> None:
        """The MLflow run (created once, marked running again on a resume) and the parameters."""
        self.state["final_sent"] = False  # a resumed run's evaluation is new
        self._write()
        self._safely(self._start)

    def epochs(self) -> None:
        """Every row of history.csv not sent yet."""
        self._safely(self._epochs)

    def finish(self) -> None:
        """The epochs left, the final metrics, the files and the run's status."""
        self._safely(self._finish)

    def stopped(self, status: str) -> None:
        """A run that ended early (interrupted, failed): the epochs it has, and the MLflow run marked so."""

        def stop() -> None:
            self._epochs()
            if self.state.get("run_id"):
                self.client.set_tag(self.state["run_id"], "cnnctl.status", status)
                self.client.set_terminated(self.state["run_id"], FINISHED.get(status, "FAILED"))

        self._safely(stop)

    def retag(self, status: str) -> None:
        """A status decided after the run finished (a tune trial pruned): the MLflow run's `cnnctl.status` says it."""
        if self.state.get("run_id"):
            self._safely(lambda: self.client.set_tag(self.state["run_id"], "cnnctl.status", status))

    def finish_search(self, summary: dict[str, Any]) -> None:
        """A tune search's parent run: the best trial's score and the search's files."""

        def finish() -> None:
            from mlflow.entities import Metric

            client, run_id = self.client, self.state["run_id"]
            best = summary.get("best") or {}
            if isinstance(best.get("value"), (int, float)):
                client.log_batch(
                    run_id, metrics=[Metric("best_value", float(best["value"]), int(time.time() * 1000), 0)]
                )
                client.set_tag(run_id, "cnnctl.best_trial", str(best.get("number")))
            for name in (contract.TUNE_SUMMARY, contract.TUNE_BEST, contract.TUNE_REPORT, contract.CONFIG):
                if self.run.has(name):
                    client.log_artifact(run_id, str(self.run.file(name)))
            client.set_tag(run_id, "cnnctl.status", str(summary.get("status")))
            client.set_terminated(run_id, FINISHED.get(str(summary.get("status")), "FINISHED"))

        if self.state.get("run_id"):
            self._safely(finish)

    def callback(self) -> Any:
        """A Keras callback that sends each epoch once history.csv holds it (it runs after cnnctl's CSVLogger)."""
        import keras

        tracker = self

        class SendEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
                tracker.epochs()

        return SendEpochs()

    # ------------------------------------------------------------ `cnnctl sync`

    def sync(self) -> dict[str, Any]:
        """Send whatever the server lacks; raises RunError naming the server when it cannot be reached."""
        before = dict(self.state)
        self._start()
        self._epochs()
        status = self._status()
        if status in FINISHED:
            self._finish()
        return {
            "run_id": self.state.get("run_id"),
            "tracking_uri": self.state["tracking_uri"],
            "epochs_sent": self.state["epochs_sent"] - int(before.get("epochs_sent", 0) or 0),
            "params_sent": bool(self.state.get("params_sent")) and not before.get("params_sent"),
            "final_sent": bool(self.state.get("final_sent")) and not before.get("final_sent"),
            "status": status,
        }

    # ------------------------------------------------------------ the calls

    def _start(self) -> None:
        client = self.client
        if not self.state.get("run_id"):
            name = self.config.train.mlflow.experiment or self.config.name or "cnnctl"
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            tags = {
                "cnnctl.version": __version__,
                "cnnctl.run": self.run.id,
                "cnnctl.run_folder": str(self.run.path.resolve()),
                "cnnctl.backend": runtime.backend(),
                "cnnctl.status": "running",
            }
            parent = _parent_run_id(self.run)
            if parent:
                tags["mlflow.parentRunId"] = parent
            created = client.create_run(
                experiment_id, run_name=self.config.train.mlflow.run_name or self.run.id, tags=tags
            )
            self.state.update(run_id=created.info.run_id, experiment_id=experiment_id, experiment=name)
            self._write()
        else:
            client.update_run(self.state["run_id"], status="RUNNING")
            client.set_tag(self.state["run_id"], "cnnctl.status", "running")
        current = config_params(self.config)
        if not self.state.get("params_sent"):
            from mlflow.entities import Param

            params = [Param(key, value) for key, value in current.items()]
            for start in range(0, len(params), BATCH):
                client.log_batch(self.state["run_id"], params=params[start : start + BATCH])
            self.state.update(params_sent=True, params=current)
            self._write()
        elif current != self.state.get("params"):
            # MLflow keeps a parameter's first value for good: what a resume changed (more epochs, a smaller batch)
            # is said in a tag instead.
            sent = self.state.get("params") or {}
            changed = [f"{key}={value}" for key, value in current.items() if sent.get(key) != value]
            client.set_tag(self.state["run_id"], "cnnctl.resumed_with", ", ".join(changed)[:MAX_PARAM_LENGTH])
            self.state["params"] = current
            self._write()

    def _epochs(self) -> None:
        if not self.state.get("run_id") or not self.run.has(contract.HISTORY):
            return
        from mlflow.entities import Metric

        history = read_history_csv(self.run.file(contract.HISTORY))
        epochs = [int(epoch) for epoch in history.get("epoch", [])]
        sent = int(self.state.get("epochs_sent") or 0)
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(values[row]), stamp, epoch)
            for row, epoch in enumerate(epochs)
            if epoch > sent
            for key, values in history.items()
            if key != "epoch" and row < len(values) and math.isfinite(float(values[row]))
        ]
        if not metrics:
            return
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.state["run_id"], metrics=metrics[start : start + 1000])
        self.state["epochs_sent"] = max(epoch for epoch in epochs if epoch > sent)
        self._write()

    def _finish(self) -> None:
        if not self.state.get("run_id"):
            self._start()
        self._epochs()
        client, run_id = self.client, self.state["run_id"]
        status = self._status()
        if not self.state.get("final_sent"):
            from mlflow.entities import Metric

            final = final_metrics(self.run)
            stamp = int(time.time() * 1000)
            step = int(self.state.get("epochs_sent") or 0)
            client.log_batch(run_id, metrics=[Metric(key, value, stamp, step) for key, value in final.items()])
            for name in [*ARTIFACTS, *sorted(path.name for path in self.run.path.glob("*.png"))]:
                if self.run.has(name) and self.run.file(name).is_file():
                    client.log_artifact(run_id, str(self.run.file(name)))
            self.state["final_sent"] = True
            self._write()
        client.set_tag(run_id, "cnnctl.status", status)
        client.set_terminated(run_id, FINISHED.get(status, "FINISHED"))

    def _status(self) -> str:
        environment = self.run.read_json(contract.ENVIRONMENT) if self.run.has(contract.ENVIRONMENT) else {}
        return str(environment.get("status", "unknown"))

    def _safely(self, call: Callable[[], None]) -> None:
        if self.offline:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any failure of the server or the network: the run goes on
            self.offline = True
            self.state["last_error"] = f"{type(exc).__name__}: {first_line(exc)[:300]}"
            self._write()
            if self.state["tracking_uri"] in _WARNED:  # a search's trials warn once, not each
                return
            _WARNED.add(self.state["tracking_uri"])
            self.warn(
                f"MLflow at {self.state['tracking_uri']} did not answer ({first_line(exc)[:160]}); training "
                f"goes on, and `cnnctl sync {self.run.path}` sends what was not sent"
            )

    def _write(self) -> None:
        self.run.write_json(contract.MLFLOW, self.state)


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as MLflow parameters: dotted keys (`train.optimizer.learning_rate`), lists as JSON."""
    params: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            params[prefix] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 1] + "…"

    walk("", config.to_dict())
    return params


def final_metrics(run: Run) -> dict[str, float]:
    """metrics.json's numbers as MLflow metrics named `<split>/<metric>` (test/accuracy, test/top_5_accuracy): apart
    from the epochs' `val_accuracy` even for a run scored on val, and grouped by split in MLflow's UI."""
    if not run.has(contract.METRICS):
        return {}
    metrics = run.read_json(contract.METRICS)
    split = str(metrics.get("split", "test"))
    found = {
        f"{split}/{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    for k, value in (metrics.get("top_k_accuracy") or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            found[f"{split}/top_{k}_accuracy"] = float(value)
    return found


_WARNED: set[str] = set()  # tracking URIs this process has warned about


def _warn(text: str) -> None:
    # The command line's warning form; training's progress goes on below it.
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _read_state(run: Run) -> dict[str, Any]:
    return dict(run.read_json(contract.MLFLOW)) if run.has(contract.MLFLOW) else {}


def _parent_run_id(run: Run) -> Optional[str]:
    """A tune trial's parent: the MLflow run its search folder (the trial folder's parent) logged."""
    parent = Run(run.path.parent)
    if not parent.has(contract.TUNE_STUDY) or not parent.has(contract.MLFLOW):
        return None
    return parent.read_json(contract.MLFLOW).get("run_id")


def sync_run(run: Run, config: Config) -> dict[str, Any]:
    """`cnnctl sync RUN`: send what the run's MLflow run lacks. Raises RunError when the server cannot be reached."""
    if config.train.mlflow is None:
        raise ConfigError(f"{run.path}: its config.yaml has no train.mlflow; there is nothing to send")
    runtime.require_package("mlflow", "train.mlflow", "pip install 'cnnctl[mlflow]'")
    tracker = Tracker(run, config)
    if not tracker.state.get("tracking_uri"):
        raise ConfigError("train.mlflow: no tracking server named; set MLFLOW_TRACKING_URI")
    try:
        return tracker.sync()
    except Exception as exc:  # noqa: BLE001 - the server's or the network's answer, named in one line
        tracker.state["last_error"] = f"{type(exc).__name__}: {first_line(exc)[:300]}"
        tracker._write()
        raise RunError(
            f"MLflow at {tracker.state['tracking_uri']}: cannot send ({first_line(exc)[:200]}); nothing was lost: "
            f"run `cnnctl sync {run.path}` again when it answers"
        ) from None


def tune_parent(tune_run: Run, config: Config, warn: Optional[Warn] = None) -> Optional[Tracker]:
    """A search's parent MLflow run (its trials are children of it); None without train.mlflow."""
    if config.train.mlflow is None:
        return None
    tracker = Tracker(tune_run, config, warn)
    tracker.start()
    return tracker
