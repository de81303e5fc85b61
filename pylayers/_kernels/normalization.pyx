"""Thin wrappers over csrc/norm.c: batch and layer normalisation (float32, C-contiguous)."""
from pylayers._kernels._runtime cimport ctx, pl_ctx

cdef extern from "norm.h":
    int pl_bn_moments(const pl_ctx *ctx, long m, long c, const float *x, float *mean,
                      float *var) nogil
    int pl_bn_forward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                      const float *var, const float *gamma, const float *beta, float eps,
                      float *y) nogil
    int pl_bn_backward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                       const float *var, const float *gamma, float eps, const float *dy,
                       int batch_stats, float *dgamma, float *dbeta, float *dx) nogil
    void pl_layer_norm_forward(const pl_ctx *ctx, long m, long n, const float *x,
                               const float *gamma, const float *beta, float eps, float *y,
                               float *mean, float *inv_std) nogil
    int pl_layer_norm_backward(const pl_ctx *ctx, long m, long n, const float *x,
                               const float *mean, const float *inv_std, const float *gamma,
                               const float *dy, float *dgamma, float *dbeta, float *dx) nogil


cdef const float *const_or_null(const float[::1] a):
    return NULL if a is None else &a[0]


cdef float *data_or_null(float[::1] a):
    return NULL if a is None else &a[0]


def _check(name, array, shape):
    if array is not None and tuple(array.shape[:len(shape)]) != shape:
        raise ValueError(f"{name} has shape {tuple(array.shape)}; expected {shape}")


def _status(int status):
    if status != 0:
        raise MemoryError("normalization: could not allocate scratch memory")


def bn_moments(const float[:, ::1] x not None, float[::1] mean not None, float[::1] var not None):
    """mean, var (c) = column moments of x (m, c), variance biased; NaN for m == 0 (numpy's
    mean of nothing), never left unwritten."""
    cdef long m = x.shape[0], c = x.shape[1]
    _check("mean", mean, (c,))
    _check("var", var, (c,))
    cdef int status = 0
    if m == 0 or c == 0:
        mean[:] = float("nan")
        var[:] = float("nan")
        return
    with nogil:
        status = pl_bn_moments(ctx(), m, c, &x[0, 0], &mean[0], &var[0])
    _status(status)


def bn_forward(const float[:, ::1] x not None, const float[::1] mean not None,
               const float[::1] var not None, const float[::1] gamma, const float[::1] beta,
               float eps, float[:, ::1] y not None):
    cdef long m = x.shape[0], c = x.shape[1]
    for name, array in (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        _check(name, array, (c,))
    _check("y", y, (m, c))
    cdef const float *gamma_ptr = const_or_null(gamma)
    cdef const float *beta_ptr = const_or_null(beta)
    cdef int status = 0
    if m == 0 or c == 0:
        return
    with nogil:
        status = pl_bn_forward(ctx(), m, c, &x[0, 0], &mean[0], &var[0], gamma_ptr, beta_ptr,
                               eps, &y[0, 0])
    _status(status)


def bn_backward(const float[:, ::1] x not None, const float[::1] mean not None,
                const float[::1] var not None, const float[::1] gamma, float eps,
                const float[:, ::1] dy not None, bint batch_stats,
                float[::1] dgamma, float[::1] dbeta, float[:, ::1] dx):
    """dgamma, dbeta += their gradients (None skips); dx overwritten (None skips)."""
    cdef long m = x.shape[0], c = x.shape[1]
    for name, array in (("mean", mean), ("var", var), ("gamma", gamma), ("dgamma", dgamma),
                        ("dbeta", dbeta)):
        _check(name, array, (c,))
    _check("dy", dy, (m, c))
    _check("dx", dx, (m, c))
    cdef const float *gamma_ptr = const_or_null(gamma)
    cdef float *dgamma_ptr = data_or_null(dgamma)
    cdef float *dbeta_ptr = data_or_null(dbeta)
    cdef float *dx_ptr = NULL if dx is None else &dx[0, 0]
    cdef int status = 0
    if m == 0 or c == 0:
        return
    with nogil:
        status = pl_bn_backward(ctx(), m, c, &x[0, 0], &mean[0], &var[0], gamma_ptr, eps,
                                &dy[0, 0], batch_stats, dgamma_ptr, dbeta_ptr, dx_ptr)
    _status(status)


def layer_norm_forward(const float[:, ::1] x not None, const float[::1] gamma,
                       const float[::1] beta, float eps, float[:, ::1] y not None,
                       float[::1] mean not None, float[::1] inv_std not None):
    """y = normalised rows of x; mean and inv_std (m) written for the backward (NaN for
    rows of no elements, numpy's mean of nothing)."""
    cdef long m = x.shape[0], n = x.shape[1]
    _check("gamma", gamma, (n,))
    _check("beta", beta, (n,))
    _check("y", y, (m, n))
    _check("mean", mean, (m,))
    _check("inv_std", inv_std, (m,))
    cdef const float *gamma_ptr = const_or_null(gamma)
    cdef const float *beta_ptr = const_or_null(beta)
    if m == 0 or n == 0:
        mean[:] = float("nan")
        inv_std[:] = float("nan")
        return
    with nogil:
        pl_layer_norm_forward(ctx(), m, n, &x[0, 0], gamma_ptr, beta_ptr, eps, &y[0, 0],
                              &mean[0], &inv_std[0])


def layer_norm_backward(const float[:, ::1] x not None, const float[::1] mean not None,
                        const float[::1] inv_std not None, const float[::1] gamma,
                        const float[:, ::1] dy not None, float[::1] dgamma,
                        float[::1] dbeta, float[:, ::1] dx):
    cdef long m = x.shape[0], n = x.shape[1]
    _check("mean", mean, (m,))
    _check("inv_std", inv_std, (m,))
    for name, array in (("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)):
        _check(name, array, (n,))
    _check("dy", dy, (m, n))
    _check("dx", dx, (m, n))
    cdef const float *gamma_ptr = const_or_null(gamma)
    cdef float *dgamma_ptr = data_or_null(dgamma)
    cdef float *dbeta_ptr = data_or_null(dbeta)
    cdef float *dx_ptr = NULL if dx is None else &dx[0, 0]
    cdef int status = 0
    if m == 0 or n == 0:
        return
    with nogil:
        status = pl_layer_norm_backward(ctx(), m, n, &x[0, 0], &mean[0], &inv_std[0],
                                        gamma_ptr, &dy[0, 0], dgamma_ptr, dbeta_ptr, dx_ptr)
    _status(status)


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals())
