"""`ReduceLROnPlateau`: lowers the learning rate when a metric stops improving."""
import numpy as np

from pylayers.callbacks import _monitor
from pylayers.callbacks.callback import Callback


class ReduceLROnPlateau(Callback):
    """Reduce the learning rate when a metric has stopped improving.

    After `patience` epochs without an improvement larger than `min_delta`, the
    optimizer's learning rate becomes `max(lr * factor, min_lr)`; then no change
    is made for `cooldown` epochs. The epoch's logs gain "learning_rate".

    Args:
        monitor: the log to watch.
        factor: multiplier of the learning rate, < 1.
        patience: epochs without improvement before a reduction.
        verbose: 1 prints a message at each reduction.
        mode: "min", "max", or "auto" (inferred from the name of `monitor`).
        min_delta: threshold an improvement must exceed.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound of the learning rate.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not isinstance(factor, (int, float, np.integer, np.floating)) or factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor!r}")
        for name, value in [("patience", patience), ("min_delta", min_delta),
                            ("cooldown", cooldown), ("min_lr", min_lr)]:
            _monitor.check_non_negative(name, value, "ReduceLROnPlateau")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.mode = _monitor.check_mode(mode, "Learning rate reduction")
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr
        self._reset()

    def _reset(self):
        self.cooldown_counter = 0
        self.wait = 0
        self._direction = None
        self.best = None

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        if self._direction is None:
            self._direction = _monitor.resolve_mode(self.monitor, self.mode, self.model)
            self.best = _monitor.worst_value(self._direction)
        current = _monitor.monitored_value(logs, self.monitor, "Learning rate reduction is")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(optimizer, epoch)

    def _is_improvement(self, current):
        if self._direction == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def _reduce(self, optimizer, epoch):
        old_lr = float(optimizer.learning_rate)
        if old_lr <= np.float32(self.min_lr):
            return
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                  flush=True)
        self.cooldown_counter = self.cooldown
        self.wait = 0
