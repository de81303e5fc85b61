"""Symbolic tensors: what Input() returns and layers return when called on them."""


class KerasTensor:
    """A placeholder with a shape (None for unknown dims) and the layer call that made it."""

    def __init__(self, shape, dtype="float32", layer=None, node_inputs=(), name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.layer = layer               # the layer whose call produced this tensor
        self.node_inputs = node_inputs   # the KerasTensors that call consumed
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def is_symbolic(inputs):
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(x, KerasTensor) for x in inputs)
    return isinstance(inputs, KerasTensor)
