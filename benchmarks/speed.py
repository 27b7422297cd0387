"""Speed of cnnctl against the Keras script a user would write by hand, on the same network and data.

    python benchmarks/speed.py [--epochs 4] [--repeats 2]
    python benchmarks/speed.py --time-to-accuracy

Needs the Debian Fashion-MNIST files (apt-get install dataset-fashion-mnist); skips with a message without them.
Measures, in one invocation and interleaved (this machine is noisy, so medians are reported):
  - epoch time of `cnnctl train configs/fashion_mnist.yaml` vs benchmarks/plain_keras.py (batch 64 both):
    first epoch separately, then the median of the steady-state epochs, and the whole command's wall time;
  - evaluation throughput: cnnctl's evaluation pipeline vs model.predict on a numpy array (same model);
  - start-up time of `cnnctl --help` and `cnnctl runs` (median of several runs);
  - achieved GFLOP/s of training (3 × forward FLOPs per example × images/s) against the CPU's fp32 peak.
With --time-to-accuracy it instead trains configs/fashion_mnist_best.yaml once, as a user would
(`cnnctl train`, nothing overridden), and reports its test accuracy and wall time against the targets
(≥ 0.94 within 20 minutes). Run it on an otherwise idle machine: it takes most of those 20 minutes.
Writes benchmarks/out/speed-<time>.json and .md (time-to-accuracy-<time>.* with that flag) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "fashion_mnist.yaml"
BEST_CONFIG = ROOT / "configs" / "fashion_mnist_best.yaml"
TARGET_ACCURACY, TARGET_WALL_S = 0.94, 20 * 60
IDX = Path("/usr/share/datasets/fashion-mnist")
OUT = ROOT / "benchmarks" / "out"
TRAIN_EXAMPLES = 54_000  # 60k minus the 10% validation split, in both scripts


def run_plain_keras(epochs: int) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plain_keras.py"), "--epochs", str(epochs)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["command_wall_s"] = time.perf_counter() - started
    return result


def run_cnnctl(config: Path, runs_dir: Path, extra: list[str], show_output: bool = False) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnctl", "train", str(config), "--runs-dir", str(runs_dir), *extra],
                   capture_output=not show_output, text=True, check=True)
    wall = time.perf_counter() - started
    run = max(runs_dir.iterdir(), key=lambda path: path.stat().st_mtime)
    import csv

    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    metrics = json.loads((run / "metrics.json").read_text())
    # metrics.json scores the config's evaluate.split: test unless a config asks for val
    return {"epoch_s": [float(row["epoch_time_s"]) for row in rows], "test_accuracy": metrics["accuracy"],
            "evaluated_split": metrics["split"],
            # None when the config trains on every training image (validation_split: 0: CSVLogger writes NA)
            "best_val_accuracy": max((float(row["val_accuracy"]) for row in rows
                                      if row.get("val_accuracy") not in (None, "", "NA")), default=None),
            "command_wall_s": wall, "run": str(run)}


def steady(times: list[float]) -> float:
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def startup_times(repeats: int = 5) -> dict:
    result = {}
    for label, args in (("cnnctl --help", ["--help"]), ("cnnctl runs", ["runs", "--runs-dir", tempfile.mkdtemp()])):
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cnnctl", *args], capture_output=True, check=True)
            samples.append(time.perf_counter() - started)
        result[label] = statistics.median(samples)
    return result


def evaluation_throughput(run_dir: str, repeats: int = 3) -> dict:
    """cnnctl's evaluation (its tf.data pipeline and inference batch) on the trained model's test images.

    The plain script's own `model.predict` on numpy (batch 64) is timed inside that script, in its own process:
    timing it here would run it with the TensorFlow settings cnnctl chose, not the ones a user gets."""
    sys.path.insert(0, str(ROOT))
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data
    from cnnctl.evaluation.scoring import load_model, predict_probabilities
    from cnnctl.runs.folder import Run

    run = Run(Path(run_dir))
    config = load_config(run.file("config.yaml"))
    dataset = load_data(config)
    model = load_model(run)
    test = dataset.splits["test"]
    ours = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_probabilities(model, dataset, "test", config.train.batch_size)
        ours.append(len(test) / (time.perf_counter() - started))
    return {"cnnctl_images_per_s": statistics.median(ours)}


def forward_flops_per_example() -> int:
    sys.path.insert(0, str(ROOT))
    from cnnctl.config.loading import load_config
    from cnnctl.model.build import build_model
    from cnnctl.model.summary import describe

    config = load_config(CONFIG)
    return describe(build_model(config.model, (28, 28, 1), 10)).flops


def cpu_peak_gflops() -> tuple[str, float]:
    """cores × clock × FLOPs per cycle: 32 fp32 FLOPs/cycle with two 256-bit FMA units (AVX2), 64 with AVX-512."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in info else 32
    cores = os.cpu_count() or 1
    return model, cores * (max(mhz) if mhz else 2000.0) / 1000 * per_cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs of (plain Keras, cnnctl) runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra --set for the cnnctl run, e.g. train.jit_compile=false")
    parser.add_argument("--time-to-accuracy", action="store_true",
                        help=f"train {BEST_CONFIG.name} once and report test accuracy and wall time")
    args = parser.parse_args()
    if not (IDX / "train-images-idx3-ubyte.gz").exists():
        print(f"skip: {IDX} not found; apt-get install dataset-fashion-mnist")
        return
    if args.time_to_accuracy:
        report("time-to-accuracy", time_to_accuracy(), time_to_accuracy_markdown)
        return
    extra = ["--set", f"train.epochs={args.epochs}", "--set", "train.early_stopping=false",
             *[item for override in args.overrides for item in ("--set", override)]]
    runs_dir = Path(tempfile.mkdtemp(prefix="cnnctl-speed-"))
    plain_runs, cnnctl_runs = [], []
    for repeat in range(args.repeats):
        order = [("plain", run_plain_keras), ("cnnctl", None)]
        if repeat % 2:
            order.reverse()
        for label, _ in order:
            if label == "plain":
                plain_runs.append(run_plain_keras(args.epochs))
            else:
                cnnctl_runs.append(run_cnnctl(CONFIG, runs_dir, extra))
            print(f"{label}: {json.dumps((plain_runs if label == 'plain' else cnnctl_runs)[-1])}", flush=True)

    def summarize(results: list[dict]) -> dict:
        return {
            "first_epoch_s": statistics.median(r["epoch_s"][0] for r in results),
            "steady_epoch_s": statistics.median(steady(r["epoch_s"]) for r in results),
            "command_wall_s": statistics.median(r["command_wall_s"] for r in results),
            "test_accuracy": statistics.median(r["test_accuracy"] for r in results),
        }

    plain, ours = summarize(plain_runs), summarize(cnnctl_runs)
    flops = forward_flops_per_example()
    cpu, peak = cpu_peak_gflops()
    achieved = 3 * flops * TRAIN_EXAMPLES / ours["steady_epoch_s"] / 1e9
    result = {
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "fp32_peak_gflops": round(peak, 1)},
        "epochs": args.epochs, "repeats": args.repeats, "cnnctl_overrides": args.overrides,
        "plain_keras": plain, "cnnctl": ours,
        "steady_epoch_ratio": ours["steady_epoch_s"] / plain["steady_epoch_s"],
        "command_wall_ratio": ours["command_wall_s"] / plain["command_wall_s"],
        "evaluation": {**evaluation_throughput(cnnctl_runs[-1]["run"]), "predict_numpy_images_per_s":
                       statistics.median(r["predict_images_per_s"] for r in plain_runs)},
        "startup_s": startup_times(),
        "forward_flops_per_example": flops,
        "training_gflops_per_s": achieved,
        "fraction_of_peak": achieved / peak,
        "raw": {"plain_keras": plain_runs, "cnnctl": cnnctl_runs},
    }
    report("speed", result, markdown)


