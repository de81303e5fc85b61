"""Process-wide kernel settings: thread count and instruction-set path.

Every other wrapper cimports `ctx()` from here so that one setting reaches all
extension modules."""
import os

from numpy import float32 as _float32, ndarray as _ndarray

cdef extern from "pl_ctx.h":
    int pl_detect_isa() nogil
    int pl_openmp_enabled() nogil
    int pl_default_threads() nogil

cdef pl_ctx _ctx

ISA_NAMES = {PL_ISA_GENERIC: "generic", PL_ISA_AVX2: "avx2", PL_ISA_AVX512: "avx512"}


cdef const pl_ctx *ctx() noexcept nogil:
    return &_ctx


def openmp_enabled():
    return bool(pl_openmp_enabled())


def detected_kernel_path():
    """The best path this CPU supports, ignoring overrides."""
    return ISA_NAMES[pl_detect_isa()]


def get_kernel_path():
    return ISA_NAMES[_ctx.isa]


def set_kernel_path(name):
    """Select 'generic', 'avx2' or 'avx512' micro-kernels ('auto' picks the best available)."""
    if name == "auto":
        name = detected_kernel_path()
    by_name = {v: k for k, v in ISA_NAMES.items()}
    if name not in by_name:
        raise ValueError("kernel path must be one of 'auto', 'generic', 'avx2', 'avx512'. "
                         f"Received: {name!r}")
    if by_name[name] > pl_detect_isa():
        raise ValueError(f"kernel path {name!r} is not supported by this CPU "
                         f"(best available: {detected_kernel_path()!r})")
    _ctx.isa = by_name[name]


def get_num_threads():
    return _ctx.n_threads


def set_num_threads(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer. Received: {n!r}")
    _ctx.n_threads = n if pl_openmp_enabled() else 1


def _threads_from_environment():
    for var in ("PYLAYERS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var} must be a positive integer. Received: {value!r}") from None
            if n >= 1:
                return n
    return pl_default_threads()


set_num_threads(_threads_from_environment())
set_kernel_path(os.environ.get("PYLAYERS_KERNEL", "auto"))


def _time_major_view(seq):
    """seq (B, T, F) as the (T, B, F) float32 array it is a view of, when it is a
    time-major buffer seen batch-major (what recurrent layers hand on in training: their
    output sequences and input gradients), else None."""
    if isinstance(seq, _ndarray) and seq.ndim == 3 and seq.dtype == _float32:
        view = seq.transpose(1, 0, 2)
        if view.flags.c_contiguous and view.flags.aligned:
            return view
    return None


cdef _check_aligned(function, values):
    """ValueError naming `function` when an array among values (or inside a tuple or list
    among them, e.g. adam_update_all's per-variable tuples) is not aligned for its dtype."""
    for value in values:
        if type(value) is tuple or type(value) is list:
            _check_aligned(function, value)
        elif isinstance(value, _ndarray) and not value.flags.aligned:
            raise ValueError(f"{function.__name__}: received an array of dtype {value.dtype} "
                             f"and shape {value.shape} whose data is not aligned; pass an "
                             "aligned copy (np.array(x))")


def _refuse_unaligned(namespace, exempt=()):
    """Wrap each public function of the wrapper module whose globals are `namespace`:
    a numpy array argument (or one inside a tuple or list argument, e.g. a tape) whose data is
    not aligned for its dtype raises ValueError naming the function, before the call.
    Typed memoryviews accept such arrays, and the C kernels load floats and ints at
    their natural alignment (undefined behaviour otherwise). Functions named in `exempt`
    make sure of it themselves: they take any layout and align their operands, or check
    each pointer (require_aligned), which costs less than this wrapper on a hot call."""
    import functools

    def aligned_only(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            _check_aligned(function, args)
            if kwargs:
                _check_aligned(function, tuple(kwargs.values()))
            return function(*args, **kwargs)
        return call

    for name, value in list(namespace.items()):
        if not name.startswith("_") and name not in exempt and callable(value) \
                and not isinstance(value, type) \
                and getattr(value, "__module__", None) == namespace["__name__"]:
            namespace[name] = aligned_only(value)
