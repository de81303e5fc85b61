# cython: wraparound=True
# (shape tuples are indexed from the end; nothing here is a hot loop)
"""Thin wrapper over csrc/gemm.c: check, release the GIL, call C.

`matmul(a, b)` has numpy.matmul semantics (1-D, 2-D, batched with broadcasting) and a
float32 result; `matmul_into(a, b, out, ...)` writes or accumulates one 2-D product into
`out`; `sgemm(...)` is the strict BLAS-style entry on float32 matrices.  Transposed
views are passed to C as transpose flags, never copied; everything is validated before
the GIL is released."""
from cython.parallel cimport prange
import numpy as np
from pylayers._kernels._runtime cimport ctx, pl_ctx

cdef extern from "gemm.h":
    void pl_sgemm(const pl_ctx *ctx, int trans_a, int trans_b,
                  long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb,
                  float beta, float *c, long ldc) nogil
    void pl_sgemm_ref(int trans_a, int trans_b, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) nogil
    float *pl_sgemm_pack_b(const pl_ctx *ctx, int trans_b, long n, long k, const float *b,
                           long ldb) nogil
    void pl_sgemm_packed_b(const pl_ctx *ctx, int trans_a, int trans_b,
                           long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           const float *packed_b, float beta, float *c, long ldc) nogil
    void pl_sgemm_packed_b_serial(const pl_ctx *ctx, long m, long n, long k, const float *a,
                                  long lda, const float *packed_b, float beta, float *c,
                                  long ldc) nogil

cdef extern from "stdlib.h":
    void free(void *ptr) nogil

# How _sgemm_checked runs the product.
cdef enum Route:
    ROUTE_SGEMM, ROUTE_REFERENCE, ROUTE_PACKED_B

# A batch of products each below this many multiply-adds (m*n*k) runs its products in
# parallel, one per thread; bigger products are threaded inside pl_sgemm instead.
cdef double BATCH_PARALLEL_WORK = 64.0 * 64.0 * 64.0
cdef Py_ssize_t FLOAT_BYTES = 4


def _shapes(a, b):
    return f"a has shape {tuple(np.shape(a))} and b has shape {tuple(np.shape(b))}"


cdef object _as_float32(arr, a, b):
    """arr as float32: floats and integers converted, anything else a TypeError."""
    kind = arr.dtype.kind
    if kind == "f":
        return arr if arr.dtype == np.float32 else arr.astype(np.float32)
    if kind in "iu":
        return arr.astype(np.float32)
    raise TypeError(f"matmul expects float or integer arrays, {_shapes(a, b)}. "
                    f"Received dtypes: {np.asarray(a).dtype} and {np.asarray(b).dtype}")


cdef tuple _matrix_layout(arr):
    """(arr, transposed, ld) for the last two axes of arr (..., rows, cols): either rows of
    unit-stride floats ld apart, or (transposed) the matrix's transpose stored that way.
    Copies arr only when neither layout fits."""
    cdef tuple shape = arr.shape, strides = arr.strides
    cdef Py_ssize_t nd = len(shape)
    cdef Py_ssize_t rows = shape[nd - 2], cols = shape[nd - 1]
    cdef Py_ssize_t row_stride = strides[nd - 2], col_stride = strides[nd - 1], axis
    if rows == 0 or cols == 0:
        return arr, False, max(cols, 1)
    if cols == 1:
        col_stride = FLOAT_BYTES
    if rows == 1:
        row_stride = FLOAT_BYTES * cols
    cdef bint usable = arr.flags.aligned
    for axis in range(nd - 2):
        usable = usable and strides[axis] % FLOAT_BYTES == 0
    if usable and col_stride == FLOAT_BYTES and row_stride >= 0 and row_stride % FLOAT_BYTES == 0:
        return arr, False, row_stride // FLOAT_BYTES
    if usable and row_stride == FLOAT_BYTES and col_stride >= 0 and col_stride % FLOAT_BYTES == 0:
        return arr, True, col_stride // FLOAT_BYTES
    return np.ascontiguousarray(arr), False, cols