def time_to_accuracy() -> dict:
    cpu, peak = cpu_peak_gflops()
    run = run_cnnctl(BEST_CONFIG, Path(tempfile.mkdtemp(prefix="cnnctl-best-")), [], show_output=True)
    return {"machine": {"cpu": cpu, "cores": os.cpu_count(), "fp32_peak_gflops": round(peak, 1)},
            "config": str(BEST_CONFIG.relative_to(ROOT)), **run,
            "meets_accuracy": run["test_accuracy"] >= TARGET_ACCURACY,
            "meets_wall_time": run["command_wall_s"] <= TARGET_WALL_S}


def report(kind: str, result: dict, to_markdown) -> None:
    """Writes benchmarks/out/<kind>-<time>.json and .md and prints the markdown."""
    OUT.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"{kind}-{stamp}.json").write_text(json.dumps(result, indent=2))
    table = to_markdown(result)
    (OUT / f"{kind}-{stamp}.md").write_text(table)
    print(table)


def time_to_accuracy_markdown(r: dict) -> str:
    epochs = r["epoch_s"]
    lines = [
        f"CPU: {r['machine']['cpu']}, {r['machine']['cores']} cores; `cnnctl train {r['config']}`, one run.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| {r['evaluated_split']} accuracy | {r['test_accuracy']:.4f} | ≥ {TARGET_ACCURACY} {'✓' if r['meets_accuracy'] else '✗'} |",
        f"| wall time, whole command (s) | {r['command_wall_s']:.0f} ({r['command_wall_s'] / 60:.1f} min) | "
        f"≤ {TARGET_WALL_S} {'✓' if r['meets_wall_time'] else '✗'} |",
        f"| best validation accuracy | "
        f"{'none held out' if r['best_val_accuracy'] is None else format(r['best_val_accuracy'], '.4f')} | |",
        f"| epochs, median epoch time (s) | {len(epochs)}, {statistics.median(epochs):.1f} "
        f"(min {min(epochs):.1f}, max {max(epochs):.1f}) | |",
        "",
    ]
    return "\n".join(lines)


