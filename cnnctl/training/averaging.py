"""Training: `train.ema` — the exponential moving average of the weights as the run's weights.

The optimizer keeps the average (Keras' `use_ema=True`, set by cnnctl/model/compile.py); `AveragedWeights` puts it
in the model whenever the model is judged or saved: during validation, and from the end of each epoch to the
beginning of the next, so early stopping, the best-model checkpoint, the training state and the final model.keras
all hold the averaged weights, and the next epoch trains on from the unaveraged ones.
"""

from __future__ import annotations

from typing import Optional

import keras


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras' SwapEMAWeights with `swap_on_epoch=True`, made to work with a fit that stops early and with resume.

    Between epochs the model holds the average and the optimizer's average slots the trained weights, and the
    training state is saved so (TrainingBackup records `averaged_in_model`). Keras' own class assumes a fresh fit
    that runs to its last epoch: resumed from such a state it would train on from the average, and a fit stopped
    early would end with the trained weights, because fit's `finalize_variable_values` copies the slots into the
    model after the last epoch. Hence `resumed` and `settle`, which TrainingBackup calls. Put it first in the
    callbacks, so the others see the averaged weights at the end of an epoch.

    Uses SwapEMAWeights' swap methods and its `_ema_weights_in_model` flag: tests/test_ema.py fails if Keras
    renames them.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=True)

    def on_epoch_end(self, epoch, logs=None):
        # Swap only: Keras' class also copies the average over the trained weights after the last epoch, which
        # would lose them before the training state is saved; `settle` does that after the save.
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    @property
    def average_in_model(self) -> bool:
        return self._ema_weights_in_model

    def resumed(self, average_in_model: bool) -> None:
        """The weights just loaded from a training state: whether the model holds the average (saved between two
        epochs) or the trained weights (the state at the start of a fine-tuning phase)."""
        self._ema_weights_in_model = average_in_model

    def settle(self) -> None:
        """The fit ends after this epoch: both the model and the average slots hold the average, so fit's
        `finalize_variable_values` leaves the model with it."""
        if self._ema_weights_in_model:
            self._finalize_ema_values()


def averaged_weights(callbacks: list) -> Optional[AveragedWeights]:
    return next((callback for callback in callbacks if isinstance(callback, AveragedWeights)), None)
