"""InputLayer and Input(): the entry points of a model, holding the batch shape."""
import numpy as np

from pylayers.layers.keras_tensor import KerasTensor, Node
from pylayers.layers.layer import Layer


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, name=None, **kwargs):
        shape = kwargs.pop("input_shape", shape)
        batch_shape = kwargs.pop("batch_input_shape", batch_shape)
        super().__init__(name=name, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("You must pass a `shape` argument to InputLayer/Input.")
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            batch_shape = (batch_size,) + shape
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        if any(d is not None and d < 0 for d in self.batch_shape):
            raise ValueError(f"InputLayer '{self.name}': dimensions must be non-negative. "
                             f"Received: batch_shape={self.batch_shape}")
        self.dtype = dtype or "float32"
        self.sparse = bool(sparse)
        self._takes_integers = np.dtype(self.dtype).kind in "iu"
        self.built = True
        Node(self, (), [KerasTensor(self.batch_shape, dtype=self.dtype, name=self.name)], False)

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def _convert_one(self, x):
        """Integer inputs (e.g. word indices for Embedding) stay integers."""
        if self._takes_integers:
            array = np.asarray(x)
            if array.dtype.kind not in "iu":
                raise TypeError(f"Input '{self.name}' expects integer data ({self.dtype}); "
                                f"received dtype {array.dtype} with shape {array.shape}")
            return array
        return super()._convert_one(x)

    def get_config(self):
        return {"batch_shape": self.batch_shape, "dtype": self.dtype, "sparse": self.sparse,
                "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None):
    """A symbolic tensor to start a functional model: keras.Input(shape=(8,))."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name)
    return layer.output
