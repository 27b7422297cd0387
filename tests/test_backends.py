"""Keras 3 backends: the same cnnctl on JAX (KERAS_BACKEND=jax, the `cnnctl[jax]` extra) with TensorFlow hidden
from the import system (tests/without_tensorflow on PYTHONPATH), as on a machine that has only JAX: train and
predict in one fresh interpreter (the backend is chosen once per process); then the same training as a job of two
processes joined over 127.0.0.1 (`--processes 2`, the backend chosen by the config's `backend: jax`), one of them
killed mid-run, resumed on two processes of a local Ray cluster, and compared with the one-process run.

TensorFlow installed beside JAX (tf.data batches fed to JAX), `evaluate` and `cv` on JAX (the same functions as
train's evaluation and training) were tried by hand (benchmarks/RESULTS.md); each JAX process costs seconds of XLA
compiling on CPU, so the suite runs the smallest slice that crosses every backend-specific path."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import JAX_TEST_CACHE

from cnnctl import runtime

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.xdist_group(__name__),
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install 'cnnctl[jax]')"
    ),
]

CONFIG = {
    "name": "jax-slice",
    "seed": 3,
    "data": {"source": "digits", "validation_split": 0.1, "test_split": 0.2},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "early_stopping": False,
    },
}

# One process and two compute the same global-batch gradients, but not on the same batches (each process feeds
# its part of cnnctl's own batches; one process feeds tf.data's or the PyDataset's whole ones) and float sums are
# ordered differently: after 2 epochs on digits they agree within a few hundredths of accuracy.
ACCURACY_TOLERANCE = 0.04

SLICE = """
import json, sys
import numpy as np
import cnnctl

