"""Core layers: Dense, Activation, Flatten, Reshape, Dropout, ActivityRegularization, Lambda.

Each layer's `call` is written with pylayers.ops: the float64 reference and the path for
symbolic shapes. Dense and Activation override `_forward` with fused C kernels."""
import numpy as np

from pylayers import activations, ops
from pylayers._kernels import dense as dense_kernels
from pylayers._kernels._runtime import _time_major_view
from pylayers.layers.buffers import empty_buffer
from pylayers.layers.inference import InferenceStep, view_step
from pylayers.layers.layer import Layer
from pylayers.ops import Tape
from pylayers.ops.mode import reference_mode_on
from pylayers.utils.rng import global_rng

LINEAR = dense_kernels.ACTIVATION_CODES["linear"]


def _serialize(obj):
    from pylayers.saving.serialization import serialize_keras_object
    return serialize_keras_object(obj)


def grad_buffer(variable):
    """The Variable's gradient accumulator, allocated (zeroed) on first use."""
    if variable.grad is None:
        variable.grad = np.zeros_like(variable.value)
    return variable.grad


def as_rows(x, width):
    """x (..., width) as a C-contiguous float32 (rows, width) array (no copy when possible;
    x itself when it is one)."""
    if type(x) is np.ndarray and x.ndim == 2 and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1, width)


def rows_of(inputs, width):
    """(rows, time_major): inputs (..., width) as C-contiguous float32 rows. A time-major
    sequence seen batch-major (a recurrent layer's output in training) gives its rows in
    (time, batch) order without a copy (time_major True); anything else as_rows."""
    view = _time_major_view(inputs)
    if view is not None:
        return view.reshape(-1, width), True
    return as_rows(inputs, width), False


def rows_ordered(a, width, time_major):
    """a (..., width) as rows in the order rows_of gave: (time, batch) when time_major,
    copied into that order unless a is a time-major view itself."""
    if not time_major:
        return as_rows(a, width)
    view = _time_major_view(a)
    if view is None:
        view = np.ascontiguousarray(np.asarray(a, dtype=np.float32).transpose(1, 0, 2))
    return view.reshape(-1, width)


def unrows(rows, shape, time_major):
    """rows (n, width) back in the leading axes of shape: the rows themselves for 2-D,
    a time-major view when time_major, else a reshape."""
    if time_major:
        return rows.reshape(shape[1], shape[0], rows.shape[1]).transpose(1, 0, 2)
    if len(shape) == 2:
        return rows
    return rows.reshape(tuple(shape[:-1]) + (rows.shape[1],))


def activation_backward_fn(activation, z):
    """y = activation(z) with a tape; returns (y, backward(dy) -> dz) for any callable."""
    with Tape() as tape:
        leaf = tape.leaf(z)
        out = activation(leaf)
    if not isinstance(out, ops.Tensor):
        return np.asarray(out, dtype=z.dtype), lambda dy: np.zeros_like(z)
    return out.data, lambda dy: tape.backward(out, dy, [leaf])[0]