def markdown(r: dict) -> str:
    p, c, e, s = r["plain_keras"], r["cnnctl"], r["evaluation"], r["startup_s"]
    lines = [
        f"CPU: {r['machine']['cpu']}, {r['machine']['cores']} cores, fp32 peak ≈ {r['machine']['fp32_peak_gflops']} "
        f"GFLOP/s; {r['epochs']} epochs × {r['repeats']} interleaved repeats; medians.",
        "",
        "| measure | plain Keras | cnnctl | ratio (cnnctl / plain) |",
        "|---|---|---|---|",
        f"| first epoch (s) | {p['first_epoch_s']:.1f} | {c['first_epoch_s']:.1f} | "
        f"{c['first_epoch_s'] / p['first_epoch_s']:.2f} |",
        f"| steady-state epoch (s) | {p['steady_epoch_s']:.2f} | {c['steady_epoch_s']:.2f} | "
        f"{r['steady_epoch_ratio']:.2f} |",
        f"| whole command, {r['epochs']} epochs (s) | {p['command_wall_s']:.1f} | {c['command_wall_s']:.1f} | "
        f"{r['command_wall_ratio']:.2f} |",
        f"| test accuracy | {p['test_accuracy']:.4f} | {c['test_accuracy']:.4f} | |",
        f"| evaluation (images/s) | {e['predict_numpy_images_per_s']:.0f} | {e['cnnctl_images_per_s']:.0f} | "
        f"{e['cnnctl_images_per_s'] / e['predict_numpy_images_per_s']:.2f} (higher is better) |",
        f"| `cnnctl --help` (s) | | {s['cnnctl --help']:.3f} | |",
        f"| `cnnctl runs` (s) | | {s['cnnctl runs']:.3f} | |",
        f"| training GFLOP/s (3 × {r['forward_flops_per_example'] / 1e6:.1f} MFLOP/example) | | "
        f"{r['training_gflops_per_s']:.1f} | {100 * r['fraction_of_peak']:.0f}% of peak |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
