"""The Initializer base class and the shape/dtype checks every initializer shares."""
import numbers

import numpy as np


class Initializer:
    """Base class: `initializer(shape, dtype=None)` returns a new numpy array (float32
    unless `dtype` says otherwise)."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError("Initializer subclasses must implement the `__call__()` method.")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return self.__class__.from_config(self.get_config())


def standardize_shape(shape):
    """`shape` as a tuple of non-negative ints, or a ValueError naming it."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                               and d >= 0 for d in dims):
        raise ValueError("An initializer needs a fully defined shape of non-negative "
                         f"integers. Received: shape={shape}")
    return tuple(int(d) for d in dims)


def standardize_dtype(dtype):
    """The numpy dtype to return: float32 when `dtype` is None, as Keras' floatx."""
    return np.dtype("float32" if dtype is None else dtype)
