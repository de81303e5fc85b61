"""Recurrent layers: RNN(cell), SimpleRNN, LSTM, GRU (keras.layers).

`RNN.call` runs the cell's `call` over the time steps in Python with pylayers.ops: the
float64 reference, and the training path of any custom cell. For the built-in cells
with kernel-supported activations, `_forward` runs the whole sequence in C
(csrc/rnn.c: one input GEMM, then per step a recurrent GEMM and a fused gate kernel;
backward through time likewise) and returns one backprop for the whole layer.

Masks (batch, time): a masked step leaves the states unchanged and outputs the
previous output (zeros with zero_output_for_mask), as Keras does."""
import functools
import inspect

import numpy as np

from pylayers import ops
from pylayers._kernels import rnn as rnn_kernels
from pylayers._kernels._runtime import _time_major_view
from pylayers.layers.buffers import empty_buffer
from pylayers.layers.core import grad_buffer
from pylayers.layers.layer import Layer
from pylayers.layers.rnn_cells import GRUCell, LSTMCell, SimpleRNNCell, check_units
from pylayers.ops import Tape, value_of
from pylayers.ops.mode import floatx, reference_mode_on


def _serialize(obj):
    from pylayers.saving.serialization import serialize_keras_object
    return serialize_keras_object(obj)


def tape_forward(layer, inputs, training, mask):
    """`layer.call` under a tape, like Layer._forward, for one output or a list of them
    (recorded as one packed vector so a single backward reaches every output)."""
    layer._step_losses = []
    with Tape(watch=layer.trainable_weights) as tape:
        leaf = tape.leaf(inputs)
        out = layer._call_with_training(leaf, training, mask)
        outs = out if isinstance(out, list) else [out]
        packed = ops.concatenate([ops.reshape(o, (-1,)) for o in outs], axis=0)
    ys = [np.array(value_of(o), dtype=floatx()) for o in outs]

    def backprop(dy, need_dx=True):
        dys = dy if isinstance(out, list) else [dy]
        flat = [np.zeros(y.size, dtype=y.dtype) if d is None else np.ravel(d)
                for y, d in zip(ys, dys)]
        (dx,) = tape.backward(packed, np.concatenate(flat), [leaf])
        if not need_dx:
            return None
        return np.zeros_like(leaf.data) if dx is None else dx
    return (ys if isinstance(out, list) else ys[0]), backprop


