"""Activation functions by name or callable (keras.activations). Each works on numpy
arrays and on Tensors under a tape; the common ones also run fused in C kernels."""
from pylayers import ops
from pylayers._kernels.dense import ACTIVATION_CODES


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ops.relu(x)
    shifted = ops.subtract(x, threshold)
    y = ops.where(ops.value_of(x) >= threshold, x, ops.multiply(shifted, negative_slope))
    return y if max_value is None else ops.minimum(y, max_value)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return ops.log_softmax(x, axis=axis)


def elu(x, alpha=1.0):
    return ops.elu(x, alpha)


def selu(x):
    return ops.selu(x)


def leaky_relu(x, negative_slope=0.2):
    return ops.leaky_relu(x, negative_slope)


def softplus(x):
    return ops.softplus(x)


def softsign(x):
    return ops.softsign(x)


def exponential(x):
    return ops.exp(x)


def silu(x):
    return ops.silu(x)


swish = silu


def gelu(x, approximate=False):
    return ops.gelu(x, approximate)


def hard_sigmoid(x):
    return ops.hard_sigmoid(x)


def relu6(x):
    return ops.relu6(x)


_BY_NAME = {f.__name__: f for f in (linear, relu, sigmoid, tanh, softmax, log_softmax, elu,
                                       selu, leaky_relu, softplus, softsign, exponential, silu,
                                       gelu, hard_sigmoid, relu6)}
_BY_NAME["swish"] = silu


def get(identifier):
    """A name, a callable or None (linear) -> the activation function."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"Could not interpret activation function identifier: {identifier!r}. "
                             f"Known activations: {sorted(_BY_NAME)}")
        return _BY_NAME[identifier]
    if isinstance(identifier, dict) and "config" in identifier:
        return get(identifier["config"])
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret activation function identifier: {identifier!r}")


def serialize(activation):
    """The name Keras writes in configs (the function's name for built-ins)."""
    for name, fn in _BY_NAME.items():
        if fn is activation and name != "swish":
            return name
    return getattr(activation, "__name__", repr(activation))


def fused_code(activation):
    """(C activation code, alpha) when `activation` runs in the fused C kernels, else None."""
    name = serialize(activation)
    if _BY_NAME.get(name) is activation and name in ACTIVATION_CODES:
        alpha = {"elu": 1.0, "leaky_relu": 0.2}.get(name, 0.0)
        return ACTIVATION_CODES[name], alpha
    return None
