"""Reporting: what one convolutional layer does to a picture: convolution → ReLU → max-pooling.

The `cnnctl filter IMAGE` command shows the three steps a Conv2D + MaxPooling2D pair applies, on a photograph
and one hand-picked 3×3 kernel instead of learned filters. This module does the arithmetic and returns
`(title, array)` panels; `cnnctl.reporting.grids.filter_demo_figure` draws them.

The steps compute what a `Conv2D(padding="same")` → ReLU → `MaxPooling2D` stack computes (the tests compare
them with `keras.ops.conv`/`max_pool`), with scipy and numpy rather than Keras: the command needs no model,
so it does not pay TensorFlow's start-up.

- convolution with `padding="same"`: the output keeps the picture's size, so the panels line up. The border
  is padded with zeros as Keras does (for an even kernel size the extra row/column goes after the picture),
  which darkens a one-pixel frame for kernels whose weights sum to more than zero (blur, sharpen). Like every
  deep-learning "convolution" it is a cross-correlation (`scipy.signal.correlate2d`): the kernel is not
  flipped, so `[[-1, 0, 1]]` responds to brightness rising to the right.
- ReLU: negative responses become 0.
- max-pooling with pool size = stride = `pool` and `padding="valid"`: the output is `(H // pool, W // pool)`;
  rows/columns that do not fill a whole window are dropped, as in `MaxPooling2D`.

Example:

    name, kernel = load_kernel("edge")
    pixels, note = read_grayscale("cat.jpg")
    panels = convolution_steps(pixels, kernel, pool=2, kernel_name=name)
    # [("original 427×640", ...), ("convolution (edge) 427×640", ...), ("ReLU 427×640", ...),
    #  ("max-pool 2×2 213×320", ...)]
"""

from __future__ import annotations

import io
import numbers
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from cnnctl.errors import ConfigError, DataError, closest
from cnnctl.files import not_regular_reason


def _frozen(rows: list[list[float]], scale: float = 1.0) -> np.ndarray:
    kernel = np.array(rows, dtype=np.float32) * np.float32(scale)
    kernel.setflags(write=False)
    return kernel


