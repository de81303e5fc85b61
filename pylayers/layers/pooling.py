"""Pooling layers: Max/Average Pooling 1D/2D/3D (compiled kernels of csrc/pool.c) and
Global Max/Average Pooling 1D/2D/3D, channels last.

`call` is the float64 reference (numpy over window taps inside a custom op); padded
positions never win a max and are not counted in an average (TensorFlow's "same")."""
import numpy as np

from pylayers import ops
from pylayers._kernels import pooling as pool_kernels
from pylayers.layers.convolutional import (conv_output_length, conv_pad_before, custom_op,
                                           normalize_data_format, normalize_padding,
                                           normalize_tuple)
from pylayers.layers.buffers import empty_buffer, remembered
from pylayers.layers.inference import InferenceStep
from pylayers.layers.layer import Layer
from pylayers.ops import value_of
from pylayers.ops.mode import reference_mode_on


def _pool_windows(x, window, strides, pad, out, fill):
    """Yield (index into the padded input, padded input) per window tap: the taps'
    values for every output position, padded with `fill` (x is (n, *in, c))."""
    extent = tuple(max(p + i, (o - 1) * s + k) for i, o, k, s, p in
                   zip(x.shape[1:-1], out, window, strides, pad))
    xp = np.full((x.shape[0],) + extent + (x.shape[-1],), fill, dtype=x.dtype)
    interior = (slice(None),) + tuple(slice(p, p + i) for p, i in zip(pad, x.shape[1:-1]))
    xp[interior] = x
    for tap in np.ndindex(*window):
        index = (slice(None),) + tuple(slice(t, t + (o - 1) * s + 1, s)
                                       for t, o, s in zip(tap, out, strides))
        yield index, xp, interior


def max_pool_op(x, window, strides, pad, out):
    """Differentiable reference max pooling; ties go to the first tap."""
    def forward(xv):
        best = None
        for index, xp, _ in _pool_windows(xv, window, strides, pad, out, -np.inf):
            best = xp[index].copy() if best is None else np.maximum(best, xp[index])
        return best

    def backward(dy, xv):
        y = forward(xv)
        taken = np.zeros(y.shape, dtype=bool)
        dxp = None
        for index, xp, interior in _pool_windows(xv, window, strides, pad, out, -np.inf):
            dxp = np.zeros(xp.shape, dtype=dy.dtype) if dxp is None else dxp
            winner = (xp[index] == y) & ~taken
            taken |= winner
            dxp[index] += np.where(winner, dy, 0)
        return (dxp[interior],)
    return custom_op((x,), forward, backward)


def avg_pool_op(x, window, strides, pad, out):
    """Differentiable reference average pooling over the non-padded positions."""
    def counts(xv):
        ones = np.ones(xv.shape[:1] + xv.shape[1:-1] + (1,), dtype=xv.dtype)
        return sum(xp[index] for index, xp, _ in _pool_windows(ones, window, strides, pad, out, 0))

    def forward(xv):
        total = sum(xp[index] for index, xp, _ in _pool_windows(xv, window, strides, pad, out, 0))
        return total / counts(xv)

    def backward(dy, xv):
        share = dy / counts(xv)
        dxp = None
        for index, xp, interior in _pool_windows(xv, window, strides, pad, out, 0):
            dxp = np.zeros(xp.shape, dtype=dy.dtype) if dxp is None else dxp
            dxp[index] += share
        return (dxp[interior],)
    return custom_op((x,), forward, backward)


