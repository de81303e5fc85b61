"""`LearningRateScheduler`: sets the learning rate from a function of the epoch."""
import numpy as np

from pylayers.callbacks.callback import Callback


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch.

    Args:
        schedule: `schedule(epoch, lr) -> new_lr` with the 0-based epoch index and
            the current learning rate (a one-argument `schedule(epoch)` is also
            accepted); it must return a float.
        verbose: 1 prints the new learning rate each epoch.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError("LearningRateScheduler expects a callable `schedule`. "
                            f"Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            learning_rate = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # a schedule of the epoch alone
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.floating)):
            raise ValueError("The output of the `schedule` function should be a float. "
                             f"Got: {learning_rate!r}")
        optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{learning_rate}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
