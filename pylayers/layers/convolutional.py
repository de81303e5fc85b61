"""Convolution layers: Conv1D/2D/3D from one BaseConv(rank), Conv1D/2D/3DTranspose,
DepthwiseConv2D and SeparableConv2D, channels last.

`call` is the float64 reference (direct loops over kernel taps in numpy, inside custom
ops of the tape); `_forward` runs the implicit-GEMM C kernels of csrc/conv.c with the
bias and activation fused into the output pass."""
from typing import NamedTuple

import numpy as np

from pylayers import activations, ops
from pylayers._kernels import conv as conv_kernels
from pylayers._kernels import dense as dense_kernels
from pylayers.layers.buffers import empty_buffer, remembered
from pylayers.layers.core import _serialize, activation_backward_fn, grad_buffer
from pylayers.layers.inference import InferenceStep
from pylayers.layers.layer import Layer
from pylayers.ops import value_of
from pylayers.ops.mode import reference_mode_on
from pylayers.ops.tape import current_tape

LINEAR = dense_kernels.ACTIVATION_CODES["linear"]


# ---- argument checks shared by convolution, pooling and reshaping layers --------------

def normalize_tuple(value, n, name, allow_zero=False):
    """An int or n ints as a tuple of n positive (or non-negative) ints; ValueError else."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    ok = (values is not None and len(values) == n and
          all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values))
    if not ok or any(v < 0 or (v == 0 and not allow_zero) for v in values):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"The `{name}` argument must be a tuple of {n} {kind} integers. "
                         f"Received: {name}={value}")
    return tuple(int(v) for v in values)


def normalize_padding(padding, allowed):
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in allowed:
        raise ValueError(f"The `padding` argument must be one of {sorted(allowed)}. "
                         f"Received: padding={padding}")
    return mode


def normalize_data_format(data_format):
    data_format = data_format or "channels_last"
    if data_format != "channels_last":
        raise ValueError("pylayers supports data_format='channels_last' only. "
                         f"Received: data_format={data_format}")
    return data_format


def custom_op(inputs, forward, backward):
    """A differentiable op from numpy: forward(*values) -> y and
    backward(dy, *values) -> one gradient per input; recorded when a tape tracks an input."""
    values = [value_of(v) for v in inputs]
    y = forward(*values)
    tape = current_tape()
    if tape is None or not any(tape.tracks(v) for v in inputs):
        return y
    return tape.record(y, tuple(inputs), lambda dy: tuple(backward(dy, *values)))


# ---- geometry ---------------------------------------------------------------------------

class ConvSpec(NamedTuple):
    """Geometry of one convolution over `rank` spatial axes: output position o reads
    input o * stride - pad + t * dilation for tap t (zeros outside the input)."""
    in_size: tuple
    out_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    groups: int = 1

    def kernel_geometry(self, batch, in_channels, out_channels):
        """The tuple pylayers._kernels.conv takes (axes padded to 3)."""
        lead = 3 - len(self.in_size)

        def three(values, fill=1):
            return (fill,) * lead + tuple(values)
        return (batch, three(self.in_size), three(self.out_size), three(self.kernel),
                three(self.stride), three(self.dilation), three(self.pad, 0),
                in_channels, out_channels, self.groups)


def dilated(kernel, dilation):
    return (kernel - 1) * dilation + 1


def conv_output_length(length, kernel, padding, stride, dilation):
    """Keras' output length along one axis (None stays None; may be <= 0 for valid)."""
    if length is None:
        return None
    if padding == "valid":
        return (length - dilated(kernel, dilation)) // stride + 1
    return (length + stride - 1) // stride


def conv_pad_before(length, out, kernel, padding, stride, dilation):
    """Padding before the input: TF-style "same" puts the odd extra pad at the end."""
    span = dilated(kernel, dilation)
    if padding == "causal":
        return span - 1
    if padding == "same":
        return max((out - 1) * stride + span - length, 0) // 2
    return 0


