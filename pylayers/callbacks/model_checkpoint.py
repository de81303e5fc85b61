"""`ModelCheckpoint`: saves the model or its weights during training."""
import os
import warnings

import numpy as np

from pylayers.callbacks import _monitor
from pylayers.callbacks.callback import Callback


class ModelCheckpoint(Callback):
    """Save the model (`model.save`) or its weights (`model.save_weights`) as it trains.

    Args:
        filepath: where to save; may hold `{epoch:02d}`, `{batch}` and any log
            name (`{val_loss:.2f}`), filled in at each save. It must end in
            ".weights.h5" with `save_weights_only=True`, else in ".keras" (or
            the legacy ".h5").
        monitor: the log that decides what is best when `save_best_only`.
        verbose: 1 prints a message at each save.
        save_best_only: save only when `monitor` improves on the best so far.
        save_weights_only: save the weights only.
        mode: "min", "max", or "auto" (inferred from the name of `monitor`).
        save_freq: "epoch", or an integer: save every that many batches.
        initial_value_threshold: the best value to beat before the first save
            when `save_best_only`.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        _check_save_freq(save_freq)
        _check_suffix(self.filepath, save_weights_only)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _monitor.check_mode(mode, "ModelCheckpoint")
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self._direction = None
        self._current_epoch = 0
        self._batches_since_save = 0
        self._last_batch_seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_save_due(batch):
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _batch_save_due(self, batch):
        if self.save_freq == "epoch":
            return False
        new_batches = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._last_batch_seen = batch
        self._batches_since_save += new_batches
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            return True
        return False

    def _save(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._format_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IsADirectoryError("Please specify a non-directory filepath for "
                                    f"ModelCheckpoint. Filepath used is an existing "
                                    f"directory: {filepath}")
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}", flush=True)

    def _should_save(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}", flush=True)
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        if np.ndim(current) > 0:
            warnings.warn("Can save best model only when `monitor` is a scalar value. "
                          f"Received: {current}. Falling back to `save_best_only=False`.",
                          stacklevel=3)
            return True
        return self._is_new_best(epoch, current, filepath)

    def _is_new_best(self, epoch, current, filepath):
        if self._direction is None:
            self._direction = _monitor.resolve_mode(self.monitor, self.mode, self.model)
            if self.best is None:
                self.best = _monitor.worst_value(self._direction)
        improved = current < self.best if self._direction == "min" else current > self.best
        if self.verbose > 0:
            if improved:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {filepath}", flush=True)
            else:
                print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                      f"{self.best:.5f}", flush=True)
        if improved:
            self.best = current
        return improved

    def _format_path(self, epoch, batch, logs):
        fields = dict(logs, epoch=epoch + 1)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as error:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {error}") from None


def _check_save_freq(save_freq):
    if save_freq == "epoch":
        return
    if isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer)) \
            or save_freq < 1:
        raise ValueError(f"Unrecognized save_freq: {save_freq!r}. "
                         "Expected save_freq are 'epoch' or integer values >= 1")


def _check_suffix(filepath, save_weights_only):
    if save_weights_only and not filepath.endswith(".weights.h5"):
        raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the "
                         "filepath provided must end in `.weights.h5` (Keras weights "
                         f"format). Received: filepath={filepath}")
    if not save_weights_only and not filepath.endswith((".keras", ".h5")):
        raise ValueError("The filepath provided must end in `.keras` (Keras model format). "
                         f"Received: filepath={filepath}")
