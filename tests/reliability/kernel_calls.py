"""Calls into the compiled kernels, described as JSON cases on stdin, run in a child
process (see isolation.run_cases): one flushed JSON line per case on stdout, so a
crash kills this process and the parent names the case that did it.

A case is {"entry", "dims": [m, n, k], "act", "beta", "mutation": [kind, arg, seed]}.
The entry's valid arguments are built from the dims, one array argument is mutated,
the call is made ("index" puts out-of-range values into an integer array), and the
outcome is one of
  "ok"      the results equal the float64 numpy reference on the same (mutated) inputs
            (an output named "return.i" is entry i of a returned tuple),
  "error"   ValueError/TypeError raised,
  "wrong"   returned a result unequal to the reference, or accepted an input the
            reference rejects, or raised another exception type.
ENTRIES lists every public function of the pylayers._kernels modules it covers."""
import json
import sys

import numpy as np

from pylayers import ops
from pylayers._kernels import (conv, dense, embedding, gemm, losses, normalization, optim,
                               pooling, rnn)

MUTATIONS = ("valid", "none", "dtype", "noncontiguous", "fortran", "shape", "rank", "nan",
             "readonly", "unaligned", "scalar", "index")
DTYPES = ("float16", "float64", "int32", "int64", "uint8", "bool", "complex64", "object",
          ">f4", "<U3")


# ---- references: float64 numpy ------------------------------------------------------

def _softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True, initial=-np.inf))
    return e / np.sum(e, axis=-1, keepdims=True)


ACTIVATIONS = {  # code -> (forward of z, derivative from the output y, dy)
    0: (lambda z: z, lambda y, dy: dy),
    1: (lambda z: np.maximum(z, 0), lambda y, dy: dy * (y > 0)),
    2: (lambda z: 1 / (1 + np.exp(-z)), lambda y, dy: dy * y * (1 - y)),
    3: (np.tanh, lambda y, dy: dy * (1 - y * y)),
    4: (_softmax, lambda y, dy: y * (dy - np.sum(dy * y, axis=-1, keepdims=True))),
}


def real(x):
    """x as float64 for the reference: None stays None; non-real data is rejected."""
    if x is None or isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, tuple):   # a geometry or a forward's tape
        return tuple(real(v) for v in x)
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"not real: {x.dtype}")
    return x.astype(np.float64)


def op(x, transposed):
    return x.T if transposed else x


def gemm_reference(a, b, out, trans_a, trans_b, alpha, beta):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError("2-D only")
    product = alpha * (op(a, trans_a) @ op(b, trans_b))
    if out.shape != product.shape:
        raise ValueError("out shape")
    return {2: product if beta == 0 else product + beta * out}


def dense_forward_reference(x, w, bias, act, alpha, y):
    z = x @ w + (0 if bias is None else bias)
    if z.shape != y.shape or (bias is not None and bias.shape != (w.shape[1],)):
        raise ValueError("shape")
    return {5: ACTIVATIONS[act][0](z)}


def dense_backward_reference(x, w, y, dy, act, alpha, dz, dw, dbias, dx):
    if y.shape != dy.shape or y.shape != (x.shape[0], w.shape[1]) or x.shape[1] != w.shape[0]:
        raise ValueError("shape")
    grad_z = ACTIVATIONS[act][1](y, dy)
    expected = {} if act == 0 else {6: grad_z}
    for index, buffer, value in ((7, dw, x.T @ grad_z), (8, dbias, grad_z.sum(axis=0)),
                                 (9, dx, None)):
        if buffer is not None:
            if buffer.shape != (value if value is not None else x).shape:
                raise ValueError("shape")
            expected[index] = buffer + value if value is not None else grad_z @ w.T
    return expected


def bias_act_reference(y, bias, act, alpha):
    if bias is not None and bias.shape != y.shape[1:]:
        raise ValueError("shape")
    return {0: ACTIVATIONS[act][0](y + (0 if bias is None else bias))}


def act_backward_reference(y, dy, dz, act, alpha):
    if not y.shape == dy.shape == dz.shape:
        raise ValueError("shape")
    return {2: ACTIVATIONS[act][1](y, dy)}


def _same_sizes(*arrays):
    if any(a is not None and (a.ndim != 1 or a.shape != arrays[0].shape) for a in arrays):
        raise ValueError("size")


def sgd_reference(w, g, m, lr, momentum, nesterov):
    _same_sizes(w, g, m)
    if m is None:
        return {0: w - lr * g}
    m = momentum * m - lr * g
    return {0: w + m, 2: m}


def adam_reference(w, g, m, v, vhat, alpha, beta_1, beta_2, epsilon):
    _same_sizes(w, g, m, v)
    m = m + (g - m) * (1 - beta_1)
    v = v + (g * g - v) * (1 - beta_2)
    return {0: w - alpha * m / (np.sqrt(v) + epsilon), 2: m, 3: v}


def rmsprop_reference(w, g, v, mom, avg, lr, rho, momentum, epsilon):
    _same_sizes(w, g, v)
    v = rho * v + (1 - rho) * g * g
    return {0: w - lr * g / np.sqrt(v + epsilon), 2: v}


def adagrad_reference(w, g, acc, lr, epsilon):
    _same_sizes(w, g, acc)
    acc = acc + g * g
    return {0: w - lr * g / np.sqrt(acc + epsilon), 2: acc}


def sum_squares_reference(x):
    if x.ndim != 1:
        raise ValueError("1-D only")
    return {"return": np.sum(x * x)}


def matmul_reference(a, b):
    return {"return": np.matmul(a, b)}


# ---- valid arguments ------------------------------------------------------------------

def f32(rng, *shape):
    return rng.uniform(-2, 2, size=shape).astype(np.float32)


def gemm_args(rng, m, n, k, case):
    trans_a, trans_b = bool(rng.integers(2)), bool(rng.integers(2))
    a = f32(rng, k, m) if trans_a else f32(rng, m, k)
    b = f32(rng, n, k) if trans_b else f32(rng, k, n)
    return [a, b, f32(rng, m, n), trans_a, trans_b, 0.75, case["beta"]]


