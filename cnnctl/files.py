"""What a path is before cnnctl opens it: a regular file, or a folder, a named pipe, a device, a socket, a
broken link — said the way every message says it. Runs, configs, data files and models are all checked here, so
this module sits below every stage and imports only the standard library.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Optional, Union

from cnnctl.errors import DataError, printable

# What a file-system entry is, by its mode, as messages say it (the first test that holds).
SPECIAL_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int) -> Optional[str]:
    """None for a regular file; else what the entry with this stat mode is ("a folder", "a named pipe (FIFO)",
    "a device", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in SPECIAL_KINDS if test(mode)), "not a regular file")


def not_regular_reason(path: Union[str, Path]) -> Optional[str]:
    """None for a regular file (symlinks followed), else what the path is instead: 'does not exist',
    'is a folder', 'is a named pipe (FIFO)', 'is a device', ..."""
    try:
        status = os.stat(path)
        mode = status.st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a broken symbolic link (its target {printable(os.readlink(path))} does not exist)"
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    kind = special_kind(mode)
    if kind is None:
        mount = _kernel_file_systems().get(status.st_dev)
        # /proc/self/pagemap and its kind look like regular files but are the kernel's: reading one never ends
        return None if mount is None else f"is a file of the kernel's {mount}, not a regular file"
    if kind == "a folder":
        return "is a folder"
    return "is not a regular file" if kind == "not a regular file" else f"is {kind}, not a regular file"


@functools.lru_cache(maxsize=1)
def _kernel_file_systems() -> dict[int, str]:
    """The devices of /proc and /sys: a file on them is no data file, whatever its mode says."""
    found = {}
    for mount in ("/proc", "/sys"):
        try:
            found[os.stat(mount).st_dev] = mount
        except OSError:
            continue
    return found


def regular_file(path: Union[str, Path], where: str, error: type[Exception] = DataError) -> Path:
    """`path` if it is a regular file (after following symlinks); else raise `error` with `where: path ...`."""
    reason = not_regular_reason(path)
    if reason is not None:
        raise error(f"{where}: {printable(path)} {reason}")
    return Path(path)
