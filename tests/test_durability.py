"""Durability of run files: every write is flushed to disk before it replaces the old file (power-cut safety, as
README promises), and a process killed while writing leaves nothing behind that a later command keeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnctl.runs import atomic
from cnnctl.runs.atomic import atomic_path, remove_stale_temporaries
from cnnctl.runs.folder import resolve_run


def test_an_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", str(target)))
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "metrics.json"
    with atomic_path(target) as temp:
        temp.write_text("{}")
        temporary = str(temp)

    assert events == [("fsync", temporary), ("replace", str(target)), ("fsync", str(tmp_path))]
    assert target.read_text() == "{}"


def test_a_figure_that_fails_to_render_writes_nothing(tmp_path):
    from matplotlib.figure import Figure

    from cnnctl.reporting.plots import save_figure

    class Broken(Figure):
        def savefig(self, *args, **kwargs):
            raise MemoryError("rendering died")

    with pytest.raises(MemoryError):
        save_figure(Broken(), tmp_path / "loss_curve.png")
    assert list(tmp_path.iterdir()) == []


def _killed_while_writing(target: Path) -> Path:
    """A separate process opens an atomic write of `target` and is killed with SIGKILL half-way; return the
    temporary file it left."""
    script = textwrap.dedent(f"""
        import os, signal
        from cnnctl.runs.atomic import atomic_path
        with atomic_path({str(target)!r}) as temp:
            temp.write_bytes(b"half a png")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    process = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert process.returncode == -signal.SIGKILL
    (left,) = [path for path in target.parent.iterdir() if path.name.startswith(".")]
    return left


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_command(digits_run_copy):
    figure = digits_run_copy / "loss_curve.png"
    before = figure.read_bytes()
    left = _killed_while_writing(figure)
    assert left.name.startswith(".loss_curve.partial-") and left.read_bytes() == b"half a png"
    assert figure.read_bytes() == before  # the killed write never touched the real file

    resolve_run(str(digits_run_copy))  # what every command that takes RUN does first

    assert not left.exists()
    assert sorted(path.name for path in digits_run_copy.rglob(".*")) == []


def test_a_temporary_that_a_live_process_is_writing_is_left_alone(tmp_path):
    target = tmp_path / "checkpoints" / "last.weights.h5"
    with atomic_path(target) as temp:
        temp.write_bytes(b"in progress")
        assert remove_stale_temporaries(tmp_path) == []  # ours: this process is alive
        assert temp.exists()
    assert target.read_bytes() == b"in progress"


def test_temporaries_from_another_host_are_left_alone(tmp_path):
    # A run folder on a shared filesystem: a process id from another machine says nothing about this one.
    dead_pid = 2**22 + 12345  # above Linux's largest pid: no such process here
    ours = tmp_path / f".report.partial-{atomic._HOST}-{dead_pid}-x1y2.html"
    other_host = "f" * 8 if atomic._HOST != "f" * 8 else "0" * 8
    theirs = tmp_path / f".report.partial-{other_host}-{dead_pid}-x1y2.html"
    ours.write_text("ours, left by a dead process")
    theirs.write_text("someone else's")

    assert remove_stale_temporaries(tmp_path) == [ours]
    assert theirs.exists() and not ours.exists()
