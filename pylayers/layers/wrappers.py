"""Layer wrappers: Bidirectional (a recurrent layer run both ways) and TimeDistributed
(a layer applied to every time step), keras.layers."""
import numpy as np

from pylayers import ops
from pylayers.layers.layer import Layer
from pylayers.layers.recurrent import tape_forward
from pylayers.ops.mode import reference_mode_on

MERGE_MODES = ("sum", "mul", "ave", "concat", None)


def _clone(layer, **overrides):
    """A new layer of the same class and config (fresh weights), with `overrides`."""
    config = layer.get_config()
    config.update(overrides)
    return type(layer).from_config(config)


def _reverse_time(x):
    return x[:, ::-1]


class Bidirectional(Layer):
    """Runs a copy of `layer` forward and one over the reversed sequence; merges them."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        if not isinstance(layer, Layer) or not hasattr(layer, "return_sequences"):
            raise ValueError("Please initialize `Bidirectional` layer with a recurrent "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should be "
                             "one of {'sum', 'mul', 'ave', 'concat', None}")
        super().__init__(**kwargs)
        self.forward_layer = _clone(layer, name="forward_" + layer.name.removeprefix("forward_"))
        if backward_layer is None:
            self.backward_layer = _clone(layer,
                                         name="backward_" + layer.name.removeprefix("backward_"),
                                         go_backwards=not layer.go_backwards)
        else:
            if backward_layer.return_sequences != layer.return_sequences or \
                    backward_layer.return_state != layer.return_state:
                raise ValueError("Forward layer and backward layer should have the same "
                                 "`return_sequences` and `return_state` values.")
            self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        for direction in (self.forward_layer, self.backward_layer):
            direction.zero_output_for_mask = self.return_sequences
        self.supports_masking = True
        if weights is not None:
            self._initial_weights = weights

    def _check_input(self, input_shape):
        self.forward_layer._check_input(input_shape)

    def build(self, input_shape):
        self.forward_layer._build_once(input_shape)
        self.backward_layer._build_once(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        forward = self.forward_layer.compute_output_shape(input_shape)
        backward = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            states = list(forward[1:]) + list(backward[1:])
            forward, backward = forward[0], backward[0]
        if self.merge_mode is None:
            outputs = [tuple(forward), tuple(backward)]
        elif self.merge_mode == "concat":
            outputs = [tuple(forward[:-1]) + (forward[-1] + backward[-1],)]
        else:
            outputs = [tuple(forward)]
        if len(outputs) == 1 and not states:
            return outputs[0]
        return outputs + [tuple(s) for s in states]

    def compute_mask(self, inputs, previous_mask):
        output_mask = previous_mask if self.return_sequences else None
        masks = [output_mask, output_mask] if self.merge_mode is None else [output_mask]
        if self.return_state:
            n_states = len(self.forward_layer.state_size) * 2
            return masks + [None] * n_states
        return masks[0] if len(masks) == 1 else masks

    def _split(self, out):
        """(output, states) of one direction's result."""
        if self.return_state:
            return out[0], list(out[1:])
        return out, []

    def _merge(self, forward, backward, lib):
        """lib is pylayers.ops (reference) or numpy-like functions (fused path)."""
        if self.merge_mode == "concat":
            return lib.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return lib.add(forward, backward)
        if self.merge_mode == "mul":
            return lib.multiply(forward, backward)
        if self.merge_mode == "ave":
            return lib.multiply(lib.add(forward, backward), 0.5)
        return [forward, backward]

    def _assemble(self, merged, states):
        outputs = merged if isinstance(merged, list) else [merged]
        outputs = outputs + states
        return outputs[0] if len(outputs) == 1 else outputs

    def call(self, inputs, training=False, mask=None):
        forward, forward_states = self._split(
            self.forward_layer.call(inputs, training=training, mask=mask))
        backward, backward_states = self._split(
            self.backward_layer.call(inputs, training=training, mask=mask))
        if self.return_sequences:
            backward = ops.take_slice(backward, (slice(None), slice(None, None, -1)))
        return self._assemble(self._merge(forward, backward, ops),
                              forward_states + backward_states)

    def _forward(self, inputs, training=False, mask=None):
        if reference_mode_on():
            return tape_forward(self, inputs, training, mask)
        self._step_losses = []
        out_f, back_f = self.forward_layer._train_forward(inputs, training, mask)
        out_b, back_b = self.backward_layer._train_forward(inputs, training, mask)
        forward, forward_states = self._split(out_f)
        backward, backward_states = self._split(out_b)
        if self.return_sequences:
            backward = np.ascontiguousarray(_reverse_time(backward))
        merged = self._merge(forward, backward, np)
        n_forward_states = len(forward_states)

        def backprop(dy, need_dx=True):
            dys = list(dy) if isinstance(dy, (list, tuple)) else [dy]
            n_merged = 2 if self.merge_mode is None else 1
            d_merged, d_states = dys[:n_merged], dys[n_merged:]
            d_forward, d_backward = self._merge_backward(d_merged, forward, backward)
            if self.return_sequences and d_backward is not None:
                d_backward = np.ascontiguousarray(_reverse_time(d_backward))
            if self.return_state:
                d_forward = [d_forward] + d_states[:n_forward_states]
                d_backward = [d_backward] + d_states[n_forward_states:]
            dx_forward = back_f(d_forward, need_dx)
            dx_backward = back_b(d_backward, need_dx)
            return dx_forward + dx_backward if need_dx else None
        return self._assemble(merged, forward_states + backward_states), backprop

    def _merge_backward(self, d_merged, forward, backward):
        if self.merge_mode is None:
            return d_merged[0], d_merged[1]
        d = d_merged[0]
        if self.merge_mode == "concat":
            width = forward.shape[-1]
            return d[..., :width], d[..., width:]
        if self.merge_mode == "sum":
            return d, d
        if self.merge_mode == "mul":
            return d * backward, d * forward
        return d * 0.5, d * 0.5

    def reset_states(self, states=None):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def get_config(self):
        from pylayers.saving.serialization import serialize_layer
        config = super().get_config()
        config["merge_mode"] = self.merge_mode
        config["layer"] = serialize_layer(self.forward_layer)
        config["backward_layer"] = serialize_layer(self.backward_layer)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pylayers.saving.serialization import deserialize_layer
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"), custom_objects)
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize_layer(backward, custom_objects)
        return cls(layer, backward_layer=backward, **config)


