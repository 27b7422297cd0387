"""Write a few labelled handwritten digits as 28×28 images, for configs/transfer_from_run.yaml.

scikit-learn's bundled digits (1797 images of 8×8, values 0..16) are upscaled to Fashion-MNIST's 28×28 and 0..255,
so a model pretrained on Fashion-MNIST can be fine-tuned on them: `--per-class` labelled examples of each digit in
x_train/y_train, every other digit in x_test/y_test (the held-out score). Another set from the one pretrained on,
few labels — the situation transfer learning is for. No download.

    python examples/make_few_digits.py                         # → examples/data/few_digits.npz, 20 per class
    python examples/make_few_digits.py --per-class 10 --seed 1 --out /tmp/few10.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import zoom
from sklearn.datasets import load_digits

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "few_digits.npz"
SIZE = 28


def few_digits(per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{x_train, y_train, x_test, y_test}: `per_class` training images of each digit, chosen with `seed`; uint8
    28×28×1 images (bilinear upscaling, the digit's 8×8 grid filling the frame as Fashion-MNIST's clothes do)."""
    digits = load_digits()
    images = zoom(digits.images, (1, SIZE / 8, SIZE / 8), order=1)  # (n, 28, 28), 0..16
    images = np.clip(images * (255 / 16), 0, 255).round().astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(labels == digit), per_class, replace=False) for digit in range(10)]
    )
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    return {"x_train": images[chosen], "y_train": labels[chosen], "x_test": images[rest], "y_test": labels[rest]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20, help="labelled training examples per digit")
    parser.add_argument("--seed", type=int, default=0, help="which examples are chosen")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .npz file to write")
    args = parser.parse_args()
    arrays = few_digits(args.per_class, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(
        f"{args.out}: {len(arrays['y_train'])} training digits ({args.per_class} per class), "
        f"{len(arrays['y_test'])} test digits, 28x28"
    )


if __name__ == "__main__":
    main()
