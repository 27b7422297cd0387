"""Data: `source: manifest` — a table of example files and their labels (CSV, TSV or JSONL), as labelling
tools, Kaggle competitions and hospital archives export them.

    file,label,split                 {"file": "img/1.png", "label": "cat", "split": "train"}
    img/1.png,cat,train              {"file": "img/2.png", "label": "dog"}
    img/2.png,dog,

Each row names one file (relative to the manifest's folder unless absolute) and its label (a name or an
integer); an optional split column (`train`, `val`/`validation`, `test`, or empty) puts rows in the given splits,
and dataset.py carves only what is missing, stratified and seeded as for every source. Image files stream
through tf.data exactly as a `folder` source's do (decoded once up front: an unreadable or missing file is
skipped and counted with its reason); `.npy` files hold one signal or volume each and are read into memory, so
Conv1D and Conv3D data come as a table too. A manifest holds one kind of file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnctl.config.schema import DataConfig
from cnnctl.data.folders import ImageFiles, common_size, decodable_sizes
from cnnctl.data.limits import npy_problem
from cnnctl.data.raw import RawData
from cnnctl.errors import DataError, closest, printable, shown_path
from cnnctl.files import not_regular_reason, regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what TensorFlow's image decoder reads
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test", "": None}
MAX_MANIFEST_BYTES = 512 * 2**20  # a table of paths, not of pixels: far more than a million rows
MAX_CELL_BYTES = 4096  # a path or a label; longer cells are a mistake (a pixel column?)
LABEL_SEPARATOR = "|"  # how several labels per example are written by labelling tools


def load_manifest(data_cfg: DataConfig) -> RawData:
    """`source: manifest` → RawData: ImageFiles per split for images, arrays for .npy files."""
    path = Path(data_cfg.path)
    if path.is_dir():
        raise DataError(
            f"data.path: {shown_path(path)} is a folder; source manifest wants one .csv, .tsv or "
            ".jsonl file listing file,label rows (a folder of class folders is source: folder)"
        )
    regular_file(path, "data.path")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise DataError(
            f"data.path: {shown_path(path)} is {size / 2**20:,.0f} MiB; a manifest of paths and labels "
            f"is at most {MAX_MANIFEST_BYTES // 2**20} MiB"
        )
    rows = _read_rows(path)
    if not rows:
        raise DataError(
            f"data.path: {shown_path(path)} has no rows; expected a header like file,label and one row per example"
        )
    columns = _columns(data_cfg, rows, path)
    separator = data_cfg.label_separator if data_cfg.multi_label else None
    examples = _examples(rows, columns, path, separator, data_cfg.label_separator)
    unknown = next(((line, file) for file, _, _, line in examples if _kind(file) is None), None)
    if unknown is not None:
        raise DataError(
            f"data.path: {shown_path(path)} line {unknown[0]}: {printable(unknown[1])} is neither an image "
            f"({', '.join(IMAGE_SUFFIXES)}) nor a .npy file"
        )
    kinds = {_kind(file) for file, _, _, _ in examples}
    if len(kinds) > 1:
        raise DataError(
            f"data.path: {shown_path(path)} lists both image files and .npy files; a manifest holds one kind of example"
        )
    if kinds == {"npy"}:
        return _npy_examples(examples, path)
    return _image_examples(examples, path, data_cfg)


# ---------------------------------------------------------------- reading the table


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) for every data row; CSV and TSV by suffix (a header row first), JSONL by
    suffix (.jsonl, .ndjson: one JSON object per line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data.path: {shown_path(path)} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}); save it as UTF-8"
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _json_lines(text, path)
    if suffix not in (".csv", ".tsv", ".tab", ".txt"):
        raise DataError(
            f"data.path: {shown_path(path)}: a manifest is a .csv, .tsv or .jsonl file (its suffix says which)"
        )
    reader = csv.reader(text.splitlines(), delimiter="\t" if suffix in (".tsv", ".tab") else ",")
    try:
        lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"data.path: {shown_path(path)} line {reader.line_num}: {exc}") from None
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0][1]]
    if len(set(header)) != len(header):
        twice = next(name for name in header if header.count(name) > 1)
        raise DataError(f"data.path: {shown_path(path)}: column '{printable(twice)}' appears twice in the header")
    rows = []
    for number, cells in lines[1:]:
        if len(cells) != len(header):
            raise DataError(
                f"data.path: {shown_path(path)} line {number} has {len(cells)} cells but the header has {len(header)}"
            )
        rows.append((number, dict(zip(header, cells))))
    return rows


def _json_lines(text: str, path: Path) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            problem = getattr(exc, "msg", "nested too deeply")
            raise DataError(
                f"data.path: {shown_path(path)} line {number} is not JSON ({problem}); each line is "
                'one object like {"file": "img/1.png", "label": "cat"}'
            ) from None
        if not isinstance(value, dict):
            raise DataError(
                f"data.path: {shown_path(path)} line {number} is not a JSON object; each line is one "
                'object like {"file": "img/1.png", "label": "cat"}'
            )
        rows.append((number, {str(key): "" if cell is None else _cell_text(cell) for key, cell in value.items()}))
    return rows


def _cell_text(cell: Any) -> str:
    if isinstance(cell, bool) or not isinstance(cell, (str, int, float)):
        return json.dumps(cell)[: MAX_CELL_BYTES + 1]  # a list or an object: refused as a label below
    return str(cell)


def _columns(data_cfg: DataConfig, rows: list[tuple[int, dict[str, str]]], path: Path) -> dict[str, Optional[str]]:
    """The file, label and split columns, each checked to exist (in every row of a JSONL manifest)."""
    known = list(dict.fromkeys(key for _, row in rows for key in row))
    label = data_cfg.label_column
    if isinstance(label, int):  # csv's column index: the header's name at that position
        if not -len(known) <= label < len(known):
            raise DataError(f"data.label_column: {label} is out of range; {shown_path(path)} has {len(known)} columns")
        label = known[label]
    chosen = {"file_column": data_cfg.file_column, "label_column": label, "split_column": data_cfg.split_column}
    for key, name in chosen.items():
        if name is None:
            continue
        if name not in known:
            close = closest(name, known)
            hint = f"did you mean '{close}'? " if close else ""
            raise DataError(
                f"data.{key}: '{printable(name)}' is not a column of {shown_path(path)}; {hint}its "
                f"columns are: {printable(', '.join(known[:10]))}"
            )
        missing = next((line for line, row in rows if name not in row), None)
        if missing is not None:
            raise DataError(f"data.path: {shown_path(path)} line {missing} has no '{printable(name)}'")
    return {"file": chosen["file_column"], "label": label, "split": chosen["split_column"]}


def _examples(
    rows: list[tuple[int, dict[str, str]]],
    columns: dict[str, Optional[str]],
    path: Path,
    separator: Optional[str] = None,
    written_separator: str = LABEL_SEPARATOR,
) -> list[tuple[str, Any, Optional[str], int]]:
    """(absolute file path, label, split or None, line) per row, every cell checked. With a `separator`
    (data.multi_label) the label is the tuple of an example's labels; without, a label holding
    `written_separator` is refused."""
    base = path.resolve().parent
    seen: dict[str, int] = {}
    examples = []
    for line, row in rows:
        file, label = row[columns["file"]].strip(), row[columns["label"]].strip()
        where = f"data.path: {shown_path(path)} line {line}"
        if not file:
            raise DataError(f"{where}: the file cell ('{columns['file']}') is empty")
        if not label and separator is None:
            raise DataError(f"{where}: the label cell ('{columns['label']}') is empty; every example needs a label")
        if len(file) > MAX_CELL_BYTES or len(label) > MAX_CELL_BYTES:
            raise DataError(f"{where}: a cell of more than {MAX_CELL_BYTES} characters; cells are a path and a label")
        if label.startswith(("[", "{")):
            raise DataError(
                f"{where}: label {printable(label[:80])} is a list or an object; give one class name or index"
                + (f", or several joined by '{separator}'" if separator else "")
            )
        if separator is not None and not label:
            label = ()  # multi-label: an empty cell is an example with none of the labels (a picture of no shape)
        elif separator is not None:
            parts = [part.strip() for part in label.split(separator)]
            if "" in parts:
                raise DataError(
                    f"{where}: label '{printable(label[:80])}' has an empty label between its '{separator}' "
                    f"separators; write the labels as car{separator}bicycle"
                )
            label = tuple(dict.fromkeys(parts))
        elif written_separator in label:
            raise DataError(
                f"{where}: label '{printable(label[:80])}' holds '{written_separator}', which writes several "
                "labels for one example; set data.multi_label: true for several labels per example (or "
                "data.label_separator to a character the labels do not use)"
            )
        split_text = row[columns["split"]].strip().lower() if columns["split"] else ""
        if split_text not in SPLIT_NAMES:
            raise DataError(
                f"{where}: split '{printable(split_text[:40])}' is not train, val or test (or empty: carved from train)"
            )
        full = str(Path(file) if Path(file).is_absolute() else base / file)
        if full in seen:
            raise DataError(
                f"{where}: {printable(file)} is listed again (first on line {seen[full]}); list each file once"
            )
        seen[full] = line
        examples.append((full, label, SPLIT_NAMES[split_text], line))
    return examples


def _kind(file: str) -> Optional[str]:
    suffix = Path(file).suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "npy" if suffix == ".npy" else None


def _labels(values: list[Any]) -> tuple[np.ndarray, Optional[list[str]]]:
    """Labels as integers when every one is an integer (so classes sort 0, 1, ..., 10), else as names; with no
    class names (dataset.py finds them). Multi-label tuples → a 0/1 matrix with a column per label name, sorted
    as single labels are."""
    if values and isinstance(values[0], tuple):
        names = sorted({name for labels in values for name in labels}, key=_label_order)
        column = {name: index for index, name in enumerate(names)}
        matrix = np.zeros((len(values), len(names)), dtype=np.uint8)
        for row, labels in enumerate(values):
            matrix[row, [column[name] for name in labels]] = 1
        return matrix, names
    try:
        return np.array([int(value) for value in values], dtype=np.int64), None
    except ValueError:
        return np.array(values, dtype=str), None


def _label_order(name: str) -> tuple:
    """Integer label names in numeric order (2 before 10), then the others alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _by_split(examples: list[tuple[str, str, Optional[str], int]], x: Any, present: list[int]) -> dict[str, Any]:
    """x_*/y_* for every split some example names (rows without one are train's, from which val and test are
    carved when missing). `present` indexes the examples that were readable, in the order of `x`."""
    arrays: dict[str, Any] = {}
    splits = [examples[index][2] or "train" for index in present]
    labels, names = _labels([examples[index][1] for index in present])
    if names is not None:
        arrays["class_names"] = names
    for split in ("train", "val", "test"):
        chosen = np.array([i for i, name in enumerate(splits) if name == split], dtype=np.int64)
        if split == "train" or len(chosen):
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x[chosen], labels[chosen]
    return arrays


