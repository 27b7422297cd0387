"""Peak memory of a `source: folder` run must not grow with the number of images.

Generates N and factor×N images (examples/make_shapes_folder.py's shapes, 64×64 PNG) in two folders, then trains
one epoch on each in its own subprocess (`cnnctl`'s train_run, evaluation and figures included) and reports each
child's peak resident set size (resource.getrusage ru_maxrss). Target: at most 15% growth from N to factor×N.

`--in-memory` also runs the same pixels as an npz source (all images in a numpy array), to show what the
benchmark would catch: that growth is the images themselves.

    python benchmarks/folder_memory.py --n 2000 --factor 4         # ≈ 5 minutes on 2 CPU cores
    python benchmarks/folder_memory.py --n 2000 --factor 4 --in-memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "folder_memory.json"
TARGET_GROWTH = 0.15
SIZE = 64

CONFIG = {
    "seed": 0,
    "data": {
        "source": "folder",
        "image_size": [SIZE, SIZE],
        "color_mode": "rgb",
        "validation_split": 0.1,
        "test_split": 0.1,
    },
    "model": {
        "layers": [
            {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
            {"MaxPooling2D": {"pool_size": 4}},
            {"Conv2D": {"filters": 16, "kernel_size": 3, "activation": "relu"}},
            "GlobalAveragePooling2D",
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 1, "batch_size": 64, "early_stopping": False},
    "evaluate": {"top_k": [1]},
}


def make_folder(root: Path, images: int, seed: int) -> Path:
    shapes = runpy.run_path(str(ROOT / "examples" / "make_shapes_folder.py"), run_name="benchmark")
    rng = np.random.default_rng(seed)
    per_class = images // len(shapes["CLASSES"])
    for kind in shapes["CLASSES"]:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            shapes["draw_shape"](kind, rng, (SIZE, SIZE)).save(root / kind / f"{i:06d}.png")
    return root


def to_npz(folder: Path, path: Path) -> Path:
    """The same images as one in-memory array, for the --in-memory comparison."""
    from PIL import Image

    files = sorted(folder.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(file).convert("RGB")) for file in files])
    np.savez(path, x_train=x, y_train=np.array([file.parent.name for file in files]))
    return path


def child(config_path: str, runs_dir: str) -> None:
    """Train one config; print one JSON line with this process's peak RSS."""
    import cnnctl

    start = time.time()
    result = cnnctl.train(config_path, runs_dir=runs_dir)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "seconds": round(time.time() - start, 1),
                "accuracy": result.metrics["accuracy"],
                "examples": sum(json.loads((result.path / "data.json").read_text())["sizes"].values()),
            }
        )
    )


def measure(source: str, path: Path, workdir: Path, label: str) -> dict:
    import yaml

    config = {**CONFIG, "name": label, "data": {**CONFIG["data"], "source": source, "path": str(path)}}
    config_path = workdir / f"{label}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(config_path), str(workdir / "runs")],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        raise SystemExit(f"{label}: the training subprocess failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images in the small folder (default 2000)")
    parser.add_argument("--factor", type=int, default=4, help="the large folder has factor × n images (default 4)")
    parser.add_argument("--in-memory", action="store_true", help="also run the same images as an npz source")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "RUNS_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    results = {"n": args.n, "factor": args.factor, "image": f"{SIZE}x{SIZE}x3 PNG", "target_growth": TARGET_GROWTH}
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        sizes = {"small": args.n, "large": args.n * args.factor}
        folders = {name: make_folder(workdir / name, count, seed=i) for i, (name, count) in enumerate(sizes.items())}
        for name, folder in folders.items():
            results[f"folder_{name}"] = measure("folder", folder, workdir, f"folder-{name}")
            print(
                f"folder, {sizes[name]:>6} images: peak RSS {results[f'folder_{name}']['peak_rss_mib']:.0f} MiB "
                f"({results[f'folder_{name}']['seconds']:.0f} s)",
                flush=True,
            )
        if args.in_memory:
            for name, folder in folders.items():
                npz = to_npz(folder, workdir / f"{name}.npz")
                results[f"npz_{name}"] = measure("npz", npz, workdir, f"npz-{name}")
                print(
                    f"npz,    {sizes[name]:>6} images: peak RSS {results[f'npz_{name}']['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    for source in ("folder", "npz"):
        if f"{source}_small" in results:
            growth = results[f"{source}_large"]["peak_rss_mib"] / results[f"{source}_small"]["peak_rss_mib"] - 1
            results[f"{source}_growth"] = round(growth, 4)
            print(
                f"{source}: peak RSS grows {growth:+.1%} from {args.n} to {args.n * args.factor} images"
                + (f" (target ≤ {TARGET_GROWTH:.0%})" if source == "folder" else "")
            )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    if results["folder_growth"] > TARGET_GROWTH:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
