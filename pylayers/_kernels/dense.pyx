"""Thin wrappers over csrc/dense.c and csrc/activations.c (float32, C-contiguous)."""
from libc.stdlib cimport calloc, free

from pylayers._kernels._runtime cimport ctx, pl_ctx, require_aligned

cdef extern from "activations.h":
    int PL_ACT_LINEAR
    void pl_bias_act_forward(const pl_ctx *ctx, long m, long n, float *y,
                             const float *bias, int act, float alpha) nogil
    void pl_act_backward(const pl_ctx *ctx, long m, long n, const float *y,
                         const float *dy, float *dz, int act, float alpha) nogil

cdef extern from "dense.h":
    void pl_dense_forward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                          const float *w, const float *bias, int act, float alpha,
                          float *y) nogil
    void pl_dense_chain_forward(const pl_ctx *ctx, long m, int n_links, const long *widths,
                                const float *const *weights, const int *acts,
                                const float *alphas, const float *x, float *const *hidden,
                                float *y) nogil
    void pl_dense_backward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                           const float *w, const float *y, const float *dy, int act,
                           float alpha, float *dz, float *dw, float *dbias, int accumulate,
                           float *dx) nogil

# Codes of csrc/activations.h enum pl_act.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "elu": 5,
                    "selu": 6, "leaky_relu": 7, "softplus": 8, "softsign": 9, "exponential": 10}
_VALID_CODES = frozenset(ACTIVATION_CODES.values())


cdef const float *const_or_null_1d(const float[::1] a):
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef float *data_or_null_1d(float[::1] a):
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef float *data_or_null_2d(float[:, ::1] a):
    return NULL if a is None or a.shape[0] * a.shape[1] == 0 else &a[0, 0]


def _check_act(int act):
    if act not in _VALID_CODES:
        raise ValueError(f"dense kernels: unknown activation code {act}; "
                         f"expected one of {sorted(_VALID_CODES)}")


cdef int _check(str name, const float[:, ::1] array, long rows, long cols) except -1:
    """A None array passes; otherwise its shape must be (rows, cols)."""
    if array is not None and (array.shape[0] != rows or array.shape[1] != cols):
        raise ValueError(f"{name} has shape {(array.shape[0], array.shape[1])}; "
                         f"expected {(rows, cols)}")
    return 0


cdef int _check_1d(str name, const float[::1] array, long size) except -1:
    if array is not None and array.shape[0] != size:
        raise ValueError(f"{name} has shape {(array.shape[0],)}; expected {(size,)}")
    return 0


def dense_forward(const float[:, ::1] x not None, const float[:, ::1] w not None,
                  const float[::1] bias, int act, float alpha, float[:, ::1] y not None):
    """y (m, n) = act(x (m, k) @ w (k, n) + bias (n))."""
    cdef long m = x.shape[0], k = x.shape[1], n = w.shape[1]
    _check_act(act)
    _check("w", w, k, n)
    _check("y", y, m, n)
    _check_1d("bias", bias, n)
    cdef const float *bias_ptr = const_or_null_1d(bias)
    if m == 0 or n == 0:
        return
    cdef const float *x_ptr = &x[0, 0] if k else NULL
    cdef const float *w_ptr = &w[0, 0] if k else NULL
    require_aligned("dense_forward", "x", x_ptr, sizeof(float))
    require_aligned("dense_forward", "w", w_ptr, sizeof(float))
    require_aligned("dense_forward", "bias", bias_ptr, sizeof(float))
    require_aligned("dense_forward", "y", &y[0, 0], sizeof(float))
    with nogil:
        pl_dense_forward(ctx(), m, n, k, x_ptr, w_ptr, bias_ptr, act, alpha, &y[0, 0])


def dense_backward(const float[:, ::1] x not None, const float[:, ::1] w not None,
                   const float[:, ::1] y not None, const float[:, ::1] dy not None, int act,
                   float alpha, float[:, ::1] dz not None, float[:, ::1] dw, float[::1] dbias,
                   float[:, ::1] dx, bint accumulate=True):
    """dz = dy*act'(y); dw += x^T dz; dbias += colsum dz; dx = dz w^T (None skips).
    With accumulate False, dw and dbias are overwritten instead of added to."""
    cdef long m = x.shape[0], k = x.shape[1], n = w.shape[1]
    _check_act(act)
    _check("w", w, k, n)
    _check("y", y, m, n)
    _check("dy", dy, m, n)
    _check("dz", dz, m, n)
    _check("dw", dw, k, n)
    _check_1d("dbias", dbias, n)
    _check("dx", dx, m, k)
    cdef float *dw_ptr = data_or_null_2d(dw)
    cdef float *dbias_ptr = data_or_null_1d(dbias)
    cdef float *dx_ptr = data_or_null_2d(dx)
    if m == 0 or n == 0:
        if dx is not None and m and k:
            dx[:, :] = 0
        if not accumulate and dw is not None and k and n:
            dw[:, :] = 0
        if not accumulate and dbias is not None and n:
            dbias[:] = 0
        return
    with nogil:
        pl_dense_backward(ctx(), m, n, k, &x[0, 0] if k else NULL, &w[0, 0] if k else NULL,
                          &y[0, 0], &dy[0, 0], act, alpha, &dz[0, 0], dw_ptr, dbias_ptr,
                          accumulate, dx_ptr if k else NULL)


