"""Write a small, reproducible 1-D signal data set for configs/signals_conv1d.yaml.

Four classes of waveform — sine, square, sawtooth, triangle — each with a random frequency (2–8 cycles per
window), phase, amplitude, offset and Gaussian noise, so the class is the *shape* of the wave, not its scale.
Saved as an npz in the Keras layout (x_train, y_train, x_test, y_test) with string labels; x is
(N, length, 1) float32, ready for Conv1D.

    python examples/make_signals.py                      # → examples/data/signals.npz (1200 + 400 signals)
    python examples/make_signals.py --train 200 --test 80 --out /tmp/signals.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CLASSES = ("sine", "square", "sawtooth", "triangle")
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "signals.npz"


def waveform(kind: str, phase: np.ndarray) -> np.ndarray:
    """One period-1 wave evaluated at `phase` (in cycles), values in [-1, 1]."""
    cycle = np.mod(phase, 1.0)
    if kind == "sine":
        return np.sin(2 * np.pi * phase)
    if kind == "square":
        return np.where(cycle < 0.5, 1.0, -1.0)
    if kind == "sawtooth":
        return 2 * cycle - 1
    if kind == "triangle":
        return 1 - 4 * np.abs(cycle - 0.5)
    raise ValueError(f"unknown waveform {kind!r}; choose from {CLASSES}")


def make_signals(count: int, length: int = 128, noise: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` signals (balanced over the classes, shuffled) → x (count, length, 1) float32, y (count,) str."""
    rng = np.random.default_rng(seed)
    labels = np.array(CLASSES)[np.arange(count) % len(CLASSES)]
    rng.shuffle(labels)
    t = np.linspace(0, 1, length, endpoint=False)
    x = np.empty((count, length, 1), np.float32)
    for i, kind in enumerate(labels):
        cycles = rng.uniform(2, 8)
        wave = waveform(kind, cycles * t + rng.uniform(0, 1))
        x[i, :, 0] = rng.uniform(0.5, 1.5) * wave + rng.uniform(-0.5, 0.5) + rng.normal(0, noise, length)
    return x, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1200, help="training signals (default 1200)")
    parser.add_argument("--test", type=int, default=400, help="test signals (default 400)")
    parser.add_argument("--length", type=int, default=128, help="samples per signal (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"npz file to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    write(args.out, args.train, args.test, args.length, args.seed)
    print(
        f"wrote {args.out}: {args.train} train + {args.test} test signals of length {args.length}, "
        f"classes {', '.join(CLASSES)}"
    )


def write(out: Path, train: int, test: int, length: int = 128, seed: int = 0) -> Path:
    x_train, y_train = make_signals(train, length, seed=seed)
    x_test, y_test = make_signals(test, length, seed=seed + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return out


if __name__ == "__main__":
    main()
