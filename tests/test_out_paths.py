"""Every `--out` refuses to destroy a file: an existing file without `--overwrite`, a run's own file, a symbolic
link, a named pipe and a device even with it (README, "Files you name with --out"). Each case: exit code 2, one
`error:` line, and the target byte-identical (a link still the same link, a FIFO still a FIFO)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_hostile_inputs_more import one_error

from cnnctl.errors import shown_path

# command → (its arguments before --out, given the run folders and tmp_path; the suffix its --out must have)
COMMANDS = {
    "schema": (lambda runs, tmp: ["schema"], ".json"),
    "predict": (lambda runs, tmp: ["predict", runs[0], tmp / "x.npz"], ".csv"),
    "data": (lambda runs, tmp: ["data", tmp / "tiny-digits.yaml"], ".png"),
    "compare": (lambda runs, tmp: ["compare", runs[0], runs[1]], ".png"),
    "filter": (lambda runs, tmp: ["filter", tmp / "photo.png"], ".png"),
    "export": (lambda runs, tmp: ["export", runs[0], "--format", "onnx"], ".onnx"),
}


def state(path: Path) -> tuple:
    """What a user would notice changed at `path`: its kind, a link's target, a file's bytes."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(mode):
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return ("other", stat.S_IFMT(mode))


@pytest.fixture
def workspace(trained_digits_run, tmp_path) -> tuple[list[Path], Path]:
    """Two copies of the trained run, the inputs each command needs, in tmp_path."""
    runs = []
    for index in (1, 2):
        runs.append(tmp_path / "runs" / f"{trained_digits_run.path.name}-{index}")
        shutil.copytree(trained_digits_run.path, runs[-1])
    shutil.copy(trained_digits_run.config, tmp_path / "tiny-digits.yaml")
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8, 8), np.float32))
    Image.fromarray(np.arange(400, dtype=np.uint8).reshape(20, 20)).save(tmp_path / "photo.png")
    return runs, tmp_path


def targets(runs: list[Path], tmp: Path, suffix: str) -> dict[str, tuple[Path, str]]:
    """name → (a path that must survive --out, the error's text after the path)."""
    existing = tmp / f"existing{suffix}"
    existing.write_bytes(b"the user's own file\n")
    link = tmp / f"link{suffix}"
    link.symlink_to(existing)
    fifo = tmp / f"fifo{suffix}"
    os.mkfifo(fifo)
    model = runs[0] / "model.keras"
    # The run's model under the suffix the command wants: a run file is refused whatever its name.
    own = runs[0] / f"loss_curve{suffix}" if suffix != ".png" else runs[0] / "loss_curve.png"
    if not own.exists():
        own.write_bytes(model.read_bytes())
    return {
        "existing": (existing, "already exists; add --overwrite to replace it, or give a new name"),
        "link": (link, "is a symbolic link; cnnctl writes only regular files and never replaces anything else"),
        "fifo": (fifo, "is a named pipe (FIFO); cnnctl writes only regular files and never replaces anything else"),
        "run-file": (
            own,
            f"is a file of the run folder {shown_path(runs[0].resolve())}; cnnctl never replaces a run's own files",
        ),
    }


@pytest.mark.parametrize("target", ["existing", "link", "fifo", "run-file"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_out_never_replaces_what_it_was_not_told_to(workspace, command, target):
    runs, tmp = workspace
    arguments, suffix = COMMANDS[command]
    path, expected = targets(runs, tmp, suffix)[target]
    before = {candidate: state(candidate) for candidate in [path, *runs[0].iterdir()]}
    # --overwrite is given where it must not help (a link, a FIFO, a run's file); export has no such flag.
    overwrite = ["--overwrite"] if target != "existing" and command != "export" else []
    error = one_error(*arguments(runs, tmp), "--out", path, *overwrite)
    if command == "export":  # export refuses anything that exists, in its own words
        assert f"{path}: already exists; cnnctl export never overwrites" in error
    else:
        assert error.startswith(f"error: --out {shown_path(path)}: {expected}"), error
    assert {candidate: state(candidate) for candidate in before} == before


def test_the_models_of_a_run_survive_every_command_that_writes(workspace):
    runs, tmp = workspace
    model = runs[0] / "model.keras"
    before = state(model)
    for command, (arguments, _) in COMMANDS.items():
        if command in ("export",):
            continue
        one_error(*arguments(runs, tmp), "--out", model, "--overwrite")
    assert state(model) == before


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_never_replaced(device, workspace):
    before = state(Path(device))
    error = one_error("schema", "--out", device, "--overwrite")
    assert error.startswith(f"error: --out {device}: is a device; cnnctl writes only regular files")
    assert state(Path(device)) == before and stat.S_ISCHR(os.stat(device).st_mode)


def test_overwrite_replaces_a_regular_file_and_without_it_a_new_name_is_written(workspace):
    from typer.testing import CliRunner

    from cnnctl.cli.app import app

    runs, tmp = workspace
    existing = tmp / "preds.csv"
    existing.write_text("old\n")
    result = CliRunner().invoke(
        app, ["predict", str(runs[0]), str(tmp / "x.npz"), "--out", str(existing), "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert existing.read_text().splitlines()[0] == "input,rank,class_index,class,probability"
    fresh = tmp / "new" / "compare.png"
    result = CliRunner().invoke(app, ["compare", str(runs[0]), str(runs[1]), "--out", str(fresh)])
    assert result.exit_code == 0, result.output
    assert Image.open(fresh).format == "PNG"


def test_a_file_that_appears_while_the_command_works_is_kept(tmp_path, monkeypatch):
    """The check passed, then another process took the name just before the rename: the write refuses instead of
    replacing it, with hard links and on a file system without them."""
    from cnnctl.errors import RunError
    from cnnctl.runs import output

    target = tmp_path / "out.csv"
    output.check_output_path(target)
    target.write_text("someone else's\n")
    monkeypatch.setattr(output, "_existing_kind", lambda path: None)  # as it was when the command looked
    with pytest.raises(RunError, match="appeared while the command ran"):
        output.write_output_text(target, "ours\n")
    assert target.read_text() == "someone else's\n"
    assert [path.name for path in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left

    def no_links(source, destination):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(RunError, match="appeared while the command ran"):
        output.write_output_text(target, "ours\n")
    fresh = output.write_output_text(tmp_path / "fresh.csv", "ours\n")
    assert fresh.read_text() == "ours\n" and target.read_text() == "someone else's\n"


@pytest.mark.parametrize(
    "command, what",
    [
        (["data", "{config}"], "the sample grid"),
        (["lr-find", "{config}"], "the loss curve"),
        (["compare", "{run}", "{copy}"], "the comparison figure"),
    ],
    ids=["data", "lr-find", "compare"],
)
def test_a_figure_is_never_written_under_another_format_s_name(trained_digits_run, tmp_path, command, what):
    """`data --out grid.jpg` and `lr-find --out curve.jpg` wrote PNG bytes under those names."""
    out = tmp_path / "figure.jpg"
    copy = shutil.copytree(trained_digits_run.path, tmp_path / "copy")
    args = [arg.format(config=trained_digits_run.config, run=trained_digits_run.path, copy=copy) for arg in command]
    error = one_error(*args, "--out", out)
    assert error == f"error: --out {out}: {what} is a PNG; use a name ending in .png"
    assert sorted(tmp_path.iterdir()) == [copy]
