"""`TerminateOnNaN`: stops training at the first NaN or infinite loss."""
import numpy as np

from pylayers.callbacks.callback import Callback


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite.

    Args:
        raise_error: raise a RuntimeError at once instead of setting
            `model.stop_training` (which lets `on_train_end` run everywhere).
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. "
                               f"Loss value: {loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
        self.model.stop_training = True
