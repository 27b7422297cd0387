"""Grad-CAM explanations must cost at most 5× plain prediction, on the same inputs and the same machine.

Trains a small digits CNN through the Python API (Conv2D 16, MaxPooling2D, Conv2D 32, Flatten, Dense 10; 2 epochs,
in a temporary runs folder), or takes an existing run folder with --run, then times on the same 100 digits (scikit-
learn's load_digits().images[:100], in the data's own units 0..16):

  - predict:  `cnnctl.evaluation.predict.predict_run(run, [], arrays=x)`, the whole call (reads data.json and
              config.yaml, loads model.keras, predicts);
  - gradcam:  `gradcam(load_model(run), x)`, the whole call including the model load;

interleaved (the order alternates per repeat), after one untimed warm-up call of each (reported as first_call_s:
the process's one-time costs land there). Target: median gradcam / median predict ≤ 5. The steady state is timed
separately: one model loaded once, each call made once untimed, then `model.predict(x)` (predict_run's own batch
size) and `gradcam(model, x)` interleaved. Medians are reported: this machine is noisy.

    python benchmarks/explain_cost.py                           # ≈ 30 s on 2 CPU cores (training included)
    python benchmarks/explain_cost.py --run runs/<id>-digits --repeats 9 --n 300
    python benchmarks/explain_cost.py --out /tmp/explain_cost.json

Writes --out (default benchmarks/out/explain_cost.json) and prints a summary. Exits 1 when the whole-call
ratio misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model  # benchmarks/ is on sys.path when a benchmark runs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "explain_cost.json"
TARGET_RATIO = 5.0

CONFIG = {
    "name": "bench-explain",
    "seed": 0,
    "data": {"source": "digits"},
    "model": {
        "layers": [
            {"Conv2D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"MaxPooling2D": {"pool_size": 2}},
            {"Conv2D": {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 2, "early_stopping": False},
}


def machine() -> dict:
    import keras
    import tensorflow as tf

    import cnnctl

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "cnnctl": cnnctl.__version__,
    }


def examples(n: int):
    """The first n scikit-learn digits, (n, 8, 8, 1), in the data's units (0..16): what the run trained on."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    if n > len(images):
        raise SystemExit(f"--n {n}: scikit-learn's digits hold {len(images)} images")
    return images[:n, :, :, None]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def interleaved(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Each call once per repeat, the order reversed every other repeat; seconds per call."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for repeat in range(repeats):
        order = list(calls) if repeat % 2 == 0 else list(reversed(calls))
        for name in order:
            samples[name].append(timed(calls[name]))
    return samples


def summary(samples: dict[str, list[float]], n: int) -> dict:
    predict, gradcam = statistics.median(samples["predict"]), statistics.median(samples["gradcam"])
    return {
        "predict_s": predict,
        "gradcam_s": gradcam,
        "ratio": gradcam / predict,
        "predict_images_per_s": n / predict,
        "gradcam_images_per_s": n / gradcam,
        "raw_s": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run folder of a digits-shaped model (default: train one)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved (predict, gradcam) pairs (default 5)")
    parser.add_argument("--n", type=int, default=100, help="digits to predict and explain (default 100)")
    parser.add_argument(
        "--gradcam-batch-size", type=int, default=32, help="gradcam's batch_size (default 32, gradcam's own default)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON written (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    if args.repeats < 1 or args.n < 1:
        parser.error("--repeats and --n must be at least 1")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import cnnctl
    from cnnctl import runtime

    # TensorFlow first and quietly, oneDNN on x86 as the command line has it: gradcam.py imports Keras at its top,
    # which would otherwise import TensorFlow with its C++ start-up logs.
    runtime.quiet_backend_import()
    from cnnctl.evaluation.gradcam import gradcam
    from cnnctl.evaluation.predict import Preprocessing, predict_run
    from cnnctl.runs.model_file import load_model

    x = examples(args.n)
    x32 = x.astype("float32")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cnnctl-explain-") as temp:
        if args.run:
            run = cnnctl.find_run(args.run)
            trained = None
        else:
            started = time.perf_counter()
            result = cnnctl.train(CONFIG, runs_dir=temp)
            run = result.run
            trained = {"seconds": time.perf_counter() - started, "test_accuracy": result.metrics["accuracy"]}
            print(
                f"trained {CONFIG['name']} in {trained['seconds']:.1f} s "
                f"(test accuracy {trained['test_accuracy']:.3f})",
                flush=True,
            )

        # Whole calls, as a user makes them: each loads model.keras itself.
        whole_calls = {
            "predict": lambda: predict_run(run, [], arrays=x),
            "gradcam": lambda: gradcam(load_model(run), x32, batch_size=args.gradcam_batch_size),
        }
        first_call = {name: timed(call) for name, call in whole_calls.items()}
        print(
            f"first calls (untimed warm-up): predict {first_call['predict']:.3f} s, "
            f"gradcam {first_call['gradcam']:.3f} s",
            flush=True,
        )
        whole = summary(interleaved(whole_calls, args.repeats), args.n)
        print(
            f"whole call:   predict {whole['predict_s']:.3f} s, gradcam {whole['gradcam_s']:.3f} s, "
            f"ratio {whole['ratio']:.2f}",
            flush=True,
        )

        # Steady state: one loaded model, each call already made once.
        model = load_model(run)
        batch_size = Preprocessing.of_run(run).batch_size  # what predict_run hands model.predict
        steady_calls = {
            "predict": lambda: model.predict(x32, batch_size=batch_size, verbose=0),
            "gradcam": lambda: gradcam(model, x32, batch_size=args.gradcam_batch_size),
        }
        for call in steady_calls.values():
            call()
        steady = summary(interleaved(steady_calls, args.repeats), args.n)
        print(
            f"steady state: predict {steady['predict_s']:.3f} s, gradcam {steady['gradcam_s']:.3f} s, "
            f"ratio {steady['ratio']:.2f}",
            flush=True,
        )
        run_folder = str(run.path) if args.run else None

    results = {
        "machine": machine(),
        "load_average_before_after": [round(value, 2) for value in (*load_before, *os.getloadavg())],
        "n": args.n,
        "inputs": f"sklearn load_digits().images[:{args.n}, :, :, None], units 0..16",
        "repeats": args.repeats,
        "run": run_folder or "trained in a temporary folder",
        "trained": trained,
        "predict_batch_size": batch_size,
        "gradcam_batch_size": args.gradcam_batch_size,
        "target_ratio": TARGET_RATIO,
        "first_call_s": first_call,
        "whole_call": whole,
        "steady_state": steady,
        "meets_target": whole["ratio"] <= TARGET_RATIO,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"CPU: {results['machine']['cpu']}, {results['machine']['cores']} cores; {args.n} digits, "
        f"{args.repeats} interleaved repeats, medians"
    )
    print(
        f"Grad-CAM / predict, whole call: {whole['ratio']:.2f} (target ≤ {TARGET_RATIO:g} "
        f"{'✓' if results['meets_target'] else '✗'}); steady state: {steady['ratio']:.2f}"
    )
    print(f"wrote {args.out}")
    if not results["meets_target"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
