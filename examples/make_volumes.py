"""Write a small, reproducible 3-D volume data set for configs/volumes_conv3d.yaml.

Three classes of solid in a noisy cube of voxels — sphere, cube, rod (a cylinder along a random axis) — each
with a random size, position and brightness, so the class is the 3-D *shape*: no single 2-D slice gives it away
reliably. Saved as an npz in the Keras layout with string labels; x is (N, depth, height, width, 1) float32,
ready for Conv3D.

    python examples/make_volumes.py                      # → examples/data/volumes.npz (600 + 150 volumes of 16³)
    python examples/make_volumes.py --train 90 --test 30 --size 12 --out /tmp/volumes.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CLASSES = ("sphere", "cube", "rod")
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "volumes.npz"


def solid(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean (size, size, size) mask of one randomly sized and placed solid."""
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    radius = rng.uniform(0.18, 0.3) * size
    center = rng.uniform(radius, size - 1 - radius, 3)
    offset = grid - center
    if kind == "sphere":
        return np.sum(offset**2, axis=-1) <= radius**2
    if kind == "cube":
        return np.all(np.abs(offset) <= radius * 0.85, axis=-1)
    if kind == "rod":
        axis = rng.integers(0, 3)
        across = np.delete(offset, axis, axis=-1)
        return (np.sum(across**2, axis=-1) <= (radius * 0.45) ** 2) & (np.abs(offset[..., axis]) <= size * 0.4)
    raise ValueError(f"unknown solid {kind!r}; choose from {CLASSES}")


def make_volumes(count: int, size: int = 16, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` volumes (balanced, shuffled) → x (count, size, size, size, 1) float32, y (count,) str."""
    rng = np.random.default_rng(seed)
    labels = np.array(CLASSES)[np.arange(count) % len(CLASSES)]
    rng.shuffle(labels)
    x = rng.normal(0, noise, (count, size, size, size, 1)).astype(np.float32)
    for i, kind in enumerate(labels):
        x[i, ..., 0] += rng.uniform(0.6, 1.0) * solid(kind, size, rng)
    return x, labels


def write(out: Path, train: int, test: int, size: int = 16, seed: int = 0) -> Path:
    x_train, y_train = make_volumes(train, size, seed=seed)
    x_test, y_test = make_volumes(test, size, seed=seed + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600, help="training volumes (default 600)")
    parser.add_argument("--test", type=int, default=150, help="test volumes (default 150)")
    parser.add_argument("--size", type=int, default=16, help="voxels per side (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"npz file to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    write(args.out, args.train, args.test, args.size, args.seed)
    print(
        f"wrote {args.out}: {args.train} train + {args.test} test volumes of {args.size}³, classes {', '.join(CLASSES)}"
    )


if __name__ == "__main__":
    main()
