"""Thin wrappers over csrc/optim.c: check sizes, release the GIL, update in place.

Every array is a flat float32 C-contiguous view of one variable (or its gradient or
optimizer slot); optional slots are None. `grad_scale`, `clip_value` and `decay` are the
gradient preprocessing and decoupled weight decay described in csrc/optim.h."""
from cpython.mem cimport PyMem_Free, PyMem_Malloc

from pylayers._kernels._runtime cimport ctx, pl_ctx

ctypedef void (*alongside_fn)(void *) noexcept nogil

cdef extern from "optim.h":
    ctypedef struct pl_grad_prep:
        float grad_scale
        float clip_value
        float decay
    double pl_sum_squares(const pl_ctx *ctx, long n, const float *x) nogil
    void pl_sgd_update(const pl_ctx *ctx, long n, float *w, const float *g, float *m,
                       double lr, double momentum, int nesterov, pl_grad_prep prep) nogil
    ctypedef struct pl_adam_param:
        long n
        float *w
        const float *g
        float *m
        float *v
        float *vhat
        pl_grad_prep prep
    void pl_adam_update_all(const pl_ctx *ctx, long count, const pl_adam_param *params,
                            double alpha, double beta_1, double beta_2, double epsilon,
                            alongside_fn alongside, void *alongside_arg) nogil
    void pl_rmsprop_update(const pl_ctx *ctx, long n, float *w, const float *g, float *v,
                           float *mom, float *avg, double lr, double rho, double momentum,
                           double epsilon, pl_grad_prep prep) nogil
    void pl_adagrad_update(const pl_ctx *ctx, long n, float *w, const float *g, float *acc,
                           double lr, double epsilon, pl_grad_prep prep) nogil


cdef pl_grad_prep make_prep(double grad_scale, double clip_value, double decay):
    cdef pl_grad_prep prep
    prep.grad_scale = <float>grad_scale
    prep.clip_value = <float>clip_value
    prep.decay = <float>decay
    return prep


cdef float *slot_ptr(float[::1] slot, long n, str what) except? NULL:
    """Pointer to an optional slot (NULL for None), after checking its length."""
    if slot is None:
        return NULL
    if slot.shape[0] != n:
        raise ValueError(f"optim kernel: {what} has {slot.shape[0]} elements, "
                         f"the variable has {n}")
    return &slot[0] if n else NULL


cdef long checked_size(float[::1] w, const float[::1] g) except -1:
    if w is None or g is None:
        raise ValueError("optim kernel: the variable and its gradient must be arrays")
    if g.shape[0] != w.shape[0]:
        raise ValueError(f"optim kernel: gradient has {g.shape[0]} elements, "
                         f"the variable has {w.shape[0]}")
    return w.shape[0]


def sum_squares(const float[::1] x not None):
    """Sum of x**2, accumulated in double."""
    cdef long n = x.shape[0]
    cdef double total = 0.0
    if n:
        with nogil:
            total = pl_sum_squares(ctx(), n, &x[0])
    return total


def sgd_update(float[::1] w, const float[::1] g, float[::1] m, double lr,
               double momentum, bint nesterov, double grad_scale=1.0,
               double clip_value=0.0, double decay=0.0):
    cdef long n = checked_size(w, g)
    cdef float *m_ptr = slot_ptr(m, n, "momentum")
    cdef pl_grad_prep prep = make_prep(grad_scale, clip_value, decay)
    if n:
        with nogil:
            pl_sgd_update(ctx(), n, &w[0], &g[0], m_ptr, lr, momentum, nesterov, prep)


def adam_update(w, g, m, v, vhat, double alpha, double beta_1, double beta_2,
                double epsilon, double grad_scale=1.0, double clip_value=0.0,
                double decay=0.0):
    """One variable's Adam step: adam_update_all of its one tuple."""
    adam_update_all([(w, g, m, v, vhat, grad_scale, clip_value, decay)], alpha, beta_1,
                    beta_2, epsilon)


def adam_update_all(list params not None, double alpha, double beta_1, double beta_2,
                    double epsilon):
    """adam_update of every (w, g, m, v, vhat, grad_scale, clip_value, decay) in params,
    all checked first, then one C call whose threads share all of them."""
    AdamStep(params).run(alpha, beta_1, beta_2, epsilon)


