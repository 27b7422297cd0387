"""A short `cnnctl tune` search on digits: how long N trials take and what the best one reaches.

Searches configs/digits.yaml's learning rate, first-layer filters, dropout rate and batch size (the README's
Tuning example) for `--trials` trials of `--epochs` epochs each, then trains best.yaml once and scores it on the
test split, the way the README says to finish a search. Prints one JSON line and writes benchmarks/out/tune.json.

    python benchmarks/tune.py --trials 8 --epochs 8            # ≈ 4 minutes on 2 CPU cores
    python benchmarks/tune.py --trials 8 --epochs 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from machine_info import cpu_model  # benchmarks/ is on sys.path when a benchmark runs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "tune.json"
SEARCH = {
    "train.optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]},
    "model.layers[0].Conv2D.filters": {"choice": [16, 32, 64]},
    "model.layers[6].Dropout.rate": {"uniform": [0.1, 0.5]},
    "train.batch_size": {"choice": [32, 64, 128]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    import cnnctl

    with tempfile.TemporaryDirectory() as tmp:
        config = yaml.safe_load((ROOT / "configs" / "digits.yaml").read_text())
        config["train"]["epochs"] = args.epochs
        config["tune"] = SEARCH
        started = time.perf_counter()
        folder, summary = cnnctl.tune(config, args.trials, workers=args.workers, runs_dir=Path(tmp) / "runs")
        search_s = time.perf_counter() - started
        final = cnnctl.train(folder / "best.yaml", runs_dir=Path(tmp) / "runs")
    states = [trial["state"] for trial in summary["trials"]]
    result = {
        "cpu": cpu_model(),
        "trials": args.trials,
        "epochs": args.epochs,
        "workers": args.workers,
        "search_s": round(search_s, 1),
        "completed": states.count("complete"),
        "pruned": states.count("pruned"),
        "best_trial": summary["best"]["number"],
        "best_val_accuracy": round(summary["best"]["value"], 4),
        "best_params": summary["best"]["params"],
        "best_test_accuracy": round(final.metrics["accuracy"], 4),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
