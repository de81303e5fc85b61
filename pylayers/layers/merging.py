"""Merge layers for the functional API: Add, Subtract, Multiply, Average, Maximum,
Minimum, Concatenate, Dot. Written with pylayers.ops (their backward is the tape's)."""
import numpy as np

from pylayers import ops
from pylayers.layers.layer import Layer


class Merge(Layer):
    """Elementwise merge of two or more inputs of the same rank, broadcasting size-1 dims."""

    supports_masking = True
    min_inputs, max_inputs = 1, None

    def _check_input(self, input_shape):
        if not (isinstance(input_shape, list) and all(isinstance(s, tuple) for s in input_shape)):
            raise ValueError(f"A merge layer ('{self.name}') should be called on a list of inputs. "
                             f"Received: input_shape={input_shape} (not a list of shapes)")
        count = len(input_shape)
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            expected = (f"exactly {self.min_inputs}" if self.max_inputs == self.min_inputs
                        else f"at least {self.min_inputs}")
            raise ValueError(f"A `{type(self).__name__}` layer ('{self.name}') should be called on "
                             f"{expected} inputs. Received: input_shape={input_shape}")
        batch_sizes = {s[0] for s in input_shape if s} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(f"Layer '{self.name}' cannot merge tensors with different batch sizes. "
                             f"Received tensors with shapes {input_shape}")
        self._merged_shape(input_shape)

    def _merged_shape(self, input_shapes):
        ranks = {len(s) for s in input_shapes}
        if len(ranks) > 1:
            raise ValueError(f"Layer '{self.name}': inputs have different ranks. "
                             f"Received shapes {input_shapes}")
        merged = list(input_shapes[0])
        for shape in input_shapes[1:]:
            for axis in range(1, len(shape)):
                merged[axis] = self._broadcast_dim(merged[axis], shape[axis], input_shapes)
        merged[0] = next((s[0] for s in input_shapes if s[0] is not None), None)
        return tuple(merged)

    def _broadcast_dim(self, a, b, input_shapes):
        """Keras' rule: unknown if either is unknown, else equal sizes or a size of 1,
        which takes the other's size (0 included, as numpy broadcasts)."""
        if a is None or b is None:
            return None
        if a == 1:
            return b
        if b == 1 or a == b:
            return a
        raise ValueError(f"Layer '{self.name}': inputs have incompatible shapes. "
                         f"Received shapes {input_shapes}")

    def compute_output_shape(self, input_shape):
        return self._merged_shape(input_shape)

    def compute_mask(self, inputs, previous_mask):
        if previous_mask is None or not isinstance(previous_mask, list):
            return None
        masks = [m for m in previous_mask if m is not None]
        return np.logical_and.reduce(masks) if masks else None

    def call(self, inputs):
        result = inputs[0]
        for x in inputs[1:]:
            result = self._merge(result, x)
        return result


class Add(Merge):
    def _merge(self, a, b):
        return ops.add(a, b)


class Subtract(Merge):
    min_inputs = max_inputs = 2

    def call(self, inputs):
        return ops.subtract(inputs[0], inputs[1])


class Multiply(Merge):
    def _merge(self, a, b):
        return ops.multiply(a, b)


class Maximum(Merge):
    def _merge(self, a, b):
        return ops.maximum(a, b)


class Minimum(Merge):
    def _merge(self, a, b):
        return ops.minimum(a, b)


class Average(Merge):
    def call(self, inputs):
        total = inputs[0]
        for x in inputs[1:]:
            total = ops.add(total, x)
        return ops.divide(total, float(len(inputs)))


class Concatenate(Merge):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _merged_shape(self, input_shapes):
        rank = len(input_shapes[0])
        axis = self.axis % rank if -rank <= self.axis < rank else None
        mismatch = axis is None or axis == 0 or any(len(s) != rank for s in input_shapes) or any(
            len({s[i] for s in input_shapes} - {None}) > 1 for i in range(1, rank) if i != axis)
        if mismatch:
            raise ValueError(f"A `Concatenate` layer ('{self.name}') requires inputs with matching "
                             "shapes except for the concatenation axis. "
                             f"Received: input_shape={input_shapes}, axis={self.axis}")
        merged = [next((s[i] for s in input_shapes if s[i] is not None), None) for i in range(rank)]
        sizes = [s[axis] for s in input_shapes]
        merged[axis] = None if None in sizes else sum(sizes)
        return tuple(merged)

    def call(self, inputs):
        return ops.concatenate(list(inputs), axis=self.axis)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


class Dot(Merge):
    """Batched dot product of two inputs along `axes` (optionally cosine, `normalize`)."""

    min_inputs = max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.axes = tuple(axes) if isinstance(axes, (list, tuple)) else (int(axes), int(axes))
        self.normalize = bool(normalize)

    def _resolved_axes(self, shapes):
        return tuple(a % len(s) for a, s in zip(self.axes, shapes))

    def _merged_shape(self, input_shapes):
        a, b = input_shapes
        if len(a) > 3 or len(b) > 3 or len(a) < 2 or len(b) < 2:
            raise ValueError(f"Layer '{self.name}': Dot supports inputs of rank 2 or 3. "
                             f"Received shapes {input_shapes}")
        axis_a, axis_b = self._resolved_axes(input_shapes)
        if 0 in (axis_a, axis_b) or (a[axis_a] is not None and b[axis_b] is not None
                                     and a[axis_a] != b[axis_b]):
            raise ValueError(f"Layer '{self.name}': dimension incompatibility: "
                             f"{a[axis_a] if axis_a else 'batch'} != {b[axis_b] if axis_b else 'batch'}. "
                             f"Received shapes {input_shapes}, axes={self.axes}")
        rest = [d for i, d in enumerate(a) if i not in (0, axis_a)] + \
               [d for i, d in enumerate(b) if i not in (0, axis_b)]
        return (a[0],) + tuple(rest or [1])

    def call(self, inputs):
        a, b = inputs
        shapes = [np.shape(ops.value_of(x)) for x in inputs]
        axis_a, axis_b = self._resolved_axes(shapes)
        if self.normalize:
            a, b = _l2_normalize(a, axis_a), _l2_normalize(b, axis_b)
        a = _move_axis_last(a, axis_a, len(shapes[0]))
        b = _move_axis_to(b, axis_b, 1, len(shapes[1]))
        a3 = ops.reshape(a, (shapes[0][0], -1, shapes[0][axis_a]))
        b3 = ops.reshape(b, (shapes[1][0], shapes[1][axis_b], -1))
        out = ops.matmul(a3, b3)
        return ops.reshape(out, (shapes[0][0],) + tuple(d or 1 for d in self._merged_shape(
            [(None,) + s[1:] for s in shapes])[1:]))

    def get_config(self):
        config = super().get_config()
        config.update({"axes": list(self.axes), "normalize": self.normalize})
        return config


def _l2_normalize(x, axis):
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))
    return ops.divide(x, norm)


def _move_axis_last(x, axis, rank):
    order = [i for i in range(rank) if i != axis] + [axis]
    return x if order == list(range(rank)) else ops.transpose(x, order)


def _move_axis_to(x, axis, position, rank):
    order = [i for i in range(rank) if i != axis]
    order.insert(position, axis)
    return x if order == list(range(rank)) else ops.transpose(x, order)
