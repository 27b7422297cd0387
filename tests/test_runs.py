"""Run folders: unique names, `last`, resolution errors, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnctl.errors import RunError
from cnnctl.runs import contract
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.folder import Run, create_run, default_runs_dir, list_runs, resolve_run


def make_finished(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / contract.CONFIG).write_text("model: {layers: [Flatten]}\n")
    (path / contract.ENVIRONMENT).write_text("{}")
    return path


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path):
    made = [create_run(tmp_path, "net", now=1_700_000_000).path for _ in range(3)]
    assert len(set(made)) == 3
    stamp = made[0].name[: len("YYYYmmdd-HHMMSS")]
    assert [p.name for p in made] == [f"{stamp}-net", f"{stamp}-net-2", f"{stamp}-net-3"]
    assert all(p.is_dir() for p in made)


def test_last_is_the_newest_complete_run(tmp_path):
    older = make_finished(tmp_path / "20260101-000000-a")
    newer = make_finished(tmp_path / "20260101-000000-a-2")
    (tmp_path / "20270101-000000-half").mkdir()  # being created: no environment.json yet
    assert resolve_run("last", tmp_path).path == newer
    assert [run.path for run in list_runs(tmp_path)] == [newer, older]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope", "nope: no such run in {dir}; `cnnctl runs --runs-dir {dir}` lists the 1 runs there"),
        ("../escape", "../escape: no such run folder"),
        ("20260101-000000-b", "20260101-000000-b: no such run in {dir}; did you mean 20260101-000000-a?"),
    ],
)
def test_resolve_errors(tmp_path, spec, message):
    make_finished(tmp_path / "20260101-000000-a")
    with pytest.raises(RunError) as caught:
        resolve_run(spec, tmp_path)
    assert str(caught.value) == message.format(dir=tmp_path)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(RunError, match="not a cnnctl run folder"):
        resolve_run(str(tmp_path / "stuff"), tmp_path)


def test_last_with_no_runs_says_how_to_make_one(tmp_path):
    with pytest.raises(RunError, match="no runs in .*; train one first: cnnctl train configs/digits.yaml"):
        resolve_run("last", tmp_path / "empty")


def test_runs_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(contract.RUNS_DIR_ENV, str(tmp_path))
    assert default_runs_dir() == tmp_path
    assert default_runs_dir("elsewhere") == Path("elsewhere")


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"accuracy": 0.9}')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text('{"accura')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_json_round_trip_and_update(tmp_path):
    run = Run(tmp_path)
    import numpy as np

    run.write_json("a.json", {"x": np.float32(0.5), "y": np.arange(3)})
    run.update_json("a.json", z=1)
    assert run.read_json("a.json") == {"x": 0.5, "y": [0, 1, 2], "z": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask  # ordinary permissions, not mkstemp's 0600


def test_runs_lists_cross_validation_and_tuning_folders_and_plot_points_into_them(trained_digits_run, tmp_path):
    """A cv or tune folder is not a run, but `cnnctl runs` lists it with its result, and `plot` on it says where its
    summary and its runs are instead of "not a run folder"."""
    import shutil

    from typer.testing import CliRunner

    from cnnctl.cli.app import app

    runs = tmp_path / "runs"
    shutil.copytree(trained_digits_run.path, runs / "20260101-000000-digits")
    cv = runs / "20260101-000001-digits-cv"
    cv.mkdir()
    (cv / contract.CV_SUMMARY).write_text(
        json.dumps(
            {"status": "completed", "folds_completed": 3, "mean": {"accuracy": 0.9512}, "std": {"accuracy": 0.0123}}
        )
    )
    tune = runs / "20260101-000002-digits-tune"
    tune.mkdir()
    (tune / contract.TUNE_STUDY).write_bytes(b"")
    (tune / contract.TUNE_SUMMARY).write_text(
        json.dumps({"status": "completed", "trials": [{}, {}], "best": {"number": 1, "value": 0.9731}})
    )
    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("20260101-000000-digits" in line for line in lines)
    cv_row = next(line for line in lines if cv.name in line)
    assert "cv" in cv_row and "accuracy 0.9512 ± 0.0123" in cv_row and "completed" in cv_row
    tune_row = next(line for line in lines if tune.name in line)
    assert "tune" in tune_row and "best val accuracy 0.9731 (trial 1)" in tune_row

    result = CliRunner().invoke(app, ["plot", cv.name, "--runs-dir", str(runs)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {cv.name}: a cross-validation folder, not a run: its summary is "
        f"cv_summary.json, and each fold is a run (e.g. {cv / 'fold-1'})"
    )
    result = CliRunner().invoke(app, ["report", str(tune)])
    assert result.exit_code == 2 and "a tuning folder, not a run: its page is tune_report.html" in result.output
