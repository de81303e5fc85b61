"""Callbacks: objects whose hooks `fit`, `evaluate` and `predict` call (Keras 3 API)."""
from pylayers.callbacks.callback import Callback
from pylayers.callbacks.callback_list import CallbackList
from pylayers.callbacks.csv_logger import CSVLogger
from pylayers.callbacks.early_stopping import EarlyStopping
from pylayers.callbacks.history import History
from pylayers.callbacks.lambda_callback import LambdaCallback
from pylayers.callbacks.learning_rate_scheduler import LearningRateScheduler
from pylayers.callbacks.model_checkpoint import ModelCheckpoint
from pylayers.callbacks.progbar_logger import ProgbarLogger
from pylayers.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from pylayers.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History",
           "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger",
           "ReduceLROnPlateau", "TerminateOnNaN"]
