"""Recurrent cells: SimpleRNNCell, LSTMCell, GRUCell (keras.layers).

A cell computes one time step, `call(inputs, states, training=False) -> (output,
new_states)`, written with pylayers.ops: it is the float64 reference and what the
generic `RNN(cell)` loop runs. The built-in cells also describe their fused C kernel
(`fused_activations`), which the recurrent layers of recurrent.py run over whole
sequences. Weights, their layouts and initial values are Keras 3's."""
import numpy as np

from pylayers import activations, initializers, ops
from pylayers._kernels import rnn as rnn_kernels
from pylayers.layers.layer import Layer
from pylayers.utils.rng import global_rng


def _serialize(obj):
    from pylayers.saving.serialization import serialize_keras_object
    return serialize_keras_object(obj)


def check_units(units):
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError("Received an invalid value for argument `units`, expected a positive "
                         f"integer, got {units}.")
    return int(units)


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"Received an invalid value for argument `{name}`, expected a float "
                         f"between 0 and 1, got {value}.")
    return float(value)


def kernel_code(activation):
    """The fused kernels' code for an activation, or None when only the reference runs it."""
    name = activations.serialize(activation)
    if name in rnn_kernels.ACTIVATION_CODES and activations.get(name) is activation:
        return rnn_kernels.ACTIVATION_CODES[name]
    return None


class DropoutRNNCell(Layer):
    """A cell with Keras' `dropout` (on the inputs) and `recurrent_dropout` (on the
    previous output): one mask per sequence, drawn at the sequence's first step."""

    def __init__(self, dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.reset_dropout_masks()

    def reset_dropout_masks(self):
        self._dropout_mask = None
        self._recurrent_dropout_mask = None

    def _keep_mask(self, rate, shape):
        rng = self._rng or global_rng()
        keep = rng.random(shape) >= rate
        return keep.astype(np.float32) / np.float32(1.0 - rate)

    def dropout_mask(self, batch, width):
        """(batch, width) inverted-dropout scale for the inputs, fixed for the sequence."""
        if self._dropout_mask is None or self._dropout_mask.shape != (batch, width):
            self._dropout_mask = self._keep_mask(self.dropout, (batch, width))
        return self._dropout_mask

    def recurrent_dropout_mask(self, batch, width):
        if (self._recurrent_dropout_mask is None
                or self._recurrent_dropout_mask.shape != (batch, width)):
            self._recurrent_dropout_mask = self._keep_mask(self.recurrent_dropout, (batch, width))
        return self._recurrent_dropout_mask

    def _dropped(self, inputs, h_prev, training):
        """The step's inputs and previous output after this sequence's dropout masks."""
        if training and 0 < self.dropout < 1:
            shape = np.shape(ops.value_of(inputs))
            inputs = ops.multiply(inputs, self.dropout_mask(*shape))
        if training and 0 < self.recurrent_dropout < 1:
            shape = np.shape(ops.value_of(h_prev))
            h_prev = ops.multiply(h_prev, self.recurrent_dropout_mask(*shape))
        return inputs, h_prev

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                       "seed": self.seed})
        return config


class _GatedCell(DropoutRNNCell):
    """Shared arguments and weights of the three built-in cells: kernel (in, G),
    recurrent_kernel (units, G), bias."""

    gate_count = 1
    has_recurrent_activation = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
                         **kwargs)
        self.units = check_units(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = kernel_regularizer
        self.recurrent_regularizer = recurrent_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint = kernel_constraint
        self.recurrent_constraint = recurrent_constraint
        self.bias_constraint = bias_constraint

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def bias_shape(self):
        return (self.gate_count * self.units,)

    def bias_initial_values(self):
        return self.bias_initializer

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Layer '{self.name}': the last dimension of the inputs must be "
                             f"known. Received: input_shape={tuple(input_shape)}")
        width = self.gate_count * self.units
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, width),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel",
                                                shape=(self.units, width),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = (self.add_weight(name="bias", shape=self.bias_shape(),
                                     initializer=self.bias_initial_values(),
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def fused_activations(self):
        """(activation code, recurrent activation code) for the C kernels, or None."""
        act = kernel_code(self.activation)
        rec = kernel_code(self.recurrent_activation) if self.has_recurrent_activation else 0
        return None if act is None or rec is None else (act, rec)

    def get_initial_state(self, batch_size):
        return [np.zeros((batch_size, self.units), dtype=np.float32)]

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units, "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _serialize(self.kernel_initializer),
            "recurrent_initializer": _serialize(self.recurrent_initializer),
            "bias_initializer": _serialize(self.bias_initializer),
            "kernel_regularizer": _serialize(self.kernel_regularizer),
            "recurrent_regularizer": _serialize(self.recurrent_regularizer),
            "bias_regularizer": _serialize(self.bias_regularizer),
            "kernel_constraint": _serialize(self.kernel_constraint),
            "recurrent_constraint": _serialize(self.recurrent_constraint),
            "bias_constraint": _serialize(self.bias_constraint)})
        if self.has_recurrent_activation:
            config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        return config


