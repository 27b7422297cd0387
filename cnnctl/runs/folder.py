"""Runs: the run folder: creating it (unique, never overwritten), finding it again, and writing its files atomically.

Every file of a run is written to a temporary name in the same folder and renamed into place, so a crash
never leaves a half-written file for a later command to trip over.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from cnnctl.errors import RunError, did_you_mean, shown_path
from cnnctl.files import not_regular_reason, special_kind
from cnnctl.runs.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from cnnctl.runs.contract import (
    CONFIG,
    CV_SUMMARY,
    ENVIRONMENT,
    RUNS_DIR_ENV,
    TUNE_REPORT,
    TUNE_STUDY,
    TUNE_SUMMARY,
)

# A run's JSON, CSV, YAML and figure files are small; a file far larger than any of them was not written by cnnctl.
MAX_RUN_FILE_BYTES = 256 * 2**20


def readable_file(path: Union[str, Path], max_bytes: int = MAX_RUN_FILE_BYTES) -> Path:
    """`path`, checked before it is opened: a regular file (after symlinks) of at most `max_bytes`. A named pipe
    would block its reader forever and a link to /dev/zero never ends, so anything else is a RunError naming the
    file. A missing file is left to the caller (many run files are optional)."""
    path = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise RunError(f"{shown_path(path)}: cannot be read ({exc.strerror})") from None
    kind = special_kind(status.st_mode)
    if kind is not None:
        raise RunError(
            f"{shown_path(path)}: is {kind}, not a regular file; a run's files are regular files: remove it, then "
            "evaluate or train the run again"
        )
    if status.st_size > max_bytes:
        raise RunError(
            f"{shown_path(path)}: {status.st_size / 2**20:,.0f} MiB, more than a run's file of this kind "
            f"ever holds ({max_bytes / 2**20:,.0f} MiB); it was not written by cnnctl"
        )
    return path


def default_runs_dir(runs_dir: Optional[Union[str, Path]] = None) -> Path:
    """`--runs-dir DIR`, else $CNNCTL_RUNS_DIR, else ./runs."""
    return Path(runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs")


@dataclass(frozen=True)
class Run:
    """A run folder. Paths of its files are attributes so no caller spells a file name."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_json(self, name: str) -> dict[str, Any]:
        path = readable_file(self.file(name))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{path}: missing; the run folder is incomplete") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of > 4300 digits
            raise RunError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
        except RecursionError:
            raise RunError(
                f"{path}: JSON nested too deeply to be cnnctl's; the file was edited or is not cnnctl's"
            ) from None
        except OSError as exc:  # a folder, or a file that cannot be read, under a run file's name
            raise RunError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if not isinstance(data, dict):  # every JSON file cnnctl writes into a run holds one object
            raise RunError(
                f"{path}: expected a JSON object ({{...}}), found {_json_kind(data)}; the file was "
                "edited or is not cnnctl's"
            )
        from cnnctl.runs.facts import check_run_json  # pydantic: imported by the commands that read runs only

        return check_run_json(path, data)

    def write_json(self, name: str, data: Any) -> Path:
        return write_text_atomic(self.file(name), json.dumps(data, indent=2, default=_json_default) + "\n")

    def update_json(self, name: str, **changes: Any) -> dict[str, Any]:
        data = self.read_json(name) if self.has(name) else {}
        data.update(changes)
        self.write_json(name, data)
        return data

    def require(self, *names: str) -> None:
        missing = [name for name in names if not self.has(name)]
        if missing:
            raise RunError(
                f"{self.path}: missing {', '.join(missing)}; is this a finished cnnctl run? (`cnnctl runs` lists them)"
            )


@dataclass(frozen=True)
class FolderSnapshot:
    """Some files of a run folder, kept in memory, and the names of everything in it: `restore` puts the folder
    back as it was when a change to it fails half-way (`cnnctl train --resume` extending a completed run).

    Files in `saved` get their bytes back, written to a temporary name and renamed like every run file (the
    training lock is rewritten in place instead: another process may hold a lock on that very file); files and
    folders made since the snapshot are deleted; nothing else is touched.
    """

    run: Run
    saved: dict[str, Optional[bytes]]  # name inside the run folder → its bytes, None where it did not exist
    present: frozenset[str]  # every file and folder there was, by name inside the run folder

    @classmethod
    def take(cls, run: Run, names: Iterable[str]) -> FolderSnapshot:
        saved = {name: run.file(name).read_bytes() if run.file(name).is_file() else None for name in names}
        return cls(run, saved, frozenset(_inside(run, path) for path in run.path.rglob("*")))

    def restore(self, in_place: tuple[str, ...] = ()) -> None:
        made = [
            path
            for path in self.run.path.rglob("*")
            if _inside(self.run, path) not in self.present and _inside(self.run, path) not in self.saved
        ]
        for path in sorted(made, key=lambda path: len(path.parts), reverse=True):  # files before their folders
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        for name, data in self.saved.items():
            path = self.run.file(name)
            if data is None:
                path.unlink(missing_ok=True)
            elif name in in_place and path.is_file():
                with open(path, "r+b") as handle:
                    handle.write(data)
                    handle.truncate()
            else:
                with atomic_path(path) as temp:
                    temp.write_bytes(data)


def _inside(run: Run, path: Path) -> str:
    return path.relative_to(run.path).as_posix()


