"""Write scikit-learn's bundled digits as PNG files with a manifest listing them, for configs/digits_manifest.yaml.

Each 8×8 digit (values 0..16) becomes an 8-bit grayscale PNG (0..255) under images/<label>/, and manifest.csv
lists `file,label,split`: every fifth image is given as `test`, the rest leave the split empty (cnnctl carves
validation from them). The same images as arrays are written to digits_arrays.npz, to compare the two sources.
No download.

    python examples/make_digits_manifest.py        # → examples/data/digits_manifest/{manifest.csv,images/,...}
    python examples/make_digits_manifest.py --out /tmp/digits --format jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "digits_manifest"


def write_digits_manifest(out: Path, manifest_format: str = "csv") -> Path:
    """The PNG files, the manifest (csv, tsv or jsonl) and digits_arrays.npz in `out`; returns the manifest."""
    digits = load_digits()
    images = np.clip(digits.images * (255 / 16), 0, 255).round().astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rows = []
    for index, (image, label) in enumerate(zip(images, labels)):
        relative = Path("images") / str(label) / f"{index:04d}.png"
        (out / relative.parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(out / relative)
        rows.append({"file": relative.as_posix(), "label": int(label), "split": "test" if index % 5 == 0 else ""})
    test = np.array([row["split"] == "test" for row in rows])
    np.savez(
        out / "digits_arrays.npz",
        x_train=images[~test],
        y_train=labels[~test],
        x_test=images[test],
        y_test=labels[test],
    )
    manifest = out / f"manifest.{manifest_format}"
    if manifest_format == "jsonl":
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(manifest, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["file", "label", "split"], delimiter="\t" if manifest_format == "tsv" else ","
            )
            writer.writeheader()
            writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default: {DEFAULT_OUT})")
    parser.add_argument("--format", choices=["csv", "tsv", "jsonl"], default="csv", help="the manifest's format")
    args = parser.parse_args()
    print(write_digits_manifest(args.out, args.format))


if __name__ == "__main__":
    main()
