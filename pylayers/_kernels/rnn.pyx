"""Thin wrappers over csrc/rnn.c: whole-sequence LSTM, GRU and SimpleRNN forward and
backward (float32, C-contiguous). Each forward fills its time-major buffers and returns
them (the tape); the matching backward takes them back. Work arrays come from
`alloc(name, shape)` when the caller pools them, else are allocated. Shapes are
checked here, before the GIL is released."""
import numpy as np
from pylayers._kernels._runtime cimport ctx, pl_ctx
from pylayers._kernels._runtime import _time_major_view

cdef extern from "rnn.h":
    ctypedef struct pl_rnn_dims:
        long batch, steps, inputs, units
    long pl_rnn_grad_work_floats(pl_rnn_dims d, long G, int split) nogil
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
                          const float *c, const float *dy_seq, int dy_time_major,
                          float *dh, float *dc,
                          float *dgates, float *dkernel, float *drecurrent, float *dbias,
                          float *dx_tm, float *work) nogil
    void pl_gru_forward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                        const float *x_tm, const float *kernel, const float *recurrent,
                        const float *bias, const unsigned char *mask_tm, int act,
                        int rec_act, float *gates, float *aux, float *hu, float *h) nogil
    void pl_gru_backward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                         const float *x_tm, const float *kernel, const float *recurrent,
                         const unsigned char *mask_tm, int act, int rec_act,
                         const float *gates, const float *aux, const float *h,
                         const float *dy_seq, int dy_time_major, float *dh, float *dx_gates,
                         float *drec_gates, float *dkernel, float *drecurrent,
                         float *dbias, float *dx_tm, float *work) nogil
    void pl_simple_rnn_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                               const float *kernel, const float *recurrent,
                               const float *bias, const unsigned char *mask_tm, int act,
                               float *proj, float *h) nogil
    void pl_simple_rnn_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                                const float *kernel, const float *recurrent,
                                const unsigned char *mask_tm, int act, const float *h,
                                const float *dy_seq, int dy_time_major, float *dh, float *dpre,
                                float *dkernel, float *drecurrent, float *dbias,
                                float *dx_tm, float *work) nogil

cdef extern from "rnn_steps.h":
    float pl_rnn_tanh(float x) nogil
    float pl_rnn_sigmoid(float x) nogil

# Activations the fused kernels run (codes of csrc/activations.h enum pl_act).
ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
_CODES = frozenset(ACTIVATION_CODES.values())


cdef float *ptr(a) except? NULL:
    """Data pointer of a C-contiguous float32 array (checked by _require first), or NULL
    for None / empty. Arrays the C side only reads may be read-only (the pointer's
    constness is the C contract)."""
    cdef const float[::1] flat
    if a is None or a.size == 0:
        return NULL
    if not (a.dtype == np.float32 and a.flags.c_contiguous):
        raise TypeError("rnn kernels: internal buffer is not C-contiguous float32")
    flat = a.reshape(-1)   # a view: the pointer stays valid while `a` lives
    return <float *>&flat[0]


cdef unsigned char *mask_ptr(a) except? NULL:
    cdef const unsigned char[::1] flat
    if a is None:
        return NULL
    flat = a.reshape(-1)
    return <unsigned char *>&flat[0]


def _buffer(alloc, name, shape):
    """A float32 work array: from the caller's reusable pool `alloc(name, shape)` when
    given (contents undefined; checked like any argument), else freshly allocated."""
    if alloc is None:
        return np.empty(shape, dtype=np.float32)
    buffer = alloc(name, shape)
    _require("alloc", name, buffer, shape, output=True)
    return buffer


