"""The tape: records differentiable ops while a training step runs.

An op's forward computes a numpy value. When a tape is recording and one of the op's
inputs is tracked (a Tensor made under the tape, or a watched Variable), the result
is wrapped in a Tensor and a node (output, inputs, backward) is appended. Backward
walks the nodes in reverse, calling each `backward(d_output) -> d_inputs`.
Outside a tape nothing is recorded and ops return plain numpy arrays."""
import threading
import weakref

import numpy as np

from pylayers.ops.variable import Variable

_local = threading.local()


def _tape_stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def current_tape():
    stack = _tape_stack()
    return stack[-1] if stack else None


class Tensor:
    """A value computed under a tape. Supports Python operators through pylayers.ops.
    It refers to its tape weakly: the tape's nodes hold their Tensors, and a strong
    reference back would keep each step's arrays alive until the cycle collector ran."""

    __slots__ = ("data", "_tape", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(self, data, tape):
        self.data = data
        self._tape = weakref.ref(tape)

    @property
    def tape(self):
        """The tape that recorded this value, or None once that tape is gone."""
        return self._tape()

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def numpy(self):
        return self.data

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"<Tensor shape={self.data.shape} dtype={self.data.dtype}>"


class Tape:
    """Records nodes; `gradient(target, d_target)` runs them backward."""

    def __init__(self, watch=()):
        self.nodes = []
        self.watched = {id(v): v for v in watch}

    def __enter__(self):
        _tape_stack().append(self)
        return self

    def __exit__(self, *exc):
        _tape_stack().pop()
        return False

    def tracks(self, x):
        if isinstance(x, Tensor):
            return x.tape is self
        return isinstance(x, Variable) and id(x) in self.watched

    def leaf(self, value):
        """A tracked input whose gradient backward() returns."""
        return Tensor(value, self)

    def record(self, value, inputs, backward):
        out = Tensor(value, self)
        self.nodes.append((out, inputs, backward))
        return out

    def backward(self, target, d_target, sources=()):
        """Propagate d_target from target; accumulate into watched Variables' .grad;
        return the gradients of `sources` (tracked Tensors), None where unreached."""
        grads = {id(target): d_target}
        for out, inputs, backward in reversed(self.nodes):
            d_out = grads.pop(id(out), None)
            if d_out is None:
                continue
            for x, dx in zip(inputs, backward(d_out)):
                if dx is not None and self.tracks(x):
                    self._accumulate(grads, x, dx)
        return [grads.get(id(s)) for s in sources]

    def _accumulate(self, grads, x, dx):
        if isinstance(x, Variable):
            if x.grad is None:
                x.grad = np.zeros_like(x.value)
            x.grad += dx.reshape(x.value.shape)
            return
        key = id(x)
        grads[key] = dx if key not in grads else grads[key] + dx
