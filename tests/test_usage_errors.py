"""Mistakes the command line itself catches (an unknown option or command, `--processes two`) and values that
pass YAML but no config should hold (`seed: true`, an infinite learning rate, a batch TensorFlow cannot count, a
negative class weight): each one `error:` line naming what to read or write instead, exit code 2."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from test_hostile_inputs_more import one_error

USAGE = [
    (
        ["train", "c.yaml", "--processes", "0"],
        "error: Invalid value for '--processes': Input should be greater than or equal to 1; see cnnctl train --help",
    ),
    (
        ["train", "c.yaml", "--processes", "two"],
        "error: Invalid value for '--processes': Input should be a valid integer, unable to parse string as an "
        "integer; see cnnctl train --help",
    ),
    (
        ["train", "c.yaml", "--epochs", "3"],
        "error: No such option: --epochs (Possible options: --processes); see cnnctl train --help",
    ),
    (["trian", "c.yaml"], "error: No such command 'trian'. Did you mean 'train'?; see cnnctl --help"),
    (["predict"], "error: Missing argument 'RUN'; see cnnctl predict --help"),
]


@pytest.mark.parametrize(
    "args, expected",
    USAGE,
    ids=["processes-0", "processes-two", "unknown-option", "unknown-command", "missing-argument"],
)
def test_usage_mistakes_are_one_error_line(args, expected):
    assert one_error(*args).lower() == expected.lower()


VALUES = [
    ("seed=true", "seed: must be an integer (got true)"),
    ("train.optimizer.learning_rate=.inf", "train.optimizer.learning_rate: must be a finite number (got inf)"),
    (
        "train.batch_size=100000000000000000000",
        "train.batch_size: must be less than or equal to 2147483647 (got 100000000000000000000)",
    ),
    (
        "train.class_weight={0: -1}",
        "train.class_weight: class 0 has weight -1; a class weight must be above 0 (e.g. {0: 1.0, 1: 3.0}, or balanced)",
    ),
    (  # Keras' own message blamed groups
        "model.layers[0].Conv2D.filters=.inf",
        "model.layers[0] (Conv2D): filters: inf is not a finite number; give a finite one",
    ),
    (  # passed check, then broke a figure after training
        "model.layers[0].Conv2D.name=" + "c" * 5000,
        "model.layers[0] (Conv2D): name: 5,000 characters; a layer name may have at most 200",
    ),
    (  # passed check, then no run folder could be made
        "name=" + "r" * 250,
        "name: 250 characters; a run name may have at most 200 (the run folder is named <date>-<time>-<name>, and "
        "file systems allow 255 bytes)",
    ),
]


@pytest.mark.parametrize(
    "override, expected",
    VALUES,
    ids=[
        "seed-true",
        "infinite-rate",
        "huge-batch",
        "negative-weight",
        "infinite-filters",
        "huge-layer-name",
        "long-name",
    ],
)
def test_values_no_config_should_hold_are_refused_before_anything_runs(trained_digits_run, override, expected):
    error = one_error("check", trained_digits_run.config, "--set", override)
    shown = override if len(override) <= 200 else f"{override[:100]}…{override[-50:]} ({len(override)} characters)"
    assert error == f"error: --set {shown}: {expected}"


def test_more_local_processes_than_the_machine_holds_are_refused(trained_digits_run):
    from cnnctl.training.distribute import local_process_limit

    limit = local_process_limit()
    error = one_error("train", trained_digits_run.config, "--processes", limit + 1)
    assert error.startswith(f"error: --processes {limit + 1}: this machine (")
    assert f"holds at most {limit} training processes" in error
    error = one_error("tune", trained_digits_run.config, "--trials", 2, "--workers", limit + 1)
    assert f"--workers {limit + 1}: this machine (" in error


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("JAX_COORDINATOR_ADDRESS", "bad address", "JAX_COORDINATOR_ADDRESS='bad address': must be host:port"),
        ("JAX_COORDINATOR_ADDRESS", "host:99999", "JAX_COORDINATOR_ADDRESS='host:99999': must be host:port"),
        (
            "JAX_NUM_PROCESSES",
            "99999999999999999999",
            "JAX_NUM_PROCESSES='99999999999999999999': must be a whole number from 0 to 65536",
        ),
        ("JAX_NUM_PROCESSES", "-2", "JAX_NUM_PROCESSES='-2': must be a whole number from 0 to 65536"),
        # Keras' launcher variables, read when the JAX_* ones are not set, are checked and named the same way
        (
            "KERAS_DISTRIBUTION_JOB_ADDRESSES",
            "bad address,10.0.0.2:1234",
            "KERAS_DISTRIBUTION_JOB_ADDRESSES='bad address': must be host:port",
        ),
        (
            "KERAS_DISTRIBUTION_NUM_PROCESSES",
            "two",
            "KERAS_DISTRIBUTION_NUM_PROCESSES='two': must be a whole number from 0 to 65536",
        ),
    ],
)
def test_a_malformed_jax_environment_is_one_line_before_jax_sees_it(monkeypatch, variable, value, expected):
    from cnnctl.errors import ConfigError
    from cnnctl.training import distribute

    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(distribute.runtime, "backend", lambda: "jax")
    with pytest.raises(ConfigError) as caught:
        distribute.join_processes()
    assert str(caught.value).startswith(expected)


def test_keras_launcher_variables_describe_the_job_when_jax_ones_are_not_set(monkeypatch):
    from cnnctl.training import distribute

    for name in distribute.JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert distribute.job_environment() == distribute.JobEnvironment(
        "10.0.0.1:1234",
        2,
        1,
        ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"),
    )
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.9:9999")  # the JAX ones win when both are set
    assert distribute.job_environment().coordinator == "10.0.0.9:9999"
    monkeypatch.setattr(distribute.runtime, "backend", lambda: "tensorflow")
    from cnnctl.errors import ConfigError

    with pytest.raises(ConfigError, match="JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES describe several"):
        distribute.join_processes()


def test_a_layer_argument_written_by_set_is_blamed_on_the_set_not_the_file(trained_digits_run):
    error = one_error("check", trained_digits_run.config, "--set", "model.layers[0].Conv2D.kernal_size=3")
    assert error.startswith(
        "error: --set model.layers[0].Conv2D.kernal_size=3: model.layers[0] (Conv2D): unknown "
        "argument 'kernal_size' (did you mean 'kernel_size'?)"
    )
    error = one_error(
        "check", trained_digits_run.config, "--set", "train.epochs=2", "--set", "model.layers[0].Conv2D.filters=-3"
    )
    assert error.startswith("error: --set model.layers[0].Conv2D.filters=-3: model.layers[0] (Conv2D): Invalid value")
    # A mistake the file itself holds is still the file's.
    bad = trained_digits_run.config.parent / "bad-filters.yaml"
    bad.write_text(trained_digits_run.config.read_text().replace("filters: 8", "filters: -8", 1))
    assert one_error("check", bad, "--set", "train.epochs=2").startswith(f"error: {bad}: model.layers[0] (Conv2D)")


JOIN_NOBODY = """
import sys
from cnnctl.training import distribute
distribute.JOIN_TIMEOUT_S = int(sys.argv[1])
distribute.join_processes()
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_coordinator_nobody_answers_is_one_line_in_bounded_time(tmp_path):
    """Issue 30 part 5: process 1 of 2 told of a coordinator that never answers waited, then JAX aborted the process
    (a C++ fatal error and stack trace, exit 134). It now gives up with one line when its own timeout passes."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", JOIN_NOBODY, "4"], capture_output=True, text=True, env=environment, timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot join the other training processes at JAX_COORDINATOR_ADDRESS=127.0.0.1:{port} within 4 s: "
        "check that all 2 processes run and reach that address (process 0's)"
    )
    assert not [line for line in done.stderr.splitlines() if "Check failure" in line or line.startswith("F")]
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "address, said",
    [
        ("ray://", "not a Ray address"),
        ("ray://head:notaport", "not a Ray address"),
        ("127.0.0.1:99999", "not a Ray address"),
        ("127.0.0.1:{free}", "nothing answers at 127.0.0.1:{free} (Connection refused); start the cluster there"),
    ],
)
def test_a_ray_address_where_nothing_can_answer_is_one_line_at_once(address, said):
    """Ray's client retried such addresses for minutes (past a 120 s timeout), printing its own log lines."""
    from cnnctl.errors import ConfigError
    from cnnctl.training.ray_launch import check_ray_address

    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    address, said = address.format(free=free), said.format(free=free)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=re.escape(f"--ray {address}: {said}")):
        check_ray_address(address)
    assert time.monotonic() - start < 30
