"""`cnnctl tune --resume` on a tune folder whose study is not what cnnctl wrote: a FIFO, a link to /dev/zero, a folder,
an empty, garbage or truncated file, a study of another name, a lock that is a folder, a trial folder that is in the
way. Each is one `error:` line (exit 2), and nothing that was there is changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

CONFIG = {
    "name": "tiny",
    "seed": 1,
    "data": {"source": "digits", "validation_split": 0.25},
    "model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
    "train": {"epochs": 1, "batch_size": 64, "early_stopping": False},
    "tune": {"train.batch_size": {"choice": [32, 64]}},
}


def real_study(path: Path, name: str = "cnnctl-tune") -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{path}", study_name=name, direction="maximize")


def tune_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "20260101-000000-tiny-tune"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return folder


def garbage(study: Path) -> None:
    study.write_bytes(b"this is not a database\n" * 100)


def truncated(study: Path) -> None:
    real_study(study)
    study.write_bytes(study.read_bytes()[:1500])  # the header survives, the pages do not


STUDY_CASES = [
    ("fifo", lambda study: os.mkfifo(study), "is a named pipe (FIFO), not a regular file"),
    ("dev-zero", lambda study: study.symlink_to("/dev/zero"), "is a device, not a regular file"),
    ("folder", lambda study: study.mkdir(), "is a folder"),
    ("empty", lambda study: study.write_bytes(b""), "is empty; the study cannot be resumed"),
    ("garbage", garbage, "is not an SQLite database; the study cannot be resumed"),
    ("truncated", truncated, "damaged ("),
    (
        "other-name",
        lambda study: real_study(study, "someone-else"),
        "holds no study named cnnctl-tune (it holds someone-else); it was not written by cnnctl tune",
    ),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below `folder`: a file's SHA-256, or what else it is (read without opening FIFOs or devices)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = f"link to {os.readlink(path)}"
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path)] = "folder" if path.is_dir() else "special"
    return found


def one_error(*args: str) -> str:
    result = runner.invoke(app, list(args))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output[-3000:]
    assert "Traceback" not in result.output and len(errors) == 1, result.output[-3000:]
    return errors[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes and /dev/zero are POSIX")
@pytest.mark.parametrize("name, make, expected", STUDY_CASES, ids=[case[0] for case in STUDY_CASES])
def test_a_study_db_that_is_not_a_study_is_one_line(tmp_path, name, make, expected):
    folder = tune_folder(tmp_path)
    make(folder / "study.db")
    before = snapshot(folder)
    error = one_error("tune", "--resume", str(folder), "--trials", "2")
    assert error.startswith(f"error: {folder / 'study.db'}: ") and expected in error, error
    assert snapshot(folder) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("make, kind", [(Path.mkdir, "is a folder"), (os.mkfifo, "is a named pipe (FIFO)")])
def test_a_lock_that_is_not_a_file_is_one_line(tmp_path, make, kind):
    folder = tune_folder(tmp_path)
    real_study(folder / "study.db")
    make(folder / "study.lock")
    before = snapshot(folder)
    error = one_error("tune", "--resume", str(folder), "--trials", "2")
    assert error.startswith(f"error: {folder / 'study.lock'}: {kind}") and "remove it, then resume" in error
    assert snapshot(folder) == before


def test_a_trial_folder_in_the_way_is_kept_and_named(tmp_path):
    folder = tune_folder(tmp_path)
    real_study(folder / "study.db")
    (folder / "trial-0").mkdir()
    (folder / "trial-0" / "notes.txt").write_text("mine")
    before = snapshot(folder)  # refused before the study counts a trial (it once did, and the summary said failed)
    error = one_error("tune", "--resume", str(folder), "--trials", "2")
    assert error == (
        f"error: {folder / 'trial-0'}: already exists, but the study's trial 0 is new; move the folder away, "
        "then resume"
    )
    assert (folder / "trial-0" / "notes.txt").read_text() == "mine"
    assert sorted(path.name for path in (folder / "trial-0").iterdir()) == ["notes.txt"]
    assert snapshot(folder) == before