class TimeDistributed(Layer):
    """Applies `layer` to every time step: (batch, time, ...) -> (batch, time, ...)."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError("Please initialize `TimeDistributed` layer with a "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        super().__init__(**kwargs)
        self.layer = layer
        self.supports_masking = True

    def _check_input(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) < 3:
            raise ValueError("`TimeDistributed` Layer should be passed an `input_shape` with "
                             f"at least 3 dimensions, received: {input_shape}")
        if self.built:
            self.layer._check_input((None,) + tuple(input_shape[2:]))

    def build(self, input_shape):
        self.layer._build_once((None,) + tuple(input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    @staticmethod
    def _steps_as_batch(shape):
        return (shape[0] * shape[1],) + tuple(shape[2:])

    def call(self, inputs, training=False):
        shape = np.shape(ops.value_of(inputs))
        y = self.layer._call_with_training(ops.reshape(inputs, self._steps_as_batch(shape)),
                                           training)
        return ops.reshape(y, shape[:2] + np.shape(ops.value_of(y))[1:])

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses = []
        shape = np.shape(inputs)
        y, backprop_inner = self.layer._train_forward(
            np.reshape(inputs, self._steps_as_batch(shape)), training)
        out_shape = shape[:2] + y.shape[1:]

        def backprop(dy, need_dx=True):
            dx = backprop_inner(np.reshape(dy, y.shape), need_dx)
            return None if dx is None else np.reshape(dx, shape)
        return y.reshape(out_shape), backprop

    def get_config(self):
        from pylayers.saving.serialization import serialize_layer
        config = super().get_config()
        config["layer"] = serialize_layer(self.layer)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pylayers.saving.serialization import deserialize_layer
        config = dict(config)
        return cls(deserialize_layer(config.pop("layer"), custom_objects), **config)
