"""Initializers whose values do not depend on a random draw."""
import numpy as np

from pylayers.initializers._registry import validate_number
from pylayers.initializers.initializer import (Initializer, standardize_dtype,
                                               standardize_shape)


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return np.zeros(standardize_shape(shape), dtype=standardize_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return np.ones(standardize_shape(shape), dtype=standardize_dtype(dtype))


class Constant(Initializer):
    """`value` (a number, or an array broadcast to the shape) everywhere."""

    def __init__(self, value=0.0):
        if not _is_numeric_array(value):
            raise ValueError("Constant expects a number or an array of numbers. "
                             f"Received: value={value!r}")
        self.value = value

    def __call__(self, shape, dtype=None):
        shape = standardize_shape(shape)
        dtype = standardize_dtype(dtype)
        return np.broadcast_to(np.asarray(self.value, dtype=dtype), shape).copy()

    def get_config(self):
        if isinstance(self.value, np.ndarray):
            return {"value": {"class_name": "__numpy__",
                              "config": {"value": self.value.tolist(),
                                         "dtype": str(self.value.dtype)}}}
        if isinstance(self.value, np.generic):
            return {"value": self.value.item()}
        return {"value": self.value}

    @classmethod
    def from_config(cls, config):
        value = config.get("value", 0.0)
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":
            value = np.asarray(value["config"]["value"], dtype=value["config"]["dtype"])
        return cls(value)


class Identity(Initializer):
    """`gain` times the identity matrix (rectangular shapes get ones on the diagonal)."""

    def __init__(self, gain=1.0):
        self.gain = validate_number(gain, "gain")

    def __call__(self, shape, dtype=None):
        shape = standardize_shape(shape)
        if len(shape) != 2:
            raise ValueError("Identity matrix initializer can only be used for 2D "
                             f"matrices. Received: shape={shape} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(standardize_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


def _is_numeric_array(value):
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return (array.dtype.kind in "iuf" and array.dtype != np.bool_
            and bool(np.all(np.isfinite(array))))
