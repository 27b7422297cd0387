"""Write a small, reproducible image folder for configs/shapes_folder.yaml (source: folder).

One sub-folder per class — circle, square, triangle — of coloured shapes on coloured backgrounds, saved as
PNG and JPEG in several sizes (so data.image_size has something to do). With --bad-files it also drops in
what real folders contain: a truncated JPEG, a text file, an empty file, an RGBA PNG and a palette GIF; cnnctl
skips the unreadable ones before training and lists them in data.json.

    python examples/make_shapes_folder.py                # → examples/data/shapes/{circle,square,triangle}/
    python examples/make_shapes_folder.py --per-class 20 --splits --out /tmp/shapes   # train/ val/ test/ trees
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SIZES = ((32, 32), (40, 40), (36, 28))  # (width, height): mixed on purpose
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "shapes"


def draw_shape(kind: str, rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> Image.Image:
    """One RGB image of a randomly sized, placed and coloured shape."""
    width, height = size
    background = tuple(int(v) for v in rng.integers(0, 100, 3))
    color = tuple(int(v) for v in rng.integers(140, 256, 3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.38) * min(size)
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    if kind == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif kind == "square":
        draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif kind == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
    else:
        raise ValueError(f"unknown shape {kind!r}; choose from {CLASSES}")
    return image


def write_class_folders(root: Path, per_class: int, rng: np.random.Generator, start: int = 0) -> int:
    """`per_class` images in root/<class>/; PNG and JPEG alternate. Returns the number of files written."""
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            image = draw_shape(kind, rng, SIZES[i % len(SIZES)])
            image.save(folder / f"{kind}-{i:05d}.{'png' if i % 2 == 0 else 'jpg'}")
    return per_class * len(CLASSES)


def write_odd_files(root: Path, rng: np.random.Generator) -> list[str]:
    """Files real folders contain: two readable oddities (RGBA PNG, palette GIF) and three unreadable ones.
    Returns the unreadable ones, relative to root."""
    draw_shape("circle", rng).convert("RGBA").save(root / "circle" / "rgba.png")
    draw_shape("square", rng).convert("P").save(root / "square" / "palette.gif")
    good = root / "triangle" / "good.jpg"
    draw_shape("triangle", rng).save(good)
    data = good.read_bytes()
    (root / "triangle" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "circle" / "notes.txt").write_text("not an image\n")
    (root / "square" / "empty.png").write_bytes(b"")
    return ["circle/notes.txt", "square/empty.png", "triangle/truncated.jpg"]


def write(out: Path, per_class: int, seed: int = 0, splits: bool = False, bad_files: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    if splits:  # 70 / 15 / 15 in train/ val/ test/ sub-trees, used as given splits
        counts = {"train": round(per_class * 0.7), "val": round(per_class * 0.15)}
        counts["test"] = per_class - counts["train"] - counts["val"]
        start = 0
        for split, count in counts.items():
            write_class_folders(out / split, count, rng, start)
            start += count
        if bad_files:
            write_odd_files(out / "train", rng)
    else:
        write_class_folders(out, per_class, rng)
        if bad_files:
            write_odd_files(out, rng)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300, help="images per class (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--splits", action="store_true", help="write train/ val/ test/ sub-trees")
    parser.add_argument(
        "--bad-files",
        action="store_true",
        help="add a truncated JPEG, a text file, an empty file, an RGBA PNG and a palette GIF",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    write(args.out, args.per_class, args.seed, args.splits, args.bad_files)
    print(
        f"wrote {args.out}: {args.per_class} images per class ({', '.join(CLASSES)})"
        + (" in train/ val/ test/" if args.splits else "")
    )


if __name__ == "__main__":
    main()
