"""Symbolic tensors and the call graph they record.

Calling a layer on KerasTensors records a Node (the layer, its input tensors, its
output tensors); each output KerasTensor points back at its node. A functional Model
walks these nodes from its outputs back to its inputs."""
import itertools

_node_counter = itertools.count()


class Node:
    """One call of a layer on symbolic inputs."""

    def __init__(self, layer, inputs, outputs, inputs_as_list):
        self.layer = layer
        self.inputs = tuple(inputs)          # KerasTensors consumed
        self.outputs = tuple(outputs)        # KerasTensors produced
        self.inputs_as_list = inputs_as_list # the layer was called with a list
        self.order = next(_node_counter)     # creation order, for stable sorting
        for index, tensor in enumerate(self.outputs):
            tensor.node, tensor.index = self, index
        layer._inbound_nodes.append(self)

    @property
    def node_index(self):
        return self.layer._inbound_nodes.index(self)


class KerasTensor:
    """A placeholder with a shape (None for unknown dims) and the node that made it."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name
        self.node = None
        self.index = 0

    @property
    def layer(self):
        return self.node.layer if self.node is not None else None

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def is_symbolic(inputs):
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(x, KerasTensor) for x in inputs)
    return isinstance(inputs, KerasTensor)
