"""`History`: records each epoch's logs; `fit` returns it."""
from pylayers.callbacks.callback import Callback


class History(Callback):
    """Records the logs of every epoch.

    Attributes:
        history: dict from each log name ("loss", "accuracy", "val_loss", ...) to
            the list of its per-epoch values.
        epoch: the list of epoch indices recorded.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)
        if self.model is not None:
            self.model.history = self
