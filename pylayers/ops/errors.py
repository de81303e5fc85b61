"""Errors raised by ops and layers name where they happened and what was received."""
import functools

import numpy as np

from pylayers.ops.tape import Tensor
from pylayers.ops.variable import Variable


class IndexValueError(IndexError, ValueError):
    """An out-of-range index: a ValueError that is still an IndexError for Python's
    sequence protocols (iteration stops on IndexError)."""


def describe(values):
    """'shapes [(2, 3), ()] and dtypes [float32, float]' of the arrays and scalars given."""
    values = [_unwrapped(v) for v in values]
    shapes = [_shape(v) for v in values]
    dtypes = [str(getattr(v, "dtype", type(v).__name__)) for v in values]
    return f"shapes {shapes} and dtypes {dtypes}"


def _unwrapped(value):
    if isinstance(value, Tensor):
        return value.data
    return value.value if isinstance(value, Variable) else value


def _shape(value):
    try:
        return tuple(np.shape(value))
    except Exception:  # noqa: BLE001 (ragged or exotic input: no shape to show)
        return "?"


def named(error, where, values):
    """A ValueError, TypeError or IndexValueError saying `where` failed, with the
    received shapes and dtypes, chained to `error`."""
    kind = (IndexValueError if isinstance(error, IndexError)
            else TypeError if isinstance(error, TypeError) else ValueError)
    return kind(f"{where}: {error}. Received {describe(values)}")


def named_op(function):
    """Decorate a public op: its errors start with 'ops.<name>:' and list the inputs."""
    where = f"ops.{function.__name__}"

    @functools.wraps(function)
    def op(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError, IndexError) as error:
            if str(error).startswith("ops."):
                raise
            raise named(error, where, _flat(args)) from error
    return op


def _flat(args):
    """The operands: a list of arrays (concatenate, stack) counts as its items; index
    tuples and axes are not operands."""
    operands = []
    for arg in args:
        if isinstance(arg, list) and all(isinstance(a, (np.ndarray, Tensor, Variable)) for a in arg):
            operands.extend(arg)
        elif isinstance(arg, (np.ndarray, Tensor, Variable, int, float, np.generic)):
            operands.append(arg)
    return operands