def conv_transpose_output_length(length, kernel, padding, output_padding, stride, dilation):
    """Keras' compute_conv_transpose_output_length along one axis."""
    if length is None:
        return None
    span = dilated(kernel, dilation)
    if output_padding is None:
        return length * stride + (max(span - stride, 0) if padding == "valid" else 0)
    pad = span // 2 if padding == "same" else 0
    return (length - 1) * stride + span - 2 * pad + output_padding


def conv_transpose_pad_before(kernel, padding, output_padding, stride, dilation):
    """Padding of the convolution whose adjoint the transposed convolution is: span - 1
    minus the left padding JAX's conv_transpose applies to the stride-dilated input."""
    span = dilated(kernel, dilation)
    if padding == "valid":
        return 0
    if output_padding is None:
        pad_len = stride + span - 2
    else:
        pad_len = span + span % 2 - 2 + output_padding
    left_pad = min(pad_len // 2 + pad_len % 2, span - 1)
    return span - 1 - left_pad


# ---- float64 reference: direct loops over kernel taps -----------------------------------

def _padded_extent(spec):
    """Sizes of a zero-padded input holding the input and every position a tap reads."""
    return tuple(max(p + i, (o - 1) * s + (k - 1) * d + 1)
                 for i, o, k, s, d, p in zip(spec.in_size, spec.out_size, spec.kernel,
                                             spec.stride, spec.dilation, spec.pad))


def _interior(spec):
    return (slice(None),) + tuple(slice(p, p + i) for p, i in zip(spec.pad, spec.in_size))


def _tap_window(spec, tap):
    """Index of the padded-input positions tap `tap` reads for every output position."""
    return (slice(None),) + tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                                  for t, d, o, s in zip(tap, spec.dilation, spec.out_size,
                                                        spec.stride))


def _padded(x, spec):
    xp = np.zeros((x.shape[0],) + _padded_extent(spec) + (x.shape[-1],), dtype=x.dtype)
    xp[_interior(spec)] = x
    return xp


def _group_slices(channels, groups):
    width = channels // groups
    return [slice(g * width, (g + 1) * width) for g in range(groups)]


def conv_reference(x, w, spec):
    """y (n, *out, cout) = conv(x (n, *in, cin), w (*k, cin/groups, cout))."""
    xp = _padded(x, spec)
    cin, cout = x.shape[-1], w.shape[-1]
    y = np.zeros((x.shape[0],) + spec.out_size + (cout,), dtype=np.result_type(x, w))
    for tap in np.ndindex(*spec.kernel):
        window = xp[_tap_window(spec, tap)]
        for gi, go in zip(_group_slices(cin, spec.groups), _group_slices(cout, spec.groups)):
            y[..., go] += window[..., gi] @ w[tap][:, go]
    return y


def conv_input_grad_reference(dy, w, spec, in_channels):
    """dx (n, *in, cin): the adjoint of conv_reference in x applied to dy (n, *out, cout)."""
    cout = w.shape[-1]
    dxp = np.zeros((dy.shape[0],) + _padded_extent(spec) + (in_channels,),
                   dtype=np.result_type(dy, w))
    for tap in np.ndindex(*spec.kernel):
        window = _tap_window(spec, tap)
        for gi, go in zip(_group_slices(in_channels, spec.groups), _group_slices(cout, spec.groups)):
            dxp[window + (gi,)] += dy[..., go] @ w[tap][:, go].T
    return dxp[_interior(spec)]


def conv_kernel_grad_reference(x, dy, spec, kernel_shape):
    """dw (*k, cin/groups, cout) of sum(conv_reference(x, w) * dy)."""
    xp = _padded(x, spec)
    cin, cout = x.shape[-1], dy.shape[-1]
    dw = np.zeros(kernel_shape, dtype=np.result_type(x, dy))
    for tap in np.ndindex(*spec.kernel):
        window = xp[_tap_window(spec, tap)]
        for gi, go in zip(_group_slices(cin, spec.groups), _group_slices(cout, spec.groups)):
            cols = window[..., gi].reshape(-1, gi.stop - gi.start)
            dw[tap][:, go] += cols.T @ dy[..., go].reshape(-1, go.stop - go.start)
    return dw