cdef class AdamStep:
    """adam_update_all's arguments checked once and kept: `run` makes the C call alone, so
    a training loop that steps the same arrays every batch converts them once."""
    cdef pl_adam_param *c_params
    cdef long count
    cdef list views   # holds the buffers while the step is kept

    def __cinit__(self, list params not None):
        self.count = len(params)
        self.c_params = <pl_adam_param *>PyMem_Malloc(max(self.count, 1) * sizeof(pl_adam_param))
        if self.c_params == NULL:
            raise MemoryError()

    def __init__(self, list params not None):
        cdef float[::1] w, m, v, vhat
        cdef const float[::1] g
        cdef long i, n
        self.views = []
        for i in range(self.count):
            w, g, m, v, vhat, grad_scale, clip_value, decay = params[i]
            if m is None or v is None:
                raise ValueError("adam kernel: momentum and velocity are required")
            n = checked_size(w, g)
            self.c_params[i].n = n
            self.c_params[i].w = &w[0] if n else NULL
            self.c_params[i].g = &g[0] if n else NULL
            self.c_params[i].m = slot_ptr(m, n, "momentum")
            self.c_params[i].v = slot_ptr(v, n, "velocity")
            self.c_params[i].vhat = slot_ptr(vhat, n, "velocity_hat")
            self.c_params[i].prep = make_prep(grad_scale, clip_value, decay)
            self.views.append((w, g, m, v, vhat))

    def __dealloc__(self):
        PyMem_Free(self.c_params)

    def run(self, double alpha, double beta_1, double beta_2, double epsilon,
            alongside=None):
        """The step. alongside: a callable of no argument, or None, that reads none of
        the step's arrays: this thread calls it while the others step the arrays (they
        take over this thread's share until it is back). Its exception, if any, is
        raised once the step is complete."""
        outcome = [alongside, None]   # the callable, then its exception
        cdef alongside_fn call = NULL
        if alongside is not None:
            call = _call_alongside
        with nogil:
            pl_adam_update_all(ctx(), self.count, self.c_params, alpha, beta_1, beta_2,
                               epsilon, call, <void *>outcome)
        if outcome[1] is not None:
            raise outcome[1]


cdef void _call_alongside(void *arg) noexcept nogil:
    with gil:
        _run_outcome(<list>arg)


cdef void _run_outcome(list outcome) noexcept:
    try:
        outcome[0]()
    except BaseException as error:
        outcome[1] = error


def rmsprop_update(float[::1] w, const float[::1] g, float[::1] v, float[::1] mom,
                   float[::1] avg, double lr, double rho, double momentum, double epsilon,
                   double grad_scale=1.0, double clip_value=0.0, double decay=0.0):
    cdef long n = checked_size(w, g)
    cdef float *v_ptr = slot_ptr(v, n, "velocity")
    cdef float *mom_ptr = slot_ptr(mom, n, "momentum")
    cdef float *avg_ptr = slot_ptr(avg, n, "average_gradient")
    cdef pl_grad_prep prep = make_prep(grad_scale, clip_value, decay)
    if v is None:
        raise ValueError("rmsprop_update: velocity is required")
    if n:
        with nogil:
            pl_rmsprop_update(ctx(), n, &w[0], &g[0], v_ptr, mom_ptr, avg_ptr, lr, rho,
                              momentum, epsilon, prep)


def adagrad_update(float[::1] w, const float[::1] g, float[::1] acc, double lr,
                   double epsilon, double grad_scale=1.0, double clip_value=0.0,
                   double decay=0.0):
    cdef long n = checked_size(w, g)
    cdef float *acc_ptr = slot_ptr(acc, n, "accumulator")
    cdef pl_grad_prep prep = make_prep(grad_scale, clip_value, decay)
    if acc is None:
        raise ValueError("adagrad_update: accumulator is required")
    if n:
        with nogil:
            pl_adagrad_update(ctx(), n, &w[0], &g[0], acc_ptr, lr, epsilon, prep)


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals())