cdef const float *_first_element(arr) except? NULL:
    """Address of arr[0, ..., 0]; NULL for an empty array.  arr must stay alive."""
    cdef const float[:, :] first
    if arr.size == 0:
        return NULL
    first = arr[(0,) * (arr.ndim - 2)] if arr.ndim > 2 else arr
    return &first[0, 0]


cdef object _batch_offsets(arr, tuple batch):
    """Element offset of each matrix of arr broadcast to batch + arr.shape[-2:], flat."""
    offsets = np.zeros(batch, dtype=np.int64)
    lead = len(batch) - (arr.ndim - 2)
    for axis in range(arr.ndim - 2):
        if arr.shape[axis] > 1:
            index_shape = [1] * len(batch)
            index_shape[lead + axis] = arr.shape[axis]
            steps = np.arange(arr.shape[axis], dtype=np.int64) * (arr.strides[axis] // FLOAT_BYTES)
            offsets = offsets + steps.reshape(index_shape)
    return np.ascontiguousarray(offsets.reshape(-1))


cdef void _batched_sgemm(int trans_a, int trans_b, long m, long n, long k,
                         const float *a, long lda, const long long[::1] a_offsets,
                         const float *b, long ldb, const long long[::1] b_offsets,
                         float *c) noexcept nogil:
    """c[i] (m, n) = op(a + a_offsets[i]) @ op(b + b_offsets[i]) for every batch item i."""
    cdef Py_ssize_t count = a_offsets.shape[0], i
    cdef int n_threads = ctx().n_threads
    if count > 1 and n_threads > 1 and <double>m * n * k < BATCH_PARALLEL_WORK:
        for i in prange(count, num_threads=n_threads, schedule="static"):
            pl_sgemm(ctx(), trans_a, trans_b, m, n, k, 1.0, a + a_offsets[i], lda,
                     b + b_offsets[i], ldb, 0.0, c + i * m * n, n)
    else:
        for i in range(count):
            pl_sgemm(ctx(), trans_a, trans_b, m, n, k, 1.0, a + a_offsets[i], lda,
                     b + b_offsets[i], ldb, 0.0, c + i * m * n, n)


cdef tuple _float32_operands(a, b):
    """Both operands as float32 ndarrays of ndim >= 1, or the error naming both shapes."""
    a32 = a if type(a) is np.ndarray and a.dtype == np.float32 else _as_float32(np.asarray(a), a, b)
    b32 = b if type(b) is np.ndarray and b.dtype == np.float32 else _as_float32(np.asarray(b), a, b)
    a32 = a32 if a32.flags.aligned else a32.copy()   # any layout is accepted: copy to align
    b32 = b32 if b32.flags.aligned else b32.copy()
    if a32.ndim == 0 or b32.ndim == 0:
        raise ValueError(f"matmul operands must have at least 1 dimension, {_shapes(a, b)}")
    return a32, b32


def matmul(a, b):
    """numpy.matmul(a, b) for float32 (other real dtypes converted): 1-D operands are
    promoted to a row (a) or column (b) and the axis removed again, leading (batch)
    dimensions broadcast.  Returns a new float32 array (a numpy scalar for 1-D @ 1-D)."""
    a32, b32 = _float32_operands(a, b)
    a_matrix = a32[None, :] if a32.ndim == 1 else a32   # (..., m, k)
    b_matrix = b32[:, None] if b32.ndim == 1 else b32   # (..., k, n)
    cdef long m = a_matrix.shape[-2], k = a_matrix.shape[-1]
    cdef long n = b_matrix.shape[-1]
    if b_matrix.shape[-2] != k:
        raise ValueError(f"matmul: inner dimensions do not match ({k} != {b_matrix.shape[-2]}), "
                         f"{_shapes(a, b)}")
    cdef tuple batch = ()
    if a_matrix.ndim > 2 or b_matrix.ndim > 2:
        try:
            batch = tuple(np.broadcast_shapes(a_matrix.shape[:-2], b_matrix.shape[:-2]))
        except ValueError:
            raise ValueError(f"matmul: batch dimensions do not broadcast, {_shapes(a, b)}") from None
    out = np.empty(batch + (m, n), dtype=np.float32)
    if out.size == 0:
        pass
    elif batch:
        _matmul_batched(a_matrix, b_matrix, out, batch, m, n, k)
    else:
        _matmul_2d(a_matrix, b_matrix, out, m, n, k)
    if a32.ndim == 1 and b32.ndim == 1:
        return out[0, 0]
    if a32.ndim == 1:
        return out[..., 0, :]
    if b32.ndim == 1:
        return out[..., :, 0]
    return out


cdef _matmul_2d(a_matrix, b_matrix, out, long m, long n, long k):
    """out (m, n) = a_matrix (m, k) @ b_matrix (k, n); out new, C-contiguous, non-empty."""
    a_matrix, trans_a, lda = _matrix_layout(a_matrix)
    b_matrix, trans_b, ldb = _matrix_layout(b_matrix)
    cdef const float *a_ptr = _first_element(a_matrix)
    cdef const float *b_ptr = _first_element(b_matrix)
    cdef float[:, ::1] out_view = out
    cdef int ta = trans_a, tb = trans_b
    cdef long lda_c = lda, ldb_c = ldb
    with nogil:
        pl_sgemm(ctx(), ta, tb, m, n, k, 1.0, a_ptr, lda_c, b_ptr, ldb_c, 0.0, &out_view[0, 0], n)


cdef _matmul_batched(a_matrix, b_matrix, out, tuple batch, long m, long n, long k):
    """out (*batch, m, n) = a_matrix @ b_matrix with broadcast batch axes; out non-empty."""
    a_matrix, trans_a, lda = _matrix_layout(a_matrix)
    b_matrix, trans_b, ldb = _matrix_layout(b_matrix)
    cdef const float *a_ptr = _first_element(a_matrix)
    cdef const float *b_ptr = _first_element(b_matrix)
    cdef float[::1] out_flat = out.reshape(-1)
    cdef const long long[::1] a_offsets = _batch_offsets(a_matrix, batch)
    cdef const long long[::1] b_offsets = _batch_offsets(b_matrix, batch)
    cdef int ta = trans_a, tb = trans_b
    cdef long lda_c = lda, ldb_c = ldb
    with nogil:
        _batched_sgemm(ta, tb, m, n, k, a_ptr, lda_c, a_offsets, b_ptr, ldb_c, b_offsets,
                       &out_flat[0])


cdef long _output_matrix(out, long m, long n, a, b) except -1:
    """The row stride (in floats) of out, a writable float32 (m, n) array with unit-stride
    rows not overlapping a or b."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise TypeError(f"out must be a float32 numpy array. Received: {type(out).__name__} "
                        f"of dtype {getattr(out, 'dtype', None)}")
    if not out.flags.aligned:
        raise ValueError("out must be aligned (its data address a multiple of 4 bytes)")
    if out.ndim != 2 or out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"out must have shape ({m}, {n}) for {_shapes(a, b)}. "
                         f"Received: out shape {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if out.size == 0:
        return max(n, 1)
    row_stride = out.strides[0] if m > 1 else FLOAT_BYTES * max(n, 1)
    col_stride = out.strides[1] if n > 1 else FLOAT_BYTES
    if (col_stride != FLOAT_BYTES or row_stride < FLOAT_BYTES * n or row_stride % FLOAT_BYTES
            or not out.flags.aligned):
        raise ValueError(f"out rows must be unit-stride and not overlap. Received strides {out.strides}")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("out must not share memory with a or b")
    return row_stride // FLOAT_BYTES


def matmul_into(a, b, out, trans_a=False, trans_b=False, float alpha=1.0, float beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out for 2-D a, b (op(x) is x.T when trans_x),
    e.g. the weight gradient dW += X^T @ dY as matmul_into(x, dy, dw, trans_a=True, beta=1).
    a, b: any real dtype and strides (transposed views cost nothing); out: float32 (m, n)
    with unit-stride rows, not overlapping a or b.  beta == 0 ignores out's contents."""
    a32, b32 = _float32_operands(a, b)
    if a32.ndim != 2 or b32.ndim != 2:
        raise ValueError(f"matmul_into expects 2-D operands, {_shapes(a, b)}")
    a_op = a32.T if trans_a else a32   # (m, k)
    b_op = b32.T if trans_b else b32   # (k, n)
    cdef long m = a_op.shape[0], k = a_op.shape[1], n = b_op.shape[1]
    if b_op.shape[0] != k:
        raise ValueError(f"matmul_into: inner dimensions do not match ({k} != {b_op.shape[0]}) "
                         f"with trans_a={bool(trans_a)}, trans_b={bool(trans_b)}, {_shapes(a, b)}")
    cdef long ldc = _output_matrix(out, m, n, a, b)
    if m == 0 or n == 0:
        return out
    a_op, a_flag, lda = _matrix_layout(a_op)
    b_op, b_flag, ldb = _matrix_layout(b_op)
    cdef const float *a_ptr = _first_element(a_op)
    cdef const float *b_ptr = _first_element(b_op)
    cdef float[:, :] out_view = out
    cdef int ta = a_flag, tb = b_flag
    cdef long lda_c = lda, ldb_c = ldb
    with nogil:
        pl_sgemm(ctx(), ta, tb, m, n, k, alpha, a_ptr, lda_c, b_ptr, ldb_c, beta,
                 &out_view[0, 0], ldc)
    return out


cdef tuple _strict_operand(x, str name):
    """(pointer, rows, cols, ld) of a float32 2-D array whose rows are unit-stride."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
        raise TypeError(f"sgemm: {name} must be a 2-D float32 numpy array. Received: "
                        f"{type(x).__name__} {getattr(x, 'dtype', '')} {np.shape(x)}")
    rows, cols = x.shape
    if x.size == 0:
        return rows, cols, max(cols, 1)
    col_stride = x.strides[1] if cols > 1 else FLOAT_BYTES
    row_stride = x.strides[0] if rows > 1 else FLOAT_BYTES * max(cols, 1)
    if col_stride != FLOAT_BYTES or row_stride < 0 or row_stride % FLOAT_BYTES or not x.flags.aligned:
        raise ValueError(f"sgemm: {name} must have unit-stride rows. Received strides {x.strides}")
    return rows, cols, row_stride // FLOAT_BYTES


def _sgemm_checked(a, b, out, bint trans_a, bint trans_b, float alpha, float beta, Route route):
    a_rows, a_cols, lda = _strict_operand(a, "a")
    b_rows, b_cols, ldb = _strict_operand(b, "b")
    cdef long m = a_cols if trans_a else a_rows, k = a_rows if trans_a else a_cols
    cdef long kb = b_cols if trans_b else b_rows, n = b_rows if trans_b else b_cols
    if k != kb:
        raise ValueError(f"sgemm: shapes do not match: op(a) is ({m}, {k}), op(b) is ({kb}, {n}), "
                         f"{_shapes(a, b)}")
    cdef long ldc = _output_matrix(out, m, n, a, b)
    if m == 0 or n == 0:
        return out
    cdef const float *a_ptr = _first_element(a)
    cdef const float *b_ptr = _first_element(b)
    cdef float[:, :] out_view = out
    cdef long lda_c = lda, ldb_c = ldb
    cdef float *packed = NULL
    with nogil:
        if route == ROUTE_REFERENCE:
            pl_sgemm_ref(trans_a, trans_b, m, n, k, alpha, a_ptr, lda_c, b_ptr, ldb_c, beta,
                         &out_view[0, 0], ldc)
        elif route == ROUTE_PACKED_B:
            packed = pl_sgemm_pack_b(ctx(), trans_b, n, k, b_ptr, ldb_c)
            pl_sgemm_packed_b(ctx(), trans_a, trans_b, m, n, k, alpha, a_ptr, lda_c, b_ptr,
                              ldb_c, packed, beta, &out_view[0, 0], ldc)
            free(packed)
        else:
            pl_sgemm(ctx(), trans_a, trans_b, m, n, k, alpha, a_ptr, lda_c, b_ptr, ldb_c, beta,
                     &out_view[0, 0], ldc)
    return out


def sgemm(a, b, out, bint trans_a=False, bint trans_b=False, float alpha=1.0, float beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out on float32 2-D arrays whose rows are
    unit-stride (any row stride); op(x) is x.T when trans_x.  Returns out."""
    return _sgemm_checked(a, b, out, trans_a, trans_b, alpha, beta, ROUTE_SGEMM)


def sgemm_reference(a, b, out, bint trans_a=False, bint trans_b=False, float alpha=1.0,
                    float beta=0.0):
    """sgemm through the naive one-thread C loop (pl_sgemm_ref), for tests."""
    return _sgemm_checked(a, b, out, trans_a, trans_b, alpha, beta, ROUTE_REFERENCE)


def sgemm_packed_b(a, b, out, bint trans_a=False, bint trans_b=False, float alpha=1.0,
                   float beta=0.0):
    """sgemm with op(b) packed beforehand by pl_sgemm_pack_b and handed to pl_sgemm_packed_b,
    as the recurrent layers run their steps: the bits of sgemm; for tests."""
    return _sgemm_checked(a, b, out, trans_a, trans_b, alpha, beta, ROUTE_PACKED_B)


def sgemm_packed_b_serial(a, b, out, bint trans_b=False, float beta=0.0, row_splits=()):
    """out = a @ op(b) + beta * out through pl_sgemm_packed_b_serial, one call per block of
    rows between the increasing split points, as threads sharing out the rows of a
    product run it; for tests."""
    a_rows, a_cols, lda = _strict_operand(a, "a")
    b_rows, b_cols, ldb = _strict_operand(b, "b")
    cdef long m = a_rows, k = a_cols
    cdef long kb = b_cols if trans_b else b_rows, n = b_rows if trans_b else b_cols
    if k != kb:
        raise ValueError(f"sgemm_packed_b_serial: shapes do not match: a is ({m}, {k}), op(b) "
                         f"is ({kb}, {n}), {_shapes(a, b)}")
    bounds = [0, *row_splits, m]
    if row_splits and any(lo >= hi for lo, hi in zip(bounds, bounds[1:])):
        raise ValueError(f"sgemm_packed_b_serial: row_splits must increase within (0, {m}); "
                         f"received {tuple(row_splits)}")
    cdef long ldc = _output_matrix(out, m, n, a, b)
    if m == 0 or n == 0:
        return out
    if k == 0:
        out[...] = 0.0 if beta == 0 else beta * out
        return out
    cdef const float *a_ptr = _first_element(a)
    cdef const float *b_ptr = _first_element(b)
    cdef float[:, :] out_view = out
    cdef long lda_c = lda, ldb_c = ldb, r0, r1
    cdef float *packed
    with nogil:
        packed = pl_sgemm_pack_b(ctx(), trans_b, n, k, b_ptr, ldb_c)
    if packed == NULL:
        raise MemoryError("sgemm_packed_b_serial: no memory to pack b")
    for r0, r1 in zip(bounds, bounds[1:]):
        with nogil:
            pl_sgemm_packed_b_serial(ctx(), r1 - r0, n, k, a_ptr + r0 * lda_c, lda_c, packed,
                                     beta, &out_view[r0, 0], ldc)
    free(packed)
    return out


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals(), exempt=("matmul", "matmul_into"))
