"""Streaming images listed in a `source: manifest` table must be within 10% of the same files as a `folder` source.

Writes N images once (examples/make_shapes_folder.py's shapes, 32×32 RGB PNG, 3 classes: circle/, square/,
triangle/) into a temporary folder, or into --data (a folder that already holds them is used as it is), and a
manifest CSV (columns file,label; absolute paths, in a temporary folder) listing the same files. For each source:
the config dict → `cnnctl.load(config)` → `load_data(config)` (timed: the file scan, which decodes every file once
up front), then one full pass over the training split's batched tf.data pipeline, built as training builds it
(`dataset.pipeline("train", batch_size, one_hot=..., shuffle=True, seed=...)`, cnnctl/training/loop.py) and
iterated to the end (timed: images/s). No model runs: this is the input pipeline alone.

The sources are interleaved (folder, manifest, then manifest, folder, ...), after one untimed warm-up of each;
medians are reported. load_data keeps an in-process cache of decoded file sizes (cnnctl/data/folders.py
_SCAN_CACHE, keyed by path, mtime and size) that both sources share; it is emptied before every timed load_data,
so each one pays the full decode scan, as a fresh `cnnctl train` does. Target: manifest images/s ≥ 0.9 × folder.

    python benchmarks/manifest_stream.py                       # 10,000 images; ≈ 1.5 minutes on 2 CPU cores
    python benchmarks/manifest_stream.py --n 300 --repeats 1   # a smoke run
    python benchmarks/manifest_stream.py --data /tmp/stream-images --repeats 5   # keep the images between runs

Writes --out (default benchmarks/out/manifest_stream.json) and prints a summary. Exits 1 when the streaming
ratio misses the target.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import runpy
import statistics
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model  # benchmarks/ is on sys.path when a benchmark runs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "manifest_stream.json"
TARGET_RATIO = 0.9  # manifest images/s at least 90% of folder's
SIZE = 32
SOURCES = ("folder", "manifest")

MODEL = {
    "layers": [
        {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
        "GlobalAveragePooling2D",
        {"Dense": {"units": 3, "activation": "softmax"}},
    ]
}


def image_files(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("*/*.png") if path.is_file())


def make_images(root: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` PNGs (rounded down to a multiple of 3) in root/<class>/, unless root already holds PNGs."""
    existing = image_files(root) if root.is_dir() else []
    if existing:
        return existing
    import numpy as np

    shapes = runpy.run_path(str(ROOT / "examples" / "make_shapes_folder.py"), run_name="benchmark")
    rng = np.random.default_rng(seed)
    per_class = count // len(shapes["CLASSES"])
    for kind in shapes["CLASSES"]:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shapes["draw_shape"](kind, rng, (SIZE, SIZE)).save(root / kind / f"{i:06d}.png")
    return image_files(root)


