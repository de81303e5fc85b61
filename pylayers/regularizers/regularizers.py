"""L1, L2, L1L2 and orthogonality penalties with their gradients.

Penalties are summed in float64 and returned as Python floats; gradients are float32
arrays of w's shape. The L1 gradient at w == 0 is 0 (l1 * sign(w)), as TensorFlow and
PyTorch differentiate |w| (JAX's grad gives +l1 there).
"""
import numpy as np

from pylayers.initializers._registry import is_real_number

EPSILON = 1e-7  # Keras' backend.epsilon(), the floor of a norm before dividing by it


class Regularizer:
    """Base class: no penalty. Subclasses define `__call__(w)` and `gradient(w)`."""

    def __call__(self, x):
        return 0.0

    def gradient(self, x):
        """d penalty / d x as a float32 array shaped like x."""
        if type(self).__call__ is not Regularizer.__call__:
            raise NotImplementedError(f"{type(self).__name__} defines a penalty but not its "
                                      "gradient(x); pylayers' training loop needs both.")
        return np.zeros(np.shape(x), dtype=np.float32)

    def get_config(self):
        raise NotImplementedError(f"{self} does not implement get_config()")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x**2); both factors default to 0."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = validate_factor(0.0 if l1 is None else l1, "l1")
        self.l2 = validate_factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        return l1_l2_penalty(x, self.l1, self.l2)

    def gradient(self, x):
        return l1_l2_gradient(x, self.l1, self.l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum(|x|)."""

    def __init__(self, l1=0.01):
        self.l1 = validate_factor(0.01 if l1 is None else l1, "l1")

    def __call__(self, x):
        return l1_l2_penalty(x, self.l1, 0.0)

    def gradient(self, x):
        return l1_l2_gradient(x, self.l1, 0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(x**2)."""

    def __init__(self, l2=0.01):
        self.l2 = validate_factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x):
        return l1_l2_penalty(x, 0.0, self.l2)

    def gradient(self, x):
        return l1_l2_gradient(x, 0.0, self.l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean over pairs of |cosine similarity| of the rows (mode "rows") or the
    columns (mode "columns") of a 2-D weight, Keras' formula:
    factor * 0.5 * sum(|N N^T - diag|) / (n (n - 1) / 2), N the unit-normalised vectors."""

    MODES = ("rows", "columns")

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = validate_factor(factor, "factor")
        if mode not in self.MODES:
            raise ValueError("Invalid value for argument `mode`. Expected one of "
                             f'{{"rows", "columns"}}. Received: mode={mode!r}')
        self.mode = mode

    def __call__(self, x):
        vectors = self._vectors(x)
        unit, _ = _unit_rows(vectors)
        cosines = _off_diagonal(unit @ unit.T)
        return float(self._scale(len(vectors)) * np.abs(cosines).sum())

    def gradient(self, x):
        vectors = self._vectors(x)
        unit, norms = _unit_rows(vectors)
        d_cosines = self._scale(len(vectors)) * np.sign(_off_diagonal(unit @ unit.T))
        d_unit = 2.0 * d_cosines @ unit  # d_cosines is symmetric
        d_vectors = _normalisation_backward(unit, norms, d_unit)
        grad = d_vectors if self.mode == "rows" else d_vectors.T
        return grad.astype(np.float32)

    def _vectors(self, x):
        """The vectors compared: rows of x, or its columns (as rows) in "columns" mode."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError("Inputs to OrthogonalRegularizer must have rank 2. "
                             f"Received: inputs.shape={x.shape}")
        vectors = x if self.mode == "rows" else x.T
        if len(vectors) < 2:
            raise ValueError(f"OrthogonalRegularizer(mode={self.mode!r}) needs at least 2 "
                             f"{self.mode} to compare. Received: inputs.shape={x.shape}")
        return vectors

    def _scale(self, count):
        pairs = count * (count - 1) / 2.0
        return self.factor * 0.5 / pairs

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


def l1_l2_penalty(x, l1, l2):
    """l1 * sum(|x|) + l2 * sum(x**2), summed in float64."""
    x = np.asarray(x, dtype=np.float64)
    return float(l1 * np.abs(x).sum() + l2 * np.square(x).sum())


def l1_l2_gradient(x, l1, l2):
    """l1 * sign(x) + 2 * l2 * x as float32 (0 from the L1 term where x == 0)."""
    x = np.asarray(x, dtype=np.float64)
    return (l1 * np.sign(x) + 2.0 * l2 * x).astype(np.float32)


def validate_factor(value, name):
    """`value` as a float, after checking it is finite and non-negative."""
    if not is_real_number(value) or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative "
                         f"float. Received: {name}={value!r}")
    return float(value)


def _unit_rows(vectors):
    """Rows divided by max(norm, EPSILON) (Keras' `normalize`), and the row norms."""
    norms = np.sqrt(np.square(vectors).sum(axis=1, keepdims=True))
    return vectors / np.maximum(norms, EPSILON), norms


def _normalisation_backward(unit, norms, d_unit):
    """Gradient through `_unit_rows`: project out the radial part where the norm is
    above EPSILON; below it the division was by the constant EPSILON."""
    radial = unit * (unit * d_unit).sum(axis=1, keepdims=True)
    return np.where(norms > EPSILON, (d_unit - radial) / np.maximum(norms, EPSILON),
                    d_unit / EPSILON)


def _off_diagonal(matrix):
    return matrix - np.diag(np.diag(matrix))