class SimpleRNNCell(_GatedCell):
    """h = activation(x @ kernel + bias + h_prev @ recurrent_kernel)."""

    gate_count = 1
    has_recurrent_activation = False

    def __init__(self, units, activation="tanh", use_bias=True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["seed"]   # Keras' SimpleRNN config has none
        return config

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        inputs, h_prev = self._dropped(inputs, h_prev, training)
        z = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            z = ops.add(z, self.bias)
        h = self.activation(ops.add(z, ops.matmul(h_prev, self.recurrent_kernel)))
        return h, [h] if isinstance(states, (list, tuple)) else h


class LSTMCell(_GatedCell):
    """Gates i, f, c, o in the kernel's column blocks; c = f * c_prev + i * act(x_c + h U_c);
    h = o * act(c)."""

    gate_count = 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def bias_initial_values(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer

        def with_unit_forget_bias(shape, dtype=None):
            return np.concatenate([base((units,), dtype=dtype), np.ones(units, dtype=dtype),
                                   base((2 * units,), dtype=dtype)])
        return with_unit_forget_bias

    def get_initial_state(self, batch_size):
        return [np.zeros((batch_size, self.units), dtype=np.float32) for _ in range(2)]

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        inputs, h_dropped = self._dropped(inputs, h_prev, training)
        z = ops.add(ops.matmul(inputs, self.kernel), ops.matmul(h_dropped, self.recurrent_kernel))
        if self.use_bias:
            z = ops.add(z, self.bias)
        u = self.units
        i = self.recurrent_activation(ops.take_slice(z, (Ellipsis, slice(0, u))))
        f = self.recurrent_activation(ops.take_slice(z, (Ellipsis, slice(u, 2 * u))))
        g = self.activation(ops.take_slice(z, (Ellipsis, slice(2 * u, 3 * u))))
        o = self.recurrent_activation(ops.take_slice(z, (Ellipsis, slice(3 * u, 4 * u))))
        c = ops.add(ops.multiply(f, c_prev), ops.multiply(i, g))
        h = ops.multiply(o, self.activation(c))
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


class GRUCell(_GatedCell):
    """Gates z, r, h; h = z * h_prev + (1 - z) * act(x_h + r * (h_prev U_h + b_rh)) with
    reset_after (bias (2, 3 * units): input row, recurrent row), else
    act(x_h + (r * h_prev) U_h)."""

    gate_count = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def bias_shape(self):
        width = 3 * self.units
        return (2, width) if self.reset_after else (width,)

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        inputs, h_dropped = self._dropped(inputs, h_prev, training)
        u = self.units

        def block(matrix, k):
            return ops.take_slice(matrix, (Ellipsis, slice(k * u, (k + 1) * u)))
        x = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            input_bias = ops.take_slice(self.bias, 0) if self.reset_after else self.bias
            x = ops.add(x, input_bias)
        if self.reset_after:
            rec = ops.matmul(h_dropped, self.recurrent_kernel)
            if self.use_bias:
                rec = ops.add(rec, ops.take_slice(self.bias, 1))
            z = self.recurrent_activation(ops.add(block(x, 0), block(rec, 0)))
            r = self.recurrent_activation(ops.add(block(x, 1), block(rec, 1)))
            rec_h = ops.multiply(r, block(rec, 2))
        else:
            rec = ops.matmul(h_dropped,
                             ops.take_slice(self.recurrent_kernel, (Ellipsis, slice(0, 2 * u))))
            z = self.recurrent_activation(ops.add(block(x, 0), block(rec, 0)))
            r = self.recurrent_activation(ops.add(block(x, 1), block(rec, 1)))
            rec_h = ops.matmul(ops.multiply(r, h_dropped), block(self.recurrent_kernel, 2))
        hh = self.activation(ops.add(block(x, 2), rec_h))
        h = ops.add(ops.multiply(z, h_prev), ops.multiply(ops.subtract(1.0, z), hh))
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        config = super().get_config()
        config["reset_after"] = self.reset_after
        return config