class RNN(Layer):
    """Runs `cell` over the time axis of (batch, time, features) inputs."""

    supports_masking = True

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, dict):
            from pylayers.saving.serialization import deserialize_layer
            cell = deserialize_layer(cell)
        if not callable(getattr(cell, "call", None)):
            raise ValueError(f"Argument `cell` should have a `call` method. Received: cell={cell}")
        if getattr(cell, "state_size", None) is None:
            raise ValueError("The RNN cell should have a `state_size` attribute (single integer "
                             "or list of integers, one integer per RNN state). "
                             f"Received: cell={cell}")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.states = None
        self._given_initial_state = None
        self.input_spec_ndim = 3
        self._cell_takes_training = "training" in inspect.signature(cell.call).parameters

    # ---- shapes -----------------------------------------------------------------------

    @property
    def state_size(self):
        size = self.cell.state_size
        return [int(size)] if isinstance(size, (int, np.integer)) else [int(s) for s in size]

    @property
    def output_size(self):
        return int(getattr(self.cell, "output_size", None) or self.state_size[0])

    def _check_input(self, input_shape):
        if isinstance(input_shape, list):
            raise ValueError(f"Layer '{self.name}' expects one input; received {len(input_shape)}")
        if len(input_shape) != 3:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected ndim=3, found ndim={len(input_shape)}. Full shape "
                             f"received: {tuple(input_shape)}")
        features = getattr(self, "_features", None)
        if self.built and input_shape[-1] != features:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value {features}, but "
                             f"received input with shape {tuple(input_shape)}")
        if input_shape[1] == 0:
            raise ValueError(f"Layer '{self.name}' needs at least one time step. Received "
                             f"input with shape {tuple(input_shape)}")

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}': the last dimension of the inputs must be "
                             f"known. Received: input_shape={tuple(input_shape)}")
        if isinstance(self.cell, Layer):
            self.cell._build_once((input_shape[0], input_shape[-1]))
        self._features = input_shape[-1]
        if self.stateful:
            if input_shape[0] is None:
                raise ValueError("When using `stateful=True` in a RNN, the batch size must be "
                                 f"static. Found dynamic batch size: sequence.shape={tuple(input_shape)}")
            self.reset_states()
        self.built = True

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        if self.return_sequences:
            output_shape = (batch, input_shape[1], self.output_size)
        else:
            output_shape = (batch, self.output_size)
        if self.return_state:
            return [output_shape] + [(batch, size) for size in self.state_size]
        return output_shape

    def compute_mask(self, inputs, previous_mask):
        output_mask = previous_mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    # ---- states -----------------------------------------------------------------------

    def reset_states(self, states=None):
        """Zero the carried states of a stateful layer (or set them to `states`)."""
        if not self.stateful:
            return
        batch = self._stateful_batch_size()
        zeros = self._zero_states(batch)
        if states is not None:
            states = states if isinstance(states, (list, tuple)) else [states]
            zeros = [np.array(s, dtype=np.float32).reshape(z.shape) for s, z in zip(states, zeros)]
        self.states = zeros

    reset_state = reset_states

    def _stateful_batch_size(self):
        shape = self._batch_input_shape
        if self.states is not None:
            return self.states[0].shape[0]
        if shape is None or shape[0] is None:
            raise ValueError(f"Layer '{self.name}' is stateful: give it a fixed batch size "
                             "(batch_size= or batch_input_shape=) or call it once first.")
        return shape[0]

    def _zero_states(self, batch):
        return [np.zeros((batch, size), dtype=np.float32) for size in self.state_size]

    def _initial_states(self, batch):
        """The states the sequence starts from: given, carried (stateful) or zeros."""
        if self._given_initial_state is not None:
            states = self._given_initial_state
        elif self.stateful and self.states is not None:
            states = self.states
            if states[0].shape[0] != batch:
                raise ValueError("If an RNN is stateful, the batch size of the input sequences "
                                 "must be the same as the batch size of the initial state. \n"
                                 f"- Expected batch size: {states[0].shape[0]}\n"
                                 f"- Received batch size: {batch}")
        else:
            states = self._zero_states(batch)
        return [np.asarray(s, dtype=floatx()) for s in states]

    def __call__(self, inputs, initial_state=None, training=None, mask=None, **kwargs):
        if initial_state is None:
            return super().__call__(inputs, training=training, mask=mask, **kwargs)
        states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
        states = [np.asarray(value_of(s), dtype=np.float32) for s in states]
        batch = np.shape(value_of(inputs))[0]
        expected = [(batch, size) for size in self.state_size]
        if [s.shape for s in states] != expected:
            raise ValueError(f"Layer '{self.name}' expects initial states of shapes {expected}; "
                             f"received {[s.shape for s in states]}")
        self._given_initial_state = states
        try:
            return super().__call__(inputs, training=training, mask=mask, **kwargs)
        finally:
            self._given_initial_state = None

    # ---- the float64 reference: the cell's call, step by step -------------------------

    def call(self, sequences, training=False, mask=None):
        shape = np.shape(value_of(sequences))
        batch, steps = shape[0], shape[1]
        states = self._initial_states(batch)
        keep = None if mask is None else np.asarray(value_of(mask), dtype=bool)
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        kwargs = {"training": training} if self._cell_takes_training else {}
        reset = getattr(self.cell, "reset_dropout_masks", None)
        if reset:
            reset()
        outputs = []
        for t in order:
            output, new_states = self.cell.call(ops.take_slice(sequences, (slice(None), t)),
                                                states, **kwargs)
            new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
            if keep is not None:
                step_keep = keep[:, t:t + 1]
                previous = (np.zeros(np.shape(value_of(output)), dtype=floatx())
                            if self.zero_output_for_mask else states[0])
                output = ops.where(step_keep, output, previous)
                new_states = [ops.where(step_keep, n, s) for n, s in zip(new_states, states)]
            states = new_states
            outputs.append(output)
        if reset:
            reset()
        if self.stateful:
            self.states = [np.array(value_of(s), dtype=np.float32) for s in states]
        y = ops.stack(outputs, axis=1) if self.return_sequences else outputs[-1]
        return [y] + states if self.return_state else y

    # ---- training and inference ---------------------------------------------------------

    def _forward(self, inputs, training=False, mask=None):
        sequence = None if reference_mode_on() else self._fused_sequence(training)
        if sequence is None:
            return tape_forward(self, inputs, training, mask)
        return self._fused_forward(sequence, inputs, training, mask)

    def _fused_sequence(self, training):
        """The whole-sequence C kernel runner for this cell, or None (reference loop)."""
        runner = FUSED_SEQUENCES.get(type(self.cell))
        if runner is None or self.cell.fused_activations() is None:
            return None
        if training and 0 < self.cell.recurrent_dropout < 1:
            return None
        return runner

    def _fused_forward(self, run_sequence, inputs, training, mask):
        self._step_losses = []
        x = _as_sequence(inputs)
        keep = None if mask is None else np.asarray(mask, dtype=bool)
        if self.go_backwards:
            x = np.ascontiguousarray(x[:, ::-1])
            keep = None if keep is None else keep[:, ::-1]
        input_scale = None
        if training and 0 < self.cell.dropout < 1:
            self.cell.reset_dropout_masks()
            input_scale = self.cell.dropout_mask(x.shape[0], x.shape[2])[:, None, :]
            self.cell.reset_dropout_masks()
            x = x * input_scale
        h_all, finals, backward = run_sequence(self.cell, x, keep,
                                               self._initial_states(x.shape[0]),
                                               functools.partial(empty_buffer, self))
        zero_masked = self.zero_output_for_mask and keep is not None
        if self.return_sequences and training and not zero_masked:
            y = h_all[1:].transpose(1, 0, 2)   # no copy: a stacked layer reads it time-major
        elif self.return_sequences:
            y = rnn_kernels.to_batch_major(h_all[1:])
            if zero_masked:
                y *= keep[..., None]
        else:
            y = finals[0].copy()
        if self.stateful:
            self.states = [f.copy() for f in finals]
        outputs = [y] + [f.copy() for f in finals] if self.return_state else y

        def backprop(dy, need_dx=True):
            d_out, d_states = (dy[0], list(dy[1:])) if self.return_state else (dy, [])
            d_finals = [np.zeros_like(f) for f in finals]
            for d_final, d_state in zip(d_finals, d_states):
                if d_state is not None:
                    d_final += d_state
            dy_seq = None
            if d_out is not None and self.return_sequences:
                dy_seq = _as_sequence(d_out)
                if zero_masked:
                    dy_seq = dy_seq * keep[..., None]
            elif d_out is not None:
                d_finals[0] += d_out
            dx = backward(dy_seq, d_finals, need_dx)
            if dx is None:
                return None
            if input_scale is not None:
                dx *= input_scale
            return dx[:, ::-1] if self.go_backwards else dx
        return outputs, backprop

    # ---- config -----------------------------------------------------------------------

    def _rnn_config(self):
        return {"return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful,
                "unroll": self.unroll, "zero_output_for_mask": self.zero_output_for_mask}

    def get_config(self):
        from pylayers.saving.serialization import serialize_layer
        config = super().get_config()
        config.update(self._rnn_config())
        config["cell"] = serialize_layer(self.cell)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pylayers.saving.serialization import deserialize_layer
        config = dict(config)
        cell = deserialize_layer(config.pop("cell"), custom_objects)
        return cls(cell, **config)


