"""Training: the learning-rate range test (`cnnctl lr-find`) — the step before choosing a rate by hand.

The prepared model (a fresh copy of what `train` would fit) takes one batch after another while the learning rate
rises exponentially from `min_lr` to `max_lr`, over at most one epoch. Each batch's own loss is kept (the metrics
are reset before every batch, so it is not Keras' running mean). The ramp stops where the loss has diverged: the
smoothed loss climbs back above where it started (and half again above its lowest), or a loss is not finite.
The suggestion is a tenth of the rate at the lowest
smoothed loss: still on the descending slope, below where training becomes unstable (Smith, 2017; the fastai
convention). Nothing is written here; cnnctl/reporting/curves.py draws it and the api writes the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from cnnctl.errors import ConfigError
from cnnctl.model.compile import compile_model, one_hot_labels
from cnnctl.model.mixing import build_mixer
from cnnctl.training.prepare import Prepared

SMOOTHING = 0.9  # exponential moving average of the batch losses, bias-corrected: one noisy batch does not stop it
DIVERGED = 1.5  # diverged: above its start and this many times its lowest smoothed value


@dataclass
class LrFinding:
    """The range test's record: each batch's rate and loss, the smoothed loss, and what they suggest."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float  # a tenth of the rate at the lowest smoothed loss
    lowest_loss_at: float  # the rate at the lowest smoothed loss
    diverged_at: Optional[float]  # the rate where the loss diverged, None when it never did up to max_lr
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "suggested_learning_rate": self.suggestion,
            "lowest_loss_at": self.lowest_loss_at,
            "diverged_at": self.diverged_at,
            "rule": "a tenth of the learning rate at the lowest smoothed loss",
            "learning_rates": self.learning_rates,
            "losses": self.losses,
            "smoothed_losses": self.smoothed,
            "notes": self.notes,
        }


MIN_STEPS = 10  # fewer points cannot show where the loss falls fastest
MAX_DECADES_PER_STEP = 1.0  # the rate may grow at most 10× from one step to the next


def find_learning_rate(prepared: Prepared, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100) -> LrFinding:
    """Run the range test on `prepared`'s model and training split. Raises ConfigError for a range that is not
    one (min_lr ≥ max_lr, not positive) or a ramp too short to read."""
    for name, value in (("--min-lr", min_lr), ("--max-lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} {value!r}: give a number, e.g. --min-lr 1e-7 --max-lr 10")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ConfigError(f"--steps {steps!r}: give a whole number, e.g. --steps 100")
    if not 0 < min_lr < max_lr or not math.isfinite(max_lr):
        raise ConfigError(f"--min-lr {min_lr:g} --max-lr {max_lr:g}: need 0 < min-lr < max-lr, e.g. 1e-7 and 10")
    if steps < MIN_STEPS:
        raise ConfigError(f"--steps {steps}: the range test needs at least {MIN_STEPS} steps, e.g. --steps 100")
    config, dataset, model = prepared.config, prepared.dataset, prepared.model
    batch_size = config.train.batch_size
    steps = min(steps, math.ceil(len(dataset.splits["train"]) / batch_size))  # at most one epoch
    if steps < MIN_STEPS:
        raise ConfigError(
            f"--steps: one epoch of this data is {steps} batches of {batch_size}; the range test needs at least "
            f"{MIN_STEPS}: give a smaller batch, e.g. --set train.batch_size="
            f"{max(1, len(dataset.splits['train']) // 20)}"
        )
    decades = math.log10(max_lr / min_lr) / (steps - 1)
    if decades > MAX_DECADES_PER_STEP:  # a loss curve of a few points, each 10× the last rate, says nothing
        raise ConfigError(
            f"--min-lr {min_lr:g} --max-lr {max_lr:g}: {steps} steps multiply the rate by {10**decades:.3g} each, "
            f"too coarse to read a curve from; keep the range within {MAX_DECADES_PER_STEP * (steps - 1):.0f} "
            "decades, e.g. --min-lr 1e-7 --max-lr 10"
        )
    # One batch a call, at a rate set before each: a constant rate and no multi-step execution; the losses are
    # the trained weights' own (no moving average), on batches mixed as the fit mixes them.
    train_cfg = config.train.model_copy(update={"lr_schedule": "constant", "ema": None})
    mixer = build_mixer(config.data.mix, dataset.input_shape, config.seed)
    compile_model(model, train_cfg, jit_compile=False, steps_per_execution=1, soft_labels=mixer is not None)
    rates = np.geomspace(min_lr, max_lr, steps)
    batches = dataset.pipeline(
        "train", batch_size, one_hot=one_hot_labels(config), shuffle=True, seed=config.seed, mix=mixer
    )
    learning_rates, losses, smoothed = [], [], []
    average, lowest, diverged_at = 0.0, math.inf, None
    for step, (rate, (x, y)) in enumerate(zip(rates, batches), start=1):
        model.optimizer.learning_rate.assign(float(rate))
        model.reset_metrics()
        logs = model.train_on_batch(x, y, return_dict=True)
        loss = float(logs["loss"])
        learning_rates.append(float(rate))
        losses.append(loss)
        if not math.isfinite(loss):
            diverged_at = float(rate)
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        value = average / (1 - SMOOTHING**step)
        smoothed.append(value)
        lowest = min(lowest, value)
        if step > 5 and value > max(smoothed[0], DIVERGED * lowest):
            diverged_at = float(rate)
            break
    if not smoothed:
        raise ConfigError(
            f"--min-lr {min_lr:g}: the loss was not finite from the first batch; check the data (data.normalize) or "
            "start lower"
        )
    best = int(np.argmin(smoothed))
    notes = []
    if diverged_at is None:
        notes.append(f"the loss never diverged up to {max_lr:g}: try a larger --max-lr to see where it does")
    if best == len(smoothed) - 1 and diverged_at is None:
        notes.append("the loss was still falling at the end of the ramp: the suggestion may be low")
    return LrFinding(
        learning_rates,
        losses,
        smoothed,
        suggestion=learning_rates[best] / 10,
        lowest_loss_at=learning_rates[best],
        diverged_at=diverged_at,
        notes=notes,
    )