runs, images, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
trained = cnnctl.train(config, runs_dir=runs)
predictions = cnnctl.predict(trained.path, np.load(images))
import keras
print(json.dumps({
    "backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules, "path": str(trained.path),
    "epochs": trained.history["epoch"], "accuracy": trained.metrics["accuracy"],
    "predicted": predictions.probabilities.tolist(),
}))
"""


def _jax_without_tensorflow(scratch: Path) -> dict[str, str]:
    hidden = str(ROOT / "tests" / "without_tensorflow")
    path = os.pathsep.join(filter(None, [hidden, os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        **JAX_TEST_CACHE,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": path,
        "TMPDIR": str(scratch),
    }


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory) -> dict:
    """CONFIG trained for 2 epochs on JAX without TensorFlow, and six digits predicted. (Resuming on JAX is the
    two-process test's second half.)"""
    from sklearn.datasets import load_digits

    base = tmp_path_factory.mktemp("jax")
    np.save(base / "six.npy", load_digits().images[:6, :, :, None])
    done = subprocess.run(
        [sys.executable, "-c", SLICE, str(base / "runs"), str(base / "six.npy"), json.dumps(CONFIG)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_jax_without_tensorflow(base),
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "six": base / "six.npy"}


def test_train_and_predict_on_jax_without_tensorflow(jax_run):
    result = jax_run
    assert result["backend"] == "jax" and result["tensorflow"] is False
    run = Path(result["path"])
    environment_json = json.loads((run / "environment.json").read_text())
    assert environment_json["backend"] == "jax" and "jax" in environment_json["versions"]
    assert "tensorflow" not in environment_json["versions"]
    assert environment_json["status"] == "completed"
    assert environment_json["distribute"]["strategy"] == "none"  # one CPU device
    assert result["epochs"] == [1.0, 2.0] and result["accuracy"] > 0.8  # digits after 2 epochs
    # model.keras is backend-neutral: TensorFlow (this process) loads it and predicts what JAX predicted.
    from cnnctl.runs.folder import Run
    from cnnctl.runs.model_file import load_model

    runtime.import_tensorflow()
    probabilities = load_model(Run(run)).predict(np.load(result["six"]).astype(np.float32), verbose=0)
    np.testing.assert_allclose(result["predicted"], probabilities, atol=1e-5)


def _worker(launcher: subprocess.Popen, index: int) -> int:
    """The pid of `--processes` worker `index` (a child of the launcher, told its JAX_PROCESS_ID)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        if f"JAX_PROCESS_ID={index}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return int(pid)
    raise AssertionError(f"no worker {index} among {children}")


def _completed_epochs(runs: Path) -> int:
    for metadata in runs.glob("*/checkpoints/training_metadata.json"):
        try:
            return int(json.loads(metadata.read_text()).get("epoch", 0))
        except (ValueError, OSError):
            return 0
    return 0


def _two_processes_after_an_epoch(tmp_path: Path, capture: bool) -> tuple[subprocess.Popen, Path, Path, dict]:
    """`cnnctl train --processes 2` of a 50-epoch JAX config, once its first epoch is committed: the launcher, the
    runs dir, the scratch TMPDIR and the environment it runs in."""
    config = tmp_path / "jax-slice.yaml"
    # The config's own `backend: jax` chooses the backend here (KERAS_BACKEND unset), for every process.
    config.write_text(yaml.safe_dump({**CONFIG, "backend": "jax", "train": {**CONFIG["train"], "epochs": 50}}))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = _jax_without_tensorflow(scratch)
    del env["KERAS_BACKEND"]
    runs = tmp_path / "runs"
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    launcher = subprocess.Popen(
        [sys.executable, "-m", "cnnctl", "train", str(config), "--processes", "2", "--runs-dir", str(runs)],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=output,
        stderr=output,
    )
    deadline = time.monotonic() + 300
    # Committed: the checkpoint holds the epoch and environment.json says so. The two are written one after the
    # other, so a test that acted on the checkpoint alone would land between them on a busy machine.
    while (
        min(_completed_epochs(runs), _recorded_epochs(runs)) < 1
        and launcher.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return launcher, runs, scratch, env


def _recorded_epochs(runs: Path) -> int:
    for environment in runs.glob("*/environment.json"):
        try:
            return int(json.loads(environment.read_text()).get("epochs_run") or 0)
        except (ValueError, OSError):
            return 0
    return 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker to kill through /proc")
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'cnnctl[ray]')")
def test_two_processes_fail_cleanly_on_loopback_then_resume_on_ray_and_match_one_process(jax_run, tmp_path):
    """`--processes 2` over 127.0.0.1, process 1 killed mid-run: the launcher stops the other and says how to
    continue. The run then continues with `--processes 2 --ray local` (a Ray cluster of this machine's 2 CPUs, one
    actor per process, process 0's output printed as it comes, without Ray's prefixes) and ends as accurate as
    one process. (One test for both launchers: each 2-process JAX start costs tens of seconds of the suite.)"""
    launcher, runs, scratch, env = _two_processes_after_an_epoch(tmp_path, capture=True)
    os.kill(_worker(launcher, 1), signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, out[-2000:] + err[-3000:]
    (run,) = runs.iterdir()
    done = _completed_epochs(runs)
    assert err.strip().splitlines()[-1] == (
        f"error: process 1 of 2 was killed (SIGKILL); the other processes were stopped; {run} keeps its state after "
        f"{done} completed epoch{'s' if done != 1 else ''} (logs in {run}/logs/); continue: cnnctl train --resume "
        f"{run} --processes 2"
    )
    assert "Traceback" not in err, err  # process 0's failed collective stays in its log
    environment = json.loads((run / "environment.json").read_text())
    assert environment["status"] == "failed" and environment["error"] == "process 1 of 2 was killed (SIGKILL)"
    assert environment["distribute"] == {
        "strategy": "data_parallel",
        "devices": ["CPU:0", "CPU:2048"],
        "processes": 2,
        "global_batch": 32,
        "per_device_batch": 16,
    }
    assert "Epoch 1/50" in (run / "logs" / "process-1.log").read_text()
    assert [
        path.name for path in scratch.iterdir() if path.name.startswith("cnnctl-")
    ] == []  # not even the killed one's

    resumed = subprocess.run(
        [sys.executable, "-m", "cnnctl", "train", "--resume", str(run), "--processes", "2", "--ray", "local"]
        + ["--set", f"train.epochs={max(2, done)}"],
        cwd=ROOT,
        # The usual temporary folder: Ray's socket paths under pytest's deep one would pass the 107-byte limit of a
        # Unix socket.
        env={**env, "TMPDIR": tempfile.gettempdir(), "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    lines = resumed.stdout.splitlines()
    assert not any(line.startswith(("(TrainingProcess", "[Gloo]")) for line in lines), resumed.stdout[-3000:]
    assert (
        "split    data_parallel over 2 devices in 2 processes (CPU:0, CPU:2048): batch 32 = 2 × 16 per device"
        in resumed.stdout
    )
    environment = json.loads((run / "environment.json").read_text())
    assert environment["status"] == "completed" and environment["epochs_run"] == max(2, done)
    assert list(runs.iterdir()) == [run]  # process 0's folder; process 1 trained in a scratch folder, removed
    two = json.loads((run / "metrics.json").read_text())["accuracy"]
    assert abs(two - jax_run["accuracy"]) <= ACCURACY_TOLERANCE, (two, jax_run["accuracy"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc")
def test_workers_die_with_a_killed_launcher_and_the_run_keeps_its_committed_epochs(tmp_path):
    """kill -9 of the `--processes` launcher: the kernel kills its workers at once (they would wait for each other
    in a collective forever), and environment.json says how many epochs the checkpoint holds."""
    launcher, runs, _, _ = _two_processes_after_an_epoch(tmp_path, capture=False)
    workers = [_worker(launcher, index) for index in (0, 1)]
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in workers if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
    for pid in left:  # don't leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert left == [], "workers outlived their launcher"
    (run,) = runs.iterdir()
    environment = json.loads((run / "environment.json").read_text())
    assert environment["epochs_run"] == _completed_epochs(runs) >= 1


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
