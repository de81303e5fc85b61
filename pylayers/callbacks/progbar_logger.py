"""`ProgbarLogger`: prints `Epoch i/n` and a progress bar for each epoch."""
from pylayers.callbacks.callback import Callback
from pylayers.utils.progbar import Progbar


class ProgbarLogger(Callback):
    """Prints training progress: a header per epoch and a `Progbar` of its steps.

    It reads `verbose`, `epochs` and `steps` from the run's params. Inside `fit`,
    validation batches draw nothing; the epoch's final line shows the loss, the
    metrics and their `val_` counterparts.
    """

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        self._new_progbar()
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self._advance(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._new_progbar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._advance(batch, logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._new_progbar()

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(batch, None)  # predictions are not metrics

    def on_predict_end(self, logs=None):
        self._finish(logs)

    def _new_progbar(self):
        self.seen = 0
        self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step")

    def _advance(self, batch, logs):
        if self.progbar is None:
            self._new_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finish(self, logs):
        if self.progbar is None:
            self._new_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)
