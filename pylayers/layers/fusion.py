"""Training a convolution followed by max pooling in chunks of images, so that the
convolution's output (four times the pooled output under 2x2 pooling) never goes
through memory whole. Per chunk, the forward convolves into one reused buffer and pools
it, keeping the pooled output and where each maximum came from. The backward takes
relu' from the pooled output (relu(z) at the maximum is the pooled value), routes the
pooled gradient back to a chunk of the convolution's output gradient, and takes the
kernel gradient (and the input gradient, when wanted) from that chunk. Each output and
gradient is the same whatever the thread count; the kernel gradient is summed chunk by
chunk, in order."""
import math

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
    out_shape = conv.compute_output_shape(tuple(input_shape))
    return 4 * math.prod(out_shape) >= MIN_FUSED_BYTES


def chunk_images(conv_shape):
    """Images per chunk: about CHUNK_BYTES of convolution output, in whole multiples of
    CHUNK_IMAGES when that many fit."""
    size = CHUNK_BYTES // (4 * math.prod(conv_shape[1:]))
    return size // CHUNK_IMAGES * CHUNK_IMAGES if size >= CHUNK_IMAGES else max(1, size)


def _chunks(conv, pool, x_shape, conv_shape):
    """[(start, stop, conv geometry, pool geometry)] over the batch in chunks of
    chunk_images (worked out once per input shape)."""
    size = chunk_images(conv_shape)

    def compute():
        spec, chunks = conv._spec(x_shape), []
        for start in range(0, x_shape[0], size):
            count = min(size, x_shape[0] - start)
            chunks.append((start, start + count,
                           spec.kernel_geometry(count, x_shape[-1], conv.filters),
                           pool._geometry((count,) + tuple(conv_shape[1:]))[0]))
        return chunks
    return remembered(conv, "pool_chunks", x_shape, compute)


def conv_pool_forward(conv, pool, inputs):
    """(pool's output, backprop(dy, need_dx) -> dx or None) of pool(conv(inputs))."""
    conv._step_losses.clear()
    pool._step_losses.clear()
    x = as_float32(inputs)
    conv_shape = tuple(conv.compute_output_shape(x.shape))
    chunks = _chunks(conv, pool, x.shape, conv_shape)
    y_shape = pool.compute_output_shape(conv_shape)
    y = empty_buffer(pool, "y", y_shape)
    per_image = math.prod(y_shape[1:])
    argmax = empty_buffer(pool, "argmax", (math.prod(y_shape),), np.intc)
    z = empty_buffer(conv, "chunk", (chunks[0][1],) + conv_shape[1:])   # one chunk's output
    code, alpha = conv._fused
    kernel = as_float32(conv.kernel.value).reshape(-1)
    bias = conv.bias.value if conv.use_bias else None
    for start, stop, conv_geometry, pool_geometry in chunks:
        z_chunk = z[:stop - start].reshape(-1)
        conv_kernels.conv_forward(conv_geometry, x[start:stop].reshape(-1), kernel, bias, code,
                                  alpha, z_chunk)
        pool_kernels.max_pool_forward(pool_geometry, z_chunk, y[start:stop].reshape(-1),
                                      argmax[start * per_image:stop * per_image])

    def backprop(dy, need_dx=True):
        train = conv.trainable
        width = conv.filters
        dz_pooled = empty_buffer(pool, "dz", y_shape)   # dy through relu' (or as it is)
        conv_kernels.bias_act_backward(
            y.reshape(-1, width), as_float32(dy).reshape(-1, width), code, alpha,
            dz_pooled.reshape(-1, width),
            grad_buffer(conv.bias) if train and conv.use_bias else None)
        dx = empty_buffer(conv, "dx", x.shape) if need_dx else None
        kernel_grad = grad_buffer(conv.kernel).reshape(-1) if train else None
        for start, stop, conv_geometry, pool_geometry in chunks:
            dz_chunk = z[:stop - start].reshape(-1)
            pool_kernels.max_pool_backward(pool_geometry, dz_pooled[start:stop].reshape(-1),
                                           argmax[start * per_image:stop * per_image], dz_chunk)
            if train:
                conv_kernels.conv_backward_weight(conv_geometry, x[start:stop].reshape(-1),
                                                  dz_chunk, kernel_grad)
            if need_dx:
                conv_kernels.conv_backward_data(conv_geometry, dz_chunk, kernel,
                                                dx[start:stop].reshape(-1))
        return dx
    return y, backprop