def create_run(runs_dir: Union[str, Path], name: str, now: Optional[float] = None) -> Run:
    """Make `runs_dir/<YYYYmmdd-HHMMSS>-<name>`; a second run in the same second gets `-2`, `-3`, ...

    os.mkdir is atomic, so concurrent trainings can never share a folder.
    """
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create the runs folder ({exc.strerror})") from None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{stamp}-{name}"
    for attempt in range(1, 10_000):
        path = runs_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"{path}: cannot create the run folder ({exc.strerror})") from None
        return Run(path)
    raise RunError(f"{runs_dir}: too many runs named {base}")


def is_run(path: Path) -> bool:
    # environment.json is written when a run starts, after config.yaml: a folder without it is still being created.
    return (path / ENVIRONMENT).is_file() and (path / CONFIG).is_file()


def existing_runs_dir(runs_dir: Union[str, Path]) -> Optional[Path]:
    """The runs dir as a Path, or None when nothing is there yet (no runs); a file, a named pipe or a device in
    its place is one RunError line: "no runs" would hide that $CNNCTL_RUNS_DIR or --runs-dir points wrong."""
    runs_dir = Path(runs_dir)
    if runs_dir.is_dir():
        return runs_dir
    if not os.path.lexists(runs_dir):
        return None
    reason = not_regular_reason(runs_dir)
    what = "a file" if reason is None else reason.removeprefix("is ").split(", not a regular file")[0]
    raise RunError(
        f"{shown_path(runs_dir)}: the runs dir is {what}, not a folder; give --runs-dir a folder (or set "
        f"{RUNS_DIR_ENV} to one)"
    )


def list_runs(runs_dir: Union[str, Path]) -> list[Run]:
    """Runs in the folder, newest first (ids start with their start time)."""
    runs_dir = existing_runs_dir(runs_dir)
    if runs_dir is None:
        return []
    found = [Run(path) for path in runs_dir.iterdir() if path.is_dir() and is_run(path)]
    return sorted(found, key=lambda run: _sort_key(run.id), reverse=True)


def _sort_key(run_id: str) -> tuple:
    # `-2` suffixes order runs started in the same second.
    match = re.match(r"^(\d{8}-\d{6})-(.*?)(?:-(\d+))?$", run_id)
    if not match:
        return ("", 0, run_id)
    return (match.group(1), int(match.group(3) or 1), run_id)


def resolve_run(spec: str, runs_dir: Optional[Union[str, Path]] = None) -> Run:
    """RUN on the command line: a folder path, a run id inside the runs dir, or `last`.

    Temporary files left in the run folder by a killed writer are removed on the way (see atomic_path)."""
    run = _find_run(spec, runs_dir)
    remove_stale_temporaries(run.path)
    return run


def _find_run(spec: str, runs_dir: Optional[Union[str, Path]]) -> Run:
    base = default_runs_dir(runs_dir)
    if spec == "last":
        runs = list_runs(base)
        if not runs:
            raise RunError(f"no runs in {base}; train one first: cnnctl train configs/digits.yaml")
        return runs[0]
    candidate = Path(spec)
    if candidate.is_dir():
        if not is_run(candidate):
            raise RunError(_not_a_run(candidate, spec))
        return Run(candidate)
    if candidate.name != spec or spec in (".", ".."):
        raise RunError(f"{shown_path(spec)}: no such run folder")
    inside = base / spec
    if inside.is_dir() and is_run(inside):
        return Run(inside)
    if inside.is_dir() and collection_kind(inside):
        raise RunError(_not_a_run(inside, spec))
    names = [run.id for run in list_runs(base)]
    hint = did_you_mean(spec, names, quote=False)
    if not hint and names:
        hint = f"; `cnnctl runs --runs-dir {base}` lists the {len(names)} runs there"
    raise RunError(f"{shown_path(spec)}: no such run in {base}{hint}")


def _not_a_run(folder: Path, spec: str) -> str:
    """Why `folder` is not a run, pointing a cross-validation or tuning folder to its summary and its runs."""
    kind = collection_kind(folder)
    if kind == "cv":
        return (
            f"{shown_path(spec)}: a cross-validation folder, not a run: its summary is {CV_SUMMARY}, and each "
            f"fold is a run (e.g. {shown_path(folder / 'fold-1')})"
        )
    if kind == "tune":
        return (
            f"{shown_path(spec)}: a tuning folder, not a run: its page is {TUNE_REPORT} and its summary "
            f"{TUNE_SUMMARY}; each trial is a run (e.g. {shown_path(folder / 'trial-0')})"
        )
    return f"{shown_path(spec)}: not a cnnctl run folder (no {CONFIG} and {ENVIRONMENT})"


def collection_kind(folder: Path) -> Optional[str]:
    """ "cv" for a `cnnctl cv` folder, "tune" for a `cnnctl tune` folder, else None."""
    if (folder / CV_SUMMARY).is_file():
        return "cv"
    if (folder / TUNE_STUDY).is_file() or (folder / TUNE_SUMMARY).is_file():
        return "tune"
    return None


def list_collections(runs_dir: Union[str, Path]) -> list[Path]:
    """The cross-validation and tuning folders in the runs dir, newest first (their runs are inside them)."""
    runs_dir = existing_runs_dir(runs_dir)
    if runs_dir is None:
        return []
    found = [path for path in runs_dir.iterdir() if path.is_dir() and not is_run(path) and collection_kind(path)]
    return sorted(found, key=lambda path: _sort_key(path.name), reverse=True)


# Temporary files carry the host and process that made them: a later command deletes the ones whose process is
# gone (killed with -9 or by a power cut while writing) and leaves alone the ones a live process is still writing.
def _json_kind(value: Any) -> str:
    kinds = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Paths: without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
