"""Data: sources read from files — npz, a folder of npy, IDX (MNIST format) and CSV.

Everything here fits in memory; the image-folder source is cnnctl/data/folders.py.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnctl.config.schema import DataConfig
from cnnctl.data.limits import check_npz, npy_problem
from cnnctl.data.raw import RawData, raw_from_arrays
from cnnctl.errors import DataError, closest, first_line, printable
from cnnctl.files import regular_file
from cnnctl.runtime import memory_bytes


def load_npz(data_cfg: DataConfig) -> RawData:
    path = Path(data_cfg.path)
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist")
    if path.is_dir():
        return _npy_folder(path)
    regular_file(path, "data.path")
    check_npz(path, f"data.path: {printable(path)}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a cut .npz
        raise DataError(f"data.path: {path}: not a readable .npz file ({first_line(exc)})") from None
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(
            f"data.path: {path} has arrays {sorted(arrays)}; it needs x_train and y_train "
            "(and optionally x_test, y_test, x_val, y_val)"
        )
    return raw_from_arrays(arrays, f"{path}")


def _npy_folder(path: Path) -> RawData:
    """A folder of x_train.npy, y_train.npy[, x_test.npy, y_test.npy, x_val.npy, y_val.npy]."""
    arrays = {}
    for file in path.glob("*.npy"):
        regular_file(file, "data.path")
        with open(file, "rb") as handle:
            problem = npy_problem(handle, file.stat().st_size)
        if problem is not None:
            raise DataError(f"data.path: {printable(file)} {problem}")
        try:
            arrays[file.stem] = np.load(file, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"data.path: {file}: not a readable .npy file ({first_line(exc)})") from None
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(
            f"data.path: {path} needs x_train.npy and y_train.npy (found: "
            f"{', '.join(sorted(arrays)) or 'no .npy files'})"
        )
    return raw_from_arrays(arrays, str(path))


IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip or raw): magic 0x0000 + dtype byte + rank byte, big-endian sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    regular_file(path, "data.path")
    # The header says how many bytes follow; no more than that (plus one, to notice extra data) is ever inflated,
    # so a gzip bomb costs what its header claims, and a claim past this machine's memory is refused unread.
    try:
        with opener(path, "rb") as handle:
            header = handle.read(4)
            if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            rank = header[3]
            sizes = handle.read(4 * rank)
            if rank == 0 or len(sizes) < 4 * rank:
                raise DataError(f"{path}: not an IDX file: its header claims {rank} dimensions and is cut short")
            shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(rank))
            dtype = np.dtype(_IDX_DTYPES[header[2]])
            expected = math.prod(shape) * dtype.itemsize  # Python integers: a crafted header cannot overflow them
            if expected > memory_bytes():
                raise DataError(
                    f"{path}: its header claims {list(shape)} ({expected / 2**30:,.1f} GiB), more than this "
                    f"machine's {memory_bytes() / 2**30:,.1f} GiB of memory"
                )
            data = handle.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({first_line(exc)})") from None
    if len(data) != expected:
        found = f"{len(data):,} bytes" if len(data) <= expected else "more data than that"
        raise DataError(
            f"{path}: {'truncated' if len(data) < expected else 'damaged'} IDX file: header says {list(shape)} "
            f"({expected:,} bytes), found {found}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_folder(folder: Path) -> RawData:
    """train-images/train-labels/t10k-images/t10k-labels, each `.gz` or raw, as in the MNIST distribution."""
    arrays = {}
    for key, stem in IDX_STEMS.items():
        candidates = [folder / f"{stem}.gz", folder / stem, folder / stem.replace("-idx", ".idx")]
        found = next((path for path in candidates if path.exists()), None)
        if found is None:
            if key.endswith("test"):
                continue
            raise DataError(
                f"data.path: {folder} has no {stem}[.gz]; an IDX folder needs "
                f"{', '.join(s + '[.gz]' for s in IDX_STEMS.values())}"
            )
        arrays[key] = read_idx(found)
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"data.path: {folder} has only one of the t10k images/labels files")
    return raw_from_arrays(arrays, str(folder))


def load_idx(data_cfg: DataConfig) -> RawData:
    path = Path(data_cfg.path)
    if not path.is_dir():
        raise DataError(f"data.path: {path} is not a folder; source idx wants the folder holding the IDX files")
    return read_idx_folder(path)


def load_csv(data_cfg: DataConfig) -> RawData:
    """One example per row: a label column (data.label_column, name or index) and numeric feature columns,
    reshaped to data.shape. A first row with a non-numeric feature cell is a header."""
    path = Path(data_cfg.path)
    if path.is_dir():
        raise DataError(f"data.path: {path} is a folder; source csv wants one .csv file")
    regular_file(path, "data.path")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    _check_utf8(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle, delimiter=delimiter), None)
    if not first:
        raise DataError(f"data.path: {path} is empty; expected a header or data row like label,pixel1,pixel2,...")
    label = _label_index(data_cfg.label_column, first, path)
    features = [index for index in range(len(first)) if index != label]
    if not features:
        raise DataError(f"data.path: {path} has only the label column; feature columns are missing")
    has_header = isinstance(data_cfg.label_column, str) or not all(_is_number(first[i]) for i in features)
    options = dict(delimiter=delimiter, skiprows=int(has_header), encoding="utf-8-sig")
    try:
        x = np.loadtxt(path, usecols=features, dtype=np.float32, ndmin=2, **options)
        y = np.loadtxt(path, usecols=[label], dtype=str, ndmin=1, **options)
    except ValueError as exc:
        raise DataError(f"data.path: {path}: {_csv_problem(str(exc), int(has_header), len(first))}") from None
    if len(x) == 0:
        raise DataError(f"data.path: {path} has a header but no data rows")
    if np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255:
        x = x.astype(np.uint8)  # 8-bit pixels: a quarter of the memory, and scaled by 255 like images
    if data_cfg.shape:
        if int(np.prod(data_cfg.shape)) != x.shape[1]:
            raise DataError(
                f"data.shape: {data_cfg.shape} holds {int(np.prod(data_cfg.shape))} values but "
                f"{path} has {x.shape[1]} feature columns per row"
            )
        x = x.reshape((len(x), *data_cfg.shape))
    return RawData(x, _numbers_if_possible(y), origin=str(path))


def _check_utf8(path: Path) -> None:
    """A CSV must be UTF-8 text (a spreadsheet's "CSV UTF-8"): name the first line that is not, read line by line."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"data.path: {printable(path)}: line {number} is not UTF-8 text (byte "
                    f"0x{line[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8 "
                    '(e.g. "CSV UTF-8" in a spreadsheet)'
                ) from None