class Dense(Layer):
    """y = activation(x @ kernel + bias) on the last axis of inputs of any rank."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError("Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint = kernel_constraint
        self.bias_constraint = bias_constraint
        self.input_spec_ndim = 2
        self._fused = activations.fused_code(self.activation)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Layer '{self.name}': the last dimension of the input must be "
                             f"known to build a Dense layer. Received: input_shape={input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight(name="bias", shape=(self.units,),
                                     initializer=self.bias_initializer,
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def _check_input(self, input_shape):
        super()._check_input(input_shape)
        if self.built and input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value "
                             f"{self.kernel.shape[0]}, but received input with shape "
                             f"{tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def output_activation(self):
        return activations.serialize(self.activation)

    def call(self, inputs):
        y = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _fused_forward(self, inputs):
        """(x, y, code, alpha, time_major): inputs as rows x (rows, in) (rows_of), y
        (rows, units) = x @ kernel + bias through the fused activation (code, alpha)."""
        kernel = self.kernel.value
        x, time_major = rows_of(inputs, kernel.shape[0])
        y = empty_buffer(self, "y", (x.shape[0], self.units))
        code, alpha = self._fused or (LINEAR, 0.0)
        bias = self.bias.value if self.use_bias else None
        dense_kernels.dense_forward(x, kernel, bias, code, alpha, y)
        return x, y, code, alpha, time_major

    def _infer(self, inputs):
        if reference_mode_on():
            return super()._infer(inputs)
        _, y, _, _, time_major = self._fused_forward(inputs)
        if self._fused is None:
            y = activation_backward_fn(self.activation, y)[0]
        return unrows(y, np.shape(inputs), time_major)

    def _inference_step(self, input_shape):
        if self._fused is None or len(input_shape) != 2:
            return None   # other ranks: _infer
        code, alpha = self._fused
        link = (self.name, self.kernel, self.bias if self.use_bias else None, code, alpha)
        return InferenceStep(None, (input_shape[0], self.units), dense_link=link)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses.clear()
        x, y, code, alpha, time_major = self._fused_forward(inputs)
        act_backward = None
        if self._fused is None:
            y, act_backward = activation_backward_fn(self.activation, y)

        def backprop(dy, need_dx=True, from_preactivation=False):
            dy = rows_ordered(dy, self.units, time_major)
            dy_code = code
            if from_preactivation:
                dy_code = LINEAR
            elif act_backward is not None:
                dy = as_rows(act_backward(dy.reshape(y.shape)), self.units)
            dz = empty_buffer(self, "dz", dy.shape) if dy_code != LINEAR else dy
            dx = empty_buffer(self, "dx", x.shape) if need_dx else None
            dw, dbias, accumulate = self._gradient_targets()
            dense_kernels.dense_backward(x, self.kernel.value, y, dy, dy_code, alpha, dz,
                                         dw, dbias, dx, accumulate)
            self._gradients_written(accumulate)
            return unrows(dx, np.shape(inputs), time_major) if need_dx else None
        return unrows(y, np.shape(inputs), time_major), backprop

    def _gradient_targets(self):
        """(kernel gradient, bias gradient, accumulate) for the backward kernel: None for
        frozen weights; the kernel overwrites both when both were just zeroed."""
        if not self.trainable:
            return None, None, True
        kernel_grad, kernel_adds = self.kernel.gradient_target()
        if not self.use_bias:
            return grad_buffer(self.kernel) if kernel_adds else kernel_grad, None, kernel_adds
        bias_grad, bias_adds = self.bias.gradient_target()
        if kernel_adds or bias_adds:
            return grad_buffer(self.kernel), grad_buffer(self.bias), True
        return kernel_grad, bias_grad, False

    def _gradients_written(self, accumulate):
        """After a backward kernel wrote the gradients of _gradient_targets (accumulate
        False: overwrote them whole)."""
        if not accumulate:
            self.kernel.gradient_written()
            if self.use_bias:
                self.bias.gradient_written()

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units, "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _serialize(self.kernel_initializer),
            "bias_initializer": _serialize(self.bias_initializer),
            "kernel_regularizer": _serialize(self.kernel_regularizer),
            "bias_regularizer": _serialize(self.bias_regularizer),
            "activity_regularizer": _serialize(self.activity_regularizer),
            "kernel_constraint": _serialize(self.kernel_constraint),
            "bias_constraint": _serialize(self.bias_constraint)})
        return config


class ElementwiseActivation(Layer):
    """Base of layers that apply one activation elementwise (fused C when available)."""

    supports_masking = True

    def activation_fn(self, x):
        raise NotImplementedError

    def fused(self):
        """(C code, alpha) or None."""
        return None

    def call(self, inputs):
        return self.activation_fn(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def output_activation(self):
        return None

    def _inference_step(self, input_shape):
        fused = self.fused()
        if fused is None or not input_shape:
            return None
        code, alpha = fused
        width = input_shape[-1] or 1

        def run(x, out):   # out = act(x), in place on a copy of x
            np.copyto(out, x)
            dense_kernels.bias_act_forward(out.reshape(-1, width), None, code, alpha)
            return out
        return InferenceStep(run, tuple(input_shape))

    def _forward(self, inputs, training=False):
        fused = self.fused()
        if reference_mode_on() or fused is None or np.ndim(inputs) == 0:
            return super()._forward(inputs, training)
        self._step_losses = []
        code, alpha = fused
        shape = np.shape(inputs)
        width = shape[-1] if shape[-1] else 1
        y = np.array(inputs, dtype=np.float32, order="C").reshape(-1, width)
        dense_kernels.bias_act_forward(y, None, code, alpha)

        def backprop(dy, need_dx=True, from_preactivation=False):
            if not need_dx:
                return None
            dy = as_rows(dy, width)
            if from_preactivation:
                return dy.reshape(shape)
            dx = np.empty_like(dy)
            dense_kernels.act_backward(y, dy, dx, code, alpha)
            return dx.reshape(shape)
        return y.reshape(shape), backprop


class Activation(ElementwiseActivation):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def activation_fn(self, x):
        return self.activation(x)

    def fused(self):
        return activations.fused_code(self.activation)

    def output_activation(self):
        return activations.serialize(self.activation)

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


def reshape_forward(x, out_shape):
    """A reshaping layer's forward (a view when x allows) and its backprop."""
    in_shape = np.shape(x)

    def backprop(dy, need_dx=True):
        return np.reshape(dy, in_shape) if need_dx else None
    return np.reshape(x, out_shape), backprop


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or "channels_last"

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], size)

    def _inference_step(self, input_shape):
        if self.data_format == "channels_first" and len(input_shape) > 2:
            return None
        return view_step(self.compute_output_shape(input_shape))

    def _forward(self, inputs, training=False):
        if self.data_format == "channels_first" and np.ndim(inputs) > 2:
            return super()._forward(inputs, training)
        return reshape_forward(inputs, (np.shape(inputs)[0], -1))

    def call(self, inputs):
        if self.data_format == "channels_first" and ops.value_of(inputs).ndim > 2:
            inputs = ops.transpose(inputs, (0,) + tuple(range(2, np.ndim(ops.value_of(inputs)))) + (1,))
        return ops.reshape(inputs, (np.shape(ops.value_of(inputs))[0], -1))

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d < -1 or d == 0 for d in self.target_shape):
            raise ValueError("The `target_shape` argument must be a tuple of positive integers "
                             f"with at most one -1. Received: target_shape={target_shape}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolved(input_shape[1:])

    def _resolved(self, sample_shape):
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if any(d is None for d in sample_shape):
            total = None
        else:
            total = int(np.prod(sample_shape, dtype=np.int64))
        if -1 in self.target_shape:
            fill = None if total is None else total // known
            if total is not None and fill * known != total:
                raise self._mismatch(sample_shape)
            return tuple(fill if d == -1 else d for d in self.target_shape)
        if total is not None and total != known:
            raise self._mismatch(sample_shape)
        return self.target_shape

    def _mismatch(self, sample_shape):
        return ValueError(f"Layer '{self.name}': total size of the input shape "
                          f"{tuple(sample_shape)} does not match target_shape {self.target_shape}")

    def _inference_step(self, input_shape):
        return view_step(self.compute_output_shape(input_shape))

    def _forward(self, inputs, training=False):
        shape = np.shape(inputs)
        return reshape_forward(inputs, (shape[0],) + self._resolved(shape[1:]))

    def call(self, inputs):
        shape = np.shape(ops.value_of(inputs))
        return ops.reshape(inputs, (shape[0],) + self._resolved(shape[1:]))

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config


class Dropout(Layer):
    """Inverted dropout: during training, kept units are scaled by 1 / (1 - rate)."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float value "
                             f"between 0 and 1. Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _inference_step(self, input_shape):
        return view_step(input_shape)   # the identity outside training

    def _keep_mask(self, shape):
        mask_shape = shape
        if self.noise_shape is not None:
            mask_shape = tuple(s if n is None else n for s, n in zip(shape, self.noise_shape))
        rng = self._rng or global_rng()
        keep = rng.random(mask_shape, dtype=np.float32) >= self.rate
        return keep.astype(np.float32) / np.float32(1.0 - self.rate)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return ops.multiply(inputs, 0.0)
        return ops.multiply(inputs, self._keep_mask(np.shape(ops.value_of(inputs))))

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed})
        return config


class ActivityRegularization(Layer):
    """Identity whose output adds (l1*sum|y| + l2*sum(y^2)) / batch_size to the loss."""

    supports_masking = True

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        from pylayers import regularizers
        kwargs.pop("activity_regularizer", None)
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs):
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update({"l1": self.l1, "l2": self.l2})
        return config


class Lambda(Layer):
    """Wraps an arbitrary function of pylayers.ops as a layer."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda expects a callable. Received: function={function!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self._output_shape):
            return tuple(self._output_shape(input_shape))
        return (input_shape[0],) + tuple(self._output_shape)

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def get_config(self):
        config = super().get_config()
        config.update({"function": getattr(self.function, "__name__", repr(self.function)),
                       "arguments": self.arguments, "output_shape": self._output_shape})
        return config