def _require(fn, name, array, shape, optional=False, output=False):
    """array must be a C-contiguous, aligned float32 ndarray of `shape` (writeable when
    the kernel writes it); None only when optional. Raised before anything is written."""
    if array is None:
        if optional:
            return
        raise ValueError(f"{fn}: {name} is required; received None")
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 \
            or not array.flags.c_contiguous or not array.flags.aligned:
        raise TypeError(f"{fn}: {name} must be a C-contiguous, aligned float32 array; received "
                        f"{type(array).__name__} of dtype {getattr(array, 'dtype', None)}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} has shape {tuple(array.shape)}; expected {tuple(shape)}")
    if output and not array.flags.writeable:
        raise ValueError(f"{fn}: {name} is read-only; the kernel writes it")


def _require_sequence(fn, name, seq, shape=None):
    """seq must be a (B, T, F) float32 array, C-contiguous or a time-major view
    (_time_major_view); of `shape` when given."""
    if _time_major_view(seq) is None:
        if shape is None:
            _require_rank(fn, name, seq, 3)
        else:
            _require(fn, name, seq, shape)
    elif shape is not None and tuple(seq.shape) != tuple(shape):
        raise ValueError(f"{fn}: {name} has shape {tuple(seq.shape)}; expected {tuple(shape)}")


def _require_rank(fn, name, array, int ndim):
    """A float32 array of `ndim` axes (shape checked by the caller)."""
    if not isinstance(array, np.ndarray) or array.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be a {ndim}-D float32 array; received "
                         f"{type(array).__name__} of shape {getattr(array, 'shape', None)}")
    _require(fn, name, array, array.shape)


def _check_codes(fn, *codes):
    for code in codes:
        if code not in _CODES:
            raise ValueError(f"{fn}: unknown activation code {code}; expected one of "
                             f"{sorted(_CODES)}")


cdef pl_rnn_dims dims_of(x, long units):
    cdef pl_rnn_dims d
    d.batch, d.steps, d.inputs = x.shape
    d.units = units
    return d


def _mask_time_major(fn, mask, long B, long T):
    """mask (B, T), of booleans or numbers (nonzero keeps the step) -> (T, B) uint8."""
    if mask is None:
        return None
    dtype = getattr(mask, "dtype", None)
    if not isinstance(mask, np.ndarray) or dtype.kind not in "biuf":
        raise TypeError(f"{fn}: mask must be a boolean or numeric array; received "
                        f"{type(mask).__name__} of dtype {dtype}")
    if tuple(mask.shape) != (B, T):
        raise ValueError(f"{fn}: mask has shape {tuple(mask.shape)}; expected {(B, T)}")
    return np.ascontiguousarray(mask.T != 0, dtype=np.uint8)


def _time_major_inputs(fn, x, mask, alloc):
    """x (B, T, I) -> (T, B, I), the array x views when it is a time-major view, else a
    copy; mask (B, T) -> (T, B) uint8 (or None)."""
    _require_sequence(fn, "x", x)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn}: x must be (batch, time, features) with batch and time > 0; "
                         f"received shape {tuple(x.shape)}")
    cdef long B = x.shape[0], T = x.shape[1], F = x.shape[2]
    mask_tm = _mask_time_major(fn, mask, B, T)
    x_tm = _time_major_view(x)
    if x_tm is not None:
        return x_tm, mask_tm
    x_tm = _buffer(alloc, "x_tm", (T, B, F))
    cdef float *src = ptr(x)
    cdef float *dst = ptr(x_tm)
    if F:
        with nogil:
            pl_rnn_to_time_major(ctx(), B, T, F, src, dst)
    return x_tm, mask_tm


def to_batch_major(seq_tm):
    """(T, B, F) float32 -> (B, T, F)."""
    _require_rank("to_batch_major", "seq_tm", seq_tm, 3)
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
    _require_rank("to_time_major", "seq", seq, 3)
    cdef long B = seq.shape[0], T = seq.shape[1], F = seq.shape[2]
    out = np.empty((T, B, F), dtype=np.float32)
    cdef float *src = ptr(seq)
    cdef float *dst = ptr(out)
    if src != NULL:
        with nogil:
            pl_rnn_to_time_major(ctx(), B, T, F, src, dst)
    return out