def write_manifest(files: list[Path], path: Path) -> Path:
    """file,label rows: the absolute path and its class folder's name."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"])
        writer.writerows([str(file.resolve()), file.parent.name] for file in files)
    return path


def config_for(source: str, path: Path, batch_size: int) -> dict:
    return {
        "name": f"stream-{source}",
        "seed": 0,
        "data": {
            "source": source,
            "path": str(path),
            "image_size": [SIZE, SIZE],
            "color_mode": "rgb",
            "validation_split": 0.1,
            "test_split": 0.1,
        },
        "model": MODEL,
        "train": {"epochs": 1, "batch_size": batch_size},
    }


def measure(config_dict: dict) -> dict:
    """load_data (scan cache emptied first), then one full pass of the training split's pipeline."""
    import cnnctl
    from cnnctl.data import folders
    from cnnctl.data.dataset import load_data
    from cnnctl.model.compile import needs_one_hot

    config = cnnctl.load(config_dict)
    folders._SCAN_CACHE.clear()  # else every load after the first skips the decode scan
    started = time.perf_counter()
    dataset = load_data(config)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline = dataset.pipeline(
        "train", config.train.batch_size, one_hot=needs_one_hot(config.train.loss_name), shuffle=True, seed=config.seed
    )
    images = sum(int(x.shape[0]) for x, _ in pipeline)
    pass_s = time.perf_counter() - started
    if images != len(dataset.splits["train"]):
        raise SystemExit(
            f"{config.data.source}: the pass gave {images} images, the train split holds {len(dataset.splits['train'])}"
        )
    return {
        "load_data_s": load_s,
        "pass_s": pass_s,
        "train_images": images,
        "images_per_s": images / pass_s,
        "loaded_images": sum(len(split) for split in dataset.splits.values()),
        "skipped": len(dataset.skipped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images to write (default 10000, 3 classes)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved (folder, manifest) pairs (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="the training pipeline's batch (default 64)")
    parser.add_argument(
        "--data",
        type=Path,
        help="where the images go (kept; reused when it already holds PNGs); default: a temporary folder",
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON written (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    if args.repeats < 1 or args.n < 30 or args.batch_size < 1:
        parser.error("--repeats and --batch-size must be at least 1, --n at least 30 (every split holds each class)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cnnctl import runtime

    tf = runtime.import_tensorflow()  # quietly, with oneDNN on x86 as the command line has it

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cnnctl-stream-") as temp:
        workdir = Path(temp)
        data = args.data or workdir / "images"
        started = time.perf_counter()
        files = make_images(data, args.n)
        print(f"{len(files)} images in {data} ({time.perf_counter() - started:.1f} s to write or find)", flush=True)
        manifest = write_manifest(files, workdir / "manifest.csv")
        configs = {
            "folder": config_for("folder", data, args.batch_size),
            "manifest": config_for("manifest", manifest, args.batch_size),
        }
        warm_up = {source: measure(configs[source]) for source in SOURCES}
        print(
            "warm-up (untimed): "
            + ", ".join(f"{source} {result['images_per_s']:.0f} images/s" for source, result in warm_up.items()),
            flush=True,
        )
        raw: dict[str, list[dict]] = {source: [] for source in SOURCES}
        for repeat in range(args.repeats):
            for source in SOURCES if repeat % 2 == 0 else reversed(SOURCES):
                raw[source].append(measure(configs[source]))
                result = raw[source][-1]
                print(
                    f"{source:>8}: load_data {result['load_data_s']:.2f} s, pass {result['pass_s']:.2f} s, "
                    f"{result['images_per_s']:.0f} images/s",
                    flush=True,
                )

    medians = {
        source: {
            key: statistics.median(result[key] for result in raw[source])
            for key in ("load_data_s", "pass_s", "images_per_s")
        }
        for source in SOURCES
    }
    ratio = medians["manifest"]["images_per_s"] / medians["folder"]["images_per_s"]
    load_ratio = medians["manifest"]["load_data_s"] / medians["folder"]["load_data_s"]
    results = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "tensorflow": tf.__version__},
        "load_average_before_after": [round(value, 2) for value in (*load_before, *os.getloadavg())],
        "images": len(files),
        "image": f"{SIZE}x{SIZE}x3 PNG, 3 classes",
        "data": str(args.data or "temporary"),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "train_images_per_pass": raw["folder"][0]["train_images"],
        "target_ratio": TARGET_RATIO,
        "folder": medians["folder"],
        "manifest": medians["manifest"],
        "stream_ratio_manifest_over_folder": ratio,
        "load_data_ratio_manifest_over_folder": load_ratio,
        "meets_target": ratio >= TARGET_RATIO,
        "warm_up": warm_up,
        "raw": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"CPU: {results['machine']['cpu']}, {results['machine']['cores']} cores; {len(files)} images "
        f"({results['train_images_per_pass']} per training pass), batch {args.batch_size}, "
        f"{args.repeats} interleaved repeats, medians"
    )
    for source in SOURCES:
        print(
            f"{source:>8}: {medians[source]['images_per_s']:.0f} images/s streamed, "
            f"load_data {medians[source]['load_data_s']:.2f} s"
        )
    print(
        f"manifest / folder: streaming {ratio:.2f} (target ≥ {TARGET_RATIO} {'✓' if ratio >= TARGET_RATIO else '✗'}), "
        f"load_data time {load_ratio:.2f}"
    )
    print(f"wrote {args.out}")
    if not results["meets_target"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