def serial_gemm_args(rng, m, n, k, case):
    trans_b = bool(rng.integers(2))
    b = f32(rng, n, k) if trans_b else f32(rng, k, n)
    return [f32(rng, m, k), b, f32(rng, m, n), trans_b, case["beta"], (m // 2,) if m > 1 else ()]


def serial_gemm_reference(a, b, out, trans_b, beta, row_splits):
    return gemm_reference(a, b, out, False, trans_b, 1.0, beta)


def dense_forward_args(rng, m, n, k, case):
    return [f32(rng, m, k), f32(rng, k, n), f32(rng, n), case["act"], 0.0, f32(rng, m, n)]


def dense_backward_args(rng, m, n, k, case):
    y = ACTIVATIONS[case["act"]][0](f32(rng, m, n)).astype(np.float32)
    return [f32(rng, m, k), f32(rng, k, n), y, f32(rng, m, n), case["act"], 0.0,
            f32(rng, m, n), f32(rng, k, n), f32(rng, n), f32(rng, m, k)]


def optimizer_args(slots, hyper):
    def build(rng, m, n, k, case):
        size = m * n
        return [f32(rng, size), f32(rng, size)] + [np.abs(f32(rng, size)) for _ in range(slots)] \
            + list(hyper)
    return build


ENTRIES = {  # "module.function": (build(rng, m, n, k, case) -> args, reference, kernel)
    "gemm.matmul": (lambda rng, m, n, k, case: [f32(rng, m, k), f32(rng, k, n)],
                    matmul_reference, gemm.matmul),
    "gemm.matmul_into": (gemm_args, gemm_reference, gemm.matmul_into),
    "gemm.sgemm": (gemm_args, gemm_reference, gemm.sgemm),
    "gemm.sgemm_reference": (gemm_args, gemm_reference, gemm.sgemm_reference),
    "gemm.sgemm_packed_b": (gemm_args, gemm_reference, gemm.sgemm_packed_b),
    "gemm.sgemm_packed_b_serial": (serial_gemm_args, serial_gemm_reference,
                                   gemm.sgemm_packed_b_serial),
    "dense.dense_forward": (dense_forward_args, dense_forward_reference, dense.dense_forward),
    "dense.dense_backward": (dense_backward_args, dense_backward_reference, dense.dense_backward),
    "dense.bias_act_forward": (lambda rng, m, n, k, case: [f32(rng, m, n), f32(rng, n),
                                                           case["act"], 0.0],
                               bias_act_reference, dense.bias_act_forward),
    "dense.act_backward": (lambda rng, m, n, k, case: [
        ACTIVATIONS[case["act"]][0](f32(rng, m, n)).astype(np.float32), f32(rng, m, n),
        f32(rng, m, n), case["act"], 0.0], act_backward_reference, dense.act_backward),
    "optim.sum_squares": (lambda rng, m, n, k, case: [f32(rng, m * n)], sum_squares_reference,
                          optim.sum_squares),
    "optim.sgd_update": (lambda rng, m, n, k, case: [f32(rng, m * n), f32(rng, m * n),
                                                     f32(rng, m * n) if m % 2 else None,
                                                     0.1, 0.9, False],
                         sgd_reference, optim.sgd_update),
    "optim.adam_update": (optimizer_args(2, [None, 0.01, 0.9, 0.999, 1e-7]), adam_reference,
                          optim.adam_update),
    # the fused step through a one-variable list: the list's arrays are mutated as above
    "optim.adam_update_all": (optimizer_args(2, [None, 0.01, 0.9, 0.999, 1e-7]), adam_reference,
                              lambda w, g, m, v, vhat, *hyper: optim.adam_update_all(
                                  [(w, g, m, v, vhat, 1.0, 0.0, 0.0)], *hyper)),
    "optim.rmsprop_update": (optimizer_args(1, [None, None, 0.01, 0.9, 0.0, 1e-7]),
                             rmsprop_reference, optim.rmsprop_update),
    "optim.adagrad_update": (optimizer_args(1, [0.01, 1e-7]), adagrad_reference,
                             optim.adagrad_update),
}


# ---- convolution and pooling: geometry tuples as the layers build them -----------------

def _taps(in_size, out_size, window, stride, dilation, pad):
    """(O, K): flat input position read by output position o at tap t (row-major over
    the 3 axes), -1 where it falls outside the input (reads zero / is skipped)."""
    pos, ok = np.zeros((1, 1), dtype=np.int64), np.ones((1, 1), dtype=bool)
    for a in range(3):
        idx = (np.arange(out_size[a])[:, None] * stride[a] - pad[a]
               + np.arange(window[a])[None, :] * dilation[a])
        inside = (idx >= 0) & (idx < in_size[a])
        shape = (pos.shape[0] * out_size[a], pos.shape[1] * window[a])
        pos = (pos[:, None, :, None] * in_size[a] + idx[None, :, None, :]).reshape(shape)
        ok = (ok[:, None, :, None] & inside[None, :, None, :]).reshape(shape)
    return np.where(ok, pos, -1)


def _sizes_ok(*sizes):
    if any(int(s) <= 0 for size in sizes for s in size) or any(len(s) != 3 for s in sizes):
        raise ValueError("geometry")


def conv_geometry(rng, m, n, k):
    """batch from m (0 allowed), channels from n, k, 1-3 spatial axes from the rng; one
    geometry in three 2-D with 16-32 channels a side, mostly 3x3, the kind the implicit,
    Winograd and in-place kernel-gradient paths take (up to 25 a side, so that three
    images can reach the Winograd path's 96 tiles of 4x4 outputs)."""
    if rng.integers(3) == 0:
        return _axes_geometry(rng, m, 2, [4, 26], 8 * (2 + n % 3), 16 * (1 + k % 2), 1, 3,
                              steps=(1, 1, 1, 2))
    groups = 1 + int(rng.integers(2))
    return _axes_geometry(rng, m, 1 + int(rng.integers(3)), [1, 7], groups * (1 + n % 3),
                          groups * (1 + k % 3), groups, 1)


def _axes_geometry(rng, m, rank, size_range, cin, cout, groups, min_kernel, steps=(1, 2)):
    in_size, out_size, kernel, stride, dilation, pad = ([1] * 3 for _ in range(6))
    pad = [0] * 3
    for a in range(3 - rank, 3):
        in_size[a], kernel[a] = int(rng.integers(*size_range)), int(rng.integers(min_kernel, 4))
        stride[a], dilation[a], pad[a] = (int(rng.choice(steps)), int(rng.choice(steps)),
                                          int(rng.integers(0, 2)))
        out = (in_size[a] + 2 * pad[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
        if out < 1:
            kernel[a] = 1
            out = (in_size[a] + 2 * pad[a] - 1) // stride[a] + 1
        out_size[a] = out
    return (min(m, 3), tuple(in_size), tuple(out_size), tuple(kernel), tuple(stride),
            tuple(dilation), tuple(pad), cin, cout, groups)


def _conv_parts(geom, x, w):
    batch, in_size, out_size, kernel, stride, dilation, pad, cin, cout, groups = geom
    _sizes_ok(in_size, out_size, kernel, stride, dilation)
    if batch < 0 or min(pad) < 0 or cin % groups or cout % groups:
        raise ValueError("geometry")
    taps = _taps(in_size, out_size, kernel, stride, dilation, pad)
    xs = x.reshape(batch, int(np.prod(in_size)), cin) if x is not None else None
    ws = w.reshape(taps.shape[1], cin // groups, cout)
    return taps, xs, ws, groups, cin // groups, cout // groups


def _unfold(xs, taps):
    """(batch, O, K, cin): the input under each tap, zero outside."""
    return np.where((taps >= 0)[None, :, :, None], xs[:, np.maximum(taps, 0)], 0.0)


def conv_forward_reference(geom, x, w, bias, act, alpha, y):
    taps, xs, ws, groups, cin_g, cout_g = _conv_parts(geom, x, w)
    cols = _unfold(xs, taps)
    out = np.concatenate([
        cols[..., g * cin_g:(g + 1) * cin_g].reshape(cols.shape[:2] + (taps.shape[1] * cin_g,))
        @ ws[:, :, g * cout_g:(g + 1) * cout_g].reshape(-1, cout_g) for g in range(groups)],
        axis=-1) + (0 if bias is None else bias)
    if y.shape != (out.size,) or (bias is not None and bias.shape != (geom[8],)):
        raise ValueError("shape")
    # Rounding of the sums is relative to their size, which tanh and sigmoid squash
    # but pass on (slope up to 1): compare at the scale of the pre-activations.
    finite = out[np.isfinite(out)]
    return {6: (ACTIVATIONS[act][0](out).reshape(-1), float(np.max(np.abs(finite), initial=0.0)))}


def conv_backward_data_reference(geom, dy, w, dx):
    taps, _, ws, groups, cin_g, cout_g = _conv_parts(geom, None, w)
    dys = dy.reshape(geom[0], taps.shape[0], geom[8])
    dcols = np.concatenate([
        (dys[..., g * cout_g:(g + 1) * cout_g] @ ws[:, :, g * cout_g:(g + 1) * cout_g]
         .reshape(-1, cout_g).T).reshape(dys.shape[:2] + (taps.shape[1], cin_g))
        for g in range(groups)], axis=-1)
    out = np.zeros((geom[0], int(np.prod(geom[1])), geom[7]))
    inside = taps >= 0
    np.add.at(out, (slice(None), taps[inside]), dcols[:, inside])
    if dx.shape != (out.size,):
        raise ValueError("shape")
    return {3: out.reshape(-1)}


def conv_backward_weight_reference(geom, x, dy, dw):
    taps, xs, ws, groups, cin_g, cout_g = _conv_parts(geom, x, dw)
    cols = _unfold(xs, taps)
    dys = dy.reshape(geom[0], taps.shape[0], geom[8])
    grad = np.concatenate([
        (cols[..., g * cin_g:(g + 1) * cin_g].reshape(-1, taps.shape[1] * cin_g).T
         @ dys[..., g * cout_g:(g + 1) * cout_g].reshape(-1, cout_g))
        .reshape(taps.shape[1], cin_g, cout_g) for g in range(groups)], axis=-1)
    return {3: (ws + grad).reshape(-1)}


def _direct_path_takes(geom, act):
    """csrc/conv.c direct_applies, plus the activations the fused weight pass knows."""
    batch, in_size, out_size, kernel, stride, _, pad, cin, cout, groups = geom
    k_all = int(np.prod(kernel)) * cin
    identity = k_all == cin and stride == (1, 1, 1) and max(pad) == 0 and in_size == out_size
    return (groups == 1 and not identity and k_all <= 32 and out_size[2] * k_all <= 4096
            and out_size[2] * cout <= 4096 and act in (0, 1))


def conv_backward_weight_fused_reference(geom, x, y, dy, act, dw, dbias):
    taps, _, _, _, _, _ = _conv_parts(geom, x, dw)
    if y.shape != dy.shape or (dbias is not None and dbias.shape != (geom[8],)):
        raise ValueError("shape")
    if not _direct_path_takes(geom, act):
        return {"return": False}
    dz = ACTIVATIONS[act][1](y, dy)
    expected = {5: conv_backward_weight_reference(geom, x, dz, dw)[3], "return": True}
    if dbias is not None:
        expected[6] = dbias + dz.reshape(-1, geom[8]).sum(axis=0)
    return expected


def conv_args(kind):
    def build(rng, m, n, k, case):
        geom = conv_geometry(rng, m, n, k)
        batch, in_size, out_size, kernel, _, _, _, cin, cout, groups = geom
        x = f32(rng, batch * int(np.prod(in_size)) * cin)
        w = f32(rng, int(np.prod(kernel)) * (cin // groups) * cout)
        y = f32(rng, batch * int(np.prod(out_size)) * cout)
        if kind == "forward":
            return [geom, x, w, f32(rng, cout) if m % 2 else None, case["act"], 0.0, y]
        if kind == "data":
            return [geom, y, w, x]
        if kind == "weight_fused":
            act = case["act"] if case["act"] < 2 else case["act"] % 2
            y_out = ACTIVATIONS[act][0](f32(rng, y.size)).astype(np.float32)
            return [geom, x, y_out, y, act, w, f32(rng, cout) if m % 2 else None]
        return [geom, x, y, w]
    return build


def conv_pool_geometry(rng, geom):
    """Max pooling over conv geometry geom's output: mostly windows meeting edge to edge
    (of one line along axis 0, as conv_max_pool_* take them), else overlapping ones."""
    out_size = geom[2]
    window = (1,) + tuple(int(rng.integers(1, min(3, size) + 1)) for size in out_size[1:])
    stride = window if rng.integers(4) else (1, 1, 1)
    pooled = tuple((o - w) // s + 1 for o, w, s in zip(out_size, window, stride))
    return (geom[0], geom[8], out_size, pooled, window, stride, (0, 0, 0))


def _conv_pool_takes(geom, pool, act):
    """csrc/conv.c pl_conv_max_pool_fusable."""
    _, _, in_size, out_size, window, stride, pad = pool
    return (_direct_path_takes(geom, act) and window[0] == 1 and stride == window
            and max(pad) == 0 and all(o == i // w for o, i, w in zip(out_size, in_size, window))
            and window[1] * geom[2][2] * geom[8] <= 16384)


def _conv_output_size(geom):
    return geom[0] * int(np.prod(geom[2])) * geom[8]


def conv_max_pool_forward_reference(geom, pool, x, w, bias, act, y, argmax):
    z = conv_forward_reference(geom, x, w, bias, act, 0.0, np.zeros(_conv_output_size(geom)))
    pooled = max_pool_forward_reference(pool, z[6][0], y, argmax)
    if not _conv_pool_takes(geom, pool, act):
        return {"return": False}
    return {6: pooled[2], 7: pooled[3], "return": True}


def conv_max_pool_backward_weight_reference(geom, pool, x, y, dy, argmax, act, dw, dbias):
    """The pooled gradient through act' goes to the position its argmax entry names when
    that is one of its window's, and the kernel gradient is taken from there."""
    _conv_parts(geom, x, dw)
    taps, batch, channels = _pool_parts(pool, _conv_output_size(geom), y.size)
    if not y.shape == dy.shape == argmax.shape or \
            (dbias is not None and dbias.shape != (channels,)):
        raise ValueError("shape")
    if not _conv_pool_takes(geom, pool, act):
        return {"return": False}
    dzp = ACTIVATIONS[act][1](y, dy).reshape(batch, taps.shape[0], channels)
    named = argmax.reshape(dzp.shape)
    dz = np.zeros((batch, int(np.prod(pool[2])) * channels))
    for t in range(taps.shape[1]):   # windows meet edge to edge: each position once
        position = taps[:, t][:, None] * channels + np.arange(channels)
        dz[:, position] += np.where(named == position, dzp, 0.0)
    expected = {7: conv_backward_weight_reference(geom, x, dz.reshape(-1), dw)[3],
                "return": True}
    if dbias is not None:
        expected[8] = dbias + dzp.sum(axis=(0, 1))
    return expected


def window_argmax(rng, pool):
    """An argmax naming, for each pooled entry, a random position of its window."""
    batch, channels, in_size, out_size, window, stride, pad = pool
    taps = _taps(in_size, out_size, window, stride, (1, 1, 1), pad)
    pick = rng.integers(taps.shape[1], size=(batch, taps.shape[0], channels))
    chosen = taps[np.arange(taps.shape[0])[None, :, None], pick]   # (batch, pooled, channels)
    return (chosen * channels + np.arange(channels)).astype(np.intc).reshape(-1)


def conv_pool_args(backward):
    def build(rng, m, n, k, case):
        geom = conv_geometry(rng, m, n, k)
        pool = conv_pool_geometry(rng, geom)
        batch, in_size, _, kernel, _, _, _, cin, cout, groups = geom
        x = f32(rng, batch * int(np.prod(in_size)) * cin)
        w = f32(rng, int(np.prod(kernel)) * (cin // groups) * cout)
        y = f32(rng, batch * int(np.prod(pool[3])) * cout)
        bias, act, argmax = f32(rng, cout) if m % 2 else None, case["act"] % 2, \
            window_argmax(rng, pool)
        if not backward:
            return [geom, pool, x, w, bias, act, y, argmax]
        y_out = ACTIVATIONS[act][0](y).astype(np.float32)
        return [geom, pool, x, y_out, f32(rng, y.size), argmax, act, w, bias]
    return build


def bias_act_backward_reference(y, dy, act, alpha, dz, dbias):
    if not y.shape == dy.shape == dz.shape or y.ndim != 2:
        raise ValueError("shape")
    grad = ACTIVATIONS[act][1](y, dy)
    if dbias is None:
        return {4: grad}
    if dbias.shape != y.shape[1:]:
        raise ValueError("shape")
    return {4: grad, 5: dbias + grad.sum(axis=0)}


def pool_geometry(rng, m, n, k):
    rank = 1 + int(rng.integers(3))
    in_size, out_size, window, stride, pad = ([1] * 3 for _ in range(5))
    pad = [0] * 3
    for a in range(3 - rank, 3):
        in_size[a], window[a], stride[a] = (int(rng.integers(1, 7)), int(rng.integers(1, 4)),
                                            int(rng.integers(1, 4)))
        pad[a] = int(rng.integers(window[a]))
        most = (in_size[a] + pad[a] + stride[a] - 1) // stride[a]
        out_size[a] = int(rng.integers(1, most + 1))
    return (min(m, 3), 1 + (n + k) % 4, tuple(in_size), tuple(out_size), tuple(window),
            tuple(stride), tuple(pad))


def _pool_parts(geom, x_size, y_size):
    batch, channels, in_size, out_size, window, stride, pad = geom
    _sizes_ok(in_size, out_size, window, stride)
    if batch < 0 or channels <= 0 or any(not 0 <= p < w for p, w in zip(pad, window)) \
            or any((o - 1) * s - p >= i for o, s, p, i in zip(out_size, stride, pad, in_size)):
        raise ValueError("geometry")
    taps = _taps(in_size, out_size, window, stride, (1, 1, 1), pad)
    if x_size != batch * int(np.prod(in_size)) * channels \
            or y_size != batch * taps.shape[0] * channels:
        raise ValueError("sizes")
    return taps, batch, channels


def max_pool_forward_reference(geom, x, y, argmax):
    """argmax None: only the maxima (inference)."""
    taps, batch, channels = _pool_parts(geom, x.size, y.size)
    if argmax is not None and argmax.shape != y.shape:
        raise ValueError("argmax")
    xs = x.reshape(batch, int(np.prod(geom[2])), channels)
    best = np.full((batch, taps.shape[0], channels), -np.inf)
    arg = np.zeros(best.shape)
    started = np.zeros(taps.shape[0], dtype=bool)
    for t in range(taps.shape[1]):   # in window order: the first maximum, a NaN wins
        inside = taps[:, t] >= 0
        value = xs[:, np.maximum(taps[:, t], 0)]
        take = inside[None, :, None] & (~started[None, :, None] | (value > best)
                                        | np.isnan(value))
        best = np.where(take, value, best)
        arg = np.where(take, taps[:, t][None, :, None] * channels + np.arange(channels), arg)
        started |= inside
    if argmax is None:
        return {2: best.reshape(-1)}
    return {2: best.reshape(-1), 3: arg.reshape(-1)}


def max_pool_backward_reference(geom, dy, argmax, dx):
    taps, batch, channels = _pool_parts(geom, dx.size, dy.size)
    image = int(np.prod(geom[2])) * channels
    index = argmax.reshape(batch, taps.shape[0] * channels)
    if argmax.shape != dy.shape or np.any((index < 0) | (index >= image)):
        raise ValueError("argmax")
    out = np.zeros((batch, image))
    np.add.at(out, (np.arange(batch)[:, None], index.astype(np.int64)), dy.reshape(index.shape))
    return {3: out.reshape(-1)}


def avg_pool_forward_reference(geom, x, y):
    taps, batch, channels = _pool_parts(geom, x.size, y.size)
    cols = _unfold(x.reshape(batch, int(np.prod(geom[2])), channels), taps)
    return {2: (cols.sum(axis=2) / (taps >= 0).sum(axis=1)[:, None]).reshape(-1)}


def avg_pool_backward_reference(geom, dy, dx):
    taps, batch, channels = _pool_parts(geom, dx.size, dy.size)
    share = dy.reshape(batch, taps.shape[0], 1, channels) / (taps >= 0).sum(axis=1)[:, None, None]
    out = np.zeros((batch, int(np.prod(geom[2])), channels))
    inside = taps >= 0
    np.add.at(out, (slice(None), taps[inside]),
              np.broadcast_to(share, (batch,) + taps.shape + (channels,))[:, inside])
    return {2: out.reshape(-1)}


def pool_args(kind):
    def build(rng, m, n, k, case):
        geom = pool_geometry(rng, m, n, k)
        batch, channels, in_size, out_size = geom[:4]
        x = f32(rng, batch * int(np.prod(in_size)) * channels)
        y = f32(rng, batch * int(np.prod(out_size)) * channels)
        argmax = rng.integers(0, x.size // max(batch, 1), size=y.size).astype(np.intc)
        return {"max_forward": [geom, x, y, argmax], "max_backward": [geom, y, argmax, x],
                "avg_forward": [geom, x, y], "avg_backward": [geom, y, x]}[kind]
    return build


# ---- embedding ---------------------------------------------------------------------------

def _rows(indices, rows):
    if indices.ndim != 1 or (indices.size and (indices.min() < 0 or indices.max() >= rows)):
        raise ValueError("index")
    return indices.astype(np.int64)


def embedding_forward_reference(indices, table):
    if table.ndim != 2:
        raise ValueError("rank")
    return {"return": table[_rows(indices, table.shape[0])]}


def embedding_backward_reference(indices, dy, dtable):
    index = _rows(indices, dtable.shape[0])
    if dtable.ndim != 2 or dy.shape != (index.size, dtable.shape[1]):
        raise ValueError("shape")
    out = dtable.copy()
    np.add.at(out, index, dy)
    return {2: out}


def embedding_args(backward):
    def build(rng, m, n, k, case):
        indices = rng.integers(0, max(n, 1), size=m).astype(np.int64) if n or not m \
            else np.zeros(0, dtype=np.int64)
        table = f32(rng, n, k)
        return [indices, f32(rng, indices.size, k), table] if backward else [indices, table]
    return build


# ---- losses ------------------------------------------------------------------------------

def sparse_softmax_crossentropy_reference(p, labels, row_weight, low, high):
    if p.ndim != 2 or labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError("shape")
    rows, classes = p.shape
    if rows == 0:
        return {"return.0": 0.0, "return.1": np.zeros((0, classes))}
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        return {"return.0": None, "return.1": bad[0]}
    index = (np.arange(rows), labels.astype(np.int64))
    value = np.sum(row_weight * -np.log(np.clip(p[index] / p.sum(axis=1), low, high)))
    grad = row_weight * p
    grad[index] -= row_weight
    return {"return.0": value, "return.1": grad}


def sparse_softmax_crossentropy_args(rng, m, n, k, case):
    probs = rng.random((m, n)).astype(np.float32)
    return [probs, rng.integers(0, max(n, 1), size=m).astype(np.int64), 1.0 / max(m, 1),
            1e-7, 1.0 - 1e-7]


def mean_squared_error_reference(p, t, row_weight):
    if p.ndim != 2 or t.shape != p.shape:
        raise ValueError("shape")
    if p.shape[0] == 0:
        return {"return.0": 0.0, "return.1": p}
    error = p - t
    value = np.sum(row_weight * np.mean(error ** 2, axis=1)) if p.shape[1] else np.nan
    return {"return.0": value, "return.1": row_weight * 2 * error / max(p.shape[1], 1)}


# ---- normalisation -----------------------------------------------------------------------

def _columns(x, *vectors):
    if x.ndim != 2 or any(v is not None and v.shape != (x.shape[1],) for v in vectors):
        raise ValueError("shape")


def bn_moments_reference(x, mean, var):
    _columns(x, mean, var)
    if mean is None or var is None:
        raise ValueError("None")
    return {1: x.mean(axis=0), 2: x.var(axis=0)} if x.shape[0] else \
        {1: np.full(x.shape[1], np.nan), 2: np.full(x.shape[1], np.nan)}


def bn_forward_reference(x, mean, var, gamma, beta, eps, y):
    _columns(x, mean, var, gamma, beta)
    if mean is None or var is None or y is None or y.shape != x.shape:
        raise ValueError("shape")
    out = (x - mean) / np.sqrt(var + eps)
    return {6: out * (1 if gamma is None else gamma) + (0 if beta is None else beta)}


def _norm_dx(dxhat, xhat, inv, axis):
    return inv * (dxhat - dxhat.mean(axis=axis, keepdims=True)
                  - xhat * (dxhat * xhat).mean(axis=axis, keepdims=True))


def bn_backward_reference(x, mean, var, gamma, eps, dy, batch_stats, dgamma, dbeta, dx):
    _columns(x, mean, var, gamma, dgamma, dbeta)
    if mean is None or var is None or dy is None or dy.shape != x.shape \
            or (dx is not None and dx.shape != x.shape):
        raise ValueError("shape")
    inv = 1 / np.sqrt(var + eps)
    xhat, dxhat = (x - mean) * inv, dy * (1 if gamma is None else gamma)
    expected = {}
    if dgamma is not None:
        expected[7] = dgamma + (dy * xhat).sum(axis=0)
    if dbeta is not None:
        expected[8] = dbeta + dy.sum(axis=0)
    if dx is not None and x.size:
        expected[9] = _norm_dx(dxhat, xhat, inv, 0) if batch_stats else dxhat * inv
    return expected


def bn_args(kind):
    def build(rng, m, n, k, case):
        x = f32(rng, m, n)
        batch_stats = bool(m % 2) and m > 0
        mean = x.mean(axis=0) if batch_stats else f32(rng, n)
        var = x.var(axis=0) if batch_stats else np.abs(f32(rng, n))
        if kind == "moments":
            return [x, f32(rng, n), f32(rng, n)]
        if kind == "forward":
            return [x, mean, var, f32(rng, n), f32(rng, n) if k % 2 else None, 1e-3, f32(rng, m, n)]
        return [x, mean, var, f32(rng, n), 1e-3, f32(rng, m, n), batch_stats, f32(rng, n),
                f32(rng, n) if k % 2 else None, f32(rng, m, n)]
    return build


def _rows_of(x, row_vectors, col_vectors):
    if x.ndim != 2 or any(v is None or v.shape != (x.shape[0],) for v in row_vectors) \
            or any(v is not None and v.shape != (x.shape[1],) for v in col_vectors):
        raise ValueError("shape")


def layer_norm_forward_reference(x, gamma, beta, eps, y, mean, inv_std):
    _rows_of(x, [mean, inv_std], [gamma, beta])
    if y is None or y.shape != x.shape:
        raise ValueError("shape")
    if not x.shape[1]:
        return {5: np.full(x.shape[0], np.nan), 6: np.full(x.shape[0], np.nan)}
    mu, inv = x.mean(axis=1), 1 / np.sqrt(x.var(axis=1) + eps)
    out = (x - mu[:, None]) * inv[:, None] * (1 if gamma is None else gamma)
    return {4: out + (0 if beta is None else beta), 5: mu, 6: inv}


def layer_norm_backward_reference(x, mean, inv_std, gamma, dy, dgamma, dbeta, dx):
    _rows_of(x, [mean, inv_std], [gamma, dgamma, dbeta])
    if dy is None or dy.shape != x.shape or (dx is not None and dx.shape != x.shape):
        raise ValueError("shape")
    xhat = (x - mean[:, None]) * inv_std[:, None]
    dxhat = dy * (1 if gamma is None else gamma)
    expected = {}
    if dgamma is not None:
        expected[5] = dgamma + (dy * xhat).sum(axis=0)
    if dbeta is not None:
        expected[6] = dbeta + dy.sum(axis=0)
    if dx is not None and x.size:
        expected[7] = _norm_dx(dxhat, xhat, inv_std[:, None], 1)
    return expected


def layer_norm_args(backward):
    def build(rng, m, n, k, case):
        x = f32(rng, m, n)
        with np.errstate(all="ignore"):
            mean = x.mean(axis=1) if n else np.zeros(m, np.float32)
            inv_std = (1 / np.sqrt(x.var(axis=1) + 1e-3)).astype(np.float32) if n \
                else np.ones(m, np.float32)
        gamma = f32(rng, n)
        if backward:
            return [x, mean, inv_std, gamma, f32(rng, m, n), f32(rng, n),
                    f32(rng, n) if k % 2 else None, f32(rng, m, n)]
        return [x, gamma, f32(rng, n) if k % 2 else None, 1e-3, f32(rng, m, n),
                f32(rng, m), f32(rng, m)]
    return build


# ---- recurrent: forward and backward against pylayers.ops in float64 reference mode -----

RNN_ACTS = {0: lambda z: z, 1: ops.relu, 2: ops.sigmoid, 3: ops.tanh}
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


def _lstm_step(x_t, states, w, act, rec_act, reset_after):
    kernel, recurrent, bias = w
    h, c = states
    z = ops.matmul(x_t, kernel) + ops.matmul(h, recurrent)
    z = z if bias is None else z + bias
    u = recurrent.shape[0]
    i, f, g, o = (z[:, j * u:(j + 1) * u] for j in range(4))
    c = rec_act(f) * c + rec_act(i) * act(g)
    return [rec_act(o) * act(c), c]


def _gru_step(x_t, states, w, act, rec_act, reset_after):
    kernel, recurrent, bias = w
    (h,), u = states, recurrent.shape[0]
    xz = ops.matmul(x_t, kernel)
    if bias is not None:
        xz = xz + (bias[0] if reset_after else bias)
    if reset_after:
        hr = ops.matmul(h, recurrent)
        hr = hr if bias is None else hr + bias[1]
        z = rec_act(xz[:, :u] + hr[:, :u])
        r = rec_act(xz[:, u:2 * u] + hr[:, u:2 * u])
        hh = act(xz[:, 2 * u:] + r * hr[:, 2 * u:])
    else:
        hr = ops.matmul(h, recurrent[:, :2 * u])
        z = rec_act(xz[:, :u] + hr[:, :u])
        r = rec_act(xz[:, u:2 * u] + hr[:, u:])
        hh = act(xz[:, 2 * u:] + ops.matmul(r * h, recurrent[:, 2 * u:]))
    return [z * h + (1 - z) * hh]


def _simple_step(x_t, states, w, act, rec_act, reset_after):
    kernel, recurrent, bias = w
    z = ops.matmul(x_t, kernel) + ops.matmul(states[0], recurrent)
    return [act(z if bias is None else z + bias)]


STEPS = {"lstm": _lstm_step, "gru": _gru_step, "simple_rnn": _simple_step}


def _check_rnn(kind, x_tm, mask_tm, kernel, recurrent, bias, reset_after, states):
    """The shapes the kernels accept; raises otherwise."""
    steps, batch, inputs = x_tm.shape
    if steps == 0 or batch == 0 or kernel is None or recurrent is None:
        raise ValueError("empty or missing")
    u = recurrent.shape[0]
    g = GATES[kind] * u
    bias_shape = (2, g) if kind == "gru" and reset_after else (g,)
    if kernel.shape != (inputs, g) or recurrent.shape != (u, g) \
            or (bias is not None and bias.shape != bias_shape) \
            or (mask_tm is not None and mask_tm.shape != (steps, batch)) \
            or any(s is None or s.shape != (batch, u) for s in states):
        raise ValueError("shape")


def rnn_reference(kind, x_tm, mask_tm, weights, states, act, rec_act, reset_after=True,
                  dy_seq=None, d_finals=None):
    """float64 pylayers.ops over time (no compiled kernel). Returns the state sequences
    [(T + 1, B, U)] and, when d_finals is given, the gradients of
    sum(dy_seq * h_seq) + sum(d_final * final state) with respect to
    (initial states..., kernel, recurrent, bias, x_tm), zeros where unreached."""
    kernel, recurrent, bias = weights
    _check_rnn(kind, x_tm, mask_tm, kernel, recurrent, bias, reset_after, states)
    if act not in RNN_ACTS or rec_act not in RNN_ACTS:
        raise ValueError("activation code")
    with ops.reference_mode(), ops.Tape() as tape:
        leaves = [tape.leaf(a) for a in list(states) + [kernel, recurrent]]
        leaves += [tape.leaf(bias) if bias is not None else None, tape.leaf(x_tm)]
        current, w, sequences = leaves[:len(states)], leaves[len(states):-1], \
            [[s] for s in leaves[:len(states)]]
        for t in range(x_tm.shape[0]):
            new = STEPS[kind](leaves[-1][t], current, w, RNN_ACTS[act], RNN_ACTS[rec_act],
                              reset_after)
            if mask_tm is not None:
                keep = np.broadcast_to(mask_tm[t][:, None] > 0, current[0].shape)
                new = [ops.where(keep, a, b) for a, b in zip(new, current)]
            current = new
            for seq, s in zip(sequences, current):
                seq.append(s)
        values = [np.stack([ops.value_of(s) for s in seq]) for seq in sequences]
        if d_finals is None:
            return values
        objective = ops.sum(ops.stack(sequences[0][1:], axis=1) * dy_seq) if dy_seq is not None \
            else 0.0
        for final, d in zip(current, d_finals):
            objective = objective + ops.sum(final * d)
        grads = tape.backward(objective, np.float64(1.0), [s for s in leaves if s is not None])
    return [np.zeros_like(ops.value_of(s)) if g is None else g
            for s, g in zip([s for s in leaves if s is not None], grads)]


def _nudged(value, rng):
    """value with each float moved by about one float32 rounding (nested lists and tuples
    too; None and non-arrays as they are)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_nudged(v, rng) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value * (1.0 + 2.0 ** -24 * rng.standard_normal(value.shape))
    return value


def _rounding_scales(compute, inputs, answers, draws=2):
    """For each answer, the `same` scale that makes its tolerance four times how far
    float32 rounding of the inputs moves it: a recurrence with unbounded gates can be so
    ill-conditioned that float32 kernels cannot come closer (a GRU weight gradient of
    3098 moved by 0.6 under such nudges)."""
    rng = np.random.default_rng(0)
    spread = [0.0] * len(answers)
    for _ in range(draws):
        moved = compute(*_nudged(inputs, rng))
        spread = [max(sp, float(np.max(np.abs(m - a), initial=0.0)))
                  for sp, m, a in zip(spread, moved, answers)]
    return [4.0 * sp / 2e-5 for sp in spread]


def _time_major(x, mask):
    if x.ndim != 3:
        raise ValueError("rank")
    mask_tm = None
    if mask is not None:
        if mask.shape != x.shape[:2]:
            raise ValueError("mask")
        mask_tm = mask.T
    return x.transpose(1, 0, 2), mask_tm


def rnn_forward_reference(kind):
    def reference(*args):
        if kind == "lstm":
            x, kernel, recurrent, bias, mask, act, rec_act, h0, c0 = args
            states, reset_after = [h0, c0], True
        elif kind == "gru":
            x, kernel, recurrent, bias, mask, act, rec_act, reset_after, h0 = args
            states = [h0]
        else:
            x, kernel, recurrent, bias, mask, act, h0 = args
            states, rec_act, reset_after = [h0], 2, True
        x_tm, mask_tm = _time_major(x, mask)
        values = rnn_reference(kind, x_tm, mask_tm, (kernel, recurrent, bias), states, act,
                               rec_act, reset_after)
        # the tape's last entries: h (and c for the LSTM), (T + 1, B, U)
        return {f"return.{i - len(values)}": v for i, v in enumerate(values)}
    return reference


def rnn_backward_reference(kind):
    def reference(*args):
        if kind == "lstm":
            (tape, kernel, recurrent, bias, act, rec_act, dy_seq, dh, dc, dkernel, drecurrent,
             dbias, need_dx) = args
            x_tm, mask_tm, gates, aux, h, c = tape
            finals, where, reset_after, tape_states = [dh, dc], [7, 8], True, [h, c]
            work = {"gates": (gates, 4), "act_c": (aux, 1)}
        elif kind == "gru":
            (tape, kernel, recurrent, bias, act, rec_act, reset_after, dy_seq, dh, dkernel,
             drecurrent, dbias, need_dx) = args
            x_tm, mask_tm, gates, aux, h = tape
            finals, where, tape_states = [dh], [8], [h]
            work = {"gates": (gates, 3), "aux": (aux, 1)}
        else:
            (tape, kernel, recurrent, bias, act, dy_seq, dh, dkernel, drecurrent, dbias,
             need_dx) = args
            x_tm, mask_tm, h = tape
            finals, where, rec_act, reset_after, tape_states = [dh], [6], 2, True, [h]
            work = {}
        if x_tm is None or x_tm.ndim != 3 or recurrent is None or recurrent.ndim != 2:
            raise ValueError("tape")
        steps, batch, _ = x_tm.shape
        u = recurrent.shape[0]
        for array, shape in [(s, (steps + 1, batch, u)) for s in tape_states] \
                + [(a, (steps, batch, n * u)) for a, n in work.values()]:
            if array is None or array.shape != shape:
                raise ValueError("tape shape")
        if (dy_seq is not None and dy_seq.shape != (batch, steps, u)) \
                or (bias is None and dbias is not None):
            raise ValueError("shape")
        inputs = [x_tm, (kernel, recurrent, bias), [s[0] for s in tape_states], dy_seq, finals]

        def gradients(x_tm, weights, states, dy_seq, finals):
            return rnn_reference(kind, x_tm, mask_tm, weights, states, act, rec_act,
                                 reset_after, dy_seq, finals)
        grads = gradients(*inputs)
        scales = _rounding_scales(gradients, inputs, grads)
        expected = {i: (g, sc) for i, g, sc in zip(where, grads, scales)}
        weight_grads = list(zip(grads, scales))[len(finals):len(finals) + 3 - (bias is None)]
        for index, buffer, (grad, sc) in zip(where[-1] + np.arange(1, 4),
                                             [dkernel, drecurrent, dbias], weight_grads):
            if buffer is not None:
                if buffer.shape != grad.shape:
                    raise ValueError("shape")
                expected[int(index)] = (buffer + grad, sc)
        expected["return"] = (grads[-1].transpose(1, 0, 2), scales[-1]) if need_dx else None
        return expected
    return reference


def rnn_forward_args(kind):
    def build(rng, m, n, k, case):
        batch, steps, inputs = 1 + m % 4, 1 + n % 6, k % 5
        units = 1 + (m + n + k) % 4
        g = GATES[kind] * units
        act, rec_act, reset_after = case["act"] % 4, (2, 3, 0, 1)[case["act"] % 4], bool(n % 2)
        bias = (f32(rng, 2, g) if kind == "gru" and reset_after else f32(rng, g)) \
            if k % 3 else None
        mask = rng.integers(2, size=(batch, steps)).astype(bool) if m % 2 else None
        args = [f32(rng, batch, steps, inputs), f32(rng, inputs, g) / 2, f32(rng, units, g) / 2,
                bias, mask, act]
        h0 = f32(rng, batch, units)
        if kind == "lstm":
            return args + [rec_act, h0, f32(rng, batch, units)]
        if kind == "gru":
            return args + [rec_act, reset_after, h0]
        return args + [h0]
    return build


def rnn_backward_args(kind):
    forward_build, forward = rnn_forward_args(kind), getattr(rnn, f"{kind}_forward")

    def build(rng, m, n, k, case):
        fargs = forward_build(rng, m, n, k, case)
        tape = forward(*fargs)
        kernel, recurrent, bias, act = fargs[1:4] + [fargs[5]]
        batch, steps, units = fargs[0].shape[0], fargs[0].shape[1], recurrent.shape[0]
        dy_seq = f32(rng, batch, steps, units) if n % 3 else None
        grads = [f32(rng, *kernel.shape), f32(rng, *recurrent.shape),
                 None if bias is None else f32(rng, *bias.shape)]
        need_dx = bool((m + k) % 2)
        if kind == "lstm":
            return [tape, kernel, recurrent, bias, act, fargs[6], dy_seq,
                    f32(rng, batch, units), f32(rng, batch, units)] + grads + [need_dx]
        if kind == "gru":
            return [tape, kernel, recurrent, bias, act, fargs[6], fargs[7], dy_seq,
                    f32(rng, batch, units)] + grads + [need_dx]
        return [tape, kernel, recurrent, bias, act, dy_seq, f32(rng, batch, units)] \
            + grads + [need_dx]
    build.tape_inputs = (1, 2, 3)   # the weights the tape was computed with
    return build


def transpose_reference(seq):
    if seq is None or seq.ndim != 3:
        raise ValueError("rank")
    return {"return": seq.transpose(1, 0, 2)}


ENTRIES.update({
    "conv.conv_forward": (conv_args("forward"), conv_forward_reference, conv.conv_forward),
    "conv.conv_backward_data": (conv_args("data"), conv_backward_data_reference,
                                conv.conv_backward_data),
    "conv.conv_backward_weight": (conv_args("weight"), conv_backward_weight_reference,
                                  conv.conv_backward_weight),
    "conv.conv_backward_weight_fused": (conv_args("weight_fused"),
                                        conv_backward_weight_fused_reference,
                                        conv.conv_backward_weight_fused),
    "conv.conv_max_pool_fusable": (
        lambda rng, m, n, k, case: [geom := conv_geometry(rng, m, n, k),
                                    conv_pool_geometry(rng, geom), case["act"]],
        lambda geom, pool, act: {"return": _conv_pool_takes(geom, pool, act)},
        conv.conv_max_pool_fusable),
    "conv.conv_max_pool_forward": (conv_pool_args(False), conv_max_pool_forward_reference,
                                   conv.conv_max_pool_forward),
    "conv.conv_max_pool_backward_weight": (conv_pool_args(True),
                                           conv_max_pool_backward_weight_reference,
                                           conv.conv_max_pool_backward_weight),
    "conv.bias_act_backward": (lambda rng, m, n, k, case: [
        ACTIVATIONS[case["act"]][0](f32(rng, m, n)).astype(np.float32), f32(rng, m, n),
        case["act"], 0.0, f32(rng, m, n), f32(rng, n) if k % 2 else None],
        bias_act_backward_reference, conv.bias_act_backward),
    "pooling.max_pool_forward": (pool_args("max_forward"), max_pool_forward_reference,
                                 pooling.max_pool_forward),
    "pooling.max_pool_backward": (pool_args("max_backward"), max_pool_backward_reference,
                                  pooling.max_pool_backward),
    "pooling.avg_pool_forward": (pool_args("avg_forward"), avg_pool_forward_reference,
                                 pooling.avg_pool_forward),
    "pooling.avg_pool_backward": (pool_args("avg_backward"), avg_pool_backward_reference,
                                  pooling.avg_pool_backward),
    "losses.sparse_softmax_crossentropy": (sparse_softmax_crossentropy_args,
                                           sparse_softmax_crossentropy_reference,
                                           losses.sparse_softmax_crossentropy),
    "losses.mean_squared_error": (lambda rng, m, n, k, case: [f32(rng, m, n), f32(rng, m, n),
                                                              1.0 / max(m, 1)],
                                  mean_squared_error_reference, losses.mean_squared_error),
    "embedding.embedding_forward": (embedding_args(False), embedding_forward_reference,
                                    embedding.embedding_forward),
    "embedding.embedding_backward": (embedding_args(True), embedding_backward_reference,
                                     embedding.embedding_backward),
    "normalization.bn_moments": (bn_args("moments"), bn_moments_reference,
                                 normalization.bn_moments),
    "normalization.bn_forward": (bn_args("forward"), bn_forward_reference,
                                 normalization.bn_forward),
    "normalization.bn_backward": (bn_args("backward"), bn_backward_reference,
                                  normalization.bn_backward),
    "normalization.layer_norm_forward": (layer_norm_args(False), layer_norm_forward_reference,
                                         normalization.layer_norm_forward),
    "normalization.layer_norm_backward": (layer_norm_args(True), layer_norm_backward_reference,
                                          normalization.layer_norm_backward),
    "rnn.to_time_major": (lambda rng, m, n, k, case: [f32(rng, m % 5, n % 5, k % 5)],
                          transpose_reference, rnn.to_time_major),
    "rnn.to_batch_major": (lambda rng, m, n, k, case: [f32(rng, m % 5, n % 5, k % 5)],
                           transpose_reference, rnn.to_batch_major),
    "rnn.fast_tanh": (lambda rng, m, n, k, case: [float(rng.uniform(-20, 20))],
                      lambda x: {"return": np.tanh(x)}, rnn.fast_tanh),
    "rnn.fast_sigmoid": (lambda rng, m, n, k, case: [float(rng.uniform(-40, 40))],
                         lambda x: {"return": 1 / (1 + np.exp(-x))}, rnn.fast_sigmoid),
})
for _kind in GATES:
    ENTRIES[f"rnn.{_kind}_forward"] = (rnn_forward_args(_kind), rnn_forward_reference(_kind),
                                      getattr(rnn, f"{_kind}_forward"))
    ENTRIES[f"rnn.{_kind}_backward"] = (rnn_backward_args(_kind), rnn_backward_reference(_kind),
                                       getattr(rnn, f"{_kind}_backward"))


# ---- mutations ------------------------------------------------------------------------

def mutate(args, kind, path, rng):
    """Replace the array at `path` (an argument's index, then an index inside a tuple
    argument such as a forward's tape) by a mutated version; return the new list."""
    args = list(args)
    if len(path) == 2:
        inner = list(args[path[0]])
        # a tape's values and its mask (the one uint8 entry) are the forward's own
        if kind not in ("nan", "index") \
                and not (kind == "none" and inner[path[1]].dtype == np.uint8):
            inner = mutate(inner, kind, path[1:], rng)
        args[path[0]] = tuple(inner)
        return args
    index = path[0]
    x = args[index]
    if kind == "none":
        args[index] = None
    elif kind == "dtype":
        dtype = DTYPES[rng.integers(len(DTYPES))]
        args[index] = x.astype(np.float32).astype(dtype) if dtype != "<U3" else x.astype(dtype)
    elif kind == "noncontiguous":
        args[index] = np.repeat(x, 2, axis=-1)[..., ::2] if x.ndim else x
    elif kind == "fortran":
        args[index] = np.asfortranarray(x)
    elif kind == "shape":
        shape = list(x.shape)
        axis = int(rng.integers(len(shape))) if shape else None
        if axis is not None:
            shape[axis] = max(0, shape[axis] + (1 if rng.integers(2) or not shape[axis] else -1))
        args[index] = f32(rng, *shape)
    elif kind == "rank":
        args[index] = x.reshape(-1) if x.ndim > 1 else x[None]
    elif kind == "index" and x.size and x.dtype.kind in "iu":   # out-of-range indices
        x = x.copy()
        bound = np.iinfo(x.dtype)
        x.flat[rng.integers(x.size)] = rng.choice([-1, x.size * 64, bound.max, bound.min])
        args[index] = x
    elif kind == "nan" and x.size and x.dtype.kind == "f":
        x = x.copy()
        x.flat[rng.integers(x.size, size=2)] = [np.nan, rng.choice([np.inf, -np.inf])]
        args[index] = x
    elif kind == "readonly":
        x = x.copy()
        x.flags.writeable = False
        args[index] = x
    elif kind == "unaligned":
        buffer = np.zeros(x.nbytes + 1, dtype=np.uint8)[1:]
        view = buffer.view(x.dtype).reshape(x.shape)
        view[...] = x
        args[index] = view
    elif kind == "scalar":
        args[index] = 3.0
    return args


def array_paths(args):
    """Where the arrays are: (i,) for argument i, (i, j) for entry j of a tuple argument."""
    paths = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            paths.append((i,))
        elif isinstance(a, tuple):
            paths += [(i, j) for j, v in enumerate(a) if isinstance(v, np.ndarray)]
    return paths


# ---- comparing --------------------------------------------------------------------

def same(got, expected, scale=0.0):
    """Non-finite where the reference is (NaN and infinity may trade places: inf - inf),
    finite values equal to float32 accuracy relative to the largest of 1, `scale` and
    the largest expected value."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    finite = np.isfinite(expected)
    if got.shape != expected.shape or not np.array_equal(np.isfinite(got), finite):
        return False
    scale = max(1.0, scale, float(np.max(np.abs(expected[finite]), initial=0.0)))
    return np.allclose(got[finite], expected[finite], rtol=1e-4, atol=2e-5 * scale)


def run_case(case):
    build, reference, kernel = ENTRIES[case["entry"]]
    rng = np.random.default_rng(case["seed"])
    args = build(rng, *case["dims"], case)
    kind, paths = case["mutation"], array_paths(args)
    # NaN in the weights a backward's tape was computed with breaks the tape's contract
    paths = [p for p in paths if kind != "nan" or p[0] not in getattr(build, "tape_inputs", ())]
    if kind != "valid" and paths:
        args = mutate(args, kind, paths[case["arg"] % len(paths)], rng)
    try:
        expected = reference(*[real(a) for a in args])
    except Exception:  # noqa: BLE001 (the reference rejects these inputs, e.g. None)
        expected = None
    try:
        returned = kernel(*args)
    except (ValueError, TypeError) as error:
        return {"outcome": "error", "message": f"{type(error).__name__}: {error}"}
    except Exception as error:  # noqa: BLE001 (any other type is a finding)
        return {"outcome": "wrong", "message": f"raised {type(error).__name__}: {error}"}
    if expected is None:
        return {"outcome": "wrong", "message": "accepted inputs the reference rejects"}
    for where, value in expected.items():   # value, or (value, the scale of its rounding)
        value, scale = value if isinstance(value, tuple) else (value, 0.0)
        got = args[where] if not isinstance(where, str) else \
            returned if where == "return" else returned[int(where.split(".")[1])]
        if (value is None) != (got is None) or (value is not None and not same(got, value, scale)):
            return {"outcome": "wrong", "message": f"output {where} differs from the reference"}
    return {"outcome": "ok"}


def main():
    for case in json.load(sys.stdin):
        with np.errstate(all="ignore"):
            result = run_case(case)
        print(json.dumps({**case, **result}), flush=True)


if __name__ == "__main__":
    main()
