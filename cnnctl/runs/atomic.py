"""Runs: files written whole or not at all — a temporary name in the same folder, flushed, then renamed into place
(or hard-linked, where an existing file must not be replaced), so a crash, a full disk or a power cut leaves the old
file or the new one. Every file cnnctl writes goes through here; temporaries a dead process left are cleaned up.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


_TEMPORARY = ".partial-"
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMPORARY_NAME = re.compile(r"^\..*\.partial-([0-9a-f]{8})-(\d+)-")


@contextlib.contextmanager
def atomic_path(path: Union[str, Path], *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that check it are content); rename on success.

    The whole suffix chain is kept (`.weights.h5`, not just `.h5`): Keras checks it when saving weights. Before
    the rename the file's bytes are flushed to disk, and after it the folder's entry, so that after a power cut
    `path` holds either the old content or the new, whole.

    Args:
        path: the file to write.
        replace: whether an existing `path` may be replaced. False puts the file in place with a hard link, which
            the kernel refuses (FileExistsError) when anything took the name in the meantime: a file of the
            user's is never replaced, not even by a race. Defaults to True (run files are rewritten in place).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)]
    try:
        handle, temp = tempfile.mkstemp(
            prefix=f".{stem}{_TEMPORARY}{_HOST}-{os.getpid()}-", suffix=suffix, dir=path.parent
        )
    except OSError as exc:  # a full disk or a read-only folder refuses the temporary file itself
        exc.filename = str(path)
        raise
    os.close(handle)
    temp_path = Path(temp)
    os.chmod(temp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; run files are ordinary files
    try:
        yield temp_path
        _flush_to_disk(temp_path)
        if replace:
            os.replace(temp_path, path)
        else:
            _link_without_replacing(temp_path, path)
        _flush_to_disk(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp_path.unlink()
        if isinstance(exc, OSError) and exc.filename == str(temp_path):
            exc.filename = str(path)  # a disk-full message names the file the user knows, not our temporary one
        raise


def _link_without_replacing(temp_path: Path, path: Path) -> None:
    """Give the finished temporary file its final name unless that name exists (then FileExistsError)."""
    try:
        os.link(temp_path, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A file system without hard links (some FUSE and SMB mounts): the name is checked, then taken; only a
        # writer racing in between these two calls could lose its file.
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.rename(temp_path, path)
        return
    temp_path.unlink()


def _flush_to_disk(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes a rename in it durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    except OSError:
        if not path.is_dir():
            raise
        # Some filesystems refuse fsync on a folder (EINVAL); the rename is done, only its durability is weaker.
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder: Union[str, Path]) -> list[Path]:
    """Delete the temporary files that a writer on this host left in `folder` (and below) when it was killed
    before renaming them; return what was deleted. Files of processes still running are left alone."""
    removed = []
    for candidate in Path(folder).rglob(f".*{_TEMPORARY}*"):
        match = _TEMPORARY_NAME.match(candidate.name)
        if not match or match.group(1) != _HOST or _process_alive(int(match.group(2))):
            continue
        if candidate.is_file() and not candidate.is_symlink():
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a number we cannot ask about): not ours to judge
    return True


def write_text_atomic(path: Union[str, Path], text: str, *, replace: bool = True) -> Path:
    with atomic_path(path, replace=replace) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


def write_csv_atomic(path: Union[str, Path], header: list[str], rows: list[list[Any]]) -> Path:
    return write_text_atomic(path, csv_text(header, rows))


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
