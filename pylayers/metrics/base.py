"""Metric base class, Mean and MeanMetricWrapper (keras/src/metrics/metric.py and
reduction_metrics.py). State is kept in float64 numpy arrays listed in `variables`."""
import numpy as np

from pylayers.losses.reduction import squeeze_or_expand_to_same_rank
from pylayers.backend import auto_name


class Metric:
    """Stateful metric: update_state(y_true, y_pred, sample_weight=None), result(),
    reset_state(). Subclasses register their state with `_add_state(name, shape)`."""

    def __init__(self, name=None, dtype=None):
        self.name = name or auto_name(type(self).__name__)
        self._state_names = []

    def _add_state(self, name, shape=()):
        self._state_names.append(name)
        setattr(self, name, np.zeros(shape, dtype=np.float64))

    @property
    def variables(self):
        return [getattr(self, name) for name in self._state_names]

    def reset_state(self):
        for variable in self.variables:
            variable[...] = 0.0

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def _title(self):
        return f"{type(self).__name__} '{self.name}'"

    def get_config(self):
        return {"name": self.name, "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def sample_weight_for(owner, sample_weight, shape):
    """sample_weight (a scalar, or an array whose shape leads `shape`, allowing Keras'
    trailing axis of 1) broadcast to `shape`, as float64."""
    weight = np.asarray(sample_weight, dtype=np.float64)
    target = np.empty(shape, dtype=bool)
    target, weight = squeeze_or_expand_to_same_rank(target, weight)
    if weight.ndim > target.ndim or weight.shape != target.shape[:weight.ndim]:
        raise ValueError(f"{owner}: sample_weight of shape {np.shape(sample_weight)} does not "
                         f"match values of shape {shape}")
    weight = weight.reshape(weight.shape + (1,) * (target.ndim - weight.ndim))
    return np.broadcast_to(weight, target.shape).reshape(shape)


class Mean(Metric):
    """Weighted running mean of per-sample values (values of rank > 1 are first
    averaged over their trailing axes, as Keras does)."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._add_state("total")
        self._add_state("count")

    def update_state(self, values, sample_weight=None):
        if np.ndim(values) == 0 and np.ndim(sample_weight) == 0:
            weight = 1.0 if sample_weight is None else float(sample_weight)
            self.total += float(values) * weight
            self.count += weight
            return
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            count = values.shape[0] if values.ndim else 1
        else:
            weight = sample_weight_for(self._title(), sample_weight, values.shape)
            values = values * weight
            count = np.sum(weight.reshape(values.shape[:1] + (-1,)).mean(axis=1)) \
                if values.ndim else float(weight)
        if values.ndim > 1:
            values = values.reshape(values.shape[0], -1).mean(axis=1)
        self.total += np.sum(values)
        self.count += count

    def result(self):
        return float(self.total / self.count) if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The weighted mean of fn(y_true, y_pred, **kwargs) over all samples seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric_wrapper"),
                         dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(np.asarray(y_true), np.asarray(y_pred), **self._fn_kwargs)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}
