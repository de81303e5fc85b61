"""Thin wrapper over csrc/gemm.c: check, release the GIL, call C."""
import numpy as np
from pylayers._kernels._runtime cimport ctx, pl_ctx

cdef extern from "gemm.h":
    void pl_sgemm(const pl_ctx *ctx, int trans_a, int trans_b,
                  long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb,
                  float beta, float *c, long ldc) nogil


def sgemm(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] out,
          bint trans_a=False, bint trans_b=False, float alpha=1.0, float beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out on float32 row-major 2-D arrays."""
    cdef long m = a.shape[1] if trans_a else a.shape[0]
    cdef long k = a.shape[0] if trans_a else a.shape[1]
    cdef long kb = b.shape[1] if trans_b else b.shape[0]
    cdef long n = b.shape[0] if trans_b else b.shape[1]
    if k != kb or out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"sgemm: shapes do not match: op(a) is ({m}, {k}), op(b) is ({kb}, {n}), "
                         f"out is ({out.shape[0]}, {out.shape[1]})")
    if m == 0 or n == 0:
        return
    with nogil:
        pl_sgemm(ctx(), trans_a, trans_b, m, n, k, alpha,
                 &a[0, 0] if a.shape[0] * a.shape[1] else NULL, a.strides[0] // 4,
                 &b[0, 0] if b.shape[0] * b.shape[1] else NULL, b.strides[0] // 4,
                 beta, &out[0, 0], out.strides[0] // 4)


def matmul(a, b):
    """Placeholder until the blocked kernel lands: numpy semantics in float32."""
    return np.matmul(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
