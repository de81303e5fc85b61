"""Thin wrappers over csrc/rnn.c: whole-sequence LSTM, GRU and SimpleRNN forward and
backward (float32, C-contiguous). Each forward fills its time-major buffers and returns
them (the tape); the matching backward takes them back. Work arrays come from
`alloc(name, shape)` when the caller pools them, else are allocated. Shapes are
checked here, before the GIL is released."""
import numpy as np
from pylayers._kernels._runtime cimport ctx, pl_ctx

cdef extern from "rnn.h":
    ctypedef struct pl_rnn_dims:
        long batch, steps, inputs, units
    void pl_rnn_to_time_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                              float *dst) nogil
    void pl_rnn_to_batch_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                               float *dst) nogil
    void pl_lstm_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                         const float *kernel, const float *recurrent, const float *bias,
                         const unsigned char *mask_tm, int act, int rec_act,
                         float *gates, float *act_c, float *h, float *c) nogil
    void pl_lstm_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                          const float *kernel, const float *recurrent,
                          const unsigned char *mask_tm, int act, int rec_act,
                          const float *gates, const float *act_c, const float *h,
                          const float *c, const float *dy_seq, float *dh, float *dc,
                          float *dgates, float *dkernel, float *drecurrent, float *dbias,
                          float *dx_tm) nogil
    void pl_gru_forward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                        const float *x_tm, const float *kernel, const float *recurrent,
                        const float *bias, const unsigned char *mask_tm, int act,
                        int rec_act, float *gates, float *aux, float *hu, float *h) nogil
    void pl_gru_backward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                         const float *x_tm, const float *kernel, const float *recurrent,
                         const unsigned char *mask_tm, int act, int rec_act,
                         const float *gates, const float *aux, const float *h,
                         const float *dy_seq, float *dh, float *dx_gates,
                         float *drec_gates, float *dkernel, float *drecurrent,
                         float *dbias, float *dx_tm) nogil
    void pl_simple_rnn_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                               const float *kernel, const float *recurrent,
                               const float *bias, const unsigned char *mask_tm, int act,
                               float *proj, float *h) nogil
    void pl_simple_rnn_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                                const float *kernel, const float *recurrent,
                                const unsigned char *mask_tm, int act, const float *h,
                                const float *dy_seq, float *dh, float *dpre,
                                float *dkernel, float *drecurrent, float *dbias,
                                float *dx_tm) nogil

cdef extern from "rnn_steps.h":
    float pl_rnn_tanh(float x) nogil
    float pl_rnn_sigmoid(float x) nogil

# Activations the fused kernels run (codes of csrc/activations.h enum pl_act).
ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


cdef float *ptr(a) except? NULL:
    """Data pointer of a C-contiguous float32 array, or NULL for None / empty. Arrays
    the C side only reads may be read-only (the pointer's constness is the C contract)."""
    cdef const float[::1] flat
    if a is None or a.size == 0:
        return NULL
    flat = a.reshape(-1)
    return <float *>&flat[0]


cdef unsigned char *mask_ptr(a) except? NULL:
    cdef const unsigned char[::1] flat
    if a is None:
        return NULL
    flat = a.reshape(-1)
    return <unsigned char *>&flat[0]


def _buffer(alloc, name, shape):
    """A float32 work array: from the caller's reusable pool `alloc(name, shape)` when
    given (contents undefined), else freshly allocated."""
    return alloc(name, shape) if alloc is not None else np.empty(shape, dtype=np.float32)


def _require(name, array, shape):
    if array is None:
        return
    if array.dtype != np.float32 or not array.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous float32 array; received dtype "
                        f"{array.dtype}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(array.shape)}; expected {tuple(shape)}")


cdef pl_rnn_dims dims_of(x, long units):
    cdef pl_rnn_dims d
    d.batch, d.steps, d.inputs = x.shape
    d.units = units
    return d


def _time_major_inputs(x, mask, alloc):
    """x (B, T, I) -> (T, B, I); mask (B, T) -> (T, B) uint8 (or None)."""
    _require("x", x, x.shape)
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must be (batch, time, features) with batch and time > 0; "
                         f"received shape {tuple(x.shape)}")
    cdef long B = x.shape[0], T = x.shape[1], F = x.shape[2]
    x_tm = _buffer(alloc, "x_tm", (T, B, F))
    cdef float *src = ptr(x)
    cdef float *dst = ptr(x_tm)
    if F:
        with nogil:
            pl_rnn_to_time_major(ctx(), B, T, F, src, dst)
    mask_tm = None
    if mask is not None:
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"mask has shape {tuple(mask.shape)}; expected {(B, T)}")
        mask_tm = np.ascontiguousarray(np.asarray(mask, dtype=bool).T, dtype=np.uint8)
    return x_tm, mask_tm