class BasePooling(Layer):
    """Window pooling over `rank` spatial axes: mode "max" or "average"."""

    def __init__(self, rank, mode, pool_size, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.rank, self.mode = rank, mode
        self.pool_size = normalize_tuple(pool_size, rank, "pool_size")
        self.strides = normalize_tuple(self.pool_size if strides is None else strides, rank,
                                       "strides")
        self.padding = normalize_padding(padding, {"valid", "same"})
        self.data_format = normalize_data_format(data_format)

    def _output_spatial(self, spatial):
        return tuple(conv_output_length(n, k, self.padding, s, 1)
                     for n, k, s in zip(spatial, self.pool_size, self.strides))

    def _pads(self, spatial, out):
        return tuple(conv_pad_before(n, o, k, self.padding, s, 1)
                     for n, o, k, s in zip(spatial, out, self.pool_size, self.strides))

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim={self.rank + 2}, found ndim={len(input_shape)}. "
                             f"Full shape received: {input_shape}")
        out = self._output_spatial(input_shape[1:-1])
        if any(d is not None and d <= 0 for d in tuple(input_shape[1:]) + out):
            raise ValueError(f"Layer '{self.name}': computed output size would be {out} for "
                             f"input shape {input_shape}, pool_size={self.pool_size}, "
                             f"strides={self.strides} and padding='{self.padding}': the pool "
                             "is larger than the input.")

    def compute_output_shape(self, input_shape):
        return ((input_shape[0],) + self._output_spatial(tuple(input_shape[1:-1])) +
                (input_shape[-1],))

    def call(self, inputs):
        spatial = np.shape(value_of(inputs))[1:-1]
        out = self._output_spatial(spatial)
        op = max_pool_op if self.mode == "max" else avg_pool_op
        return op(inputs, self.pool_size, self.strides, self._pads(spatial, out), out)

    def _pool(self, inputs, keep_argmax):
        """(x, geometry, y, argmax): the compiled pooling of inputs; argmax None unless
        kept (max pooling for a backward)."""
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        geometry, y_shape = remembered(self, "geometry", x.shape, lambda: self._geometry(x.shape))
        y = empty_buffer(self, "y", y_shape)
        keep_argmax = keep_argmax and self.mode == "max"
        argmax = empty_buffer(self, "argmax", (y.size,), np.intc) if keep_argmax else None
        self._pool_kernel(geometry, x, y, argmax)
        return x, geometry, y, argmax

    def _pool_kernel(self, geometry, x, y, argmax=None):
        """y = the pooling of x (C-contiguous float32) for `geometry`; the max pooling's
        argmax too when given."""
        if self.mode == "max":
            pool_kernels.max_pool_forward(geometry, x.reshape(-1), y.reshape(-1), argmax)
        else:
            pool_kernels.avg_pool_forward(geometry, x.reshape(-1), y.reshape(-1))

    def _infer(self, inputs):
        if reference_mode_on():
            return super()._infer(inputs)
        return self._pool(inputs, keep_argmax=False)[2]

    def _inference_step(self, input_shape):
        geometry, out_shape = self._geometry(input_shape)

        def run(x, out):   # x (n, *spatial, c) -> out (n, *out_spatial, c)
            self._pool_kernel(geometry, x, out)
            return out
        return InferenceStep(run, out_shape)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses.clear()
        x, geometry, y, argmax = self._pool(inputs, keep_argmax=True)

        def backprop(dy, need_dx=True):
            if not need_dx:
                return None
            dy = np.ascontiguousarray(dy, dtype=np.float32)
            dx = empty_buffer(self, "dx", x.shape)
            if self.mode == "max":
                pool_kernels.max_pool_backward(geometry, dy.reshape(-1), argmax, dx.reshape(-1))
            else:
                pool_kernels.avg_pool_backward(geometry, dy.reshape(-1), dx.reshape(-1))
            return dx
        return y, backprop

    def _geometry(self, shape):
        """(the kernel geometry tuple, the output shape) for inputs of `shape`."""
        spatial, lead = shape[1:-1], (1,) * (3 - self.rank)
        out = self._output_spatial(spatial)
        geometry = (shape[0], shape[-1], lead + spatial, lead + out, lead + self.pool_size,
                    lead + self.strides, (0,) * len(lead) + self._pads(spatial, out))
        return geometry, (shape[0],) + out + (shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding,
                       "strides": self.strides, "data_format": self.data_format})
        return config


def _pooling_class(name, rank, mode, default_size):
    def __init__(self, pool_size=default_size, strides=None, padding="valid", data_format=None,
                 **kwargs):
        BasePooling.__init__(self, rank, mode, pool_size, strides, padding, data_format, **kwargs)
    return type(name, (BasePooling,), {"__init__": __init__, "__module__": __name__,
                                       "__doc__": f"{mode.capitalize()} pooling over {rank} "
                                                  "spatial axes."})


MaxPooling1D = _pooling_class("MaxPooling1D", 1, "max", 2)
MaxPooling2D = _pooling_class("MaxPooling2D", 2, "max", (2, 2))
MaxPooling3D = _pooling_class("MaxPooling3D", 3, "max", (2, 2, 2))
AveragePooling1D = _pooling_class("AveragePooling1D", 1, "average", 2)
AveragePooling2D = _pooling_class("AveragePooling2D", 2, "average", (2, 2))
AveragePooling3D = _pooling_class("AveragePooling3D", 3, "average", (2, 2, 2))


class BaseGlobalPooling(Layer):
    """Max or mean over every spatial axis (kept as size 1 when keepdims)."""

    def __init__(self, rank, mode, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.rank, self.mode = rank, mode
        self.data_format = normalize_data_format(data_format)
        self.keepdims = bool(keepdims)

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim={self.rank + 2}, found ndim={len(input_shape)}. "
                             f"Full shape received: {input_shape}")
        if any(d is not None and d <= 0 for d in input_shape[1:]):
            raise ValueError(f"Layer '{self.name}' received an input with an empty dimension: "
                             f"{input_shape}")

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def call(self, inputs):
        axes = tuple(range(1, self.rank + 1))
        reduce = ops.max if self.mode == "max" else ops.mean
        return reduce(inputs, axis=axes, keepdims=self.keepdims)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


def _global_pooling_class(name, rank, mode):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        BaseGlobalPooling.__init__(self, rank, mode, data_format, keepdims, **kwargs)
    return type(name, (BaseGlobalPooling,), {"__init__": __init__, "__module__": __name__,
                                             "__doc__": f"Global {mode} pooling over {rank} "
                                                        "spatial axes."})


GlobalMaxPooling1D = _global_pooling_class("GlobalMaxPooling1D", 1, "max")
GlobalMaxPooling2D = _global_pooling_class("GlobalMaxPooling2D", 2, "max")
GlobalMaxPooling3D = _global_pooling_class("GlobalMaxPooling3D", 3, "max")
GlobalAveragePooling1D = _global_pooling_class("GlobalAveragePooling1D", 1, "average")
GlobalAveragePooling2D = _global_pooling_class("GlobalAveragePooling2D", 2, "average")
GlobalAveragePooling3D = _global_pooling_class("GlobalAveragePooling3D", 3, "average")