def _states(fn, alloc, name, initial, long T, long B, long U):
    """(T + 1, B, U) buffer whose first slice is the initial state."""
    _require(fn, f"initial state {name}", initial, (B, U))
    states = _buffer(alloc, name, (T + 1, B, U))
    states[0] = initial
    return states


def _check_weights(fn, kernel, recurrent, bias, long I, long G, bias_shape):
    """recurrent (U, G) first (it fixes U), then kernel (I, G) and bias; returns U."""
    _require_rank(fn, "recurrent_kernel", recurrent, 2)
    cdef long U = recurrent.shape[0]
    if U == 0 or recurrent.shape[1] != G * U:
        raise ValueError(f"{fn}: recurrent_kernel has shape {tuple(recurrent.shape)}; expected "
                         f"(units, {G} * units) with units > 0")
    _require(fn, "kernel", kernel, (I, G * U))
    _require(fn, "bias", bias, bias_shape(U), optional=True)
    return U


def _check_tape(fn, tape, names):
    """The forward's tape: a tuple (x_tm, mask_tm, then `names`), each of the shape the
    forward gave it. Returns (T, B, I)."""
    if not isinstance(tape, tuple) or len(tape) != 2 + len(names):
        raise ValueError(f"{fn}: tape must be the tuple the forward returned, of "
                         f"{2 + len(names)} entries")
    x_tm, mask_tm = tape[0], tape[1]
    _require_rank(fn, "tape x_tm", x_tm, 3)
    cdef long T = x_tm.shape[0], B = x_tm.shape[1]
    if T == 0 or B == 0:
        raise ValueError(f"{fn}: tape x_tm has shape {tuple(x_tm.shape)}; time and batch > 0")
    if mask_tm is not None and (not isinstance(mask_tm, np.ndarray) or mask_tm.dtype != np.uint8
                                or tuple(mask_tm.shape) != (T, B)
                                or not mask_tm.flags.c_contiguous):
        raise ValueError(f"{fn}: tape mask_tm must be a C-contiguous uint8 array of shape "
                         f"{(T, B)}")
    return T, B, x_tm.shape[2]


def _check_tape_arrays(fn, tape, names, shapes):
    for name, array, shape in zip(names, tape[2:], shapes):
        _require(fn, f"tape {name}", array, shape)


def _check_backward(fn, dy_seq, dh, long B, long T, long U, dkernel, drecurrent, dbias,
                    kernel, recurrent, bias):
    if dy_seq is not None:
        _require_sequence(fn, "dy_seq", dy_seq, (B, T, U))
    _require(fn, "dh", dh, (B, U), output=True)
    _require(fn, "dkernel", dkernel, kernel.shape, optional=True, output=True)
    _require(fn, "drecurrent", drecurrent, recurrent.shape, optional=True, output=True)
    if dbias is not None and bias is None:
        raise ValueError(f"{fn}: dbias given for a layer without bias")
    if bias is not None:
        _require(fn, "dbias", dbias, bias.shape, optional=True, output=True)


def _grad_work(alloc, pl_rnn_dims d, long G, int split):
    """The weight-gradient workspace of a backward pass, from the pool (None without
    one: the C side then allocates what it needs)."""
    cdef long floats = pl_rnn_grad_work_floats(d, G, split)
    return _buffer(alloc, "grad_work", (floats,)) if alloc is not None and floats else None


def _dx_batch_major(dx_tm, need_dx):
    """dx (B, T, I) as a view of dx_tm: a stacked layer below reads it in place."""
    return dx_tm.transpose(1, 0, 2) if need_dx else None


def _output_grad(dy_seq):
    """(the array the kernel reads, whether it is time-major) of dy_seq (or None)."""
    dy_tm = _time_major_view(dy_seq)
    return (dy_seq, 0) if dy_tm is None else (dy_tm, 1)


