"""Scratch vs transfer on a few labelled examples: what pretraining on another data set buys.

Pretrains the article's CNN on Fashion-MNIST (configs/fashion_mnist.yaml for `--pretrain-epochs` epochs), then,
for each `--per-class` size and `--seeds` seed, learns handwritten digits (examples/make_few_digits.py: that many
labelled digits per class, upscaled to 28×28; every other digit is the test set) twice:
- scratch: the same network from random weights, for as many epochs as both transfer phases together;
- transfer: configs/transfer_from_run.yaml as shipped: the pretraining run's convolutions, frozen while a fresh head
  learns, then everything fine-tuned at a tenth of the learning rate.
Prints a markdown table (medians, and every seed's test accuracy) and writes benchmarks/out/transfer.json.
Needs Fashion-MNIST: the Debian package (apt-get install dataset-fashion-mnist) or a keras.datasets download.

    python benchmarks/transfer.py                                   # 10 and 20 per class, 3 seeds: ≈ 10 minutes
    python benchmarks/transfer.py --per-class 5 --seeds 1 --pretrain-epochs 1    # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from speed import machine  # benchmarks/ is the script's folder, on sys.path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "transfer.json"
CONFIG = ROOT / "configs" / "transfer_from_run.yaml"


def scratch_config(transfer: dict) -> dict:
    """The transfer config's network and data from random weights: no run to start from, nothing frozen, one phase
    as long as both transfer phases."""
    config = copy.deepcopy(transfer)
    del config["model"]["from_run"]
    for layer in config["model"]["layers"]:
        if isinstance(layer, dict):
            next(iter(layer.values())).pop("trainable", None)
    tune = config["train"].pop("fine_tune")
    config["train"]["epochs"] += tune["epochs"]
    config["name"] = "scratch"
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    args = parser.parse_args()

    import runpy

    import cnnctl

    few_digits = runpy.run_path(str(ROOT / "examples" / "make_few_digits.py"), run_name="benchmark")["few_digits"]
    transfer = yaml.safe_load(CONFIG.read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        started = time.perf_counter()
        pretrained = cnnctl.train(
            ROOT / "configs" / "fashion_mnist.yaml", runs_dir=runs, overrides=[f"train.epochs={args.pretrain_epochs}"]
        )
        pretrain = {
            "epochs": args.pretrain_epochs,
            "seconds": round(time.perf_counter() - started, 1),
            "fashion_mnist_test_accuracy": round(pretrained.metrics["accuracy"], 4),
        }
        print(json.dumps({"pretrain": pretrain}), flush=True)
        for per_class in args.per_class:
            for seed in range(args.seeds):
                data = Path(tmp) / f"few-{per_class}-{seed}.npz"
                np.savez(data, **few_digits(per_class, seed))
                for method, config in (("scratch", scratch_config(transfer)), ("transfer", copy.deepcopy(transfer))):
                    config["data"]["path"] = str(data)
                    config["seed"] = seed
                    if "from_run" in config["model"]:
                        config["model"]["from_run"]["run"] = str(pretrained.path)
                    started = time.perf_counter()
                    result = cnnctl.train(config, runs_dir=runs)
                    row = {
                        "per_class": per_class,
                        "seed": seed,
                        "method": method,
                        "test_accuracy": round(result.metrics["accuracy"], 4),
                        "epochs_run": len(result.history.get("loss", [])),
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = []
    for per_class in args.per_class:
        for method in ("scratch", "transfer"):
            mine = [row for row in rows if row["per_class"] == per_class and row["method"] == method]
            summary.append(
                {
                    "per_class": per_class,
                    "method": method,
                    "median_test_accuracy": statistics.median(row["test_accuracy"] for row in mine),
                    "test_accuracies": [row["test_accuracy"] for row in mine],
                    "median_seconds": statistics.median(row["seconds"] for row in mine),
                }
            )
    cpu = machine()
    result = {
        "cpu": cpu["cpu"],
        "cpu_kind": cpu["kind"],
        "cores": cpu["cores"],
        "pretrain": pretrain,
        "runs": rows,
        "summary": summary,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nCPU: {result['cpu']} ({result['cores']} cores, {result['cpu_kind']}); pretraining: Fashion-MNIST, {pretrain['epochs']} epochs, "
        f"{pretrain['seconds']} s, test accuracy {pretrain['fashion_mnist_test_accuracy']}"
    )
    print("| labelled digits per class | method | median test accuracy | every seed | median wall s |")
    print("|---|---|---|---|---|")
    for line in summary:
        print(
            f"| {line['per_class']} | {line['method']} | {line['median_test_accuracy']:.4f} | "
            f"{', '.join(f'{value:.4f}' for value in line['test_accuracies'])} | {line['median_seconds']} |"
        )


if __name__ == "__main__":
    main()
