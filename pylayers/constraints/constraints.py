"""Projections applied to a weight after each optimizer step, Keras 3's formulas.

Computed in float32 as Keras does for float32 weights (so the epsilon added to a norm
acts exactly as in Keras); norms are taken over `axis`, kept for broadcasting.
"""
import numbers

import numpy as np

from pylayers.initializers._registry import validate_number

EPSILON = np.float32(1e-7)  # Keras' backend.epsilon(), added to a norm before dividing by it


class Constraint:
    """Base class: the identity projection."""

    def __call__(self, w):
        return np.asarray(w, dtype=np.float32)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class MaxNorm(Constraint):
    """Rescales each slice along `axis` whose L2 norm exceeds `max_value` to that norm:
    w * clip(n, 0, max_value) / (EPSILON + n)."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = validate_number(max_value, "max_value", minimum=0)
        self.axis = validate_axis(axis)

    def __call__(self, w):
        w, norms = _weight_and_norms(self, w)
        return _rescale(w, np.clip(norms, 0, np.float32(self.max_value)), norms)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class UnitNorm(Constraint):
    """Divides each slice along `axis` by its L2 norm: w / (EPSILON + n)."""

    def __init__(self, axis=0):
        self.axis = validate_axis(axis)

    def __call__(self, w):
        w, norms = _weight_and_norms(self, w)
        return w / (EPSILON + norms)

    def get_config(self):
        return {"axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero."""

    def __call__(self, w):
        return np.maximum(np.asarray(w, dtype=np.float32), np.float32(0))


class MinMaxNorm(Constraint):
    """Moves each slice's L2 norm n along `axis` towards [min_value, max_value]:
    desired = rate * clip(n, min_value, max_value) + (1 - rate) * n;
    w * desired / (EPSILON + n)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = validate_number(min_value, "min_value", minimum=0)
        self.max_value = validate_number(max_value, "max_value", minimum=0)
        if min_value > max_value:
            raise ValueError("MinMaxNorm expects min_value <= max_value. "
                             f"Received: min_value={min_value}, max_value={max_value}")
        self.rate = validate_number(rate, "rate", minimum=0)
        if rate > 1:
            raise ValueError(f"MinMaxNorm expects 0 <= rate <= 1. Received: rate={rate}")
        self.axis = validate_axis(axis)

    def __call__(self, w):
        w, norms = _weight_and_norms(self, w)
        clipped = np.clip(norms, np.float32(self.min_value), np.float32(self.max_value))
        rate = np.float32(self.rate)
        return _rescale(w, rate * clipped + (np.float32(1) - rate) * norms, norms)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value,
                "rate": self.rate, "axis": self.axis}


def validate_axis(axis):
    """`axis` as given (an int, or a list or tuple of ints, as Keras configs hold)."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not axes or not all(_is_int(a) for a in axes):
        raise ValueError("`axis` must be an integer or a list of integers. "
                         f"Received: axis={axis!r}")
    return axis


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _weight_and_norms(constraint, w):
    """w in float32 and its L2 norms over the constraint's axis, kept for broadcasting."""
    w = np.asarray(w, dtype=np.float32)
    axis = tuple(constraint.axis) if isinstance(constraint.axis, list) else constraint.axis
    axes = axis if isinstance(axis, tuple) else (axis,)
    if any(not -w.ndim <= a < w.ndim for a in axes):
        raise ValueError(f"{type(constraint).__name__}: axis={constraint.axis} is out of "
                         f"range for a weight of shape {w.shape}.")
    return w, np.sqrt(np.square(w).sum(axis=axis, keepdims=True))


def _rescale(w, desired, norms):
    return w * (desired / (EPSILON + norms))
