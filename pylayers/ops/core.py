"""Differentiable array ops (names follow keras.ops). Each op computes its value with
numpy or a compiled kernel and, under a recording tape, records its backward."""
import math

import numpy as np

from pylayers._kernels import gemm
from pylayers.ops.errors import named_op
from pylayers.ops.mode import floatx, reference_mode_on
from pylayers.ops.tape import Tensor, current_tape
from pylayers.ops.variable import Variable


def value_of(x):
    """The numpy value behind a Tensor, Variable, array or scalar: arrays in the mode's
    float dtype (integers and booleans too: numpy would compute int8 in float16).
    Complex, string and object data are refused: ops compute on real numbers."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, Variable):
        return x.value.astype(np.float64) if reference_mode_on() else x.value
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"expected real numbers, received an array of dtype {x.dtype}")
        return x.astype(floatx()) if x.dtype != floatx() else x
    if isinstance(x, (complex, np.complexfloating, str, bytes)):
        raise TypeError(f"expected real numbers, received {x!r}")
    if isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=floatx())
    return x


def _recording_tape(*inputs):
    tape = current_tape()
    if tape is not None and any(tape.tracks(x) for x in inputs):
        return tape
    return None


def _unbroadcast(d, shape):
    """Sum the gradient d over the axes along which an operand of `shape` was broadcast."""
    while d.ndim > len(shape):
        d = d.sum(axis=0)
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


def _unary(x, forward, backward):
    """backward(x_value, y_value, dy) -> dx"""
    xv = value_of(x)
    y = forward(xv)
    tape = _recording_tape(x)
    if tape is None:
        return y
    return tape.record(y, (x,), lambda dy: (backward(xv, y, dy),))


def _binary(a, b, forward, backward):
    """backward(a_value, b_value, y_value, dy) -> (da, db) before unbroadcasting."""
    av, bv = value_of(a), value_of(b)
    y = forward(av, bv)
    tape = _recording_tape(a, b)
    if tape is None:
        return y

    def backprop(dy):
        da, db = backward(av, bv, y, dy)
        return (_unbroadcast(da, np.shape(av)) if da is not None else None,
                _unbroadcast(db, np.shape(bv)) if db is not None else None)
    return tape.record(y, (a, b), backprop)


# ---- arithmetic -------------------------------------------------------------------

@named_op
def add(a, b):
    return _binary(a, b, np.add, lambda a, b, y, dy: (dy, dy))


@named_op
def subtract(a, b):
    return _binary(a, b, np.subtract, lambda a, b, y, dy: (dy, -dy))


@named_op
def multiply(a, b):
    return _binary(a, b, np.multiply, lambda a, b, y, dy: (dy * b, dy * a))


@named_op
def divide(a, b):
    return _binary(a, b, np.true_divide, lambda a, b, y, dy: (dy / b, -dy * y / b))


@named_op
def power(a, b):
    def backward(a, b, y, dy):
        log_a = np.log(np.where(a > 0, a, 1))
        return dy * b * np.power(a, b - 1), dy * y * log_a
    return _binary(a, b, np.power, backward)


@named_op
def maximum(a, b):
    return _binary(a, b, np.maximum,
                   lambda a, b, y, dy: (dy * (a >= b), dy * (a < b)))


@named_op
def minimum(a, b):
    return _binary(a, b, np.minimum,
                   lambda a, b, y, dy: (dy * (a <= b), dy * (a > b)))


@named_op
def negative(x):
    return _unary(x, np.negative, lambda x, y, dy: -dy)


@named_op
def exp(x):
    return _unary(x, np.exp, lambda x, y, dy: dy * y)


@named_op
def log(x):
    return _unary(x, np.log, lambda x, y, dy: dy / x)


@named_op
def sqrt(x):
    return _unary(x, np.sqrt, lambda x, y, dy: dy / (2 * y))


@named_op
def square(x):
    return _unary(x, np.square, lambda x, y, dy: 2 * x * dy)


@named_op
def abs(x):  # noqa: A001 (keras.ops name)
    return _unary(x, np.abs, lambda x, y, dy: dy * np.sign(x))


@named_op
def clip(x, x_min, x_max):
    return _unary(x, lambda v: np.clip(v, x_min, x_max),
                  lambda x, y, dy: dy * ((x >= x_min) & (x <= x_max)))


@named_op
def where(condition, x1, x2):
    cond = np.asarray(value_of(condition), dtype=bool)
    return _binary(x1, x2, lambda a, b: np.where(cond, a, b),
                   lambda a, b, y, dy: (np.where(cond, dy, 0), np.where(cond, 0, dy)))


# ---- matmul -------------------------------------------------------------------------

def _matmul_values(a, b):
    if reference_mode_on():
        return np.matmul(a, b)
    return gemm.matmul(a, b)


@named_op
def matmul(a, b):
    """numpy matmul semantics; the compiled GEMM in float32 mode."""
    def backward(av, bv, y, dy):
        a2 = av[None, :] if av.ndim == 1 else av
        b2 = bv[:, None] if bv.ndim == 1 else bv
        dy2 = dy.reshape(dy.shape[:-1] + (1,) + dy.shape[-1:]) if av.ndim == 1 else dy
        dy2 = dy2[..., None] if bv.ndim == 1 else dy2
        da = _matmul_values(dy2, np.swapaxes(b2, -1, -2))
        db = _matmul_values(np.swapaxes(a2, -1, -2), dy2)
        da = da.reshape(da.shape[:-2] + (da.shape[-1],)) if av.ndim == 1 else da
        db = db.reshape(db.shape[:-1]) if bv.ndim == 1 else db
        return da, db
    return _binary(a, b, _matmul_values, backward)


# ---- reductions ---------------------------------------------------------------------

def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if np.isscalar(axis) else tuple(axis)
    return tuple(a % ndim for a in axis)


def _expand_reduced(dy, x_shape, axis, keepdims):
    if not keepdims:
        for a in sorted(_axes(axis, len(x_shape))):
            dy = np.expand_dims(dy, a)
    return np.broadcast_to(dy, x_shape)


@named_op
def sum(x, axis=None, keepdims=False):  # noqa: A001
    return _unary(x, lambda v: np.sum(v, axis=_tuple(axis), keepdims=keepdims),
                  lambda x, y, dy: _expand_reduced(np.asarray(dy), x.shape, axis, keepdims).copy())


@named_op
def mean(x, axis=None, keepdims=False):
    def backward(x, y, dy):
        count = np.prod([x.shape[a] for a in _axes(axis, x.ndim)])
        return _expand_reduced(np.asarray(dy), x.shape, axis, keepdims) / count
    return _unary(x, lambda v: np.mean(v, axis=_tuple(axis), keepdims=keepdims), backward)


@named_op
def max(x, axis=None, keepdims=False):  # noqa: A001
    def backward(x, y, dy):
        y_full = _expand_reduced(np.asarray(y), x.shape, axis, keepdims)
        is_max = (x == y_full)
        ties = np.sum(is_max, axis=_tuple(axis), keepdims=True)
        return is_max * _expand_reduced(np.asarray(dy), x.shape, axis, keepdims) / ties
    return _unary(x, lambda v: np.max(v, axis=_tuple(axis), keepdims=keepdims), backward)


@named_op
def min(x, axis=None, keepdims=False):  # noqa: A001
    return negative(max(negative(x), axis=axis, keepdims=keepdims))


def _tuple(axis):
    return tuple(axis) if isinstance(axis, list) else axis


# ---- shapes -------------------------------------------------------------------------

@named_op
def reshape(x, new_shape):
    return _unary(x, lambda v: np.reshape(v, new_shape), lambda x, y, dy: dy.reshape(x.shape))


@named_op
def transpose(x, axes=None):
    def backward(x, y, dy):
        return np.transpose(dy, None if axes is None else np.argsort(axes))
    return _unary(x, lambda v: np.transpose(v, axes), backward)


@named_op
def expand_dims(x, axis):
    return _unary(x, lambda v: np.expand_dims(v, axis), lambda x, y, dy: dy.reshape(x.shape))


@named_op
def squeeze(x, axis=None):
    return _unary(x, lambda v: np.squeeze(v, axis), lambda x, y, dy: dy.reshape(x.shape))


@named_op
def concatenate(xs, axis=0):
    values = [value_of(x) for x in xs]
    y = np.concatenate(values, axis=axis)
    tape = _recording_tape(*xs)
    if tape is None:
        return y
    bounds = np.cumsum([v.shape[axis] for v in values])[:-1]
    return tape.record(y, tuple(xs), lambda dy: tuple(np.split(dy, bounds, axis=axis)))


@named_op
def stack(xs, axis=0):
    return concatenate([expand_dims(x, axis) for x in xs], axis=axis)


@named_op
def take_slice(x, index):
    """x[index] for basic and fancy indexing; the backward scatters."""
    def backward(x, y, dy):
        dx = np.zeros_like(x)
        np.add.at(dx, index, dy)
        return dx
    return _unary(x, lambda v: v[index], backward)


# ---- activations --------------------------------------------------------------------

@named_op
def relu(x):
    return _unary(x, lambda v: np.maximum(v, 0), lambda x, y, dy: dy * (x > 0))


@named_op
def sigmoid(x):
    def forward(v):
        e = np.exp(-np.abs(v))   # never overflows; e / (1 + e) keeps tiny values exact
        return np.where(v >= 0, 1 / (1 + e), e / (1 + e))
    return _unary(x, forward, lambda x, y, dy: dy * y * (1 - y))


@named_op
def tanh(x):
    return _unary(x, np.tanh, lambda x, y, dy: dy * (1 - y * y))


@named_op
def elu(x, alpha=1.0):
    return _unary(x, lambda v: np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0))),
                  lambda x, y, dy: dy * np.where(x > 0, 1, y + alpha))


@named_op
def leaky_relu(x, negative_slope=0.2):
    return _unary(x, lambda v: np.where(v > 0, v, negative_slope * v),
                  lambda x, y, dy: dy * np.where(x > 0, 1, negative_slope))


@named_op
def softmax(x, axis=-1):
    def forward(v):
        e = np.exp(v - np.max(v, axis=axis, keepdims=True, initial=-np.inf))
        return e / np.sum(e, axis=axis, keepdims=True)
    return _unary(x, forward,
                  lambda x, y, dy: y * (dy - np.sum(dy * y, axis=axis, keepdims=True)))


@named_op
def log_softmax(x, axis=-1):
    def forward(v):
        shifted = v - np.max(v, axis=axis, keepdims=True, initial=-np.inf)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return _unary(x, forward,
                  lambda x, y, dy: dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True))


@named_op
def softplus(x):
    return _unary(x, lambda v: np.logaddexp(v, 0), lambda x, y, dy: dy * -np.expm1(-y))


@named_op
def softsign(x):
    return _unary(x, lambda v: v / (1 + np.abs(v)), lambda x, y, dy: dy / (1 + np.abs(x)) ** 2)


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@named_op
def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


@named_op
def silu(x):
    def forward(v):
        return v * sigmoid(v)
    def backward(x, y, dy):
        s = sigmoid(x)
        return dy * (s + x * s * (1 - s))
    return _unary(x, forward, backward)


def _erf(v):
    """Elementwise erf (math.erf per element: exact, used only by gelu(approximate=False))."""
    return np.vectorize(math.erf, otypes=[v.dtype])(v) if v.size else v.copy()


@named_op
def gelu(x, approximate=True):
    if approximate:
        c = math.sqrt(2 / math.pi)

        def forward(v):
            return 0.5 * v * (1 + np.tanh(c * (v + 0.044715 * v ** 3)))

        def backward(x, y, dy):
            t = np.tanh(c * (x + 0.044715 * x ** 3))
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
        return _unary(x, forward, backward)

    def forward_exact(v):
        return 0.5 * v * (1 + _erf(v / math.sqrt(2)))

    def backward_exact(x, y, dy):
        cdf = 0.5 * (1 + _erf(x / math.sqrt(2)))
        return dy * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    return _unary(x, forward_exact, backward_exact)


@named_op
def hard_sigmoid(x):
    return _unary(x, lambda v: np.clip(v / 6 + 0.5, 0, 1),
                  lambda x, y, dy: dy * ((x > -3) & (x < 3)) / 6)


@named_op
def relu6(x):
    return _unary(x, lambda v: np.clip(v, 0, 6), lambda x, y, dy: dy * ((x > 0) & (x < 6)))
