"""`EarlyStopping`: stops `fit` when a monitored metric stops improving."""
import numpy as np

from pylayers.callbacks import _monitor
from pylayers.callbacks.callback import Callback


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving.

    At the end of each epoch the monitored value counts as an improvement when it
    beats the best so far by more than `min_delta`. After `patience` epochs with
    no improvement, `model.stop_training` is set to True.

    Args:
        monitor: the log to watch, e.g. "val_loss" or "accuracy".
        min_delta: smallest change that counts as an improvement.
        patience: epochs without improvement after which training stops.
        verbose: 1 prints a message when it stops or restores weights.
        mode: "min", "max", or "auto" (inferred from the name of `monitor`).
        baseline: the patience counter only restarts once the value also beats
            `baseline`.
        restore_best_weights: at the end of training, set the weights of the
            best epoch back on the model.
        start_from_epoch: epochs to wait before monitoring starts (warm-up).
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        _monitor.check_non_negative("patience", patience, "EarlyStopping")
        _monitor.check_non_negative("start_from_epoch", start_from_epoch, "EarlyStopping")
        if not isinstance(min_delta, (int, float, np.integer, np.floating)):
            raise ValueError(f"EarlyStopping expects `min_delta` to be a number. "
                             f"Received: min_delta={min_delta!r}")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = _monitor.check_mode(mode, "EarlyStopping")
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._direction = None
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0
        self.best = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self._direction is None:
            self._direction = _monitor.resolve_mode(self.monitor, self.mode, self.model)
        if self.best is None:
            self.best = _monitor.worst_value(self._direction)
        current = _monitor.monitored_value(logs, self.monitor, "Early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self._record_best(current, epoch)
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _record_best(self, current, epoch):
        self.best = current
        self.best_epoch = epoch
        if self.restore_best_weights:
            self.best_weights = self.model.get_weights()
        if self.baseline is None or self._is_improvement(current, self.baseline):
            self.wait = 0

    def _is_improvement(self, value, reference):
        if self._direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)
