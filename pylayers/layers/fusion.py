"""Training a convolution followed by max pooling so that the convolution's output (four
times the pooled output under 2x2 pooling) never goes through memory whole.

Where the C pair takes the layers (`conv_max_pool_fusable`: a direct-path convolution,
pooling windows meeting edge to edge), each thread convolves one pooled line's window
rows into its own scratch and pools them there, and the kernel gradient routes the
pooled gradient back line by line in the same way: one call each way for the batch.
Otherwise, and for the input gradient, the batch goes in chunks of images: the forward
convolves a chunk into one reused buffer and pools it; the backward routes the pooled
gradient back to a chunk of the convolution's output gradient and takes the gradients
from that chunk.

Either way the forward keeps the pooled output and where each maximum came from, and
the backward takes relu' from the pooled output (relu(z) at the maximum is the pooled
value). Each output and gradient is the same whatever the thread count; the kernel
gradient is summed in fixed blocks of images, in order."""
import math
from typing import NamedTuple

import numpy as np

from pylayers._kernels import conv as conv_kernels
from pylayers._kernels import pooling as pool_kernels
from pylayers._kernels.dense import ACTIVATION_CODES
from pylayers.layers.buffers import empty_buffer, remembered
from pylayers.layers.convolutional import LINEAR, BaseConv, as_float32
from pylayers.layers.core import grad_buffer
from pylayers.layers.pooling import BasePooling
from pylayers.ops.mode import reference_mode_on

RELU = ACTIVATION_CODES["relu"]
CHUNK_BYTES = 3 << 20        # a chunk's convolution output: what the L2s and the near L3 keep
CHUNK_IMAGES = 32            # chunks of whole multiples of 32 images, four of the kernel
                             # gradient's 8-image blocks, so that two threads split them evenly
MIN_FUSED_BYTES = 8 << 20    # smaller convolution outputs stay in cache unchunked


def conv_pool_fusable(conv, pool, input_shape, mask):
    """Whether conv then pool train through conv_pool_forward for inputs of input_shape:
    a built-in convolution (relu or linear, fused) and max pooling of the same rank,
    no activity regularizer or mask, and a convolution output of MIN_FUSED_BYTES."""
    if not (isinstance(conv, BaseConv) and isinstance(pool, BasePooling)) or mask is not None:
        return False
    if type(conv)._forward is not BaseConv._forward or \
            type(pool)._forward is not BasePooling._forward:
        return False   # a subclass writing its own call or forward
    if conv._fused is None or conv._fused[0] not in (RELU, LINEAR) or pool.mode != "max" \
            or pool.rank != conv.rank or reference_mode_on():
        return False
    if conv.activity_regularizer is not None or pool.activity_regularizer is not None:
        return False
    return 4 * math.prod(_conv_shape(conv, tuple(input_shape))) >= MIN_FUSED_BYTES


def _conv_shape(conv, x_shape):
    """conv's output shape for inputs of x_shape, worked out once per input shape."""
    return remembered(conv, "output_shape", x_shape,
                      lambda: tuple(conv.compute_output_shape(x_shape)))


def chunk_images(conv_shape):
    """Images per chunk: about CHUNK_BYTES of convolution output, in whole multiples of
    CHUNK_IMAGES when that many fit."""
    size = CHUNK_BYTES // (4 * math.prod(conv_shape[1:]))
    return size // CHUNK_IMAGES * CHUNK_IMAGES if size >= CHUNK_IMAGES else max(1, size)


class _Layout(NamedTuple):
    """One input shape's fused pass: the output shapes, the (conv, pool) geometries of
    the whole batch when the C pair takes them (else None), and the chunks, each (its
    images, its pooled outputs in the flat argmax, conv geometry, pool geometry)."""
    conv_shape: tuple
    y_shape: tuple
    whole: tuple
    chunks: list


