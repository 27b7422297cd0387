"""Data, step 2 guard: what a file must be before cnnctl reads it — a regular file, and for images, a size
that fits in memory.

A named pipe (FIFO) blocks a reader forever and `/dev/zero` never ends, even behind a symlink; an image of a
few kilobytes can claim 100,000 × 100,000 pixels in its header. Each is refused or skipped here, before
anything is read. This module imports only the standard library and PIL (which reads headers, not pixels).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Optional, Union

from cnnctl.errors import DataError

MAX_IMAGE_BYTES = 100 * 2**20       # an image file larger than 100 MiB is skipped, never read
MAX_IMAGE_PIXELS = 8192 * 8192      # height × width as the file's header gives it (≈ 200 MB decoded as RGB)


def not_regular_reason(path: Union[str, Path]) -> Optional[str]:
    """None for a regular file (symlinks followed), else what the path is instead: 'does not exist',
    'is a folder', 'is a named pipe (FIFO)', 'is a device', ..."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def regular_file(path: Union[str, Path], where: str, error: type[Exception] = DataError) -> Path:
    """`path` if it is a regular file (after following symlinks); else raise `error` with `where: path ...`."""
    reason = not_regular_reason(path)
    if reason is not None:
        raise error(f"{where}: {path} {reason}")
    return Path(path)


def image_problem(path: Union[str, Path]) -> Optional[str]:
    """None when an image file may be decoded, else why not: not a regular file, over MAX_IMAGE_BYTES, or a
    header giving more than MAX_IMAGE_PIXELS. The header is read with PIL without decoding; a file PIL cannot
    identify is left to TensorFlow's decoder, which reports its own reason."""
    reason = not_regular_reason(path)
    if reason is not None:
        return reason.replace(", not a regular file", "")
    size = os.path.getsize(path)
    if size > MAX_IMAGE_BYTES:
        return f"{size / 2**20:.0f} MiB file; images over {MAX_IMAGE_BYTES // 2**20} MiB are not read"
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below says it once
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        return f"too large: more than {MAX_IMAGE_PIXELS:,} pixels"
    except Exception:  # noqa: BLE001 - not identified: TensorFlow's decoder decides and explains
        return None
    if width * height > MAX_IMAGE_PIXELS:
        return f"too large: {width}×{height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
    return None
