"""The `Callback` base class: the hooks `fit`, `evaluate` and `predict` call."""


class Callback:
    """Base class of callbacks: hooks into `fit`, `evaluate` and `predict`.

    Subclass it and override the `on_*` methods of interest. `self.model` is the
    model being run and `self.params` the run's parameters (`verbose`, `epochs`,
    `steps`). Every hook takes a `logs` dict; at the end of an epoch it holds the
    epoch's loss and metrics, with validation results prefixed `val_`.
    """

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch, logs=None):
        """Alias of `on_train_batch_begin`, kept for older callbacks."""

    def on_batch_end(self, batch, logs=None):
        """Alias of `on_train_batch_end`, kept for older callbacks."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of an epoch of `fit`."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of an epoch of `fit`, with the epoch's metrics."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before a training batch; by default calls `on_batch_begin`."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after a training batch; by default calls `on_batch_end`."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before a batch of `evaluate` or of validation in `fit`."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after a batch of `evaluate` or of validation in `fit`."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before a batch of `predict`."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after a batch of `predict`."""

    def on_train_begin(self, logs=None):
        """Called when `fit` starts."""

    def on_train_end(self, logs=None):
        """Called when `fit` ends, with the last epoch's logs."""

    def on_test_begin(self, logs=None):
        """Called when `evaluate` or a validation pass starts."""

    def on_test_end(self, logs=None):
        """Called when `evaluate` or a validation pass ends."""

    def on_predict_begin(self, logs=None):
        """Called when `predict` starts."""

    def on_predict_end(self, logs=None):
        """Called when `predict` ends."""