# ---------------------------------------------------------------- the two kinds of example


def _image_examples(examples: list[tuple[str, str, Optional[str], int]], path: Path, data_cfg: DataConfig) -> RawData:
    sizes = decodable_sizes([file for file, _, _, _ in examples])
    present, skipped = [], []
    for index, (file, _, _, line) in enumerate(examples):
        if isinstance(sizes[file], str):
            skipped.append(f"line {line}: {printable(file)} ({sizes[file]})")
        else:
            present.append(index)
    if not present:
        raise DataError(
            f"data.path: none of the {len(examples)} files listed in {shown_path(path)} can be read (e.g. {skipped[0]})"
        )
    readable = {examples[index][0]: sizes[examples[index][0]] for index in present}
    image_size = tuple(data_cfg.image_size) if data_cfg.image_size else common_size(path.parent, readable)
    channels = 1 if data_cfg.color_mode == "grayscale" else 3
    files = ImageFiles(np.array([examples[index][0] for index in present], dtype=str), image_size, channels)
    arrays = _by_split(examples, files, present)
    _check_train(arrays, path, skipped)
    return RawData(**arrays, origin=str(path), skipped=skipped)


def _npy_examples(examples: list[tuple[str, str, Optional[str], int]], path: Path) -> RawData:
    loaded, present, skipped = [], [], []
    total = 0
    for index, (file, _, _, line) in enumerate(examples):
        reason = not_regular_reason(file)
        if reason is None:
            with open(file, "rb") as handle:
                reason = npy_problem(handle, Path(file).stat().st_size)
        if reason is not None:
            skipped.append(f"line {line}: {printable(file)} ({reason.replace(', not a regular file', '')})")
            continue
        array = np.load(file, allow_pickle=False)
        if loaded and array.shape != loaded[0].shape:
            raise DataError(
                f"data.path: {shown_path(path)} line {line}: {printable(file)} has shape "
                f"{list(array.shape)} but {printable(examples[present[0]][0])} has "
                f"{list(loaded[0].shape)}; every example must have the same shape"
            )
        total += array.nbytes
        if total > MAX_MANIFEST_BYTES * 8:
            raise DataError(
                f"data.path: the .npy files of {shown_path(path)} hold more than "
                f"{MAX_MANIFEST_BYTES * 8 // 2**30} GiB; they are read into memory"
            )
        loaded.append(array)
        present.append(index)
    if not loaded:
        raise DataError(
            f"data.path: none of the {len(examples)} files listed in {shown_path(path)} can be read (e.g. {skipped[0]})"
        )
    arrays = _by_split(examples, np.stack(loaded), present)
    _check_train(arrays, path, skipped)
    return RawData(**arrays, origin=str(path), skipped=skipped)


def _check_train(arrays: dict[str, Any], path: Path, skipped: list[str]) -> None:
    if len(arrays["y_train"]) == 0:
        raise DataError(
            f"data.path: {shown_path(path)} has no readable training examples (rows whose split is "
            "train or empty)" + (f"; {len(skipped)} files were skipped" if skipped else "")
        )
