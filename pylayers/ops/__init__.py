"""Array ops with gradients, named as keras.ops: what custom layers call."""
import numpy as np

from pylayers.ops.core import (abs, add, clip, concatenate, divide, elu, exp, expand_dims,
                               gelu, hard_sigmoid, leaky_relu, log, log_softmax, matmul, max,
                               maximum, mean, min, minimum, multiply, negative, power, relu,
                               relu6, reshape, selu, sigmoid, silu, softmax, softplus, softsign,
                               sqrt, square, squeeze, stack, subtract, sum, take_slice, tanh,
                               transpose, value_of, where)
from pylayers.ops.mode import reference_mode
from pylayers.ops.tape import Tape, Tensor
from pylayers.ops.variable import Variable


def convert_to_numpy(x):
    return np.asarray(value_of(x))


def convert_to_tensor(x, dtype=None):
    value = value_of(x)
    return value if dtype is None or isinstance(x, Tensor) else np.asarray(value, dtype=dtype)


def shape(x):
    return tuple(np.shape(value_of(x)))


def cast(x, dtype):
    if isinstance(x, (Tensor, Variable)):
        return x
    return np.asarray(x, dtype=dtype)


def _install_operators(cls):
    """Python operators on Tensors and Variables dispatch to the differentiable ops."""
    cls.__add__ = lambda a, b: add(a, b)
    cls.__radd__ = lambda a, b: add(b, a)
    cls.__sub__ = lambda a, b: subtract(a, b)
    cls.__rsub__ = lambda a, b: subtract(b, a)
    cls.__mul__ = lambda a, b: multiply(a, b)
    cls.__rmul__ = lambda a, b: multiply(b, a)
    cls.__truediv__ = lambda a, b: divide(a, b)
    cls.__rtruediv__ = lambda a, b: divide(b, a)
    cls.__matmul__ = lambda a, b: matmul(a, b)
    cls.__rmatmul__ = lambda a, b: matmul(b, a)
    cls.__pow__ = lambda a, b: power(a, b)
    cls.__rpow__ = lambda a, b: power(b, a)
    cls.__neg__ = lambda a: negative(a)
    cls.__abs__ = lambda a: abs(a)
    cls.__getitem__ = lambda a, index: take_slice(a, index)
    cls.T = property(lambda a: transpose(a))


_install_operators(Tensor)
_install_operators(Variable)