def _label_index(column, first_row: list[str], path: Path) -> int:
    if isinstance(column, str):
        names = [cell.strip() for cell in first_row]
        if column in names:
            return names.index(column)
        close = closest(column, names)
        hint = f"did you mean '{close}'? " if close else ""
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise DataError(
            f"data.label_column: '{column}' is not a column of {path}; {hint}its header is: {shown} "
            "(or give the column's index, e.g. label_column: 0)"
        )
    index = column + len(first_row) if column < 0 else column
    if not 0 <= index < len(first_row):
        raise DataError(
            f"data.label_column: {column} is out of range; {path} has {len(first_row)} columns "
            f"(0..{len(first_row) - 1}, or -1 for the last)"
        )
    return index


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_problem(message: str, header_rows: int, columns: int) -> str:
    """loadtxt counts data rows after the header, from 0 in one message and from 1 in the other; users count
    file lines from 1."""
    match = re.search(r"could not convert string '(.*)' to \w+ at row (\d+), column (\d+)", message)
    if match:
        return (
            f"line {int(match.group(2)) + header_rows + 1}, column {match.group(3)}: '{match.group(1)}' is "
            "not a number; feature columns must be numeric"
        )
    match = re.search(r"at row (\d+) with (\d+) columns", message)
    if match:
        return f"line {int(match.group(1)) + header_rows} has {match.group(2)} columns but the first line has {columns}"
    return message


def _numbers_if_possible(labels: np.ndarray) -> np.ndarray:
    """Labels "0", "1", ... become integers (so classes sort 0, 1, ..., 10 rather than 0, 1, 10, 2)."""
    for dtype in (np.int64, np.float64):
        try:
            return labels.astype(dtype)
        except OverflowError:  # a label of more digits than int64 holds: kept as written, not rounded to a float
            return labels
        except ValueError:
            continue
    return labels
