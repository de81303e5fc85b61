"""Training consecutive Dense layers of a Sequential model as one chain of kernel calls
(pylayers._kernels.dense.DenseTrainChain): one call for the forward of the whole run and
one for its backward, with no Python between the layers. Each layer gets the same
kernel calls, with the same arguments, as its own forward and backprop make, so the
outputs and gradients are the same bits."""
import numpy as np

from pylayers._kernels.dense import DenseTrainChain
from pylayers.layers.buffers import aligned_empty, empty_buffer
from pylayers.layers.core import Dense, as_rows
from pylayers.ops.mode import reference_mode_on

CHAINS_KEPT = 2   # batch sizes: an epoch's full batches and its last, shorter one


def chains(layer):
    """Whether layer trains inside a chain: Dense's own fused forward (no subclass
    forward or call), built, with no activity regularizer."""
    return type(layer)._forward is Dense._forward and layer.built \
        and layer._fused is not None and layer.activity_regularizer is None


def dense_run_length(stack, first, x, mask):
    """How many layers from stack[first] train as one chain on x: 0 unless at least two
    chaining Dense layers follow one another, x is a float32 matrix the kernels read as
    it is, and no mask is handed on."""
    if mask is not None or reference_mode_on() or type(x) is not np.ndarray or x.ndim != 2 \
            or x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.aligned:
        return 0
    end = first
    while end < len(stack) and chains(stack[end]):
        end += 1
    return end - first if end - first >= 2 else 0


def dense_run_forward(layers, x):
    """(y, backprop) of the Dense layers in turn on x (rows, features), as one layer's
    `_forward` gives them: backprop(dy, need_dx, from_preactivation) -> dx or None."""
    for layer in layers:   # as Dense._forward: no penalty left from an earlier step
        layer._step_losses.clear()
    chain = _chain(layers, len(x))
    last = layers[-1]
    y = empty_buffer(last, "y", chain.output_shape)
    chain.run(x, y)

    def backprop(dy, need_dx=True, from_preactivation=False):
        targets = [layer._gradient_targets() for layer in layers]
        dx = empty_buffer(layers[0], "dx", x.shape) if need_dx else None
        chain.backward(x, y, as_rows(dy, last.units), targets, from_preactivation, dx)
        for layer, (_, _, accumulate) in zip(layers, targets):
            layer._gradients_written(accumulate)
        return dx
    return y, backprop


def _chain(layers, rows):
    """The chain of these layers for batches of `rows`, made once per (rows, layers'
    variables and activations) and kept, the last CHAINS_KEPT, on the first layer."""
    key = (rows,) + tuple((layer, layer.kernel, layer.bias, layer._fused) for layer in layers)
    kept = layers[0].__dict__.setdefault("_dense_chains", {})
    chain = kept.get(key)
    if chain is None:
        if len(kept) >= CHAINS_KEPT:
            del kept[next(iter(kept))]
        links = [(layer.name, layer.kernel, layer.bias if layer.use_bias else None,
                  *layer._fused) for layer in layers]
        chain = kept[key] = DenseTrainChain(links, rows, aligned_empty)
    return chain
