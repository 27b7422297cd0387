"""Run files edited by hand or crafted: each gives one `error:` line (exit 2, no traceback), no file a run names
can lie outside the run folder, and extending a completed run that fails leaves its folder byte for byte as it
was, so the run is never lost."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

METADATA = "checkpoints/training_metadata.json"


def folder_bytes(run: Path) -> dict[str, bytes]:
    return {path.relative_to(run).as_posix(): path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}


def folders(run: Path) -> set[str]:
    return {path.relative_to(run).as_posix() for path in run.rglob("*") if path.is_dir()}


def one_error_line(result) -> str:
    """The command failed as a user mistake: exit 2, one `error:` line and nothing else, no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def craft_model(path: Path, change) -> None:
    """Rewrite model.keras with its config.json changed by `change`, its weights kept."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def os_system(entry: dict) -> None:
    entry.update(module="os", class_name="system", config={"command": "touch pwned"}, registered_name=None)


# (what is done to the run folder, the command, words the error line must contain)
cases = [
    (
        "weights: /etc/passwd",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "weights": "/etc/passwd"}),
        "train",
        '`weights` must be the name of a file in checkpoints/, not "/etc/passwd"',
    ),
    (
        "weights: ../model.keras",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "weights": "../model.keras"}),
        "train",
        '`weights` must be the name of a file in checkpoints/, not "../model.keras"',
    ),
    (
        "weights in a sub-folder",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "weights": "a/b.weights.h5"}),
        "train",
        "`weights` must be the name of a file in checkpoints/",
    ),
    (
        "best_weights: /etc/passwd",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "best_weights": "/etc/passwd"}),
        "train",
        '`best_weights` must be the name of a file in checkpoints/, not "/etc/passwd"',
    ),
    (
        "metadata a list",
        lambda run: (run / METADATA).write_text("[1, 2]"),
        "train",
        "training_metadata.json: expected a JSON object ({...}), found a list",
    ),
    (
        "epoch a string",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "epoch": "2"}),
        "train",
        "not a cnnctl training state",
    ),
    (
        "callbacks a list",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "callbacks": [1]}),
        "train",
        "`callbacks` must map each callback's name",
    ),
    (
        "callback state a string",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "callbacks": {"ModelCheckpoint": {"best": "low"}}}),
        "train",
        'callbacks.ModelCheckpoint.best must be a number, not "low"',
    ),
    (
        "finished a string",
        lambda run: edit_json(run / METADATA, lambda s: {**s, "finished": "yes"}),
        "train",
        "`finished` must be true or false",
    ),
    (
        "environment.json a list",
        lambda run: (run / "environment.json").write_text('["completed"]'),
        "train",
        "environment.json: expected a JSON object ({...}), found a list",
    ),
    (
        "data.json a list",
        lambda run: (run / "data.json").write_text("[]"),
        "evaluate",
        "data.json: expected a JSON object ({...}), found a list",
    ),
    (
        "metrics.json a string",
        lambda run: (run / "metrics.json").write_text('"accuracy"'),
        "plot",
        "metrics.json: expected a JSON object ({...}), found a string",
    ),
    (
        "predictions with an object array",
        lambda run: np.savez(
            run / "predictions.npz",
            y_true=np.array([0]),
            class_names=np.array(["a"]),
            y_prob=np.array([{"x": 1}], dtype=object),
        ),
        "plot",
        "predictions.npz: member y_prob.npy holds Python objects (pickled data), which are refused",
    ),
    (
        "predictions pickled",
        lambda run: (run / "predictions.npz").write_bytes(pickle.dumps({"y_true": [0]})),
        "plot",
        "predictions.npz: not the predictions cnnctl saves",
    ),
    (
        "predictions missing arrays",
        lambda run: np.savez(run / "predictions.npz", y_true=np.array([0])),
        "plot",
        "predictions.npz: has no y_prob, class_names (it holds y_true)",
    ),
    (
        "model names module os",
        lambda run: craft_model(run / "model.keras", os_system),
        "evaluate",
        "model.keras: refused: its config names a class that is not one of Keras' own ('system')",
    ),
    (
        "a layer names module os",
        lambda run: craft_model(run / "model.keras", lambda config: os_system(config["config"]["layers"][1])),
        "plot",
        "model.keras: refused: its config names a class that is not one of Keras' own",
    ),
    (
        "a layer names a numpy class",
        lambda run: craft_model(
            run / "model.keras",
            lambda config: config["config"]["layers"][1].update(
                module="numpy", class_name="ndarray", registered_name=None
            ),
        ),
        "evaluate",
        "model.keras: refused",
    ),
]


@pytest.mark.parametrize("craft, command, expected", [case[1:] for case in cases], ids=[case[0] for case in cases])
def test_a_crafted_run_file_is_one_error_line(digits_run_copy, monkeypatch, craft, command, expected):
    run = digits_run_copy
    monkeypatch.chdir(run)  # a `touch pwned` that ran would leave its file here
    craft(run)
    args = {"train": ["train", "--resume", str(run), "--set", "train.epochs=3"]}.get(command, [command, str(run)])
    before = folder_bytes(run)
    line = one_error_line(runner.invoke(app, args))
    assert expected in line
    assert not (run / "pwned").exists()
    if command == "train":  # refused before anything was written
        assert folder_bytes(run) == before


@pytest.mark.parametrize(
    "name, damage, says",
    [
        ("metrics.json", lambda path: path.write_text("[]"), "expected a JSON object"),
        ("metrics.json", lambda path: path.write_text('{"x": 1' + "0" * 100_000 + "}"), "not valid JSON"),
        ("history.csv", lambda path: (path.unlink(), os.mkfifo(path)), "named pipe"),
    ],
    ids=["a-list", "100k-digit-number", "fifo-history"],
)
def test_report_refuses_a_damaged_file_and_keeps_the_old_page(digits_run_copy, name, damage, says):
    """A page rewritten around a damaged file would lose what the old one showed: the report names the file and
    leaves report.html as it was (it once wrote a page of empty sections, exit code 0)."""
    page = (digits_run_copy / "report.html").read_bytes()
    damage(digits_run_copy / name)
    line = one_error_line(runner.invoke(app, ["report", str(digits_run_copy)]))
    assert line.startswith(f"error: {digits_run_copy / name}: ") and says in line, line
    assert (digits_run_copy / "report.html").read_bytes() == page


def test_damaged_early_stopping_weights_are_refused_before_anything_is_written(digits_run_copy):
    run = digits_run_copy
    edit_json(run / METADATA, lambda state: {**state, "best_weights": "best-epoch-0001.npz"})
    (run / "checkpoints" / "best-epoch-0001.npz").write_bytes(pickle.dumps([np.zeros(3)]))
    before = folder_bytes(run)
    line = one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=3"]))
    assert "best-epoch-0001.npz: not the early-stopping weights cnnctl saves" in line
    assert folder_bytes(run) == before


def fail_first_new_epoch(monkeypatch, fault: BaseException, hook: str) -> None:
    """Raise `fault` in `hook` of the resumed fit: on_epoch_end comes after history.csv has its new row and
    model.keras may have been replaced, but before the epoch's state is committed."""
    import keras

    from cnnctl.training import loop

    class Fault(keras.callbacks.Callback):
        pass

    setattr(Fault, hook, lambda self, *args, **kwargs: (_ for _ in ()).throw(fault))
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a, **k: make_callbacks(*a, **k) + [Fault()])


@pytest.mark.parametrize(
    "fault, hook, exit_code, expected",
    [
        (MemoryError("failed to allocate 10**9 examples"), "on_epoch_end", 2, "out of memory"),
        (OSError(28, "No space left on device"), "on_train_begin", 2, "disk full"),
        (KeyboardInterrupt(), "on_train_batch_begin", 130, "interrupted: extending"),
    ],
    ids=["out of memory", "disk full", "ctrl-c"],
)
def test_a_failed_extension_leaves_the_completed_run_as_it_was(
    digits_run_copy, monkeypatch, fault, hook, exit_code, expected
):
    run = digits_run_copy
    before, folders_before = folder_bytes(run), folders(run)
    fail_first_new_epoch(monkeypatch, fault, hook)
    result = runner.invoke(
        app, ["train", "--resume", str(run), "--set", "train.epochs=3", "--set", f"train.batch_size={10**9}"]
    )
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert expected in result.output and "is left as it was (completed after 2 epochs" in result.output
    assert folder_bytes(run) == before
    assert folders(run) == folders_before  # no new folder either (tensorboard/, ...)

    monkeypatch.undo()  # and the run still extends
    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "environment.json").read_text())["status"] == "completed"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
