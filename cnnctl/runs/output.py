"""Runs: files the user names with `--out` — checked before any work, and written without destroying anything.

Every command that writes where the user says (`predict --out`, `data --out`, `compare --out`, `filter --out`,
`schema --out`, the files `explain --out` writes) follows one rule (`export --out` is stricter: it refuses any
existing path, see evaluation/export.py):

- an existing path is refused unless the command was given `--overwrite`;
- a symbolic link, a folder, a named pipe, a device or a socket is never written through or replaced, with or
  without `--overwrite` (as root, `--out /dev/null` would otherwise replace /dev/null with a regular file);
- a file inside a run, cross-validation or tuning folder is never replaced: the run's own commands rewrite it;
- names longer than the file system allows, and a parent that is a file, are refused before the work starts.

The check runs before the model is loaded or a figure drawn, so a mistake costs nothing; the write itself is
atomic and, without `--overwrite`, refuses a name that appeared while the command worked (see atomic_path).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional, Union

from cnnctl.errors import ConfigError, RunError, shown_path
from cnnctl.files import special_kind
from cnnctl.runs.atomic import atomic_path
from cnnctl.runs.contract import CV_SUMMARY, TUNE_STUDY
from cnnctl.runs.folder import is_run

# The longest name accepted for any part of an --out path: the file system's limit is 255 bytes, and the file is
# first written under a temporary name about 40 bytes longer (see atomic_path).
LONGEST_NAME = 200


def check_png_name(out: Union[str, Path], what: str = "the figure", option: str = "--out") -> None:
    """A figure is written as PNG: a name ending in anything else (`grid.jpg`) would hold PNG bytes under it."""
    if Path(out).suffix.lower() != ".png":
        raise ConfigError(f"{option} {shown_path(out)}: {what} is a PNG; use a name ending in .png")


def check_output_path(
    out: Union[str, Path], *, overwrite: bool = False, option: str = "--out", example: str = "out.png"
) -> Path:
    """Refuse an `--out` that cnnctl must not write, before any work; returns it as a Path.

    Args:
        out: the path given.
        overwrite: whether the user asked to replace an existing regular file (`--overwrite`). Defaults to False.
        option: how the path was given, for the message. Defaults to "--out".
        example: a name that would be right, shown in messages. Defaults to "out.png".

    Raises:
        ConfigError: one line saying what is wrong with the path and what to give instead.
    """
    path = Path(out)
    shown = f"{option} {shown_path(path)}"
    if not str(out) or "\0" in str(out):
        raise ConfigError(f"{option}: give a file name, e.g. {option} {example}")
    long_name = next((part for part in path.parts if len(os.fsencode(part)) > LONGEST_NAME), None)
    if long_name is not None:
        raise ConfigError(
            f"{shown}: a name of {len(os.fsencode(long_name))} bytes; give names of at most "
            f"{LONGEST_NAME}, e.g. {option} {example}"
        )
    kind = _existing_kind(path)
    if kind == "a folder":
        raise ConfigError(f"{shown}: is a folder; give a file name, e.g. {option} {shown_path(path / example)}")
    if kind is not None and kind != "file":
        raise ConfigError(
            f"{shown}: is {kind}; cnnctl writes only regular files and never replaces anything "
            f"else: give a new file name, e.g. {option} {example}"
        )
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            f"{shown}: {shown_path(parent)} is a file, not a folder; give a path in a folder, e.g. {option} {example}"
        )
    if kind == "file":
        owner = _owning_folder(path)
        if owner is not None:
            raise ConfigError(
                f"{shown}: is a file of {owner}; cnnctl never replaces a run's own files (its "
                f"commands rewrite them): give a path outside it, e.g. {option} {example}"
            )
        if not overwrite:
            raise ConfigError(f"{shown}: already exists; add --overwrite to replace it, or give a new name")
    return path


def write_output_bytes(path: Union[str, Path], data: bytes, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Write `data` to a path that `check_output_path` accepted: atomically, and without `overwrite` never onto a
    name that exists by now (another process may have made it while this command worked)."""
    path = Path(path)
    kind = _existing_kind(path)
    if kind not in (None, "file") or (kind == "file" and (not overwrite or _owning_folder(path) is not None)):
        raise RunError(
            f"{option} {shown_path(path)}: appeared while the command ran ({kind}); nothing was "
            "written: give a new file name"
        )
    try:
        with atomic_path(path, replace=kind == "file") as temp:
            temp.write_bytes(data)
    except FileExistsError:
        raise RunError(
            f"{option} {shown_path(path)}: appeared while the command ran; it was left as it is and "
            "nothing was written: give a new file name"
        ) from None
    return path


def write_output_text(path: Union[str, Path], text: str, *, overwrite: bool = False, option: str = "--out") -> Path:
    """`write_output_bytes` for text (UTF-8)."""
    return write_output_bytes(path, text.encode("utf-8"), overwrite=overwrite, option=option)


def _existing_kind(path: Path) -> Optional[str]:
    """What is at `path` without following a final symlink: None (nothing), "file", or what else it is ("a
    folder", "a symbolic link", "a named pipe (FIFO)", ...)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:  # a parent is a file: reported by the parent check
            return None
        raise ConfigError(f"{shown_path(path)}: cannot be looked at ({exc.strerror}); give another path") from None
    kind = special_kind(mode)
    return "file" if kind is None else kind


def _owning_folder(path: Path) -> Optional[str]:
    """The run, cross-validation or tuning folder that `path` lies in (at any depth), described; else None."""
    for folder in path.resolve().parents:
        if is_run(folder):
            return f"the run folder {shown_path(folder)}"
        if (folder / CV_SUMMARY).is_file() or (folder / TUNE_STUDY).is_file():
            return f"the folder {shown_path(folder)}"
    return None