# ---- whole-sequence C kernels per built-in cell -------------------------------------
# Each runner takes (cell, x (B, T, I) float32, keep (B, T) bool or None, initial
# states, alloc: the work-array pool or None) and returns (h_all (T + 1, B, U), final
# states, backward) where
# backward(dy_seq (B, T, U) or None, d_finals, need_dx) accumulates the cell's weight
# gradients and returns dx (B, T, I) or None.

def _weight_values(cell):
    bias = cell.bias.value if cell.use_bias else None
    return cell.kernel.value, cell.recurrent_kernel.value, bias


def _grad_buffers(cell):
    if not cell.trainable:
        return None, None, None
    bias = grad_buffer(cell.bias) if cell.use_bias else None
    return grad_buffer(cell.kernel), grad_buffer(cell.recurrent_kernel), bias


def _as_sequence(seq):
    """seq (batch, time, features) as the kernels read it: a time-major view as it is
    (the output or input gradient of a stacked layer in training), else C-contiguous
    float32."""
    if _time_major_view(seq) is not None:
        return seq
    return np.ascontiguousarray(seq, dtype=np.float32)


def _run_lstm(cell, x, keep, states, alloc):
    act, rec_act = cell.fused_activations()
    kernel, recurrent, bias = _weight_values(cell)
    tape = rnn_kernels.lstm_forward(x, kernel, recurrent, bias, keep, act, rec_act, *states,
                                    alloc=alloc)
    h_all, c_all = tape[4], tape[5]

    def backward(dy_seq, d_finals, need_dx):
        dh, dc = d_finals
        return rnn_kernels.lstm_backward(tape, kernel, recurrent, bias, act, rec_act, dy_seq,
                                         dh, dc, *_grad_buffers(cell), need_dx, alloc=alloc)
    return h_all, [h_all[-1], c_all[-1]], backward


