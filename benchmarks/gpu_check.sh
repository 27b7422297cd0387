#!/usr/bin/env bash
# cnnctl end to end on a GPU with Keras on JAX (issue 15 part 4), for the lent device machine: one call, < 10 min.
#
# That machine has Python 3.12 with JAX (CUDA), numpy, scikit-learn, matplotlib, PyYAML, typer, rich and Pillow,
# no TensorFlow and no network. cnnctl runs there without TensorFlow on in-memory data (data/batches.py). Bring,
# in an ignored folder (e.g. .gpu/, listed in .git/info/exclude) carried with the call (64 MiB at most):
#   .gpu/wheels/   cp312 wheels of what cnnctl needs beyond that machine's packages, at the versions tested here
#                  (pydantic-core must be the one pydantic pins):
#                  pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#                      --no-deps -d .gpu/wheels $(python -c 'import importlib.metadata as m; print(*(f"{p}=={m.version(p)}"
#                      for p in ("keras", "namex", "optree", "h5py", "pydantic", "pydantic-core", "annotated-types",
#                      "typing-inspection", "absl-py")))')
#   .gpu/fashion/  the four Fashion-MNIST *-ubyte.gz files (cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion/)
# then, from the repository root:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# It trains configs/fashion_mnist.yaml (the article's CNN) in float32 and in mixed_float16 (what
# `mixed_precision: auto` picks on a GPU), 3 epochs each, and writes $OUT/gpu_check.md (a table for
# benchmarks/RESULTS.md), $OUT/gpu_check.json and each run's console log. Locally (CPU, any backend):
#   GPU_CHECK_EPOCHS=1 OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
EPOCHS=${GPU_CHECK_EPOCHS:-3}
DATA=${GPU_CHECK_DATA:-.gpu/fashion}
[ -d "$DATA" ] || DATA=/usr/share/datasets/fashion-mnist
DATA=$(realpath "$DATA")
mkdir -p "$OUT"
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ]; then  # only what is missing there; nothing from the network
  python3 -m pip install -q --no-index --no-deps --target /tmp/cnnctl-site .gpu/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/cnnctl-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpus.txt" 2>/dev/null || true
for precision in off mixed_float16; do
  timeout 240 python3 -m cnnctl train configs/fashion_mnist.yaml --runs-dir "/tmp/gpu_runs_$precision" \
      --set data.source=idx --set "data.path=$DATA" --set "train.epochs=$EPOCHS" \
      --set train.early_stopping=false --set "train.mixed_precision=$precision" > "$OUT/train_$precision.log" 2>&1
  echo "train ($precision): exit $?" >> "$OUT/exits.txt"
done
python3 - "$OUT" <<'PY'
import csv, glob, json, statistics, sys
out = sys.argv[1]
rows = []
for precision in ("off", "mixed_float16"):
    runs = sorted(glob.glob(f"/tmp/gpu_runs_{precision}/*/"))
    if not runs:
        rows.append({"precision": precision, "error": "no run folder (see the log)"}); continue
    run = runs[-1]
    env = json.load(open(run + "environment.json"))
    with open(run + "history.csv", newline="") as handle:
        times = [float(row["epoch_time_s"]) for row in csv.DictReader(handle)]
    metrics = json.load(open(run + "metrics.json")) if glob.glob(run + "metrics.json") else {}
    rows.append({"precision": env.get("precision"), "devices": env.get("devices"), "backend": env.get("backend"),
                 "versions": env.get("versions"), "status": env.get("status"), "epoch_times_s": times,
                 "steady_epoch_s": round(statistics.median(times[1:]), 3) if len(times) > 1 else None,
                 "first_epoch_s": times[0] if times else None, "test_accuracy": metrics.get("accuracy"),
                 "phase_seconds": env.get("phase_seconds")})
json.dump(rows, open(f"{out}/gpu_check.json", "w"), indent=2)
with open(f"{out}/gpu_check.md", "w") as md:
    md.write("| precision | backend | device | first epoch s | steady epoch s | test accuracy | status |\n"
             "|---|---|---|---|---|---|---|\n")
    for r in rows:
        md.write(f"| {r.get('precision')} | {r.get('backend')} | {', '.join(r.get('devices') or [])} | "
                 f"{r.get('first_epoch_s')} | "
                 f"{r.get('steady_epoch_s')} | {r.get('test_accuracy')} | {r.get('status', r.get('error'))} |\n")
print(open(f"{out}/gpu_check.md").read())
PY