def to_batch_major(seq_tm):
    """(T, B, F) float32 -> (B, T, F)."""
    _require("seq_tm", seq_tm, seq_tm.shape)
    cdef long T = seq_tm.shape[0], B = seq_tm.shape[1], F = seq_tm.shape[2]
    out = np.empty((B, T, F), dtype=np.float32)
    cdef float *src = ptr(seq_tm)
    cdef float *dst = ptr(out)
    if src != NULL:
        with nogil:
            pl_rnn_to_batch_major(ctx(), B, T, F, src, dst)
    return out


def to_time_major(seq):
    """(B, T, F) float32 -> (T, B, F)."""
    _require("seq", seq, seq.shape)
    cdef long B = seq.shape[0], T = seq.shape[1], F = seq.shape[2]
    out = np.empty((T, B, F), dtype=np.float32)
    cdef float *src = ptr(seq)
    cdef float *dst = ptr(out)
    if src != NULL:
        with nogil:
            pl_rnn_to_time_major(ctx(), B, T, F, src, dst)
    return out


def _states(alloc, name, initial, long T, long B, long U):
    """(T + 1, B, U) buffer whose first slice is the initial state."""
    _require("initial state", initial, (B, U))
    states = _buffer(alloc, name, (T + 1, B, U))
    states[0] = initial
    return states


def _check_weights(kernel, recurrent, bias, long I, long U, long G, bias_shape):
    _require("kernel", kernel, (I, G))
    _require("recurrent_kernel", recurrent, (U, G))
    _require("bias", bias, bias_shape)


def _check_backward(dy_seq, dh, long B, long T, long U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias):
    _require("dy_seq", dy_seq, (B, T, U))
    _require("dh", dh, (B, U))
    _require("dkernel", dkernel, kernel.shape)
    _require("drecurrent", drecurrent, recurrent.shape)
    if dbias is not None:
        _require("dbias", dbias, bias.shape)


def _dx_batch_major(dx_tm, need_dx):
    return to_batch_major(dx_tm) if need_dx else None


