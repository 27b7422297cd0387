"""train.distribute: one machine's devices (TensorFlow's MirroredStrategy over two logical CPU devices) give the
metrics of one device within a tolerance; the batches cut for Keras' DataParallel; the mistakes. The two-process JAX
job (`--processes 2`) is tested in test_backends.py, beside the one-process JAX run it is compared with.

Tolerances: the devices compute the same global-batch gradients, but not on the same batches: MirroredStrategy's
distributed copy of a seeded tf.data shuffle yields another order than the shuffle itself (plain Keras, no cnnctl:
without a shuffle one device and two agree to 2e-7 after an epoch), and cnnctl's DataParallel batches are its own;
float sums are ordered differently too. On digits after 2 epochs the runs agree within a few hundredths of
accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_DIGITS_CONFIG
from typer.testing import CliRunner

from cnnctl.cli.app import app
from cnnctl.config.schema import Config
from cnnctl.data.shard import Shard
from cnnctl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group(__name__)

ACCURACY_TOLERANCE = 0.04


def test_batches_split_evenly_over_devices_and_processes():
    """Every example of an ordered split is scored once (padding weighs 0); a training epoch's batches are all
    whole, and the two processes' parts together are the one-process batch."""
    from cnnctl.data.batches import ArrayBatches

    x = np.arange(11, dtype=np.float32).reshape(11, 1)
    y = np.arange(11)
    whole = ArrayBatches(x, y, 4, shard=Shard(0, 1, 2))
    parts = [ArrayBatches(x, y, 4, shard=Shard(index, 2, 2)) for index in (0, 1)]
    seen, weights = [], []
    for batch in range(len(whole)):
        bx, by, bw = whole[batch]
        assert len(bx) % 2 == 0
        halves = [part[batch] for part in parts]
        np.testing.assert_array_equal(np.concatenate([half[0] for half in halves]), bx)
        seen += by[bw == 1].tolist()
        weights += bw.tolist()
    assert sorted(seen) == list(range(11)) and weights.count(0.0) == 1  # 11 → 12: one padded row
    training = ArrayBatches(x, y, 4, shuffle=True, seed=1, shard=Shard(1, 2, 2))
    sizes = [len(training[batch][0]) for batch in range(len(training))]
    assert sizes == [2, 2, 2]  # 3 global batches of 4 (the last filled up from the epoch's start), half each


def test_distribute_mistakes_are_config_errors(monkeypatch):
    from cnnctl.training import distribute

    def place(**train):
        config = {**TINY_DIGITS_CONFIG, "train": {**TINY_DIGITS_CONFIG["train"], **train}}
        return distribute.place(Config.model_validate(config).train)

    with pytest.raises(
        ConfigError, match="data_parallel is Keras' distribution API on the JAX backend; on TensorFlow use mirrored"
    ):
        place(distribute="data_parallel")
    monkeypatch.setattr(distribute, "_tensorflow_devices", lambda: ["/device:CPU:0", "/device:CPU:1"])
    with pytest.raises(
        ConfigError,
        match=r"train.batch_size: 33 does not split evenly over the 2 devices "
        r"train.distribute: mirrored uses; use 32 or 34",
    ):
        place(distribute="mirrored", batch_size=33)
    with pytest.raises(
        ConfigError, match="train.steps_per_execution: 4 does not work with TensorFlow's MirroredStrategy"
    ):
        place(distribute="auto", steps_per_execution=4)
    assert Config.model_validate({**TINY_DIGITS_CONFIG, "train": {"distribute": False}}).train.distribute == "none"
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(ConfigError, match="runs on the JAX backend only"):
        distribute.join_processes()


def test_a_config_backend_that_keras_cannot_switch_to_is_one_error_line(tmp_path, monkeypatch):
    from cnnctl import runtime

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(
        ConfigError,
        match=r"^backend: jax, but KERAS_BACKEND=tensorflow is set; unset KERAS_BACKEND "
        r"or change backend: in the config$",
    ):
        runtime.use_backend("jax")
    monkeypatch.delenv("KERAS_BACKEND")
    config = tmp_path / "split.yaml"
    config.write_text(yaml.safe_dump({**TINY_DIGITS_CONFIG, "backend": "jax"}))
    # This test process runs Keras on TensorFlow already, as a Python caller that imported it first would.
    result = CliRunner().invoke(app, ["check", str(config)])
    assert result.exit_code == 2
    assert (
        "error: backend: jax, but this Python process already runs Keras on tensorflow (Keras chooses its "
        "backend once, when it is imported); set KERAS_BACKEND=jax"
    ) in result.output
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # use_backend sets it: put back after the test
    runtime.use_backend("tensorflow")  # the one it runs: fine
    # Omitted from config.yaml when not chosen: run folders of before are unchanged.
    assert "backend" not in Config.model_validate(TINY_DIGITS_CONFIG).to_dict()