def lstm_forward(x, kernel, recurrent, bias, mask, int act, int rec_act, h0, c0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, gates, act_c, h, c) with h, c
    (T + 1, B, U) holding h0, c0 first."""
    fn = "lstm_forward"
    _check_codes(fn, act, rec_act)
    _require_sequence(fn, "x", x)
    cdef long U = _check_weights(fn, kernel, recurrent, bias, x.shape[2], 4,
                                 lambda u: (4 * u,))
    _require(fn, "initial state h", h0, (x.shape[0], U))
    _require(fn, "initial state c", c0, (x.shape[0], U))
    x_tm, mask_tm = _time_major_inputs(fn, x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    h = _states(fn, alloc, "h", h0, d.steps, d.batch, U)
    c = _states(fn, alloc, "c", c0, d.steps, d.batch, U)
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
    fn = "lstm_backward"
    _check_codes(fn, act, rec_act)
    names = ("gates", "act_c", "h", "c")
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = _check_tape(fn, tape, names)
    cdef long T = d.steps, B = d.batch
    cdef long U = _check_weights(fn, kernel, recurrent, bias, d.inputs, 4, lambda u: (4 * u,))
    d.units = U
    _check_tape_arrays(fn, tape, names, [(T, B, 4 * U), (T, B, U), (T + 1, B, U),
                                         (T + 1, B, U)])
    x_tm, mask_tm, gates, act_c, h, c = tape
    _check_backward(fn, dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    _require(fn, "dc", dc, (d.batch, U), output=True)
    dgates = _buffer(alloc, "dgates", gates.shape)
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    work = _grad_work(alloc, d, 4 * U, 0)
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(act_c)
    cdef float *p_h = ptr(h)
    cdef float *p_c = ptr(c)
    dy_read, dy_time_major = _output_grad(dy_seq)
    cdef float *p_dy = ptr(dy_read)
    cdef int dy_tm = dy_time_major
    cdef float *p_dh = ptr(dh)
    cdef float *p_dc = ptr(dc)
    cdef float *p_dg = ptr(dgates)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    cdef float *p_w = ptr(work)
    with nogil:
        pl_lstm_backward(ctx(), d, p_x, p_k, p_r, p_m, act, rec_act, p_g, p_a, p_h, p_c,
                         p_dy, dy_tm, p_dh, p_dc, p_dg, p_dk, p_dr, p_db, p_dx, p_w)
    return _dx_batch_major(dx_tm, need_dx)


def _gru_bias_shape(units, reset_after):
    return (2, 3 * units) if reset_after else (3 * units,)


def gru_forward(x, kernel, recurrent, bias, mask, int act, int rec_act, bint reset_after,
                h0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, gates, aux, h), h (T + 1, B, U)."""
    fn = "gru_forward"
    _check_codes(fn, act, rec_act)
    _require_sequence(fn, "x", x)
    cdef long U = _check_weights(fn, kernel, recurrent, bias, x.shape[2], 3,
                                 lambda u: _gru_bias_shape(u, reset_after))
    _require(fn, "initial state h", h0, (x.shape[0], U))
    x_tm, mask_tm = _time_major_inputs(fn, x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    h = _states(fn, alloc, "h", h0, d.steps, d.batch, U)
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
    fn = "gru_backward"
    _check_codes(fn, act, rec_act)
    names = ("gates", "aux", "h")
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = _check_tape(fn, tape, names)
    cdef long T = d.steps, B = d.batch
    cdef long U = _check_weights(fn, kernel, recurrent, bias, d.inputs, 3,
                                 lambda u: _gru_bias_shape(u, reset_after))
    d.units = U
    _check_tape_arrays(fn, tape, names, [(T, B, 3 * U), (T, B, U), (T + 1, B, U)])
    x_tm, mask_tm, gates, aux, h = tape
    _check_backward(fn, dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    dx_gates = _buffer(alloc, "dx_gates", gates.shape)
    drec_gates = _buffer(alloc, "drec_gates", gates.shape)
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    work = _grad_work(alloc, d, 3 * U, 1)
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_g = ptr(gates)
    cdef float *p_a = ptr(aux)
    cdef float *p_h = ptr(h)
    dy_read, dy_time_major = _output_grad(dy_seq)
    cdef float *p_dy = ptr(dy_read)
    cdef int dy_tm = dy_time_major
    cdef float *p_dh = ptr(dh)
    cdef float *p_dxg = ptr(dx_gates)
    cdef float *p_drg = ptr(drec_gates)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    cdef float *p_w = ptr(work)
    with nogil:
        pl_gru_backward(ctx(), d, reset_after, p_x, p_k, p_r, p_m, act, rec_act, p_g, p_a,
                        p_h, p_dy, dy_tm, p_dh, p_dxg, p_drg, p_dk, p_dr, p_db, p_dx, p_w)
    return _dx_batch_major(dx_tm, need_dx)


def simple_rnn_forward(x, kernel, recurrent, bias, mask, int act, h0, alloc=None):
    """x (B, T, I); returns the tape (x_tm, mask_tm, h), h (T + 1, B, U)."""
    fn = "simple_rnn_forward"
    _check_codes(fn, act)
    _require_sequence(fn, "x", x)
    cdef long U = _check_weights(fn, kernel, recurrent, bias, x.shape[2], 1, lambda u: (u,))
    _require(fn, "initial state h", h0, (x.shape[0], U))
    x_tm, mask_tm = _time_major_inputs(fn, x, mask, alloc)
    cdef pl_rnn_dims d = dims_of(x, U)
    h = _states(fn, alloc, "h", h0, d.steps, d.batch, U)
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
    fn = "simple_rnn_backward"
    _check_codes(fn, act)
    names = ("h",)
    cdef pl_rnn_dims d
    d.steps, d.batch, d.inputs = _check_tape(fn, tape, names)
    cdef long T = d.steps, B = d.batch
    cdef long U = _check_weights(fn, kernel, recurrent, bias, d.inputs, 1, lambda u: (u,))
    d.units = U
    _check_tape_arrays(fn, tape, names, [(T + 1, B, U)])
    x_tm, mask_tm, h = tape
    _check_backward(fn, dy_seq, dh, d.batch, T, U, dkernel, drecurrent, dbias, kernel,
                    recurrent, bias)
    dpre = _buffer(alloc, "dpre", (T, d.batch, U))
    dx_tm = _buffer(alloc, "dx_tm", x_tm.shape) if need_dx else None
    work = _grad_work(alloc, d, U, 0)
    cdef float *p_x = ptr(x_tm)
    cdef float *p_k = ptr(kernel)
    cdef float *p_r = ptr(recurrent)
    cdef unsigned char *p_m = mask_ptr(mask_tm)
    cdef float *p_h = ptr(h)
    dy_read, dy_time_major = _output_grad(dy_seq)
    cdef float *p_dy = ptr(dy_read)
    cdef int dy_tm = dy_time_major
    cdef float *p_dh = ptr(dh)
    cdef float *p_dp = ptr(dpre)
    cdef float *p_dk = ptr(dkernel)
    cdef float *p_dr = ptr(drecurrent)
    cdef float *p_db = ptr(dbias)
    cdef float *p_dx = ptr(dx_tm)
    cdef float *p_w = ptr(work)
    with nogil:
        pl_simple_rnn_backward(ctx(), d, p_x, p_k, p_r, p_m, act, p_h, p_dy, dy_tm, p_dh, p_dp,
                               p_dk, p_dr, p_db, p_dx, p_w)
    return _dx_batch_major(dx_tm, need_dx)


def fast_tanh(float x):
    """The kernels' tanh approximation on one value (for accuracy tests)."""
    return pl_rnn_tanh(x)


def fast_sigmoid(float x):
    return pl_rnn_sigmoid(x)


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals())
