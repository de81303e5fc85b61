"""Calls into the compiled kernels, described as JSON cases on stdin, run in a child
process (see isolation.run_cases): one flushed JSON line per case on stdout, so a
crash kills this process and the parent names the case that did it.

A case is {"entry", "dims": [m, n, k], "act", "beta", "mutation": [kind, arg, seed]}.
The entry's valid arguments are built from the dims, one array argument is mutated,
the call is made, and the outcome is one of
  "ok"      the results equal the float64 numpy reference on the same (mutated) inputs,
  "error"   ValueError/TypeError raised,
  "wrong"   returned a result unequal to the reference, or accepted an input the
            reference rejects, or raised another exception type.
ENTRIES lists every public function of the pylayers._kernels modules it covers."""
import json
import sys

import numpy as np

from pylayers._kernels import dense, gemm, optim

MUTATIONS = ("valid", "none", "dtype", "noncontiguous", "fortran", "shape", "rank", "nan",
             "readonly", "unaligned", "scalar")
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
    "optim.rmsprop_update": (optimizer_args(1, [None, None, 0.01, 0.9, 0.0, 1e-7]),
                             rmsprop_reference, optim.rmsprop_update),
    "optim.adagrad_update": (optimizer_args(1, [0.01, 1e-7]), adagrad_reference,
                             optim.adagrad_update),
}


# ---- mutations ------------------------------------------------------------------------

def mutate(args, kind, index, rng):
    """Replace args[index] (an array) by a mutated version; return the new list."""
    args = list(args)
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
    elif kind == "nan" and x.size:
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


def array_indices(args):
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]


# ---- comparing --------------------------------------------------------------------

def same(got, expected):
    """Non-finite where the reference is (NaN and infinity may trade places: inf - inf),
    finite values equal to float32 accuracy."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    finite = np.isfinite(expected)
    if got.shape != expected.shape or not np.array_equal(np.isfinite(got), finite):
        return False
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    return np.allclose(got[finite], expected[finite], rtol=1e-4, atol=2e-5 * scale)


def run_case(case):
    build, reference, kernel = ENTRIES[case["entry"]]
    rng = np.random.default_rng(case["seed"])
    args = build(rng, *case["dims"], case)
    kind = case["mutation"]
    if kind != "valid" and array_indices(args):
        args = mutate(args, kind, array_indices(args)[case["arg"] % len(array_indices(args))], rng)
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
    for where, value in expected.items():
        got = returned if where == "return" else args[where]
        if not same(got, value):
            return {"outcome": "wrong", "message": f"output {where} differs from the reference"}
    return {"outcome": "ok"}


def main():
    for case in json.load(sys.stdin):
        with np.errstate(all="ignore"):
            result = run_case(case)
        print(json.dumps({**case, **result}), flush=True)


if __name__ == "__main__":
    main()
