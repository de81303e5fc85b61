"""`CallbackList`: one object that forwards every hook to a list of callbacks."""
from pylayers.callbacks.callback import Callback
from pylayers.callbacks.history import History
from pylayers.callbacks.progbar_logger import ProgbarLogger


def _plain_logs(logs):
    """Batch logs with nested dicts flattened, numbers as Python floats, keys sorted."""
    plain = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, dict):
            plain.update(_plain_logs(value))
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            pass
        plain[key] = value
    return plain


class CallbackList(Callback):
    """Calls every hook on each of a list of callbacks, in order.

    Args:
        callbacks: a list of `Callback`s (nested lists are flattened), or None.
        add_history: add a `History` callback unless one is in the list.
        add_progbar: add a `ProgbarLogger` callback unless one is in the list.
        model: the model the callbacks act on; `model.history` is set to the
            `History` callback.
        **params: passed to every callback's `set_params` (`verbose`, `epochs`,
            `steps`).
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        self.callbacks = _flatten_callbacks(callbacks)
        self._history = self._find_or_add(History, add_history)
        self._progbar = self._find_or_add(ProgbarLogger, add_progbar)
        self.set_model(model)
        self.set_params(params)

    def _find_or_add(self, cls, add):
        """The list's callback of class `cls`; a new one appended if `add` and none."""
        for callback in self.callbacks:
            if isinstance(callback, cls):
                return callback
        if not add:
            return None
        callback = cls()
        self.callbacks.append(callback)
        return callback

    def set_params(self, params):
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model):
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def _dispatch(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_batch_begin(self, batch, logs=None):
        self._dispatch("on_batch_begin", batch, logs or {})

    def on_batch_end(self, batch, logs=None):
        self._dispatch("on_batch_end", batch, _plain_logs(logs))

    def on_epoch_begin(self, epoch, logs=None):
        self._dispatch("on_epoch_begin", epoch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self._dispatch("on_epoch_end", epoch, {} if logs is None else logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._dispatch("on_train_batch_begin", batch, logs or {})

    def on_train_batch_end(self, batch, logs=None):
        self._dispatch("on_train_batch_end", batch, _plain_logs(logs))

    def on_test_batch_begin(self, batch, logs=None):
        self._dispatch("on_test_batch_begin", batch, logs or {})

    def on_test_batch_end(self, batch, logs=None):
        self._dispatch("on_test_batch_end", batch, _plain_logs(logs))

    def on_predict_batch_begin(self, batch, logs=None):
        self._dispatch("on_predict_batch_begin", batch, logs or {})

    def on_predict_batch_end(self, batch, logs=None):
        self._dispatch("on_predict_batch_end", batch, logs or {})

    def on_train_begin(self, logs=None):
        self._dispatch("on_train_begin", logs or {})

    def on_train_end(self, logs=None):
        self._dispatch("on_train_end", logs or {})

    def on_test_begin(self, logs=None):
        self._dispatch("on_test_begin", logs or {})

    def on_test_end(self, logs=None):
        self._dispatch("on_test_end", logs or {})

    def on_predict_begin(self, logs=None):
        self._dispatch("on_predict_begin", logs or {})

    def on_predict_end(self, logs=None):
        self._dispatch("on_predict_end", logs or {})


def _checked_callback(callback):
    if not isinstance(callback, Callback):
        raise TypeError("Callbacks must be instances of `pylayers.callbacks.Callback`. "
                        f"Received: {callback!r} of type {type(callback).__name__}")
    return callback


def _flatten_callbacks(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError("`callbacks` must be a list of Callback instances. "
                        f"Received: callbacks={callbacks!r}")
    flat = []
    for item in callbacks:
        flat.extend(_flatten_callbacks(item) if isinstance(item, (list, tuple))
                    else [_checked_callback(item)])
    return flat
