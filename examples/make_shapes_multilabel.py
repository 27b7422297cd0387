"""Write generated pictures in which a square, a circle and a triangle are each present or absent independently,
with a manifest listing each picture's shapes (`circle|square`), for configs/shapes_multilabel.yaml. No download.

Each 32×32 grayscale PNG holds one to three shapes, each in its own quarter of the picture, at a random size and
position within it, over light noise (a picture with none is drawn again: a manifest label is never empty).
manifest.csv lists `file,labels,split`: every fifth picture is given as `test`, the rest leave the split empty
(cnnctl carves validation from them). The same pictures as arrays, with a 0/1 label matrix y of shape (N, 3), go
to shapes_arrays.npz: the other way multi-label data comes (source: npz).

    python examples/make_shapes_multilabel.py                 # → examples/data/shapes_multilabel/
    python examples/make_shapes_multilabel.py --count 3000 --out /tmp/shapes
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "shapes_multilabel"
SHAPES = ("circle", "square", "triangle")
SIZE = 32  # pixels; each shape gets one 16×16 quarter


def draw_picture(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A SIZE×SIZE uint8 picture with the shapes flagged in `present` (one per SHAPES entry)."""
    picture = Image.fromarray(rng.integers(0, 40, (SIZE, SIZE), dtype=np.uint8), mode="L")
    draw = ImageDraw.Draw(picture)
    quarters = rng.permutation(4)
    half = SIZE // 2
    for slot, shape in zip(quarters, np.flatnonzero(present)):
        size = int(rng.integers(8, 14))
        left = (slot % 2) * half + int(rng.integers(0, half - size + 1))
        top = (slot // 2) * half + int(rng.integers(0, half - size + 1))
        box = (left, top, left + size - 1, top + size - 1)
        shade = int(rng.integers(170, 256))
        if SHAPES[shape] == "circle":
            draw.ellipse(box, fill=shade)
        elif SHAPES[shape] == "square":
            draw.rectangle(box, fill=shade)
        else:
            draw.polygon(
                [(left, top + size - 1), (left + size - 1, top + size - 1), (left + size // 2, top)], fill=shade
            )
    return np.asarray(picture)


def write_shapes_multilabel(out: Path, count: int = 1500, seed: int = 0) -> Path:
    """`count` PNG files, manifest.csv and shapes_arrays.npz in `out`; returns the manifest's path."""
    rng = np.random.default_rng(seed)
    pictures, labels, rows = [], [], []
    (out / "images").mkdir(parents=True, exist_ok=True)
    while len(pictures) < count:
        present = rng.random(len(SHAPES)) < 0.5
        if not present.any():
            continue
        index = len(pictures)
        picture = draw_picture(present, rng)
        relative = Path("images") / f"{index:05d}.png"
        Image.fromarray(picture, mode="L").save(out / relative)
        pictures.append(picture)
        labels.append(present.astype(np.uint8))
        names = "|".join(name for name, on in zip(SHAPES, present) if on)
        rows.append({"file": relative.as_posix(), "labels": names, "split": "test" if index % 5 == 0 else ""})
    x, y = np.stack(pictures), np.stack(labels)
    test = np.arange(count) % 5 == 0
    np.savez(
        out / "shapes_arrays.npz",
        x_train=x[~test],
        y_train=y[~test],
        x_test=x[test],
        y_test=y[test],
        class_names=np.array(SHAPES),
    )
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default: {DEFAULT_OUT})")
    parser.add_argument("--count", type=int, default=1500, help="pictures to draw (default: 1500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args()
    manifest = write_shapes_multilabel(args.out, args.count, args.seed)
    print(f"wrote {args.count} pictures and {manifest}")


if __name__ == "__main__":
    main()