def lstm_forward(x, kernel, recurrent, bias, mask, int act, int rec_act, h0, c0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, gates, act_c, h, c) with h, c
    (T + 1, B, U) holding h0, c0 first."""
    cdef long U = recurrent.shape[0]
    x_tm, mask_tm = _time_major_inputs(x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    _check_weights(kernel, recurrent, bias, d.inputs, U, 4 * U, (4 * U,))
    h = _states(alloc, "h", h0, d.steps, d.batch, U)
    c = _states(alloc, "c", c0, d.steps, d.batch, U)
    gates = _buffer(alloc, "gates", (d.steps, d.batch, 4 * U))
    act_c = _buffer(alloc, "act_c", (d.steps, d.batch, U))
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef float *p_b = ptr(bias)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(act_c)
    cdef float *p_h = ptr(h)
    cdef float *p_c = ptr(c)
    with nogil:
        pl_lstm_forward(ctx(), d, p_x, p_k, p_r, p_b, p_m, act, rec_act, p_g, p_a, p_h, p_c)
    return x_tm, mask_tm, gates, act_c, h, c


def lstm_backward(tape, kernel, recurrent, bias, int act, int rec_act, dy_seq, dh, dc,
                  dkernel, drecurrent, dbias, bint need_dx, alloc=None):
    """dh, dc (B, U): in, gradients of the final states; out, of the initial ones.
    Weight gradients accumulate (None skips); returns dx (B, T, I) or None."""
    x_tm, mask_tm, gates, act_c, h, c = tape
    cdef long T = x_tm.shape[0], U = recurrent.shape[0]
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = x_tm.shape
    d.units = U
    _check_backward(dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    _require("dc", dc, (d.batch, U))
    dgates = _buffer(alloc, "dgates", gates.shape)
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(act_c)
    cdef float *p_h = ptr(h)
    cdef float *p_c = ptr(c)
    cdef float *p_dy = ptr(dy_seq)
    cdef float *p_dh = ptr(dh)
    cdef float *p_dc = ptr(dc)
    cdef float *p_dg = ptr(dgates)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    with nogil:
        pl_lstm_backward(ctx(), d, p_x, p_k, p_r, p_m, act, rec_act, p_g, p_a, p_h, p_c,
                         p_dy, p_dh, p_dc, p_dg, p_dk, p_dr, p_db, p_dx)
    return _dx_batch_major(dx_tm, need_dx)


def _gru_bias_shape(units, reset_after):
    return (2, 3 * units) if reset_after else (3 * units,)


def gru_forward(x, kernel, recurrent, bias, mask, int act, int rec_act, bint reset_after,
                h0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, gates, aux, h), h (T + 1, B, U)."""
    cdef long U = recurrent.shape[0]
    x_tm, mask_tm = _time_major_inputs(x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    _check_weights(kernel, recurrent, bias, d.inputs, U, 3 * U,
                   _gru_bias_shape(U, reset_after))
    h = _states(alloc, "h", h0, d.steps, d.batch, U)
    gates = _buffer(alloc, "gates", (d.steps, d.batch, 3 * U))
    aux = _buffer(alloc, "aux", (d.steps, d.batch, U))
    hu = _buffer(alloc, "hu", (d.batch, 3 * U))
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef float *p_b = ptr(bias)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(aux)
    cdef float *p_hu = ptr(hu)
    cdef float *p_h = ptr(h)
    with nogil:
        pl_gru_forward(ctx(), d, reset_after, p_x, p_k, p_r, p_b, p_m, act, rec_act, p_g,
                       p_a, p_hu, p_h)
    return x_tm, mask_tm, gates, aux, h


def gru_backward(tape, kernel, recurrent, bias, int act, int rec_act, bint reset_after,
                 dy_seq, dh, dkernel, drecurrent, dbias, bint need_dx, alloc=None):
    x_tm, mask_tm, gates, aux, h = tape
    cdef long T = x_tm.shape[0], U = recurrent.shape[0]
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = x_tm.shape
    d.units = U
    _check_backward(dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    dx_gates = _buffer(alloc, "dx_gates", gates.shape)
    drec_gates = _buffer(alloc, "drec_gates", gates.shape)
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(aux)
    cdef float *p_h = ptr(h)
    cdef float *p_dy = ptr(dy_seq)
    cdef float *p_dh = ptr(dh)
    cdef float *p_dxg = ptr(dx_gates)
    cdef float *p_drg = ptr(drec_gates)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    with nogil:
        pl_gru_backward(ctx(), d, reset_after, p_x, p_k, p_r, p_m, act, rec_act, p_g, p_a,
                        p_h, p_dy, p_dh, p_dxg, p_drg, p_dk, p_dr, p_db, p_dx)
    return _dx_batch_major(dx_tm, need_dx)


def simple_rnn_forward(x, kernel, recurrent, bias, mask, int act, h0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, h), h (T + 1, B, U)."""
    cdef long U = recurrent.shape[0]
    x_tm, mask_tm = _time_major_inputs(x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    _check_weights(kernel, recurrent, bias, d.inputs, U, U, (U,))
    h = _states(alloc, "h", h0, d.steps, d.batch, U)
    proj = _buffer(alloc, "proj", (d.steps, d.batch, U))
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef float *p_b = ptr(bias)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_p = ptr(proj)
    cdef float *p_h = ptr(h)
    with nogil:
        pl_simple_rnn_forward(ctx(), d, p_x, p_k, p_r, p_b, p_m, act, p_p, p_h)
    return x_tm, mask_tm, h


def simple_rnn_backward(tape, kernel, recurrent, bias, int act, dy_seq, dh, dkernel,
                        drecurrent, dbias, bint need_dx, alloc=None):
    x_tm, mask_tm, h = tape
    cdef long T = x_tm.shape[0], U = recurrent.shape[0]
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = x_tm.shape
    d.units = U
    _check_backward(dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    dpre = _buffer(alloc, "dpre", (T, d.batch, U))
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_h = ptr(h)
    cdef float *p_dy = ptr(dy_seq)
    cdef float *p_dh = ptr(dh)
    cdef float *p_dp = ptr(dpre)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    with nogil:
        pl_simple_rnn_backward(ctx(), d, p_x, p_k, p_r, p_m, act, p_h, p_dy, p_dh, p_dp,
                               p_dk, p_dr, p_db, p_dx)
    return _dx_batch_major(dx_tm, need_dx)


def fast_tanh(float x):
    """The kernels' tanh approximation on one value (for accuracy tests)."""
    return pl_rnn_tanh(x)


def fast_sigmoid(float x):
    return pl_rnn_sigmoid(x)
