"""Numeric mode: float32 with compiled kernels (normal), or float64 numpy reference.

The reference mode is the test oracle: the same layer code computed in float64 with
plain numpy, so finite-difference gradient checks are precise."""
import contextlib
import threading

import numpy as np


class _Mode(threading.local):
    """Each thread's mode; a class default, so reading it in a new thread raises and
    catches no AttributeError (getattr with a default did, about 1 us per layer call)."""
    reference = False


_local = _Mode()


def reference_mode_on():
    return _local.reference


def floatx():
    return np.float64 if reference_mode_on() else np.float32


@contextlib.contextmanager
def reference_mode():
    """Compute every op and layer in float64 numpy (no compiled kernels) inside."""
    previous = reference_mode_on()
    _local.reference = True
    try:
        yield
    finally:
        _local.reference = previous


def as_float_array(x):
    """x as a C-contiguous array of the mode's float type (one copy at most)."""
    return np.require(x, floatx(), ["C", "A"])
