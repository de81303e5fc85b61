"""Variable: a named float32 weight with its training attributes."""
import numpy as np


class Variable:
    """A layer weight. `value` is a float32 numpy array updated in place by optimizers;
    `grad` (same shape) accumulates gradients during a training step."""

    __slots__ = ("value", "_grad", "_grad_is_zero", "name", "path", "trainable",
                 "regularizer", "constraint")

    def __init__(self, value, name="variable", trainable=True, regularizer=None,
                 constraint=None, path=None):
        self.value = np.array(value, dtype=np.float32, order="C")
        self._grad, self._grad_is_zero = None, False
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

    @property
    def grad(self):
        """The gradient accumulated since zero_grad (None before the first)."""
        if self._grad_is_zero:
            self._grad.fill(0.0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, array):
        self._grad, self._grad_is_zero = array, False

    def zero_grad(self):
        """Zero the gradient. The zeros are written when `grad` is next read, so a kernel
        that overwrites the whole gradient (see gradient_target) never writes them."""
        if self._grad is None:
            self._grad = np.empty_like(self.value)
        self._grad_is_zero = True

    def gradient_target(self):
        """(the gradient array, whether to add to it): after zero_grad the array is to be
        overwritten whole, and gradient_written() called once it has been."""
        if self._grad is None:
            self.zero_grad()
        return self._grad, not self._grad_is_zero

    def gradient_written(self):
        self._grad_is_zero = False

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"