def test_processes_need_the_jax_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    config = tmp_path / "split.yaml"
    config.write_text(yaml.safe_dump(TINY_DIGITS_CONFIG))
    result = CliRunner().invoke(app, ["train", str(config), "--processes", "2", "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "error: --processes: several training processes run on the JAX backend" in result.output
    assert "KERAS_BACKEND=jax cnnctl train ... --processes 2" in result.output
    assert not (tmp_path / "r").exists()


MIRRORED = """
import json, sys
import cnnctl
from cnnctl import runtime

tf = runtime.import_tensorflow()  # quietly, as cnnctl.train would; then two logical devices before it starts
runtime.devices()  # the first device query, with its CUDA probing silenced
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
result = cnnctl.train(json.loads(sys.argv[1]), runs_dir=sys.argv[2])
print(json.dumps({"path": str(result.path), "accuracy": result.metrics["accuracy"]}))
"""


def test_mirrored_over_two_logical_devices_matches_one_device(tmp_path, trained_digits_run):
    """The session's tiny digits run (one device) trained again over two logical CPU devices, through the Python
    API in a fresh interpreter, as a user would: the only output is what the script prints itself."""
    config = {**TINY_DIGITS_CONFIG, "train": {**TINY_DIGITS_CONFIG["train"], "distribute": "mirrored"}}
    del config["name"]  # a dict's run is named "run"
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED, json.dumps(config), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=400,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr == "" and len(done.stdout.splitlines()) == 1, done.stdout + done.stderr
    mirrored = json.loads(done.stdout)
    assert Path(mirrored["path"]).name.endswith("-run")
    split = json.loads((Path(mirrored["path"]) / "environment.json").read_text())["distribute"]
    assert split == {
        "strategy": "mirrored",
        "devices": ["CPU:0", "CPU:1"],
        "processes": 1,
        "global_batch": 32,
        "per_device_batch": 16,
    }
    one_device = trained_digits_run.path
    assert json.loads((one_device / "environment.json").read_text())["distribute"]["strategy"] == "none"
    single = json.loads((one_device / "metrics.json").read_text())["accuracy"]
    assert single > 0.8 and abs(mirrored["accuracy"] - single) <= ACCURACY_TOLERANCE, (mirrored, single)


def test_the_slurm_and_kubeflow_examples_parse_and_name_the_variables_cnnctl_reads():
    """examples/cluster/: the sbatch script is valid bash that sets exactly the three JAX variables cnnctl reads and
    runs `cnnctl train`; the TrainJob is a TrainJob on the jax-distributed runtime (which sets those three) whose
    command is `cnnctl train` on the JAX backend."""
    import re

    from cnnctl.training.distribute import COORDINATOR, JOB_VARIABLES, PROCESS_COUNT, PROCESS_ID

    cluster = Path(__file__).resolve().parent.parent / "examples" / "cluster"
    jax_three = {COORDINATOR, PROCESS_COUNT, PROCESS_ID}
    assert jax_three <= set(JOB_VARIABLES)
    named = re.compile(r"\b(?:JAX|KERAS_DISTRIBUTION)_[A-Z_]+\b")

    script = (cluster / "slurm.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(cluster / "slurm.sbatch")], capture_output=True).returncode == 0
    assert set(named.findall(script)) == jax_three
    assert set(re.findall(r"\bexport (JAX_[A-Z_]+)=", script)) == jax_three  # each one set, none left to chance
    assert re.search(r"^#SBATCH --nodes=\d+", script, re.M) and "exec cnnctl train" in script
    assert "export KERAS_BACKEND=jax" in script

    text = (cluster / "kubeflow-trainjob.yaml").read_text()
    job = yaml.safe_load(text)
    assert job["apiVersion"].startswith("trainer.kubeflow.org/") and job["kind"] == "TrainJob"
    assert job["spec"]["runtimeRef"]["name"] == "jax-distributed" and job["spec"]["trainer"]["numNodes"] >= 2
    assert job["spec"]["trainer"]["command"][:2] == ["cnnctl", "train"]
    env = {item["name"]: item["value"] for item in job["spec"]["trainer"]["env"]}
    assert env == {"KERAS_BACKEND": "jax"}  # the runtime sets the JAX variables itself
    assert set(named.findall(text)) == jax_three  # and the manifest says which ones cnnctl reads
