"""Thin wrapper over csrc/losses.c: losses fused with the activation before them."""
import numpy as np
from libc.stdint cimport int64_t

cdef extern from "losses.h":
    long pl_sparse_softmax_crossentropy(long n, long classes, const float *p,
                                        const int64_t *labels, double row_weight, double low,
                                        double high, double *value, float *grad) nogil
    void pl_mean_squared_error(long n, long width, const float *p, const float *t,
                               double row_weight, double *value, float *grad) nogil


def sparse_softmax_crossentropy(const float[:, ::1] p not None,
                                const int64_t[::1] labels not None, double row_weight,
                                double low, double high):
    """(sum_i row_weight * -log(clip(p[i, label_i] / sum(p[i]), low, high)),
    row_weight * (p - onehot(labels)) as float32), or (None, first bad row) when a label
    lies outside [0, classes)."""
    cdef long n = p.shape[0], classes = p.shape[1], bad
    cdef double value = 0.0
    if labels.shape[0] != n:
        raise ValueError(f"sparse_softmax_crossentropy: {labels.shape[0]} labels for "
                         f"{n} rows of probabilities")
    grad = np.empty((n, classes), dtype=np.float32)
    cdef float[:, ::1] grad_view = grad
    if n == 0:
        return 0.0, grad
    if classes == 0:
        return None, 0
    with nogil:
        bad = pl_sparse_softmax_crossentropy(n, classes, &p[0, 0], &labels[0], row_weight,
                                             low, high, &value, &grad_view[0, 0])
    if bad >= 0:
        return None, bad
    return value, grad


def mean_squared_error(const float[:, ::1] p not None, const float[:, ::1] t not None,
                       double row_weight):
    """(sum_i row_weight * mean_j (p - t)^2, row_weight * 2 (p - t) / width as float32)."""
    cdef long n = p.shape[0], width = p.shape[1]
    cdef double value = 0.0
    if t.shape[0] != n or t.shape[1] != width:
        raise ValueError(f"mean_squared_error: targets of shape {(t.shape[0], t.shape[1])} "
                         f"for predictions of shape {(n, width)}")
    grad = np.empty((n, width), dtype=np.float32)
    cdef float[:, ::1] grad_view = grad
    if n == 0 or width == 0:
        return (0.0 if n == 0 else np.nan), grad
    with nogil:
        pl_mean_squared_error(n, width, &p[0, 0], &t[0, 0], row_weight, &value,
                              &grad_view[0, 0])
    return value, grad


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals())
