"""Thin wrappers over csrc/dense.c and csrc/activations.c (float32, C-contiguous)."""
from pylayers._kernels._runtime cimport ctx, pl_ctx, require_aligned

cdef extern from "activations.h":
    void pl_bias_act_forward(const pl_ctx *ctx, long m, long n, float *y,
                             const float *bias, int act, float alpha) nogil
    void pl_act_backward(const pl_ctx *ctx, long m, long n, const float *y,
                         const float *dy, float *dz, int act, float alpha) nogil

cdef extern from "dense.h":
    void pl_dense_forward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                          const float *w, const float *bias, int act, float alpha,
                          float *y) nogil
    void pl_dense_backward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                           const float *w, const float *y, const float *dy, int act,
                           float alpha, float *dz, float *dw, float *dbias, int accumulate,
                           float *dx) nogil

# Codes of csrc/activations.h enum pl_act.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "elu": 5,
                    "selu": 6, "leaky_relu": 7, "softplus": 8, "softsign": 9, "exponential": 10}
_VALID_CODES = frozenset(ACTIVATION_CODES.values())


cdef const float *const_or_null_1d(const float[::1] a):
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef float *data_or_null_1d(float[::1] a):
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef float *data_or_null_2d(float[:, ::1] a):
    return NULL if a is None or a.shape[0] * a.shape[1] == 0 else &a[0, 0]


def _check_act(int act):
    if act not in _VALID_CODES:
        raise ValueError(f"dense kernels: unknown activation code {act}; "
                         f"expected one of {sorted(_VALID_CODES)}")


cdef int _check(str name, const float[:, ::1] array, long rows, long cols) except -1:
    """A None array passes; otherwise its shape must be (rows, cols)."""
    if array is not None and (array.shape[0] != rows or array.shape[1] != cols):
        raise ValueError(f"{name} has shape {(array.shape[0], array.shape[1])}; "
                         f"expected {(rows, cols)}")
    return 0


cdef int _check_1d(str name, const float[::1] array, long size) except -1:
    if array is not None and array.shape[0] != size:
        raise ValueError(f"{name} has shape {(array.shape[0],)}; expected {(size,)}")
    return 0


def dense_forward(const float[:, ::1] x not None, const float[:, ::1] w not None,
                  const float[::1] bias, int act, float alpha, float[:, ::1] y not None):
    """y (m, n) = act(x (m, k) @ w (k, n) + bias (n))."""
    cdef long m = x.shape[0], k = x.shape[1], n = w.shape[1]
    _check_act(act)
    _check("w", w, k, n)
    _check("y", y, m, n)
    _check_1d("bias", bias, n)
    cdef const float *bias_ptr = const_or_null_1d(bias)
    if m == 0 or n == 0:
        return
    cdef const float *x_ptr = &x[0, 0] if k else NULL
    cdef const float *w_ptr = &w[0, 0] if k else NULL
    require_aligned("dense_forward", "x", x_ptr, sizeof(float))
    require_aligned("dense_forward", "w", w_ptr, sizeof(float))
    require_aligned("dense_forward", "bias", bias_ptr, sizeof(float))
    require_aligned("dense_forward", "y", &y[0, 0], sizeof(float))
    with nogil:
        pl_dense_forward(ctx(), m, n, k, x_ptr, w_ptr, bias_ptr, act, alpha, &y[0, 0])


def dense_backward(const float[:, ::1] x not None, const float[:, ::1] w not None,
                   const float[:, ::1] y not None, const float[:, ::1] dy not None, int act,
                   float alpha, float[:, ::1] dz not None, float[:, ::1] dw, float[::1] dbias,
                   float[:, ::1] dx, bint accumulate=True):
    """dz = dy*act'(y); dw += x^T dz; dbias += colsum dz; dx = dz w^T (None skips).
    With accumulate False, dw and dbias are overwritten instead of added to."""
    cdef long m = x.shape[0], k = x.shape[1], n = w.shape[1]
    _check_act(act)
    _check("w", w, k, n)
    _check("y", y, m, n)
    _check("dy", dy, m, n)
    _check("dz", dz, m, n)
    _check("dw", dw, k, n)
    _check_1d("dbias", dbias, n)
    _check("dx", dx, m, k)
    cdef float *dw_ptr = data_or_null_2d(dw)
    cdef float *dbias_ptr = data_or_null_1d(dbias)
    cdef float *dx_ptr = data_or_null_2d(dx)
    if m == 0 or n == 0:
        if dx is not None and m and k:
            dx[:, :] = 0
        if not accumulate and dw is not None and k and n:
            dw[:, :] = 0
        if not accumulate and dbias is not None and n:
            dbias[:] = 0
        return
    with nogil:
        pl_dense_backward(ctx(), m, n, k, &x[0, 0] if k else NULL, &w[0, 0] if k else NULL,
                          &y[0, 0], &dy[0, 0], act, alpha, &dz[0, 0], dw_ptr, dbias_ptr,
                          accumulate, dx_ptr if k else NULL)


def bias_act_forward(float[:, ::1] y not None, const float[::1] bias, int act, float alpha):
    """In place: y (m, n) = act(y + bias)."""
    cdef long m = y.shape[0], n = y.shape[1]
    _check_act(act)
    _check_1d("bias", bias, n)
    cdef const float *bias_ptr = const_or_null_1d(bias)
    if m == 0 or n == 0:
        return
    with nogil:
        pl_bias_act_forward(ctx(), m, n, &y[0, 0], bias_ptr, act, alpha)


def act_backward(const float[:, ::1] y not None, const float[:, ::1] dy not None,
                 float[:, ::1] dz not None, int act, float alpha):
    """dz (m, n) = dy * act'(y); dz may be dy."""
    cdef long m = y.shape[0], n = y.shape[1]
    _check_act(act)
    _check("dy", dy, m, n)
    _check("dz", dz, m, n)
    if m == 0 or n == 0:
        return
    with nogil:
        pl_act_backward(ctx(), m, n, &y[0, 0], &dy[0, 0], &dz[0, 0], act, alpha)


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals(), exempt=("dense_forward",))   # the batch-1 predict's hot call
