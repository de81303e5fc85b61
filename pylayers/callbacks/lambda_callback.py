"""`LambdaCallback`: a callback made of plain functions."""
from pylayers.callbacks.callback import Callback

_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
          "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
          "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
          "on_predict_batch_end")


class LambdaCallback(Callback):
    """Build a callback from functions, one per hook.

    `on_epoch_begin`/`on_epoch_end` take `(epoch, logs)`, `on_train_begin`/
    `on_train_end` take `(logs)`, the batch hooks take `(batch, logs)`. Any
    other hook of `Callback` may be given by its name as a keyword.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        hooks = dict(kwargs, on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name, function in hooks.items():
            if name not in _HOOKS:
                raise TypeError(f"LambdaCallback got an unknown hook `{name}`. "
                                f"Known hooks: {', '.join(_HOOKS)}")
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"LambdaCallback expects `{name}` to be callable. "
                                f"Received: {name}={function!r}")
            setattr(self, name, function)
