"""Variable: a named float32 weight with its training attributes."""
import numpy as np


class Variable:
    """A layer weight. `value` is a float32 numpy array updated in place by optimizers;
    `grad` (same shape) accumulates gradients during a training step."""

    __slots__ = ("value", "grad", "name", "path", "trainable", "regularizer", "constraint")

    def __init__(self, value, name="variable", trainable=True, regularizer=None,
                 constraint=None, path=None):
        self.value = np.array(value, dtype=np.float32, order="C")
        self.grad = None
        self.name = name
        self.path = path or name
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return "float32"

    @property
    def ndim(self):
        return self.value.ndim

    def numpy(self):
        return self.value.copy()

    def assign(self, new_value):
        """Overwrite in place, keeping the buffer (optimizers and views rely on it)."""
        new_value = np.asarray(new_value)
        if new_value.shape != self.value.shape:
            raise ValueError(f"Variable '{self.path}' has shape {self.value.shape}; "
                             f"cannot assign a value of shape {new_value.shape}")
        self.value[...] = new_value
        return self

    def zero_grad(self):
        if self.grad is None:
            self.grad = np.zeros_like(self.value)
        else:
            self.grad.fill(0.0)

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"
