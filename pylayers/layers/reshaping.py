"""Reshaping layers: ZeroPadding1D/2D, Cropping2D, UpSampling1D/2D (nearest, bilinear),
Permute, RepeatVector. Each is a numpy op with its exact backward (no compiled kernel:
they move memory and numpy does that at full speed)."""
import numpy as np

from pylayers import ops
from pylayers.layers.convolutional import custom_op, normalize_data_format, normalize_tuple
from pylayers.layers.layer import Layer
from pylayers.ops import value_of


def _pairs(value, rank, name):
    """An int, `rank` ints, or `rank` pairs of ints as `rank` (before, after) pairs."""
    if isinstance(value, (int, np.integer)):
        value = (value,) * rank
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is not None and len(items) == rank and all(
            isinstance(v, (int, np.integer)) for v in items):
        items = [(v, v) for v in items]
    if items is None or len(items) != rank:
        raise ValueError(f"`{name}` should be an int, a tuple of {rank} ints or a tuple of "
                         f"{rank} tuples of 2 ints. Received: {name}={value}")
    return tuple(normalize_tuple(pair, 2, name, allow_zero=True) for pair in items)


class _SpatialLayer(Layer):
    rank = 2

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim={self.rank + 2}, found ndim={len(input_shape)}. "
                             f"Full shape received: {input_shape}")


class _ZeroPadding(_SpatialLayer):
    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, self.rank, "padding")
        self.data_format = normalize_data_format(data_format)

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if n is None else n + a + b
                        for n, (a, b) in zip(input_shape[1:-1], self.padding))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def call(self, inputs):
        widths = ((0, 0),) + self.padding + ((0, 0),)
        interior = (slice(None),) + tuple(slice(a, a + n) for (a, _), n in
                                          zip(self.padding, np.shape(value_of(inputs))[1:-1]))
        return custom_op((inputs,), lambda x: np.pad(x, widths),
                         lambda dy, x: (dy[interior],))

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config


class ZeroPadding1D(_ZeroPadding):
    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        if not isinstance(padding, (int, np.integer)):   # (left, right), as Keras
            padding = (padding,)
        super().__init__(padding, data_format, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding[0]
        return config


class ZeroPadding2D(_ZeroPadding):
    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(_SpatialLayer):
    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, 2, "cropping")
        self.data_format = normalize_data_format(data_format)

    def _check_input(self, input_shape):
        super()._check_input(input_shape)
        for n, (a, b) in zip(input_shape[1:-1], self.cropping):
            if n is not None and a + b >= n:
                raise ValueError(f"Layer '{self.name}': cropping={self.cropping} leaves nothing "
                                 f"of an input of shape {input_shape}")

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if n is None else n - a - b
                        for n, (a, b) in zip(input_shape[1:-1], self.cropping))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def call(self, inputs):
        shape = np.shape(value_of(inputs))
        index = (slice(None),) + tuple(slice(a, n - b) for (a, b), n in
                                       zip(self.cropping, shape[1:-1]))
        return ops.take_slice(inputs, index)

    def get_config(self):
        config = super().get_config()
        config.update({"cropping": self.cropping, "data_format": self.data_format})
        return config


def _bilinear_matrix(length, size, dtype):
    """(length * size, length) weights of half-pixel linear interpolation, edges clamped
    (what jax.image.resize does when upsampling)."""
    source = (np.arange(length * size) + 0.5) / size - 0.5
    source = np.clip(source, 0, length - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, length - 1)
    frac = source - low
    matrix = np.zeros((length * size, length), dtype=dtype)
    rows = np.arange(length * size)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


class _UpSampling(_SpatialLayer):
    def __init__(self, size, interpolation="nearest", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, self.rank, "size")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError("`interpolation` argument should be one of: 'nearest' or "
                             f"'bilinear'. Received: interpolation={interpolation}")
        self.interpolation = interpolation
        self.data_format = normalize_data_format(data_format)

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if n is None else n * s for n, s in zip(input_shape[1:-1], self.size))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def _matrices(self, shape, dtype):
        if self.interpolation == "nearest":
            return [np.repeat(np.eye(n, dtype=dtype), s, axis=0)
                    for n, s in zip(shape[1:-1], self.size)]
        return [_bilinear_matrix(n, s, dtype) for n, s in zip(shape[1:-1], self.size)]

    def call(self, inputs):
        value = value_of(inputs)
        matrices = self._matrices(value.shape, value.dtype)

        def apply(x, mats):
            """Multiply spatial axis a of x (n, *spatial, c) by mats[a]."""
            for axis, m in enumerate(mats, start=1):
                x = np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)
            return x
        return custom_op((inputs,), lambda x: apply(x, matrices),
                         lambda dy, x: (apply(dy, [m.T for m in matrices]),))

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "data_format": self.data_format})
        return config


class UpSampling1D(_UpSampling):
    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(size, **kwargs)

    def call(self, inputs):
        size = self.size[0]
        return custom_op((inputs,), lambda x: np.repeat(x, size, axis=1),
                         lambda dy, x: (dy.reshape(x.shape[0], x.shape[1], size, -1).sum(axis=2),))

    def get_config(self):
        config = Layer.get_config(self)
        config["size"] = self.size[0]
        return config


class UpSampling2D(_UpSampling):
    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(size, interpolation, data_format, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config


class Permute(Layer):
    """Permutes the non-batch axes: dims is a permutation of 1..rank."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError("Invalid permutation argument `dims` for Permute Layer. The set "
                             "of indices in `dims` must be consecutive and start from 1. "
                             f"Received dims={dims}")

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Layer '{self.name}' with dims={self.dims} expects inputs of rank "
                             f"{len(self.dims) + 1}; received shape {input_shape}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def call(self, inputs):
        return ops.transpose(inputs, (0,) + self.dims)

    def get_config(self):
        config = super().get_config()
        config["dims"] = self.dims
        return config


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"Expected an integer value for `n`. Received: n={n}")
        self.n = int(n)

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != 2:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim=2, found ndim={len(input_shape)}. Full shape "
                             f"received: {input_shape}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def call(self, inputs):
        return custom_op((inputs,), lambda x: np.repeat(x[:, None, :], self.n, axis=1),
                         lambda dy, x: (dy.sum(axis=1),))

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config
