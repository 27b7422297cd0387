"""Data: image folders — find the files, check that each one decodes, read them lazily.

Two layouts are understood:

    root/cat/1.jpg, root/dog/2.png, ...                  class sub-folders (splits carved by dataset.py)
    root/train/cat/1.jpg, root/val/..., root/test/...    given splits (`validation/` is read as `val/`)

Every file is decoded once before training, by the same TensorFlow decoder the training pipeline uses, so a
corrupt JPEG, a text file or an empty file is found and skipped up front with its reason, never mid-epoch.
The images are never all held in memory: `ImageFiles` keeps the paths and decodes only what is asked for;
dataset.py streams them through tf.data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnctl import runtime
from cnnctl.config.schema import DataConfig
from cnnctl.data.limits import image_problem
from cnnctl.errors import DataError, printable
from cnnctl.files import not_regular_reason

SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """A lazy (N, height, width, channels) uint8 array backed by image files.

    Indexing with a slice or an index array gives another ImageFiles (no file is read), so splits and folds
    are carved from the file list; an integer index or `np.asarray(files)` decodes, which is meant for a few
    examples (figures, samples), never the whole set.
    """

    paths: np.ndarray  # str paths, one per example
    image_size: tuple[int, int]  # (height, width) every image is resized to
    channels: int  # 1 (grayscale) or 3 (rgb)

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_size, self.channels)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self.load([self.paths[index]])[0]
        return ImageFiles(np.asarray(self.paths[index]).reshape(-1), self.image_size, self.channels)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        images = self.load(self.paths)
        return images if dtype is None else images.astype(dtype)

    def decode(self, path: Any) -> Any:
        """The tf op that turns one path tensor into an image tensor; dataset.py maps it over the file list."""
        return decode_image_file(path, self.image_size, self.channels)

    def load(self, paths: Sequence[str]) -> np.ndarray:
        runtime.require_tensorflow("data.source: folder (decoding images)")
        if len(paths) == 0:
            return np.zeros((0, *self.image_size, self.channels), np.uint8)
        return np.stack([self.decode(str(path)).numpy() for path in paths])


def decode_image_file(path: Any, image_size: Sequence[int], channels: int) -> Any:
    """Read + decode (JPEG, PNG, GIF, BMP, WebP) → RGB → resize (bilinear, as Keras'
    image_dataset_from_directory) → grayscale when channels == 1 → uint8.

    Decoding always asks for 3 channels so palette, RGBA (alpha dropped) and grayscale files all work, and
    grayscale is computed from RGB the same way for every format.
    """
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, tuple(image_size))
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


@dataclass
class FolderScan:
    """What `load_folder` found: per split, the readable files and their class indices."""

    files: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # path → (height, width) as stored
    skipped: list[str] = field(default_factory=list)  # relative to the root, with the reason


def load_folder(data_cfg: DataConfig):
    """`source: folder` → RawData whose x_* are ImageFiles (labels are class indices, names from folders)."""
    from cnnctl.data.raw import RawData

    root = Path(data_cfg.path)
    if not root.exists():
        raise DataError(f"data.path: {root} does not exist")
    if not root.is_dir():
        raise DataError(
            f"data.path: {root} is a file; source folder wants a folder with one sub-folder per "
            "class (or train/ val/ test/ sub-folders that each hold the class folders)"
        )
    split_roots = {**find_split_roots(root), **given_split_roots(data_cfg, find_split_roots(root))}
    class_names = _class_folders(split_roots["train"])
    for name in class_names:
        if not _is_utf8(name):  # TensorFlow takes paths as UTF-8 text, data.json names classes in UTF-8
            raise DataError(
                f"data.path: class folder '{printable(name)}' in {printable(split_roots['train'])} has a "
                "name that is not UTF-8 text (made on another system?); rename it"
            )
    if not class_names:
        raise DataError(
            f"data.path: {split_roots['train']} has no class sub-folders; put the images in one "
            "folder per class (cat/1.jpg, dog/2.jpg), or use train/ val/ test/ sub-folders"
        )
    for folder in split_roots.values():
        unknown = sorted(set(_class_folders(folder)) - set(class_names))
        if unknown:
            raise DataError(
                f"data.path: {folder} has class folder '{printable(unknown[0])}' that "
                f"{split_roots['train']} lacks; classes come from the train folder "
                f"({printable(', '.join(class_names))})"
            )
    scan = scan_folders(root, split_roots, class_names)

    present = set(scan.labels["train"])
    empty = [name for index, name in enumerate(class_names) if index not in present]
    if empty:
        raise DataError(
            f"data.path: class '{printable(empty[0])}' has no readable images in {split_roots['train']}"
            + (f" ({len(scan.skipped)} files were skipped)" if scan.skipped else "")
        )
    image_size = tuple(data_cfg.image_size) if data_cfg.image_size else common_size(root, scan.sizes)
    channels = 1 if data_cfg.color_mode == "grayscale" else 3
    arrays = {}
    for split in ("train", "val", "test"):
        if split in scan.files:
            arrays[f"x_{split}"] = ImageFiles(np.array(scan.files[split], dtype=str), image_size, channels)
            arrays[f"y_{split}"] = np.array(scan.labels[split], dtype=np.int64)
    return RawData(**arrays, class_names=class_names, origin=str(root), skipped=scan.skipped)


def find_split_roots(root: Path) -> dict[str, Path]:
    """{"train": root} for class sub-folders; {"train": root/train, "val": ..., "test": ...} for a split tree."""
    children = {path.name.lower(): path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")}
    if "train" not in children or not set(children) <= set(SPLIT_FOLDERS):
        return {"train": root}
    if "val" in children and "validation" in children:
        raise DataError(f"data.path: {root} has both val/ and validation/; keep one")
    roots = {SPLIT_FOLDERS[name]: path for name, path in children.items()}
    return {split: roots[split] for split in ("train", "val", "test") if split in roots}


def given_split_roots(data_cfg: DataConfig, found: dict[str, Path]) -> dict[str, Path]:
    """data.val_path and data.test_path: folders of class folders for those splits, kept out of training (a
    published set's train/ and val/ folders: give val/ as test_path and it stays the untouched test split)."""
    given = {}
    for split, key in (("val", "val_path"), ("test", "test_path")):
        value = getattr(data_cfg, key)
        if value is None:
            continue
        folder = Path(value)
        if not folder.is_dir():
            raise DataError(
                f"data.{key}: {printable(folder)} "
                + ("is not a folder" if folder.exists() else "does not exist")
                + "; give a folder holding one sub-folder per class"
            )
        if split in found:
            raise DataError(
                f"data.{key}: {printable(found[split])} is already the {split} split of data.path; "
                f"remove it there or drop data.{key}"
            )
        if folder.resolve() == found["train"].resolve():
            raise DataError(f"data.{key}: {printable(folder)} is the training folder itself; give another folder")
        given[split] = folder
    return given


def _class_folders(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below `folder`, in a fixed order (sorted), so splits are the same on every machine."""
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(directory) / name for name in sorted(names) if not name.startswith(".")]
    return found


def scan_folders(root: Path, split_roots: dict[str, Path], class_names: list[str]) -> FolderScan:
    scan = FolderScan()
    candidates: list[tuple[str, int, Path]] = []
    for split, folder in split_roots.items():
        for index, name in enumerate(class_names):
            if (folder / name).is_dir():
                candidates += [(split, index, path) for path in _files_under(folder / name)]
    sizes = decodable_sizes([str(path) for _, _, path in candidates])
    for split, index, path in candidates:
        size = sizes[str(path)]
        if isinstance(size, str):
            scan.skipped.append(f"{printable(os.path.relpath(path, root))} ({size})")
            continue
        scan.files.setdefault(split, []).append(str(path))
        scan.labels.setdefault(split, []).append(index)
        scan.sizes[str(path)] = size
    for split in split_roots:
        scan.files.setdefault(split, [])
        scan.labels.setdefault(split, [])
    if not scan.files["train"]:
        raise DataError(
            f"data.path: no readable images under {split_roots['train']} "
            f"({len(scan.skipped)} files could not be decoded, e.g. {scan.skipped[0]})"
            if scan.skipped
            else f"data.path: no image files under {split_roots['train']}"
        )
    for split in [name for name in ("val", "test") if name in split_roots and not scan.files[name]]:
        raise DataError(f"data.path: {split_roots[split]} holds no readable images; fill it or remove it")
    return scan


# (path, modification time, size) → (height, width) or the reason it cannot be decoded. K-fold cross-validation
# loads the data once per fold; this keeps the second and later loads from decoding every file again.
_SCAN_CACHE: dict[tuple[str, int, int], Any] = {}


def decodable_sizes(paths: list[str]) -> dict[str, Any]:
    """Decode every file once (in parallel, through tf.data) → {path: (height, width)} or {path: reason}.
    What is not a regular file (a FIFO, a link to /dev/zero), is over limits.MAX_IMAGE_BYTES or has a header
    over limits.MAX_IMAGE_PIXELS is never read: its reason comes from limits.image_problem."""
    keys, refused = {}, {}
    for path in paths:
        if not _is_utf8(path):  # TensorFlow cannot open it: its paths are UTF-8 text
            refused[path] = "file name is not UTF-8 text; rename it"
            continue
        reason = not_regular_reason(path)  # before os.stat's key: a FIFO or /dev/zero is never opened
        if reason is not None:
            refused[path] = reason.replace(", not a regular file", "")
            continue
        stat = os.stat(path)
        keys[path] = (path, stat.st_mtime_ns, stat.st_size)
    todo = []
    for path in (path for path in keys if keys[path] not in _SCAN_CACHE):
        problem = image_problem(path)
        if problem is None:
            todo.append(path)
        else:
            _SCAN_CACHE[keys[path]] = problem
    if todo:
        tf = runtime.require_tensorflow("data.source: folder (decoding images)")

        def size_of(path):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            return path, tf.shape(image)[:2]

        # ignore_errors drops the files that fail; what is missing afterwards is what could not be decoded.
        found = (
            tf.data.Dataset.from_tensor_slices(todo)
            .map(size_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .ignore_errors()
        )
        with runtime._silence_native_stderr():  # libjpeg prints its complaints straight to fd 2
            decoded = {path.decode(): (int(shape[0]), int(shape[1])) for path, shape in found.as_numpy_iterator()}
            for path in todo:
                _SCAN_CACHE[keys[path]] = decoded.get(path) or _decode_error(tf, path)
    return {path: refused[path] if path in refused else _SCAN_CACHE[keys[path]] for path in paths}


def _is_utf8(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode_error(tf: Any, path: str) -> str:
    """Why one file failed: decode it again alone to get TensorFlow's message (few files, so cheap)."""
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except Exception as exc:  # TensorFlow raises InvalidArgumentError and friends; any failure means skip
        text = " ".join(getattr(exc, "message", str(exc)).split())
        if "Unknown image file format" in text:
            return "not an image"
        # "{{function_node ...}} jpeg::Uncompress failed. Invalid JPEG data or crop window. [Op:DecodeImage] name: "
        text = re.sub(r"\{\{.*?\}\}|\[Op:.*$|\w+::\w+ failed\.", "", text).strip()
        return f"corrupt: {text[:100]}" if text else "cannot be decoded"
    return "cannot be decoded"


def common_size(root: Path, sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """The one size all images share; with mixed sizes data.image_size is required."""
    distinct: dict[tuple[int, int], str] = {}
    for path, size in sizes.items():
        distinct.setdefault(size, path)
    if len(distinct) == 1:
        return next(iter(distinct))
    (first, first_path), (second, second_path) = list(distinct.items())[:2]
    first_name, second_name = (printable(os.path.relpath(path, root)) for path in (first_path, second_path))
    raise DataError(
        f"data.image_size: the images in {root} have {len(distinct)} different sizes (e.g. "
        f"{first[0]}×{first[1]} in {first_name} and {second[0]}×{second[1]} in {second_name}); "
        "set data.image_size: [height, width] to resize them"
    )
