"""BatchNormalization and LayerNormalization with fused C forward and backward
(csrc/norm.c); `call` is the float64 reference written with pylayers.ops."""
import numpy as np

from pylayers import ops
from pylayers._kernels import normalization as norm_kernels
from pylayers.layers.core import _serialize, grad_buffer
from pylayers.layers.layer import Layer
from pylayers.ops import value_of
from pylayers.ops.mode import reference_mode_on


def _check_float(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be a number {bound}. Received: {name}={value}")
    return float(value)


def _as_rows(x, axis):
    """x with `axis` moved last, as a C-contiguous float32 (rows, channels) array."""
    moved = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
    return np.ascontiguousarray(moved).reshape(-1, moved.shape[-1]), moved.shape


def _from_rows(rows, moved_shape, axis):
    return np.moveaxis(rows.reshape(moved_shape), -1, axis)


class BatchNormalization(Layer):
    """Normalises each channel (axis) with the batch statistics in training and the moving
    statistics in inference or when frozen (trainable=False), as Keras 3."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Expected an int for `axis`. Received: axis={axis}")
        self.axis = int(axis)
        self.momentum = _check_float(momentum, "momentum", 0.0, 1.0)
        self.epsilon = _check_float(epsilon, "epsilon", 0.0)
        self.center, self.scale = bool(center), bool(scale)
        self.synchronized = bool(synchronized)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer
        self.beta_constraint, self.gamma_constraint = beta_constraint, gamma_constraint
        self.supports_masking = True

    def _axis_of(self, ndim):
        return self.axis % ndim

    def _check_input(self, input_shape):
        ndim = len(input_shape) if isinstance(input_shape, tuple) else 0
        if not -ndim <= self.axis < ndim or ndim < 2:
            raise ValueError(f"Layer '{self.name}': axis={self.axis} is out of range for an "
                             f"input of shape {input_shape}")
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(f"Layer '{self.name}': axis {self.axis} of the input must be "
                             f"defined. Received: input_shape={input_shape}")
        if self.built and channels != self.moving_mean.shape[0]:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis {self.axis} of input shape to have value "
                             f"{self.moving_mean.shape[0]}, but received input with shape "
                             f"{input_shape}")

    def build(self, input_shape):
        shape = (input_shape[self.axis],)
        self.gamma = (self.add_weight(name="gamma", shape=shape, initializer=self.gamma_initializer,
                                      regularizer=self.gamma_regularizer,
                                      constraint=self.gamma_constraint) if self.scale else None)
        self.beta = (self.add_weight(name="beta", shape=shape, initializer=self.beta_initializer,
                                     regularizer=self.beta_regularizer,
                                     constraint=self.beta_constraint) if self.center else None)
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, trainable=False,
                                           initializer=self.moving_mean_initializer)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape,
                                               trainable=False,
                                               initializer=self.moving_variance_initializer)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _update_moving(self, mean, variance):
        m = self.momentum
        self.moving_mean.assign(self.moving_mean.value * m + np.asarray(mean) * (1 - m))
        self.moving_variance.assign(self.moving_variance.value * m + np.asarray(variance) * (1 - m))

    def call(self, inputs, training=False):
        ndim = np.ndim(value_of(inputs))
        axis = self._axis_of(ndim)
        reduce_axes = tuple(a for a in range(ndim) if a != axis)
        broadcast = [1] * ndim
        broadcast[axis] = -1
        if training and self.trainable:
            mean = ops.mean(inputs, axis=reduce_axes, keepdims=True)
            variance = ops.mean(ops.square(ops.subtract(inputs, mean)), axis=reduce_axes,
                                keepdims=True)
            self._update_moving(value_of(mean).reshape(-1), value_of(variance).reshape(-1))
        else:
            mean = ops.reshape(self.moving_mean, broadcast)
            variance = ops.reshape(self.moving_variance, broadcast)
        y = ops.divide(ops.subtract(inputs, mean), ops.sqrt(ops.add(variance, self.epsilon)))
        if self.scale:
            y = ops.multiply(y, ops.reshape(self.gamma, broadcast))
        if self.center:
            y = ops.add(y, ops.reshape(self.beta, broadcast))
        return y

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses = []
        axis = self._axis_of(np.ndim(inputs))
        x, moved_shape = _as_rows(inputs, axis)
        channels = x.shape[1]
        batch_stats = bool(training and self.trainable)
        if batch_stats:
            mean = np.empty(channels, dtype=np.float32)
            variance = np.empty(channels, dtype=np.float32)
            norm_kernels.bn_moments(x, mean, variance)
            self._update_moving(mean, variance)
        else:
            mean, variance = self.moving_mean.value.copy(), self.moving_variance.value.copy()
        gamma = self.gamma.value if self.scale else None
        beta = self.beta.value if self.center else None
        y = np.empty_like(x)
        norm_kernels.bn_forward(x, mean, variance, gamma, beta, self.epsilon, y)

        def backprop(dy, need_dx=True):
            dy_rows, _ = _as_rows(dy, axis)
            train = self.trainable
            dx = np.empty_like(x) if need_dx else None
            norm_kernels.bn_backward(
                x, mean, variance, gamma, self.epsilon, dy_rows, batch_stats,
                grad_buffer(self.gamma) if train and self.scale else None,
                grad_buffer(self.beta) if train and self.center else None, dx)
            return _from_rows(dx, moved_shape, axis) if need_dx else None
        return _from_rows(y, moved_shape, axis), backprop

    def get_config(self):
        config = super().get_config()
        config.update({
            "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
            "center": self.center, "scale": self.scale,
            "beta_initializer": _serialize(self.beta_initializer),
            "gamma_initializer": _serialize(self.gamma_initializer),
            "moving_mean_initializer": _serialize(self.moving_mean_initializer),
            "moving_variance_initializer": _serialize(self.moving_variance_initializer),
            "beta_regularizer": _serialize(self.beta_regularizer),
            "gamma_regularizer": _serialize(self.gamma_regularizer),
            "beta_constraint": _serialize(self.beta_constraint),
            "gamma_constraint": _serialize(self.gamma_constraint),
            "synchronized": self.synchronized})
        return config


class LayerNormalization(Layer):
    """Normalises each sample over `axis` (default the last) with its own mean and
    variance, then scales by gamma and shifts by beta (shaped like those axes)."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                               for a in axes):
            raise TypeError("Expected an int or a list/tuple of ints for the argument 'axis', "
                            f"but received: {axis}")
        self.axis = int(axes[0]) if isinstance(axis, (int, np.integer)) else [int(a) for a in axes]
        self.epsilon = _check_float(epsilon, "epsilon", 0.0)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer
        self.beta_constraint, self.gamma_constraint = beta_constraint, gamma_constraint
        self.supports_masking = True

    def _axes(self, ndim):
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        return sorted(a % ndim for a in axes)

    def _check_input(self, input_shape):
        ndim = len(input_shape) if isinstance(input_shape, tuple) else 0
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        if ndim < 2 or any(not -ndim <= a < ndim or a % ndim == 0 for a in axes):
            raise ValueError(f"Layer '{self.name}': axis={self.axis} is out of range for an "
                             f"input of shape {input_shape}")
        shape = tuple(input_shape[a] for a in self._axes(ndim))
        if None in shape:
            raise ValueError(f"Layer '{self.name}': the normalised axes must be defined. "
                             f"Received: input_shape={input_shape}")
        if self.built and self._param_shape is not None and shape != self._param_shape:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected normalised axes of shape {self._param_shape}, but "
                             f"received input with shape {input_shape}")

    def build(self, input_shape):
        shape = tuple(input_shape[a] for a in self._axes(len(input_shape)))
        self._param_shape = shape
        self.gamma = (self.add_weight(name="gamma", shape=shape, initializer=self.gamma_initializer,
                                      regularizer=self.gamma_regularizer,
                                      constraint=self.gamma_constraint) if self.scale else None)
        self.beta = (self.add_weight(name="beta", shape=shape, initializer=self.beta_initializer,
                                     regularizer=self.beta_regularizer,
                                     constraint=self.beta_constraint) if self.center else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _broadcast(self, ndim):
        axes = self._axes(ndim)
        return [self._param_shape[axes.index(a)] if a in axes else 1 for a in range(ndim)]

    def call(self, inputs):
        ndim = np.ndim(value_of(inputs))
        axes, broadcast = tuple(self._axes(ndim)), self._broadcast(ndim)
        if self.rms_scaling:
            mean_square = ops.mean(ops.square(inputs), axis=axes, keepdims=True)
            y = ops.divide(inputs, ops.sqrt(ops.add(mean_square, self.epsilon)))
            return ops.multiply(y, ops.reshape(self.gamma, broadcast)) if self.scale else y
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        centred = ops.subtract(inputs, mean)
        variance = ops.mean(ops.square(centred), axis=axes, keepdims=True)
        y = ops.divide(centred, ops.sqrt(ops.add(variance, self.epsilon)))
        if self.scale:
            y = ops.multiply(y, ops.reshape(self.gamma, broadcast))
        if self.center:
            y = ops.add(y, ops.reshape(self.beta, broadcast))
        return y

    def _fusable(self, ndim):
        """The C kernel normalises trailing axes: rows of the flattened trailing block."""
        axes = self._axes(ndim)
        return not self.rms_scaling and axes == list(range(ndim - len(axes), ndim))

    def _forward(self, inputs, training=False):
        ndim = np.ndim(inputs)
        if reference_mode_on() or not self._fusable(ndim):
            return super()._forward(inputs, training)
        self._step_losses = []
        width = int(np.prod(self._param_shape))
        x = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, width)
        gamma = self.gamma.value.reshape(-1) if self.scale else None
        beta = self.beta.value.reshape(-1) if self.center else None
        y = np.empty_like(x)
        mean = np.empty(x.shape[0], dtype=np.float32)
        inv_std = np.empty(x.shape[0], dtype=np.float32)
        norm_kernels.layer_norm_forward(x, gamma, beta, self.epsilon, y, mean, inv_std)

        def backprop(dy, need_dx=True):
            dy_rows = np.ascontiguousarray(dy, dtype=np.float32).reshape(-1, width)
            train = self.trainable
            dx = np.empty_like(x) if need_dx else None
            norm_kernels.layer_norm_backward(
                x, mean, inv_std, gamma, dy_rows,
                grad_buffer(self.gamma).reshape(-1) if train and self.scale else None,
                grad_buffer(self.beta).reshape(-1) if train and self.center else None, dx)
            return dx.reshape(np.shape(inputs)) if need_dx else None
        return y.reshape(np.shape(inputs)), backprop

    def get_config(self):
        config = super().get_config()
        config.update({
            "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
            "scale": self.scale, "rms_scaling": self.rms_scaling,
            "beta_initializer": _serialize(self.beta_initializer),
            "gamma_initializer": _serialize(self.gamma_initializer),
            "beta_regularizer": _serialize(self.beta_regularizer),
            "gamma_regularizer": _serialize(self.gamma_regularizer),
            "beta_constraint": _serialize(self.beta_constraint),
            "gamma_constraint": _serialize(self.gamma_constraint)})
        return config
