"""Thin wrappers over csrc/embedding.c: gather and scatter-add of table rows."""
import numpy as np
from libc.stdint cimport int64_t
from pylayers._kernels._runtime cimport ctx, pl_ctx

cdef extern from "embedding.h":
    void pl_embedding_forward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                              const float *table, float *out) nogil
    void pl_embedding_backward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                               const float *dy, float *dtable) nogil


def _check_indices(const int64_t[::1] indices, long rows):
    if indices.shape[0] == 0:
        return
    low, high = np.min(indices), np.max(indices)
    if low < 0 or high >= rows:
        bad = low if low < 0 else high
        raise ValueError(f"index {bad} is out of range [0, {rows})")


def embedding_forward(const int64_t[::1] indices not None, const float[:, ::1] table not None):
    """out (n, dim) = table[indices]; raises ValueError for an index outside the table."""
    cdef long n = indices.shape[0], rows = table.shape[0], dim = table.shape[1]
    _check_indices(indices, rows)
    out = np.empty((n, dim), dtype=np.float32)
    cdef float[:, ::1] out_view = out
    if n == 0 or dim == 0:
        return out
    with nogil:
        pl_embedding_forward(ctx(), n, dim, &indices[0], &table[0, 0], &out_view[0, 0])
    return out


def embedding_backward(const int64_t[::1] indices not None, const float[:, ::1] dy not None,
                       float[:, ::1] dtable not None):
    """dtable (rows, dim) += dy (n, dim) scattered to the rows named by indices."""
    cdef long n = indices.shape[0], rows = dtable.shape[0], dim = dtable.shape[1]
    if dy.shape[0] != n or dy.shape[1] != dim:
        raise ValueError(f"dy has shape {(dy.shape[0], dy.shape[1])}; expected {(n, dim)}")
    _check_indices(indices, rows)
    if n == 0 or dim == 0:
        return
    with nogil:
        pl_embedding_backward(ctx(), n, dim, &indices[0], &dy[0, 0], &dtable[0, 0])


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals())