def conv_op(x, kernel, spec):
    """Differentiable reference convolution."""
    def backward(dy, xv, wv):
        return (conv_input_grad_reference(dy, wv, spec, xv.shape[-1]),
                conv_kernel_grad_reference(xv, dy, spec, wv.shape))
    return custom_op((x, kernel), lambda xv, wv: conv_reference(xv, wv, spec), backward)


def conv_transpose_op(x, kernel, spec):
    """Differentiable reference transposed convolution: the adjoint of the convolution
    `spec` (whose output is x) with kernel (*k, out_channels, in_channels)."""
    def forward(xv, wv):
        return conv_input_grad_reference(xv, wv, spec, wv.shape[-2])

    def backward(dy, xv, wv):
        return conv_reference(dy, wv, spec), conv_kernel_grad_reference(dy, xv, spec, wv.shape)
    return custom_op((x, kernel), forward, backward)


# ---- compiled path helpers ----------------------------------------------------------------

def as_float32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def output_gradient(layer, y, dy, code, alpha, act_backward, from_preactivation, bias):
    """dz = dy * act'(.) for a conv output y (n, ..., channels) of `layer`, C-contiguous
    float32; accumulates the bias gradient when `bias` (a Variable) is given."""
    if from_preactivation:
        code = LINEAR
    elif act_backward is not None:
        dy, code = act_backward(dy), LINEAR
    dy = as_float32(dy)
    width = y.shape[-1]
    dz = dy if code == LINEAR else empty_buffer(layer, "dz", dy.shape)
    conv_kernels.bias_act_backward(y.reshape(-1, width), dy.reshape(-1, width), code, alpha,
                                   dz.reshape(-1, width),
                                   None if bias is None else grad_buffer(bias))
    return dz


# ---- layers ------------------------------------------------------------------------------

