"""GPU probe for issue 6 item 4, in plain Keras 3 on the JAX backend (not cnnctl).

The lent GPU machine has JAX but no TensorFlow, cannot download, and takes at most 64 MiB of carried files, so
cnnctl (TensorFlow, 1.9 GB) cannot run there. This times the article CNN (float32, mixed_float16,
mixed_bfloat16, batch 64) and the fashion_mnist_best network and recipe (batch 128, 4 and 30 epochs) on the
54,000 training images, validating on the other 6,000, and prints one JSON line per run (also $OUT/gpu_probe.json).

How it ran on the device machine (Python 3.12 there): put keras, namex and optree wheels for cp312 and the two
Fashion-MNIST train-*.gz files in an ignored folder, e.g. .gpu/, carry it, and run
    pip install --no-index --no-deps --target /tmp/site .gpu/*.whl; PYTHONPATH=/tmp/site \
        python3 benchmarks/gpu_probe.py --idx-dir .gpu
Numbers: benchmarks/RESULTS.md, "GPU".
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers as L  # noqa: E402
from plain_keras import read_idx  # noqa: E402  (benchmarks/ is on sys.path when this script runs)

IDX = Path(
    sys.argv[sys.argv.index("--idx-dir") + 1] if "--idx-dir" in sys.argv else "/usr/share/datasets/fashion-mnist"
)
VALIDATION = 6000


def load():
    """(train x, train y, val x, val y): Fashion-MNIST's training images, shuffled once, 6,000 held out."""
    x = read_idx(IDX / "train-images-idx3-ubyte.gz").astype("float32")[..., None] / 255
    y = read_idx(IDX / "train-labels-idx1-ubyte.gz").astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    if os.environ.get("PROBE_SMALL"):  # a quick check of the script itself, on any machine
        x, y = x[:768], y[:768]
        return x[256:], y[256:], x[:256], y[:256]
    return x[VALIDATION:], y[VALIDATION:], x[:VALIDATION], y[:VALIDATION]


def article_cnn():
    """configs/fashion_mnist.yaml's layers."""
    return [
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(10, activation="softmax", dtype="float32"),
    ]


def best_network():
    """configs/fashion_mnist_best.yaml's layers, with its horizontal flips as the first (training-only) layer."""
    layers = [L.RandomFlip("horizontal")]
    for block in ((32, "same"), "pool", (64, "same"), (64, "same"), "pool", (128, "valid"), (128, "valid")):
        if block == "pool":
            layers.append(L.MaxPooling2D(2))
        else:
            layers += [L.Conv2D(block[0], 3, padding=block[1], activation="relu"), L.BatchNormalization()]
    return layers + [L.Flatten(), L.Dropout(0.3), L.Dense(10, activation="softmax", dtype="float32")]


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def run(data, name, layers, policy, batch, epochs, best_recipe=False):
    xt, yt, xv, yv = data
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(42)
    model = keras.Sequential([keras.Input((28, 28, 1))] + layers())
    if best_recipe:  # AdamW + cosine over the run, label smoothing 0.1 (one-hot targets)
        steps = int(np.ceil(len(xt) / batch)) * epochs
        optimizer = keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(0.002, steps), weight_decay=1e-4)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
        yt, yv = keras.utils.to_categorical(yt, 10), keras.utils.to_categorical(yv, 10)
    else:
        optimizer, loss = keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy"
    model.compile(optimizer, loss, metrics=["accuracy"])
    timer = EpochTimes()
    started = time.perf_counter()
    history = model.fit(
        xt, yt, batch_size=batch, epochs=epochs, validation_data=(xv, yv), verbose=0, callbacks=[timer]
    ).history
    result = dict(
        name=name,
        policy=policy,
        batch=batch,
        epochs=epochs,
        first_epoch_s=round(timer.times[0], 2),
        steady_epoch_s=round(float(np.median(timer.times[1:])), 2),
        fit_wall_s=round(time.perf_counter() - started, 1),
        val_accuracy_last=round(history["val_accuracy"][-1], 4),
        val_accuracy_best=round(max(history["val_accuracy"]), 4),
    )
    print(json.dumps(result), flush=True)
    return result


def main():
    if keras.backend.backend() == "jax":
        import jax

        print("devices", jax.devices(), flush=True)
    data = load()
    results = [
        run(data, "article CNN", article_cnn, policy, 64, 4)
        for policy in ("float32", "mixed_float16", "mixed_bfloat16")
    ]
    results += [
        run(data, "best network", best_network, policy, 128, 4, best_recipe=True)
        for policy in ("float32", "mixed_bfloat16")
    ]
    results.append(run(data, "best network", best_network, "float32", 128, 30, best_recipe=True))
    Path(os.environ.get("OUT", "."), "gpu_probe.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
