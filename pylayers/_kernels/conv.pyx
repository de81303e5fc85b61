"""Thin wrappers over csrc/conv.c: N-d grouped convolution forward, data and kernel
gradients (float32, C-contiguous arrays passed flattened)."""
from pylayers._kernels._runtime cimport ctx, pl_ctx, require_aligned
from pylayers._kernels.pooling cimport make_geom as make_pool_geom, pl_pool_geom

cdef extern from "conv.h":
    ctypedef struct pl_conv_geom:
        long batch
        long in_size[3]
        long out_size[3]
        long kernel[3]
        long stride[3]
        long dilation[3]
        long pad[3]
        long in_channels, out_channels, groups
    int pl_conv_geom_valid(const pl_conv_geom *g) nogil
    int pl_conv_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                        const float *w, const float *bias, int act, float alpha,
                        float *y) nogil
    int pl_conv_backward_data(const pl_ctx *ctx, const pl_conv_geom *g, const float *dy,
                              const float *w, float *dx) nogil
    int pl_conv_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                                const float *dy, float *dw) nogil
    void pl_conv_bias_act_backward(const pl_ctx *ctx, long rows, long cout, const float *y,
                                   const float *dy, int act, float alpha, float *dz,
                                   float *dbias) nogil
    int pl_conv_backward_weight_fused(const pl_ctx *ctx, const pl_conv_geom *g,
                                      const float *x, const float *y, const float *dy,
                                      int act, float *dw, float *dbias) nogil
    int pl_conv_max_pool_fusable(const pl_conv_geom *g, const pl_pool_geom *pg, int act)
    int pl_conv_max_pool_forward(const pl_ctx *ctx, const pl_conv_geom *g,
                                 const pl_pool_geom *pg, const float *x, const float *w,
                                 const float *bias, int act, float *y, int *argmax) nogil
    int pl_conv_max_pool_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g,
                                         const pl_pool_geom *pg, const float *x,
                                         const float *y, const float *dy, const int *argmax,
                                         int act, float *dw, float *dbias) nogil
    void pl_conv_set_direct(int enabled)
    void pl_conv_set_winograd(int enabled)
    int pl_conv_weight_fusable(const pl_conv_geom *g, int act)


cdef pl_conv_geom make_geom(tuple geom) except *:
    """geom = (batch, in_size, out_size, kernel, stride, dilation, pad, cin, cout, groups),
    each size a 3-tuple (leading 1s for 1-D and 2-D)."""
    cdef pl_conv_geom g
    batch, in_size, out_size, kernel, stride, dilation, pad, cin, cout, groups = geom
    g.batch, g.in_channels, g.out_channels, g.groups = batch, cin, cout, groups
    for a in range(3):
        g.in_size[a], g.out_size[a], g.kernel[a] = in_size[a], out_size[a], kernel[a]
        g.stride[a], g.dilation[a], g.pad[a] = stride[a], dilation[a], pad[a]
    if not pl_conv_geom_valid(&g):
        raise ValueError(f"invalid convolution geometry {geom}")
    return g


cdef long volume(long[3] size):
    return size[0] * size[1] * size[2]


def _check_size(name, array, long expected):
    if array.shape[0] != expected:
        raise ValueError(f"{name} has {array.shape[0]} elements; expected {expected}")


