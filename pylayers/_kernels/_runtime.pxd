cdef extern from "pl_ctx.h":
    ctypedef struct pl_ctx:
        int n_threads
        int isa
    int PL_ISA_GENERIC
    int PL_ISA_AVX2
    int PL_ISA_AVX512

# The one context every kernel wrapper passes to C (thread budget, ISA path).
cdef const pl_ctx *ctx() noexcept nogil