def _run_gru(cell, x, keep, states, alloc):
    act, rec_act = cell.fused_activations()
    kernel, recurrent, bias = _weight_values(cell)
    tape = rnn_kernels.gru_forward(x, kernel, recurrent, bias, keep, act, rec_act,
                                   cell.reset_after, states[0], alloc=alloc)
    h_all = tape[4]

    def backward(dy_seq, d_finals, need_dx):
        return rnn_kernels.gru_backward(tape, kernel, recurrent, bias, act, rec_act,
                                        cell.reset_after, dy_seq, d_finals[0],
                                        *_grad_buffers(cell), need_dx, alloc=alloc)
    return h_all, [h_all[-1]], backward


def _run_simple_rnn(cell, x, keep, states, alloc):
    act, _ = cell.fused_activations()
    kernel, recurrent, bias = _weight_values(cell)
    tape = rnn_kernels.simple_rnn_forward(x, kernel, recurrent, bias, keep, act, states[0],
                                          alloc=alloc)
    h_all = tape[2]

    def backward(dy_seq, d_finals, need_dx):
        return rnn_kernels.simple_rnn_backward(tape, kernel, recurrent, bias, act, dy_seq,
                                               d_finals[0], *_grad_buffers(cell), need_dx,
                                               alloc=alloc)
    return h_all, [h_all[-1]], backward


FUSED_SEQUENCES = {LSTMCell: _run_lstm, GRUCell: _run_gru, SimpleRNNCell: _run_simple_rnn}


# ---- the Keras layer classes ---------------------------------------------------------

_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "zero_output_for_mask")
_BASE_ARGS = ("name", "trainable", "dtype", "input_shape", "input_dim", "batch_size",
              "batch_input_shape", "weights", "activity_regularizer", "autocast")


class _CellLayer(RNN):
    """An RNN built around one built-in cell made from the layer's own arguments."""

    cell_class = None

    def __init__(self, units, use_cudnn="auto", implementation=None, time_major=False,
                 **kwargs):
        check_units(units)
        rnn_kwargs = {k: kwargs.pop(k) for k in _RNN_ARGS if k in kwargs}
        base_kwargs = {k: kwargs.pop(k) for k in _BASE_ARGS if k in kwargs}
        name = base_kwargs.get("name")
        cell = self.cell_class(units, name=f"{name}_cell" if name else None,
                               trainable=base_kwargs.get("trainable", True), **kwargs)
        super().__init__(cell, **rnn_kwargs, **base_kwargs)

    def __getattr__(self, name):
        """Cell arguments read through the layer (layer.units, layer.dropout, ...)."""
        if name.startswith("_") or "cell" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["cell"], name)

    def get_config(self):
        config = Layer.get_config(self)
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config.update(cell_config)
        config["activity_regularizer"] = _serialize(self.activity_regularizer)
        config.update(self._rnn_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


class SimpleRNN(_CellLayer):
    cell_class = SimpleRNNCell


class LSTM(_CellLayer):
    cell_class = LSTMCell


class GRU(_CellLayer):
    cell_class = GRUCell
