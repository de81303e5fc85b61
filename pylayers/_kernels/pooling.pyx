"""Thin wrappers over csrc/pool.c: max and average pooling over 1-3 spatial axes
(float32, C-contiguous arrays passed flattened)."""
from pylayers._kernels._runtime cimport ctx, pl_ctx, require_aligned

cdef extern from "pool.h":
    int pl_pool_geom_valid(const pl_pool_geom *g) nogil
    void pl_max_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x,
                             float *y, int *argmax) nogil
    long pl_max_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy,
                              const int *argmax, float *dx) nogil
    void pl_avg_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x,
                             float *y) nogil
    void pl_avg_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy,
                              float *dx) nogil


cdef pl_pool_geom make_geom(tuple geom, long x_size, long y_size) except *:
    """geom = (batch, channels, in_size, out_size, window, stride, pad), sizes 3-tuples,
    checked, and against x_size and y_size, the elements of the input and output."""
    cdef pl_pool_geom g
    batch, channels, in_size, out_size, window, stride, pad = geom
    g.batch, g.channels = batch, channels
    for a in range(3):
        g.in_size[a], g.out_size[a], g.window[a] = in_size[a], out_size[a], window[a]
        g.stride[a], g.pad[a] = stride[a], pad[a]
    if not pl_pool_geom_valid(&g):
        raise ValueError(f"invalid pooling geometry {geom}")
    cdef long in_image = g.in_size[0] * g.in_size[1] * g.in_size[2] * g.channels
    cdef long out_image = g.out_size[0] * g.out_size[1] * g.out_size[2] * g.channels
    if in_image >= 2 ** 31:
        raise ValueError(f"pooling input images of {in_image} elements are too large")
    if x_size != g.batch * in_image or y_size != g.batch * out_image:
        raise ValueError(f"pooling arrays of {x_size} and {y_size} elements do not match {geom}")
    return g


def max_pool_forward(tuple geom not None, const float[::1] x not None, float[::1] y not None,
                     int[::1] argmax):
    """y = the window maxima; argmax (None: not kept) = where each came from."""
    cdef pl_pool_geom g = make_geom(geom, x.shape[0], y.shape[0])
    if argmax is not None and argmax.shape[0] != y.shape[0]:
        raise ValueError("argmax must have as many elements as y")
    if y.shape[0] == 0:
        return
    cdef int *argmax_ptr = &argmax[0] if argmax is not None else NULL
    require_aligned("max_pool_forward", "x", &x[0], sizeof(float))
    require_aligned("max_pool_forward", "y", &y[0], sizeof(float))
    require_aligned("max_pool_forward", "argmax", argmax_ptr, sizeof(int))
    with nogil:
        pl_max_pool_forward(ctx(), &g, &x[0], &y[0], argmax_ptr)


def max_pool_backward(tuple geom not None, const float[::1] dy not None,
                      const int[::1] argmax not None, float[::1] dx not None):
    """dx = dy routed to the argmax positions (each an index inside its image's block,
    as max_pool_forward writes them; others raise ValueError before anything is written)."""
    cdef pl_pool_geom g = make_geom(geom, dx.shape[0], dy.shape[0])
    if argmax.shape[0] != dy.shape[0]:
        raise ValueError("argmax must have as many elements as dy")
    cdef long in_image = g.in_size[0] * g.in_size[1] * g.in_size[2] * g.channels
    cdef long bad
    if dy.shape[0] == 0:
        return
    require_aligned("max_pool_backward", "dy", &dy[0], sizeof(float))
    require_aligned("max_pool_backward", "argmax", &argmax[0], sizeof(int))
    require_aligned("max_pool_backward", "dx", &dx[0], sizeof(float))
    with nogil:
        bad = pl_max_pool_backward(ctx(), &g, &dy[0], &argmax[0], &dx[0])
    if bad >= 0:
        raise ValueError(f"max_pool_backward: argmax holds {argmax[bad]} at {bad}, outside "
                         f"the {in_image} elements of an input image {geom}")


def avg_pool_forward(tuple geom not None, const float[::1] x not None, float[::1] y not None):
    cdef pl_pool_geom g = make_geom(geom, x.shape[0], y.shape[0])
    if y.shape[0] == 0:
        return
    require_aligned("avg_pool_forward", "x", &x[0], sizeof(float))
    require_aligned("avg_pool_forward", "y", &y[0], sizeof(float))
    with nogil:
        pl_avg_pool_forward(ctx(), &g, &x[0], &y[0])


def avg_pool_backward(tuple geom not None, const float[::1] dy not None,
                      float[::1] dx not None):
    cdef pl_pool_geom g = make_geom(geom, dx.shape[0], dy.shape[0])
    if dy.shape[0] == 0:
        return
    require_aligned("avg_pool_backward", "dy", &dy[0], sizeof(float))
    require_aligned("avg_pool_backward", "dx", &dx[0], sizeof(float))
    with nogil:
        pl_avg_pool_backward(ctx(), &g, &dy[0], &dx[0])


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
# every function checks each pointer itself (require_aligned), which costs less than the
# wrapper on calls made once per chunk of a training step
_refuse_unaligned(globals(), exempt=("max_pool_forward", "max_pool_backward",
                                     "avg_pool_forward", "avg_pool_backward"))