KERNELS: dict[str, np.ndarray] = {
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "edge": _frozen([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),  # Laplacian-like: 0 on flat regions
    "blur": _frozen([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),  # Gaussian: softer than a 1/9 box
    "emboss": _frozen([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


"""Named 3×3 kernels for `--kernel`; read-only (load_kernel hands out copies)."""


KERNEL_FILE_TYPES = (".npy", ".txt", ".csv")
MAX_KERNEL_FILE_BYTES = 2**20  # a 64×64 kernel is 32 KiB as text; a bigger file is refused unread
MAX_KERNEL_SIDE = 64  # rows and columns; Conv2D kernels are 1 to 7 wide


_KERNEL_NAMES = ", ".join(KERNELS)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's convert("L") clips these at 255


_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def load_kernel(spec: str) -> tuple[str, np.ndarray]:
    """Return `(name, kernel)` for a `--kernel` value: a name from `KERNELS` or a kernel file.

    Args:
        spec: a kernel name (case-insensitive; names win over files of the same name), or the path of a
            `.npy` file holding a 2-D array, or of a `.txt`/`.csv` file with one kernel row per line, numbers
            separated by whitespace or commas (`#` starts a comment).

    Returns:
        The kernel's name (the file name for a file) and a float32 2-D array of finite numbers. Odd and even
        sizes are both accepted.

    Raises:
        ConfigError: unknown name, missing or unreadable file, not 2-D, empty, or not finite numbers.
    """
    name = spec.strip().lower()
    if name in KERNELS:
        return name, KERNELS[name].copy()

    path = Path(spec)
    if not path.exists():
        if path.suffix.lower() in KERNEL_FILE_TYPES or len(path.parts) > 1:
            raise ConfigError(f"--kernel {spec}: no such file; use {_KERNEL_NAMES}, or an existing .npy/.txt/.csv file")
        close = closest(name, list(KERNELS))
        if close:
            raise ConfigError(
                f"--kernel {spec}: unknown kernel; did you mean '{close}'? ({_KERNEL_NAMES}, or a .npy/.txt/.csv file)"
            )
        raise ConfigError(f"--kernel {spec}: unknown kernel; use {_KERNEL_NAMES}, or a .npy/.txt/.csv file")
    if path.is_dir():
        raise ConfigError(f"--kernel {spec}: is a directory; use {_KERNEL_NAMES}, or a .npy/.txt/.csv file")
    reason = not_regular_reason(path)  # a FIFO would block the read forever, /dev/zero would never end
    if reason is not None:
        raise ConfigError(f"--kernel {spec}: {reason}; give a .npy/.txt/.csv file")
    if path.stat().st_size > MAX_KERNEL_FILE_BYTES:
        raise ConfigError(
            f"--kernel {spec}: {path.stat().st_size:,} bytes is over the limit of "
            f"{MAX_KERNEL_FILE_BYTES:,} for a kernel file (at most {MAX_KERNEL_SIDE}×{MAX_KERNEL_SIDE})"
        )
    suffix = path.suffix.lower()
    if suffix not in KERNEL_FILE_TYPES:
        raise ConfigError(
            f"--kernel {spec}: unsupported file type '{path.suffix}'; use a .npy file or a .txt/.csv file of numbers"
        )

    kernel = _read_npy(spec, path) if suffix == ".npy" else _read_text(spec, path)
    return path.name, _checked_kernel(spec, kernel)


def _read_npy(spec: str, path: Path) -> np.ndarray:
    try:
        kernel = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a cut .npz
        # allow_pickle=False: numpy reports any non-.npy content as "pickled data"; say it plainly
        reason = "not a .npy file, or it holds Python objects" if "pickle" in str(exc) else str(exc)
        raise ConfigError(f"--kernel {spec}: cannot read as a .npy array ({reason}); save one with np.save") from exc
    if not isinstance(kernel, np.ndarray):  # an .npz archive saved under a .npy name
        raise ConfigError(f"--kernel {spec}: holds several arrays (.npz); save one 2-D array with np.save")
    return kernel


def _read_text(spec: str, path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet CSVs often start with a BOM
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            return np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, ndmin=2)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # numpy's ragged-row message goes on to suggest `usecols`, which means nothing on the command line
        reason = str(exc).splitlines()[0].split("; use `usecols`")[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--kernel {spec}: cannot read numbers ({reason}); expected rows of equal length, "
            "numbers separated by spaces or commas"
        ) from exc


def _checked_kernel(spec: str, kernel: np.ndarray) -> np.ndarray:
    if kernel.size == 0:
        raise ConfigError(f"--kernel {spec}: kernel is empty; give at least one row of numbers")
    if kernel.ndim != 2:
        raise ConfigError(f"--kernel {spec}: kernel must be 2-D (rows × columns), got shape {tuple(kernel.shape)}")
    if max(kernel.shape) > MAX_KERNEL_SIDE:
        raise ConfigError(
            f"--kernel {spec}: kernel is {kernel.shape[0]}×{kernel.shape[1]}; at most "
            f"{MAX_KERNEL_SIDE}×{MAX_KERNEL_SIDE} is accepted"
        )
    if not (np.issubdtype(kernel.dtype, np.number) or kernel.dtype == np.bool_) or np.iscomplexobj(kernel):
        raise ConfigError(f"--kernel {spec}: kernel must hold real numbers, got dtype {kernel.dtype}")
    kernel = kernel.astype(np.float32)
    bad = np.argwhere(~np.isfinite(kernel))
    if len(bad):
        row, column = bad[0]
        raise ConfigError(
            f"--kernel {spec}: kernel must contain only finite numbers, got {kernel[row, column]} "
            f"at row {row + 1}, column {column + 1}"
        )
    return kernel


MIN_SIDE = 32  # the short side a downscaled image keeps, at most its own


def read_grayscale(path: str | Path, max_side: int | None = 1024) -> tuple[np.ndarray, str | None]:
    """Load a picture as grayscale and say whether it was shrunk.

    Colour images become luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, what PIL's `convert("L")` does);
    16-bit grayscale is scaled by 65535 instead of clipped; the EXIF orientation is applied so phone photos
    stand upright; an animated image gives its first frame.

    Args:
        path: an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
        max_side: shrink (Lanczos) so the longest side is at most this many pixels, to keep the demo fast;
            `None` keeps the full size. Defaults to 1024.

    Returns:
        `(pixels, note)`: float32 array (H, W) with values in [0, 1], and `None` or a one-line note such as
        "downscaled from 3024×4032 to 768×1024 for speed (longest side ≤ 1024)".

    Raises:
        DataError: the file is missing or is not a readable image.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a number of pixels ≥ 1 or None. Received: max_side={max_side}")
    path = Path(path)
    reason = not_regular_reason(path)
    if reason is not None:
        what = {"is a folder": "is a directory", "does not exist": "no such file"}.get(reason, reason)
        raise DataError(f"IMAGE {path}: {what}; give an image file (PNG, JPEG, ...)")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
                width, height = height, width
            original_size = (height, width)
            if max_side is not None:
                image.draft("L", (max_side, max_side))  # JPEG decodes at 1/2, 1/4, 1/8 size: much faster
            pixels = _grayscale_pixels(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError is an OSError; truncated files raise OSError or SyntaxError on decode
        reason = "not an image file PIL recognises" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DataError(f"IMAGE {path}: cannot read as an image ({reason})") from exc

    height, width = pixels.shape
    if max_side is None or (max(height, width) <= max_side and original_size == (height, width)):
        return pixels, None
    if max(height, width) > max_side:
        scale = max_side / max(original_size)  # from the file's size: draft() may have halved it already
        # A thin image keeps its short side (up to MIN_SIDE): 10000×10 scaled as a whole would be 1 pixel wide,
        # too narrow for a kernel or a pooling window.
        new_size = tuple(max(min(side, MIN_SIDE), round(side * scale)) for side in (original_size[1], original_size[0]))
        shrunk = Image.fromarray(pixels).resize(new_size, Image.Resampling.LANCZOS)
        pixels = np.clip(np.asarray(shrunk, dtype=np.float32), 0.0, 1.0)  # Lanczos overshoots at edges
    note = f"downscaled from {_size(original_size)} to {_size(pixels.shape)} for speed (longest side ≤ {max_side})"
    return pixels, note


def load_grayscale(path: str | Path, max_side: int | None = 1024) -> np.ndarray:
    """Return only the pixels of `read_grayscale(path, max_side)`: float32 (H, W) in [0, 1]."""
    return read_grayscale(path, max_side)[0]


def _grayscale_pixels(image: Image.Image) -> np.ndarray:
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _same_correlation(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero padding that keeps the size, padded the way Keras pads "same": for a kernel
    of size k, (k - 1) // 2 before and the rest after."""
    from scipy.signal import (
        correlate2d,  # scipy comes with scikit-learn; deferred like the other heavy imports
    )

    padding = [((size - 1) // 2, size - 1 - (size - 1) // 2) for size in kernel.shape]
    padded = np.pad(image.astype(np.float64), padding)
    return correlate2d(padded, kernel.astype(np.float64), mode="valid").astype(np.float32)


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(str(side) for side in shape)


def convolution_steps(
    image: np.ndarray, kernel: np.ndarray, pool: int = 2, kernel_name: str | None = None
) -> list[tuple[str, np.ndarray]]:
    """Convolve a grayscale picture with one kernel, apply ReLU, then max-pool, as Conv2D + MaxPooling2D do.

    Args:
        image: 2-D array (H, W), e.g. from `load_grayscale`.
        kernel: 2-D array (kh, kw), e.g. from `load_kernel`; applied as a cross-correlation (not flipped).
        pool: pooling window and stride, in pixels. Defaults to 2.
        kernel_name: shown in the convolution panel's title. Defaults to the kernel's size, e.g. "3×3 kernel".

    Returns:
        Four `(title, float32 array)` panels, each title ending in the array's size:
        `("original H×W", image)`, `("convolution (name) H×W", conv)`, `("ReLU H×W", max(conv, 0))`,
        `("max-pool p×p H//p×W//p", pooled)`.

    Raises:
        ConfigError: `pool` is not a whole number from 1 to the picture's shorter side.
        ValueError: `image` or `kernel` is not a 2-D array of finite numbers.
    """
    image = np.asarray(image, dtype=np.float32)
    kernel = np.asarray(kernel, dtype=np.float32)
    for label, array in (("image", image), ("kernel", kernel)):
        if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
            raise ValueError(f"{label} must be a non-empty 2-D array of finite numbers. Received: shape {array.shape}")
    height, width = image.shape
    if isinstance(pool, bool) or not isinstance(pool, numbers.Integral) or pool < 1:
        raise ConfigError(f"--pool {pool}: must be a whole number of pixels ≥ 1, e.g. --pool 2")
    if pool > min(height, width):
        raise ConfigError(
            f"--pool {pool}: larger than the image ({_size(image.shape)}); use at most {min(height, width)}"
        )
    pool = int(pool)

    convolved = _same_correlation(image, kernel)
    rectified = np.maximum(convolved, np.float32(0))
    rows, columns = height // pool, width // pool
    pooled = rectified[: rows * pool, : columns * pool].reshape(rows, pool, columns, pool).max(axis=(1, 3))

    name = kernel_name or f"{_size(kernel.shape)} kernel"
    return [
        (f"original {_size(image.shape)}", image),
        (f"convolution ({name}) {_size(convolved.shape)}", convolved),
        (f"ReLU {_size(rectified.shape)}", rectified),
        (f"max-pool {pool}×{pool} {_size(pooled.shape)}", pooled),
    ]
