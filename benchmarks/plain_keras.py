"""The baseline: the article's CNN on Fashion-MNIST as a user would write it by hand in plain Keras.

numpy arrays straight into model.fit, batch 64, one-hot labels with categorical_crossentropy, 10% of the
training set held out for validation (as cnnctl's configs/fashion_mnist.yaml does), Keras defaults for the rest.
Prints one JSON line with per-epoch times, so benchmarks/speed.py can compare it with `cnnctl train`.

    python benchmarks/plain_keras.py --epochs 3
"""

import argparse
import gzip
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

IDX = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


class EpochTimer:
    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        self.callback = Timer()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    started = time.perf_counter()

    import keras
    from keras import layers

    keras.utils.set_random_seed(42)
    train_images = read_idx(IDX / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(IDX / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(IDX / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(IDX / "t10k-labels-idx1-ubyte.gz")
    train_images = train_images.reshape((60000, 28, 28, 1)).astype("float32") / 255
    test_images = test_images.reshape((10000, 28, 28, 1)).astype("float32") / 255
    train_labels = keras.utils.to_categorical(train_labels)
    test_labels = keras.utils.to_categorical(test_labels)

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer().callback
    model.fit(
        train_images,
        train_labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        callbacks=[timer],
        verbose=2,
    )
    evaluate_start = time.perf_counter()
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    predict_start = time.perf_counter()
    model.predict(test_images, batch_size=args.batch_size, verbose=0)
    predict_s = time.perf_counter() - predict_start
    print(
        json.dumps(
            {
                "epoch_s": timer.times,
                "test_accuracy": test_acc,
                "wall_s": time.perf_counter() - started,
                "evaluate_s": predict_start - evaluate_start,
                "predict_images_per_s": 10000 / predict_s,
            }
        )
    )


if __name__ == "__main__":
    main()