cdef check_arrays(pl_conv_geom *g, x, w, y):
    _check_size("x", x, g.batch * volume(g.in_size) * g.in_channels)
    _check_size("w", w, volume(g.kernel) * (g.in_channels // g.groups) * g.out_channels)
    _check_size("y", y, g.batch * volume(g.out_size) * g.out_channels)


def _status(int status):
    if status != 0:
        raise MemoryError("convolution: could not allocate its scratch buffer")


def conv_forward(tuple geom not None, const float[::1] x not None, const float[::1] w not None,
                 const float[::1] bias, int act, float alpha, float[::1] y not None):
    """y = act(conv(x, w) + bias); bias None for none."""
    cdef pl_conv_geom g = make_geom(geom)
    check_arrays(&g, x, w, y)
    if bias is not None:
        _check_size("bias", bias, g.out_channels)
    cdef const float *bias_ptr = NULL if bias is None else &bias[0]
    cdef int status = 0
    if g.batch == 0:
        return
    require_aligned("conv_forward", "x", &x[0], sizeof(float))
    require_aligned("conv_forward", "w", &w[0], sizeof(float))
    require_aligned("conv_forward", "bias", bias_ptr, sizeof(float))
    require_aligned("conv_forward", "y", &y[0], sizeof(float))
    with nogil:
        status = pl_conv_forward(ctx(), &g, &x[0], &w[0], bias_ptr, act, alpha, &y[0])
    _status(status)


def conv_backward_data(tuple geom not None, const float[::1] dy not None,
                       const float[::1] w not None, float[::1] dx not None):
    """dx = the data gradient of conv for output gradient dy (overwritten)."""
    cdef pl_conv_geom g = make_geom(geom)
    check_arrays(&g, dx, w, dy)
    cdef int status = 0
    if g.batch == 0:
        return
    require_aligned("conv_backward_data", "dy", &dy[0], sizeof(float))
    require_aligned("conv_backward_data", "w", &w[0], sizeof(float))
    require_aligned("conv_backward_data", "dx", &dx[0], sizeof(float))
    with nogil:
        status = pl_conv_backward_data(ctx(), &g, &dy[0], &w[0], &dx[0])
    _status(status)


def conv_backward_weight(tuple geom not None, const float[::1] x not None,
                         const float[::1] dy not None, float[::1] dw not None):
    """dw += the kernel gradient of conv for input x and output gradient dy."""
    cdef pl_conv_geom g = make_geom(geom)
    check_arrays(&g, x, dw, dy)
    cdef int status = 0
    if g.batch == 0:
        return
    require_aligned("conv_backward_weight", "x", &x[0], sizeof(float))
    require_aligned("conv_backward_weight", "dy", &dy[0], sizeof(float))
    require_aligned("conv_backward_weight", "dw", &dw[0], sizeof(float))
    with nogil:
        status = pl_conv_backward_weight(ctx(), &g, &x[0], &dy[0], &dw[0])
    _status(status)


def bias_act_backward(const float[:, ::1] y not None, const float[:, ::1] dy not None, int act,
                      float alpha, float[:, ::1] dz not None, float[::1] dbias):
    """dz (rows, cout) = dy * act'(y) (dz may be dy); dbias += column sums of dz (None skips)."""
    cdef long rows = y.shape[0], cout = y.shape[1]
    if dy.shape[0] != rows or dy.shape[1] != cout or dz.shape[0] != rows or dz.shape[1] != cout:
        raise ValueError(f"dy and dz must have the shape of y, {(rows, cout)}")
    if dbias is not None:
        _check_size("dbias", dbias, cout)
    cdef float *dbias_ptr = NULL if dbias is None else &dbias[0]
    if rows == 0 or cout == 0:
        return
    require_aligned("bias_act_backward", "y", &y[0, 0], sizeof(float))
    require_aligned("bias_act_backward", "dy", &dy[0, 0], sizeof(float))
    require_aligned("bias_act_backward", "dz", &dz[0, 0], sizeof(float))
    require_aligned("bias_act_backward", "dbias", dbias_ptr, sizeof(float))
    with nogil:
        pl_conv_bias_act_backward(ctx(), rows, cout, &y[0, 0], &dy[0, 0], act, alpha, &dz[0, 0],
                                  dbias_ptr)


def conv_backward_weight_fused(tuple geom not None, const float[::1] x not None,
                               const float[::1] y not None, const float[::1] dy not None,
                               int act, float[::1] dw not None, float[::1] dbias):
    """dw += the kernel gradient and dbias += the bias gradient (None skips) for output
    gradient dy through the fused activation (relu or linear codes) of output y, in
    one pass. Returns False, having written nothing, when the geometry or activation
    is not one the direct path takes; the caller then goes the general way."""
    cdef pl_conv_geom g = make_geom(geom)
    check_arrays(&g, x, dw, dy)
    _check_size("y", y, dy.shape[0])
    if dbias is not None:
        _check_size("dbias", dbias, g.out_channels)
    cdef float *dbias_ptr = NULL if dbias is None else &dbias[0]
    cdef int status = 0
    if g.batch == 0:
        return bool(pl_conv_weight_fusable(&g, act))
    require_aligned("conv_backward_weight_fused", "x", &x[0], sizeof(float))
    require_aligned("conv_backward_weight_fused", "y", &y[0], sizeof(float))
    require_aligned("conv_backward_weight_fused", "dy", &dy[0], sizeof(float))
    require_aligned("conv_backward_weight_fused", "dw", &dw[0], sizeof(float))
    require_aligned("conv_backward_weight_fused", "dbias", dbias_ptr, sizeof(float))
    with nogil:
        status = pl_conv_backward_weight_fused(ctx(), &g, &x[0], &y[0], &dy[0], act, &dw[0],
                                               dbias_ptr)
    if status == 1:
        return False
    _status(status)
    return True


cdef pl_pool_geom conv_pool_geom(pl_conv_geom *g, tuple pool_geom, long pooled_size) except *:
    """The pooling geometry over the convolution g's output, checked against pooled_size
    (-1: whatever its own output size)."""
    if pooled_size < 0:
        batch, channels, _, out_size, _, _, _ = pool_geom
        pooled_size = batch * channels * out_size[0] * out_size[1] * out_size[2]
    return make_pool_geom(pool_geom, g.batch * volume(g.out_size) * g.out_channels, pooled_size)


def conv_max_pool_fusable(tuple conv_geom not None, tuple pool_geom not None, int act):
    """Whether conv_max_pool_forward and _backward_weight take max pooling (pool_geom, a
    pooling geometry tuple over the convolution's output) after the convolution with
    activation act (see conv.h)."""
    cdef pl_conv_geom g = make_geom(conv_geom)
    cdef pl_pool_geom pg = conv_pool_geom(&g, pool_geom, -1)
    return bool(pl_conv_max_pool_fusable(&g, &pg, act))


cdef check_pooled(pl_conv_geom *g, x, w, bias, y, argmax):
    _check_size("x", x, g.batch * volume(g.in_size) * g.in_channels)
    _check_size("w", w, volume(g.kernel) * (g.in_channels // g.groups) * g.out_channels)
    if bias is not None:
        _check_size("bias", bias, g.out_channels)
    _check_size("argmax", argmax, y.shape[0])


def conv_max_pool_forward(tuple conv_geom not None, tuple pool_geom not None,
                          const float[::1] x not None, const float[::1] w not None,
                          const float[::1] bias, int act, float[::1] y not None,
                          int[::1] argmax not None):
    """y = max pooling (pool_geom) of act(conv(x, w) + bias), argmax = where each maximum
    came from: the bits of conv_forward then max_pool_forward, without writing the
    convolution's output. Returns False, having written nothing, when
    conv_max_pool_fusable does not take the pair."""
    cdef pl_conv_geom g = make_geom(conv_geom)
    cdef pl_pool_geom pg = conv_pool_geom(&g, pool_geom, y.shape[0])
    check_pooled(&g, x, w, bias, y, argmax)
    cdef const float *bias_ptr = NULL if bias is None else &bias[0]
    cdef int status = 0
    if g.batch == 0:
        return bool(pl_conv_max_pool_fusable(&g, &pg, act))
    require_aligned("conv_max_pool_forward", "x", &x[0], sizeof(float))
    require_aligned("conv_max_pool_forward", "w", &w[0], sizeof(float))
    require_aligned("conv_max_pool_forward", "bias", bias_ptr, sizeof(float))
    require_aligned("conv_max_pool_forward", "y", &y[0], sizeof(float))
    require_aligned("conv_max_pool_forward", "argmax", &argmax[0], sizeof(int))
    with nogil:
        status = pl_conv_max_pool_forward(ctx(), &g, &pg, &x[0], &w[0], bias_ptr, act, &y[0],
                                          &argmax[0])
    if status == 1:
        return False
    _status(status)
    return True


def conv_max_pool_backward_weight(tuple conv_geom not None, tuple pool_geom not None,
                                  const float[::1] x not None, const float[::1] y not None,
                                  const float[::1] dy not None, const int[::1] argmax not None,
                                  int act, float[::1] dw not None, float[::1] dbias):
    """dw += the kernel gradient, dbias += the bias gradient (None skips) of the pair
    conv_max_pool_forward ran, for its pooled gradient dy, given the pooled output y and
    argmax it wrote (an entry naming a position outside its window routes nothing).
    Returns False, having written nothing, when conv_max_pool_fusable does not take the
    pair."""
    cdef pl_conv_geom g = make_geom(conv_geom)
    cdef pl_pool_geom pg = conv_pool_geom(&g, pool_geom, y.shape[0])
    check_pooled(&g, x, dw, dbias, y, argmax)
    _check_size("dy", dy, y.shape[0])
    cdef float *dbias_ptr = NULL if dbias is None else &dbias[0]
    cdef int status = 0
    if g.batch == 0:
        return bool(pl_conv_max_pool_fusable(&g, &pg, act))
    cdef str name = "conv_max_pool_backward_weight"
    require_aligned(name, "x", &x[0], sizeof(float))
    require_aligned(name, "y", &y[0], sizeof(float))
    require_aligned(name, "dy", &dy[0], sizeof(float))
    require_aligned(name, "argmax", &argmax[0], sizeof(int))
    require_aligned(name, "dw", &dw[0], sizeof(float))
    require_aligned(name, "dbias", dbias_ptr, sizeof(float))
    with nogil:
        status = pl_conv_max_pool_backward_weight(ctx(), &g, &pg, &x[0], &y[0], &dy[0],
                                                  &argmax[0], act, &dw[0], dbias_ptr)
    if status == 1:
        return False
    _status(status)
    return True


def set_direct_path(bint enabled):
    """Tests: False sends every convolution through im2col + GEMM."""
    pl_conv_set_direct(enabled)


def set_winograd(bint enabled):
    """Tests: False keeps 3x3 stride-1 convolutions off the Winograd forward."""
    pl_conv_set_winograd(enabled)


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
# the functions with arrays check each pointer themselves (require_aligned), which costs
# less than the wrapper on calls made once per chunk of a training step
_refuse_unaligned(globals(), exempt=("conv_forward", "conv_backward_data", "conv_backward_weight",
                                     "bias_act_backward", "conv_backward_weight_fused",
                                     "conv_max_pool_forward", "conv_max_pool_backward_weight"))