class _ConvBase(Layer):
    """Arguments, checks and config shared by every convolution layer."""

    def __init__(self, rank, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, bias_initializer="zeros",
                 bias_regularizer=None, activity_regularizer=None, bias_constraint=None,
                 allowed_padding=("valid", "same"), **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = normalize_tuple(strides, rank, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = normalize_padding(padding, set(allowed_padding))
        self.data_format = normalize_data_format(data_format)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("`strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = bias_initializer
        self.bias_regularizer = bias_regularizer
        self.bias_constraint = bias_constraint
        self._fused = activations.fused_code(self.activation)

    def _in_channels(self):
        """Input channels of the built layer."""
        raise NotImplementedError

    def _output_spatial(self, spatial):
        raise NotImplementedError

    def _check_input(self, input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim={self.rank + 2}, found "
                             f"ndim={len(input_shape)}. Full shape received: {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}': the channel dimension of the inputs must be "
                             f"defined. Received: input_shape={input_shape}")
        if self.built and input_shape[-1] != self._in_channels():
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value "
                             f"{self._in_channels()}, but received input with shape {input_shape}")
        if any(d is not None and d <= 0 for d in input_shape[1:]):
            raise ValueError(f"Layer '{self.name}' received an input with an empty dimension: "
                             f"{input_shape}")
        out = self._output_spatial(input_shape[1:-1])
        if any(d is not None and d <= 0 for d in out):
            raise ValueError(f"Layer '{self.name}': computed output size would be {out} for "
                             f"input shape {input_shape}, kernel_size={self.kernel_size}, "
                             f"strides={self.strides}, padding='{self.padding}' and "
                             f"dilation_rate={self.dilation_rate}: the kernel is larger than "
                             "the input.")

    def output_activation(self):
        return activations.serialize(self.activation)

    def _bias_kwargs(self):
        return {"initializer": self.bias_initializer, "regularizer": self.bias_regularizer,
                "constraint": self.bias_constraint}

    def get_config(self):
        config = super().get_config()
        config.update({
            "kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding,
            "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
            "bias_initializer": _serialize(self.bias_initializer),
            "bias_regularizer": _serialize(self.bias_regularizer),
            "activity_regularizer": _serialize(self.activity_regularizer),
            "bias_constraint": _serialize(self.bias_constraint)})
        return config


class _ForwardConv(_ConvBase):
    """A convolution whose spec follows from kernel_size, strides, padding, dilation."""

    groups = 1

    def _output_spatial(self, spatial):
        return tuple(conv_output_length(n, k, self.padding, s, d) for n, k, s, d in
                     zip(spatial, self.kernel_size, self.strides, self.dilation_rate))

    def _spec(self, input_shape):
        spatial = tuple(input_shape[1:-1])
        out = self._output_spatial(spatial)
        pad = tuple(conv_pad_before(n, o, k, self.padding, s, d) for n, o, k, s, d in
                    zip(spatial, out, self.kernel_size, self.strides, self.dilation_rate))
        return ConvSpec(spatial, out, self.kernel_size, self.strides, self.dilation_rate, pad,
                        self.groups)

    def _conv_forward(self, x, kernel, bias, code, alpha, out_channels, role="y"):
        """Compiled y = act(conv(x, kernel) + bias) and its (geometry, y)."""
        geometry, y_shape = remembered(self, role, (x.shape, out_channels), lambda: (
            self._spec(x.shape).kernel_geometry(x.shape[0], x.shape[-1], out_channels),
            (x.shape[0],) + self._output_spatial(x.shape[1:-1]) + (out_channels,)))
        y = empty_buffer(self, role, y_shape)
        conv_kernels.conv_forward(geometry, x.reshape(-1), as_float32(kernel).reshape(-1),
                                  bias, code, alpha, y.reshape(-1))
        return geometry, y

    def _conv_backward(self, geometry, x, kernel, dz, kernel_grad, need_dx, role="dx"):
        """Accumulate kernel_grad (unless None) and return dx (or None)."""
        if kernel_grad is not None:
            conv_kernels.conv_backward_weight(geometry, x.reshape(-1), dz.reshape(-1),
                                              kernel_grad.reshape(-1))
        if not need_dx:
            return None
        dx = empty_buffer(self, role, x.shape)
        conv_kernels.conv_backward_data(geometry, dz.reshape(-1), as_float32(kernel).reshape(-1),
                                        dx.reshape(-1))
        return dx

    def _fused_forward(self, inputs, kernel_var, out_channels):
        """The whole compiled forward of a one-kernel convolution with its backprop."""
        self._step_losses.clear()
        x = as_float32(inputs)
        code, alpha = self._fused or (LINEAR, 0.0)
        bias = self.bias.value if self.use_bias else None
        geometry, y = self._conv_forward(x, kernel_var.value, bias, code, alpha, out_channels)
        act_backward = None
        if self._fused is None:
            y, act_backward = activation_backward_fn(self.activation, y)

        def backprop(dy, need_dx=True, from_preactivation=False):
            train = self.trainable
            if train and not need_dx and act_backward is None and \
                    self._weight_gradients_in_one_pass(geometry, x, y, dy, kernel_var,
                                                       LINEAR if from_preactivation else code):
                return None
            dz = output_gradient(self, y, dy, code, alpha, act_backward, from_preactivation,
                                 self.bias if train and self.use_bias else None)
            return self._conv_backward(geometry, x, kernel_var.value, dz,
                                       grad_buffer(kernel_var) if train else None, need_dx)
        return y, backprop

    def _weight_gradients_in_one_pass(self, geometry, x, y, dy, kernel_var, code):
        """A first layer (no dx wanted) with few taps x channels: kernel and bias
        gradients straight from dy through relu'/linear, no dz written. False when the
        compiled direct path does not take this geometry or activation."""
        return conv_kernels.conv_backward_weight_fused(
            geometry, x.reshape(-1), y.reshape(-1), as_float32(dy).reshape(-1), code,
            grad_buffer(kernel_var).reshape(-1),
            grad_buffer(self.bias) if self.use_bias else None)


class BaseConv(_ForwardConv):
    """Conv1D/2D/3D: kernel (*kernel_size, in_channels // groups, filters)."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError("Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters}.")
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
            raise ValueError("The number of groups must be a positive integer. "
                             f"Received: groups={groups}.")
        if filters % groups:
            raise ValueError("The number of filters must be evenly divisible by the number of "
                             f"groups. Received: groups={groups}, filters={filters}.")
        allowed = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
        super().__init__(rank, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         activity_regularizer, bias_constraint, allowed_padding=allowed, **kwargs)
        self.filters = int(filters)
        self.groups = int(groups)
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = kernel_regularizer
        self.kernel_constraint = kernel_constraint

    def _in_channels(self):
        return self.kernel.shape[-2] * self.groups

    def _check_input(self, input_shape):
        super()._check_input(input_shape)
        if input_shape[-1] % self.groups:
            raise ValueError("The number of input channels must be evenly divisible by the "
                             f"number of groups. Received groups={self.groups}, but the input "
                             f"has {input_shape[-1]} channels (full input shape is "
                             f"{input_shape}).")

    def build(self, input_shape):
        shape = self.kernel_size + (input_shape[-1] // self.groups, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape,
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), **self._bias_kwargs())
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return ((input_shape[0],) + self._output_spatial(tuple(input_shape[1:-1])) +
                (self.filters,))

    def call(self, inputs):
        y = conv_op(inputs, self.kernel, self._spec(np.shape(value_of(inputs))))
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _inference_step(self, input_shape):
        if self._fused is None:
            return None
        code, alpha = self._fused
        geometry = self._spec(input_shape).kernel_geometry(input_shape[0], input_shape[-1],
                                                           self.filters)
        out_shape = (input_shape[0],) + self._output_spatial(input_shape[1:-1]) + (self.filters,)

        def run(x, out):   # x (n, *spatial, in) -> out (n, *out_spatial, filters)
            kernel = as_float32(self.kernel.value).reshape(-1)
            conv_kernels.conv_forward(geometry, x.reshape(-1), kernel,
                                      self.bias.value if self.use_bias else None, code, alpha,
                                      out.reshape(-1))
            return out
        return InferenceStep(run, out_shape)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        return self._fused_forward(inputs, self.kernel, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "groups": self.groups,
            "kernel_initializer": _serialize(self.kernel_initializer),
            "kernel_regularizer": _serialize(self.kernel_regularizer),
            "kernel_constraint": _serialize(self.kernel_constraint)})
        return config


class Conv1D(BaseConv):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


class Conv2D(BaseConv):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


class Conv3D(BaseConv):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(3, filters, kernel_size, **kwargs)


class BaseConvTranspose(_ConvBase):
    """Transposed convolution (the data gradient of a convolution): kernel
    (*kernel_size, filters, in_channels), output lengths and padding as Keras 3."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid",
                 output_padding=None, data_format=None, dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError("Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters}.")
        super().__init__(rank, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         activity_regularizer, bias_constraint, **kwargs)
        self.filters = int(filters)
        self.output_padding = (None if output_padding is None else
                               normalize_tuple(output_padding, rank, "output_padding",
                                               allow_zero=True))
        if self.output_padding is not None and any(
                p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError("Strides must be greater than output padding. Received strides="
                             f"{self.strides}, output_padding={self.output_padding}.")
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = kernel_regularizer
        self.kernel_constraint = kernel_constraint

    def _in_channels(self):
        return self.kernel.shape[-1]

    def _output_padding(self):
        return self.output_padding or (None,) * self.rank

    def _output_spatial(self, spatial):
        return tuple(conv_transpose_output_length(n, k, self.padding, p, s, d)
                     for n, k, p, s, d in zip(spatial, self.kernel_size, self._output_padding(),
                                              self.strides, self.dilation_rate))

    def _spec(self, input_shape):
        """The convolution whose output has the shape of this layer's input."""
        spatial = tuple(input_shape[1:-1])
        pad = tuple(conv_transpose_pad_before(k, self.padding, p, s, d) for k, p, s, d in
                    zip(self.kernel_size, self._output_padding(), self.strides,
                        self.dilation_rate))
        return ConvSpec(self._output_spatial(spatial), spatial, self.kernel_size, self.strides,
                        self.dilation_rate, pad)

    def build(self, input_shape):
        shape = self.kernel_size + (self.filters, input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=shape,
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), **self._bias_kwargs())
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return ((input_shape[0],) + self._output_spatial(tuple(input_shape[1:-1])) +
                (self.filters,))

    def call(self, inputs):
        y = conv_transpose_op(inputs, self.kernel, self._spec(np.shape(value_of(inputs))))
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses = []
        x = as_float32(inputs)
        spec = self._spec(x.shape)
        geometry = spec.kernel_geometry(x.shape[0], self.filters, x.shape[-1])
        kernel = self.kernel.value
        y = empty_buffer(self, "y", (x.shape[0],) + spec.in_size + (self.filters,))
        conv_kernels.conv_backward_data(geometry, x.reshape(-1), kernel.reshape(-1),
                                        y.reshape(-1))
        code, alpha = self._fused or (LINEAR, 0.0)
        dense_kernels.bias_act_forward(y.reshape(-1, self.filters),
                                       self.bias.value if self.use_bias else None, code, alpha)
        act_backward = None
        if self._fused is None:
            y, act_backward = activation_backward_fn(self.activation, y)

        def backprop(dy, need_dx=True, from_preactivation=False):
            dz = output_gradient(self, y, dy, code, alpha, act_backward, from_preactivation,
                                 self.bias if self.trainable and self.use_bias else None)
            if self.trainable:
                conv_kernels.conv_backward_weight(geometry, dz.reshape(-1), x.reshape(-1),
                                                  grad_buffer(self.kernel).reshape(-1))
            if not need_dx:
                return None
            dx = empty_buffer(self, "dx", x.shape)
            conv_kernels.conv_forward(geometry, dz.reshape(-1), kernel.reshape(-1), None,
                                      LINEAR, 0.0, dx.reshape(-1))
            return dx
        return y, backprop

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "output_padding": self.output_padding,
            "kernel_initializer": _serialize(self.kernel_initializer),
            "kernel_regularizer": _serialize(self.kernel_regularizer),
            "kernel_constraint": _serialize(self.kernel_constraint)})
        return config


