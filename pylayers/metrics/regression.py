"""Regression metrics: running weighted means of Keras' per-sample losses."""
from pylayers import losses
from pylayers.metrics.base import MeanMetricWrapper


class MeanSquaredError(MeanMetricWrapper):
    """Mean of mean((y_true - y_pred)^2, axis=-1) over all samples seen."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(losses.mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean of mean(|y_true - y_pred|, axis=-1) over all samples seen."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(losses.mean_absolute_error, name=name, dtype=dtype)