def bias_act_forward(float[:, ::1] y not None, const float[::1] bias, int act, float alpha):
    """In place: y (m, n) = act(y + bias)."""
    cdef long m = y.shape[0], n = y.shape[1]
    _check_act(act)
    _check_1d("bias", bias, n)
    cdef const float *bias_ptr = const_or_null_1d(bias)
    if m == 0 or n == 0:
        return
    with nogil:
        pl_bias_act_forward(ctx(), m, n, &y[0, 0], bias_ptr, act, alpha)


def act_backward(const float[:, ::1] y not None, const float[:, ::1] dy not None,
                 float[:, ::1] dz not None, int act, float alpha):
    """dz (m, n) = dy * act'(y); dz may be dy."""
    cdef long m = y.shape[0], n = y.shape[1]
    _check_act(act)
    _check("dy", dy, m, n)
    _check("dz", dz, m, n)
    if m == 0 or n == 0:
        return
    with nogil:
        pl_act_backward(ctx(), m, n, &y[0, 0], &dy[0, 0], &dz[0, 0], act, alpha)


cdef class DenseChain:
    """The inference of consecutive Dense layers on inputs of `rows` rows, as one call
    with no Python between the layers. links: (layer name, kernel Variable, bias
    Variable or None, activation code, alpha) per layer; the outputs between layers are
    the chain's own buffers. Each call reads the Variables' current arrays, and checks
    an array only the first time it meets it."""
    cdef readonly long rows
    cdef int n_links
    cdef long *widths           # n_links + 1: the input's features, then each layer's units
    cdef int *acts
    cdef float *alphas
    cdef const float **weights  # per link: kernel, bias (NULL without)
    cdef float **hidden         # n_links - 1 outputs between the layers
    cdef list names, variables, seen, hidden_arrays

    def __cinit__(self, list links, long rows, hidden_buffer):
        n = max(len(links), 1)   # __init__ refuses an empty chain by name
        self.widths = <long *>calloc(n + 1, sizeof(long))
        self.acts = <int *>calloc(n, sizeof(int))
        self.alphas = <float *>calloc(n, sizeof(float))
        self.weights = <const float **>calloc(2 * n, sizeof(float *))
        self.hidden = <float **>calloc(n, sizeof(float *))
        if not (self.widths and self.acts and self.alphas and self.weights and self.hidden):
            raise MemoryError("DenseChain")

    def __init__(self, list links, long rows, hidden_buffer):
        """hidden_buffer(shape) gives an aligned float32 array for an output between
        layers."""
        if not links or rows <= 0:
            raise ValueError(f"DenseChain: needs at least one layer and rows > 0; got "
                             f"{len(links)} layers and {rows} rows")
        self.rows, self.n_links = rows, len(links)
        self.names, self.variables, self.hidden_arrays = [], [], []
        self.seen = [None] * (2 * self.n_links)
        for i, (name, kernel, bias, act, alpha) in enumerate(links):
            _check_act(act)
            k, n = kernel.value.shape
            if i and k != self.widths[i]:
                raise ValueError(f"DenseChain: layer '{name}' takes {k} features; the "
                                 f"layer before it gives {self.widths[i]}")
            self.widths[i], self.widths[i + 1] = k, n
            self.acts[i], self.alphas[i] = act, alpha
            self.names.append(name)
            self.variables += [kernel, bias]
        for i in range(self.n_links - 1):
            self.hidden_arrays.append(hidden_buffer((rows, self.widths[i + 1])))
            self.hidden[i] = _data_of(self.hidden_arrays[i], rows, self.widths[i + 1])

    def __dealloc__(self):
        free(self.widths)
        free(self.acts)
        free(self.alphas)
        free(self.weights)
        free(self.hidden)

    @property
    def output_shape(self):
        return (self.rows, self.widths[self.n_links])

    cdef int _read_weights(self) except -1:
        """weights[] from the Variables' current arrays; a new array is checked first."""
        cdef int slot
        for slot in range(2 * self.n_links):
            variable = self.variables[slot]
            array = None if variable is None else variable.value
            if array is self.seen[slot]:
                continue
            self.weights[slot] = _weights_of(array, self.names[slot // 2], slot % 2,
                                             self.widths[slot // 2], self.widths[slot // 2 + 1])
            self.seen[slot] = array
        return 0

    def run(self, x, out):
        """out (rows, units of the last layer) = the layers applied in turn to x (rows,
        features); returns out."""
        cdef const float[:, ::1] x_view
        cdef float[:, ::1] out_view
        cdef long rows = self.rows
        cdef int last = self.n_links - 1
        try:
            x_view = x
        except (ValueError, TypeError) as error:
            raise ValueError(f"Dense layer '{self.names[0]}': the input is not a "
                             f"C-contiguous float32 matrix ({error})") from None
        try:
            out_view = out
        except (ValueError, TypeError) as error:
            raise ValueError(f"Dense layer '{self.names[last]}': the output is not a "
                             f"writable C-contiguous float32 matrix ({error})") from None
        if x_view.shape[0] != rows or x_view.shape[1] != self.widths[0]:
            raise ValueError(f"Dense layer '{self.names[0]}': input of shape "
                             f"{(x_view.shape[0], x_view.shape[1])}; this chain takes "
                             f"{(rows, self.widths[0])}")
        if out_view.shape[0] != rows or out_view.shape[1] != self.widths[last + 1]:
            raise ValueError(f"Dense layer '{self.names[last]}': output of shape "
                             f"{(out_view.shape[0], out_view.shape[1])}; expected "
                             f"{(rows, self.widths[last + 1])}")
        if <size_t>&x_view[0, 0] % sizeof(float) or <size_t>&out_view[0, 0] % sizeof(float):
            raise ValueError(f"Dense layers '{self.names[0]}' to '{self.names[last]}': the "
                             "input or output data is not aligned; pass aligned copies")
        self._read_weights()
        with nogil:
            pl_dense_chain_forward(ctx(), rows, self.n_links, self.widths, self.weights,
                                   self.acts, self.alphas, &x_view[0, 0], self.hidden,
                                   &out_view[0, 0])
        return out


cdef class DenseTrainChain(DenseChain):
    """DenseChain for training: `run` keeps every layer's output (the chain's buffers
    and `out`), and `backward` takes the layers' gradients in one call, in the order and
    with the arguments of the layers' own backward calls. dz and input gradients
    between the layers are the chain's buffers."""
    cdef float **dz             # per link: its activation gradient
    cdef float **dx             # per link from the second: its input gradient
    cdef float **grads          # per link: kernel gradient, bias gradient (NULL: none)
    cdef int *accumulate        # per link: add to its gradients (else overwrite them)
    cdef list grad_buffers
    cdef list seen_grads        # per gradient slot: the array grads[] points into, checked

    def __cinit__(self, list links, long rows, hidden_buffer):
        n = max(len(links), 1)
        self.dz = <float **>calloc(n, sizeof(float *))
        self.dx = <float **>calloc(n, sizeof(float *))
        self.grads = <float **>calloc(2 * n, sizeof(float *))
        self.accumulate = <int *>calloc(n, sizeof(int))
        if not (self.dz and self.dx and self.grads and self.accumulate):
            raise MemoryError("DenseTrainChain")

    def __init__(self, list links, long rows, hidden_buffer):
        super().__init__(links, rows, hidden_buffer)
        self.grad_buffers = []
        self.seen_grads = [None] * (2 * self.n_links)
        for i in range(self.n_links):
            dz = hidden_buffer((rows, self.widths[i + 1]))
            self.dz[i] = _data_of(dz, rows, self.widths[i + 1])
            self.grad_buffers.append(dz)
            if i:
                dx = hidden_buffer((rows, self.widths[i]))
                self.dx[i] = _data_of(dx, rows, self.widths[i])
                self.grad_buffers.append(dx)

    def __dealloc__(self):
        free(self.dz)
        free(self.dx)
        free(self.grads)
        free(self.accumulate)

    def backward(self, x, out, dy, list targets, bint from_preactivation, dx):
        """The backward of the layers whose forward `run(x, out)` was last: dy (rows,
        units of the last layer) the gradient of out (of the last layer's
        pre-activation when from_preactivation); targets per layer (kernel gradient,
        bias gradient, accumulate) as Dense._gradient_targets gives them (None: frozen);
        dx (rows, features) the input gradient, or None."""
        cdef int last = self.n_links - 1, i
        cdef const float[:, ::1] x_view = x, y_view = out, dy_view = dy
        cdef float[:, ::1] dx_view = dx
        cdef long rows = self.rows
        if len(targets) != self.n_links:
            raise ValueError(f"DenseTrainChain: {len(targets)} gradient targets for "
                             f"{self.n_links} layers")
        if x_view.shape[0] != rows or x_view.shape[1] != self.widths[0] or \
                y_view.shape[0] != rows or y_view.shape[1] != self.widths[last + 1] or \
                dy_view.shape[0] != rows or dy_view.shape[1] != self.widths[last + 1] or \
                (dx is not None and (dx_view.shape[0] != rows or
                                     dx_view.shape[1] != self.widths[0])):
            raise ValueError(f"Dense layers '{self.names[0]}' to '{self.names[last]}': "
                             "backward arrays of other shapes than the forward's")
        self._read_weights()
        for i in range(self.n_links):
            kernel_grad, bias_grad, adds = targets[i]
            self.accumulate[i] = adds
            self._read_gradient(2 * i, kernel_grad)
            self._read_gradient(2 * i + 1, bias_grad)
        require_aligned("DenseTrainChain", "dy", &dy_view[0, 0], sizeof(float))
        if dx is not None:
            require_aligned("DenseTrainChain", "dx", &dx_view[0, 0], sizeof(float))
        with nogil:
            self._backward(&x_view[0, 0], &y_view[0, 0], &dy_view[0, 0],
                           &dx_view[0, 0] if dx is not None else NULL, from_preactivation)

    cdef int _read_gradient(self, int slot, array) except -1:
        """grads[slot] from a layer's gradient target (None: frozen, NULL); an array not
        met before is checked first (shape, writable, aligned) and kept."""
        cdef float[:, ::1] kernel_view
        cdef float[::1] bias_view
        cdef int link = slot // 2
        if array is self.seen_grads[slot] and array is not None:
            return 0
        self.seen_grads[slot] = None
        self.grads[slot] = NULL
        if array is None:
            return 0
        if slot % 2 == 0:
            kernel_view = array
            _check(f"Dense layer '{self.names[link]}': kernel gradient", kernel_view,
                   self.widths[link], self.widths[link + 1])
            self.grads[slot] = &kernel_view[0, 0]
        else:
            bias_view = array
            _check_1d(f"Dense layer '{self.names[link]}': bias gradient", bias_view,
                      self.widths[link + 1])
            self.grads[slot] = &bias_view[0]
        require_aligned("DenseTrainChain", "a gradient", self.grads[slot], sizeof(float))
        self.seen_grads[slot] = array
        return 0

    cdef void _backward(self, const float *x, const float *out, const float *dy, float *dx,
                        bint from_preactivation) noexcept nogil:
        cdef int last = self.n_links - 1, i, act
        cdef const float *layer_dy = dy
        for i in range(last, -1, -1):
            act = PL_ACT_LINEAR if i == last and from_preactivation else self.acts[i]
            pl_dense_backward(ctx(), self.rows, self.widths[i + 1], self.widths[i],
                              x if i == 0 else self.hidden[i - 1],
                              self.weights[2 * i], out if i == last else self.hidden[i],
                              layer_dy, act, self.alphas[i], self.dz[i], self.grads[2 * i],
                              self.grads[2 * i + 1], self.accumulate[i],
                              dx if i == 0 else self.dx[i])
            layer_dy = self.dx[i]


cdef float *_data_of(array, long rows, long cols) except NULL:
    cdef float[:, ::1] view = array
    if view.shape[0] != rows or view.shape[1] != cols:
        raise ValueError(f"DenseChain: buffer of shape {(view.shape[0], view.shape[1])}; "
                         f"expected {(rows, cols)}")
    require_aligned("DenseChain", "buffer", &view[0, 0], sizeof(float))
    return &view[0, 0]


cdef const float *_weights_of(array, str layer, int is_bias, long k, long n) except? NULL:
    """The data of a Dense layer's kernel (k, n) or bias (n), or NULL for no bias; a
    ValueError naming the layer when the array is not one the kernels read as it is."""
    cdef const float[:, ::1] kernel
    cdef const float[::1] bias
    what, expected = ("bias", (n,)) if is_bias else ("kernel", (k, n))
    if array is None:
        if not is_bias:
            raise ValueError(f"Dense layer '{layer}': no kernel")
        return NULL
    if getattr(array, "shape", None) != expected or getattr(array, "dtype", None) != "float32":
        raise ValueError(f"Dense layer '{layer}': {what} of shape "
                         f"{getattr(array, 'shape', None)} and dtype "
                         f"{getattr(array, 'dtype', None)}; expected float32 {expected}")
    try:
        if is_bias:
            bias = array
            require_aligned("DenseChain", what, &bias[0], sizeof(float))
            return &bias[0]
        kernel = array
        require_aligned("DenseChain", what, &kernel[0, 0], sizeof(float))
        return &kernel[0, 0]
    except (ValueError, TypeError) as error:
        raise ValueError(f"Dense layer '{layer}': {what} not readable in place "
                         f"({error})") from None


from pylayers._kernels._runtime import _refuse_unaligned  # noqa: E402
_refuse_unaligned(globals(), exempt=("dense_forward",))   # the batch-1 predict's hot call