class Conv1DTranspose(BaseConvTranspose):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


class Conv2DTranspose(BaseConvTranspose):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


class Conv3DTranspose(BaseConvTranspose):
    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(3, filters, kernel_size, **kwargs)


def _check_depth_multiplier(depth_multiplier):
    if (isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, (int, np.integer))
            or depth_multiplier <= 0):
        raise ValueError("Invalid value for argument `depth_multiplier`. Expected a strictly "
                         f"positive value. Received depth_multiplier={depth_multiplier}.")
    return int(depth_multiplier)


class DepthwiseConv2D(_ForwardConv):
    """Each input channel convolved with its own depth_multiplier filters: a grouped
    convolution with one group per channel; kernel (kh, kw, in_channels, depth_multiplier)."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        self.depth_multiplier = _check_depth_multiplier(depth_multiplier)
        super().__init__(2, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         activity_regularizer, bias_constraint, **kwargs)
        self.depthwise_initializer = depthwise_initializer
        self.depthwise_regularizer = depthwise_regularizer
        self.depthwise_constraint = depthwise_constraint

    @property
    def groups(self):
        return self.kernel.shape[-2]

    def _in_channels(self):
        return self.kernel.shape[-2]

    def build(self, input_shape):
        shape = self.kernel_size + (input_shape[-1], self.depth_multiplier)
        self.kernel = self.add_weight(name="kernel", shape=shape,
                                      initializer=self.depthwise_initializer,
                                      regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = (self.add_weight(name="bias", shape=(input_shape[-1] * self.depth_multiplier,),
                                     **self._bias_kwargs()) if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] * self.depth_multiplier
        return (input_shape[0],) + self._output_spatial(tuple(input_shape[1:-1])) + (channels,)

    def _grouped_kernel(self):
        """The kernel as a grouped convolution's (kh, kw, 1, in * depth_multiplier)."""
        return ops.reshape(self.kernel, self.kernel_size + (1, -1))

    def call(self, inputs):
        y = conv_op(inputs, self._grouped_kernel(), self._spec(np.shape(value_of(inputs))))
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        return self._fused_forward(inputs, self.kernel, self.kernel.shape[-2] * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config.update({
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": _serialize(self.depthwise_initializer),
            "depthwise_regularizer": _serialize(self.depthwise_regularizer),
            "depthwise_constraint": _serialize(self.depthwise_constraint)})
        return config


class SeparableConv2D(_ForwardConv):
    """A depthwise convolution (no bias, no activation) followed by a 1x1 convolution to
    `filters` channels with bias and activation."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError("Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters}.")
        self.depth_multiplier = _check_depth_multiplier(depth_multiplier)
        super().__init__(2, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         activity_regularizer, bias_constraint, **kwargs)
        self.filters = int(filters)
        self.depthwise_initializer = depthwise_initializer
        self.pointwise_initializer = pointwise_initializer
        self.depthwise_regularizer = depthwise_regularizer
        self.pointwise_regularizer = pointwise_regularizer
        self.depthwise_constraint = depthwise_constraint
        self.pointwise_constraint = pointwise_constraint

    @property
    def groups(self):
        return self.depthwise_kernel.shape[-2]

    def _in_channels(self):
        return self.depthwise_kernel.shape[-2]

    def build(self, input_shape):
        channels = input_shape[-1]
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.depthwise_initializer, regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel", shape=(1, 1, channels * self.depth_multiplier, self.filters),
            initializer=self.pointwise_initializer, regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), **self._bias_kwargs())
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return ((input_shape[0],) + self._output_spatial(tuple(input_shape[1:-1])) +
                (self.filters,))

    def _pointwise_spec(self, depthwise_shape):
        spatial = tuple(depthwise_shape[1:-1])
        return ConvSpec(spatial, spatial, (1, 1), (1, 1), (1, 1), (0, 0))

    def call(self, inputs):
        grouped = ops.reshape(self.depthwise_kernel, self.kernel_size + (1, -1))
        depthwise = conv_op(inputs, grouped, self._spec(np.shape(value_of(inputs))))
        y = conv_op(depthwise, self.pointwise_kernel,
                    self._pointwise_spec(np.shape(value_of(depthwise))))
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses = []
        x = as_float32(inputs)
        mid_channels = x.shape[-1] * self.depth_multiplier
        depthwise_geometry, depthwise = self._conv_forward(
            x, self.depthwise_kernel.value, None, LINEAR, 0.0, mid_channels, role="depthwise")
        code, alpha = self._fused or (LINEAR, 0.0)
        pointwise_geometry = self._pointwise_spec(depthwise.shape).kernel_geometry(
            x.shape[0], mid_channels, self.filters)
        y = empty_buffer(self, "y", depthwise.shape[:-1] + (self.filters,))
        conv_kernels.conv_forward(pointwise_geometry, depthwise.reshape(-1),
                                  self.pointwise_kernel.value.reshape(-1),
                                  self.bias.value if self.use_bias else None, code, alpha,
                                  y.reshape(-1))
        act_backward = None
        if self._fused is None:
            y, act_backward = activation_backward_fn(self.activation, y)

        def backprop(dy, need_dx=True, from_preactivation=False):
            train = self.trainable
            dz = output_gradient(self, y, dy, code, alpha, act_backward, from_preactivation,
                                 self.bias if train and self.use_bias else None)
            d_depthwise = self._conv_backward(
                pointwise_geometry, depthwise, self.pointwise_kernel.value, dz,
                grad_buffer(self.pointwise_kernel) if train else None, True, role="d_depthwise")
            return self._conv_backward(
                depthwise_geometry, x, self.depthwise_kernel.value, d_depthwise,
                grad_buffer(self.depthwise_kernel) if train else None, need_dx)
        return y, backprop

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": _serialize(self.depthwise_initializer),
            "pointwise_initializer": _serialize(self.pointwise_initializer),
            "depthwise_regularizer": _serialize(self.depthwise_regularizer),
            "pointwise_regularizer": _serialize(self.pointwise_regularizer),
            "depthwise_constraint": _serialize(self.depthwise_constraint),
            "pointwise_constraint": _serialize(self.pointwise_constraint)})
        return config
