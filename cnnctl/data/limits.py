"""Data, step 2 guard: what a file must be before cnnctl reads it — a regular file, and for images and
arrays, a size that fits in memory.

A named pipe (FIFO) blocks a reader forever and `/dev/zero` never ends, even behind a symlink; an image of a
few kilobytes can claim 100,000 × 100,000 pixels in its header, and an .npy header of 100 bytes can claim
terabytes. Each is refused or skipped here, before anything is read. This module imports only the standard
library, PIL (which reads headers, not pixels) and numpy's .npy header reader.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Optional, Union

from cnnctl.errors import DataError, first_line, printable
from cnnctl.files import not_regular_reason
from cnnctl.runtime import memory_bytes

MAX_IMAGE_BYTES = 100 * 2**20  # an image file larger than 100 MiB is skipped, never read
MAX_IMAGE_PIXELS = 8192 * 8192  # height × width as the file's header gives it (≈ 200 MB decoded as RGB)


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


def npy_problem(handle: IO[bytes], size: int) -> Optional[str]:
    """None when the .npy data in `handle` (`size` bytes in all) may be loaded, else why not: not .npy data, or
    a header claiming more bytes than the file holds or than this machine's memory. Reads the header only."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(handle)
    except (ValueError, EOFError, OSError) as exc:  # numpy says what is wrong with the magic or the header
        return f"is not .npy data ({first_line(exc)})"
    if dtype.hasobject:
        return "holds Python objects (pickled data), which are refused; save numbers or strings"
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > size:
        return f"claims shape {list(shape)} of {dtype} ({claimed:,} bytes) but holds only {size:,} bytes"
    if claimed > memory_bytes():
        return (
            f"has shape {list(shape)} of {dtype}: {claimed / 2**30:,.1f} GiB, more than this machine's "
            f"{memory_bytes() / 2**30:,.1f} GiB of memory"
        )
    return None


def check_npz(path: Union[str, Path], where: str) -> None:
    """Refuse an .npz (a zip of .npy files) whose members are not .npy data, claim absurd shapes or add up to
    more than this machine's memory, before numpy allocates anything: raise DataError `where: ...` (`where`
    names the file, e.g. `data.path: arrays.npz`)."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            if handle.read(6) == b"\x93NUMPY":  # np.load would return the array itself, not an archive
                raise DataError(
                    f"{where}: is one .npy array, not an .npz archive of named arrays; save it with "
                    "numpy.savez(path, x=...)"
                )
        return  # not a zip at all: numpy's own reader says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():
                with archive.open(info) as member:
                    problem = npy_problem(member, info.file_size)
                if problem is not None:
                    raise DataError(f"{where}: member {printable(info.filename)} {problem}")
                total += info.file_size
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{where}: not a readable .npz file ({first_line(exc)}); save it with numpy.savez") from None
    if total > memory_bytes():
        raise DataError(
            f"{where}: its arrays hold {total / 2**30:,.1f} GiB, more than this "
            f"machine's {memory_bytes() / 2**30:,.1f} GiB of memory"
        )
