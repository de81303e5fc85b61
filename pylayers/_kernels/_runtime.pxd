cdef extern from "pl_ctx.h":
    ctypedef struct pl_ctx:
        int n_threads
        int isa
    int PL_ISA_GENERIC
    int PL_ISA_AVX2
    int PL_ISA_AVX512

# The one context every kernel wrapper passes to C (thread budget, ISA path).
cdef const pl_ctx *ctx() noexcept nogil


cdef inline int require_aligned(str function, str name, const void *data,
                                size_t itemsize) except -1:
    """ValueError naming `function` and its argument `name` when data (NULL passes) is not
    aligned for items of itemsize bytes: the check _refuse_unaligned's wrapper makes, for
    wrappers that check their own operands (see its `exempt`)."""
    if data != NULL and <size_t>data % itemsize:
        raise ValueError(f"{function}: received {name} whose data is not aligned; pass an "
                         "aligned copy (np.array(x))")
    return 0