def _layout(conv, pool, x_shape):
    """The _Layout for inputs of x_shape, worked out once per input shape."""
    def compute():
        conv_shape = _conv_shape(conv, x_shape)
        y_shape = tuple(pool.compute_output_shape(conv_shape))
        spec, size, per_image = conv._spec(x_shape), chunk_images(conv_shape), \
            math.prod(y_shape[1:])
        whole = (spec.kernel_geometry(x_shape[0], x_shape[-1], conv.filters),
                 pool._geometry(conv_shape)[0])
        if not conv_kernels.conv_max_pool_fusable(*whole, conv._fused[0]):
            whole = None
        chunks = []
        for start in range(0, x_shape[0], size):
            stop = min(start + size, x_shape[0])
            chunks.append((slice(start, stop), slice(start * per_image, stop * per_image),
                           spec.kernel_geometry(stop - start, x_shape[-1], conv.filters),
                           pool._geometry((stop - start,) + conv_shape[1:])[0]))
        return _Layout(conv_shape, y_shape, whole, chunks)
    return remembered(conv, "pool_chunks", x_shape, compute)


def conv_pool_forward(conv, pool, inputs):
    """(pool's output, backprop(dy, need_dx) -> dx or None) of pool(conv(inputs))."""
    conv._step_losses.clear()
    pool._step_losses.clear()
    x = as_float32(inputs)
    layout = _layout(conv, pool, x.shape)
    y = empty_buffer(pool, "y", layout.y_shape)
    argmax = empty_buffer(pool, "argmax", (math.prod(layout.y_shape),), np.intc)
    code, alpha = conv._fused
    kernel = as_float32(conv.kernel.value).reshape(-1)
    bias = conv.bias.value if conv.use_bias else None
    if layout.whole is not None:
        conv_kernels.conv_max_pool_forward(*layout.whole, x.reshape(-1), kernel, bias, code,
                                           y.reshape(-1), argmax)
    else:
        z = _chunk_buffer(conv, layout)
        for images, outputs, conv_geometry, pool_geometry in layout.chunks:
            z_chunk = z[:images.stop - images.start].reshape(-1)
            conv_kernels.conv_forward(conv_geometry, x[images].reshape(-1), kernel, bias, code,
                                      alpha, z_chunk)
            pool_kernels.max_pool_forward(pool_geometry, z_chunk, y[images].reshape(-1),
                                          argmax[outputs])

    def backprop(dy, need_dx=True):
        dy = as_float32(dy)
        train = conv.trainable
        kernel_grad = grad_buffer(conv.kernel).reshape(-1) if train else None
        bias_grad = grad_buffer(conv.bias) if train and conv.use_bias else None
        weights_done = train and layout.whole is not None
        if weights_done:
            conv_kernels.conv_max_pool_backward_weight(
                *layout.whole, x.reshape(-1), y.reshape(-1), dy.reshape(-1), argmax, code,
                kernel_grad, bias_grad)
        if not need_dx and (weights_done or not train):
            return None
        width = conv.filters
        dz_pooled = empty_buffer(pool, "dz", layout.y_shape)   # dy through relu' (or as is)
        conv_kernels.bias_act_backward(y.reshape(-1, width), dy.reshape(-1, width), code, alpha,
                                       dz_pooled.reshape(-1, width),
                                       None if weights_done else bias_grad)
        dx = empty_buffer(conv, "dx", x.shape) if need_dx else None
        z = _chunk_buffer(conv, layout)
        for images, outputs, conv_geometry, pool_geometry in layout.chunks:
            dz_chunk = z[:images.stop - images.start].reshape(-1)
            pool_kernels.max_pool_backward(pool_geometry, dz_pooled[images].reshape(-1),
                                           argmax[outputs], dz_chunk)
            if train and not weights_done:
                conv_kernels.conv_backward_weight(conv_geometry, x[images].reshape(-1),
                                                  dz_chunk, kernel_grad)
            if need_dx:
                conv_kernels.conv_backward_data(conv_geometry, dz_chunk, kernel,
                                                dx[images].reshape(-1))
        return dx
    return y, backprop


def _chunk_buffer(conv, layout):
    """The reused buffer of one chunk's convolution output (or output gradient)."""
    chunk_size = layout.chunks[0][0].stop
    return empty_buffer(conv, "chunk", (chunk_size,) + layout.conv_shape[1:])
