"""Hypothesis strategies that turn a valid input array into a hostile one: another
dtype, a non-contiguous or reversed layout, NaN/inf/huge values, a zero-size or
different shape. Shared by the op and layer fuzz suites."""
import os

import numpy as np
from hypothesis import strategies as st

# Examples per op or layer case; PYLAYERS_FUZZ_EXAMPLES=500 for a long fuzzing run.
FUZZ_EXAMPLES = int(os.environ.get("PYLAYERS_FUZZ_EXAMPLES", "25"))

FLOAT_DTYPES = ("float16", "float32", "float64")
OTHER_REAL_DTYPES = ("int8", "int32", "int64", "uint8", "bool")
NON_REAL_DTYPES = ("complex64", "complex128", "object", "<U4")
SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 0.0, 1e4, -1e4)


@st.composite
def hostile(draw, x):
    """x (an ndarray) mutated along each axis of trouble, each drawn independently."""
    x = np.array(x, dtype=np.float64)
    x = draw(reshaped(x))
    if x.size and draw(st.booleans()):
        positions = draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=3))
        x.flat[positions] = [draw(st.sampled_from(SPECIAL_VALUES)) for _ in positions]
    dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES + OTHER_REAL_DTYPES + NON_REAL_DTYPES
                                          if draw(st.integers(0, 3)) == 0 else FLOAT_DTYPES)))
    if dtype.kind in "biu":   # small integers: no overflow in any integer dtype
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=3.0, neginf=-3.0), -3, 3).round()
    return draw(laid_out(x.astype(dtype)))


@st.composite
def reshaped(draw, x):
    kind = draw(st.sampled_from(["same", "same", "same", "zero", "resize", "rank"]))
    shape = list(x.shape)
    if kind == "zero" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = 0
    elif kind == "resize" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(1, 6))
    elif kind == "rank":
        shape = shape[:-1] if shape and draw(st.booleans()) else shape + [draw(st.integers(1, 3))]
    if kind == "same":
        return x
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return np.random.default_rng(seed).uniform(-3, 3, size=shape)


@st.composite
def laid_out(draw, x):
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed"]))
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided" and x.ndim:
        return np.repeat(x, 2, axis=-1)[..., ::2]
    if layout == "reversed" and x.ndim:
        return np.flip(x, axis=0).copy()[::-1] if x.shape[0] else x
    return x


def float64_view(x):
    """What a float32-mode op or layer computes on, as float64: floats rounded to
    float32 first (the one conversion at the boundary), integers and booleans as
    their float values."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return x.astype(np.float32).astype(np.float64)
    return x


def is_real(x):
    return not isinstance(x, np.ndarray) or x.dtype.kind in "biuf"


def same(got, expected, inputs=()):
    """Non-finite exactly where the reference (rounded to float32) is; finite values
    equal to float32 accuracy relative to the largest magnitude among inputs and
    outputs."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    with np.errstate(over="ignore"):   # beyond float32's range float32 says inf
        expected = expected.astype(np.float32).astype(np.float64)
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), finite):
        return False
    magnitudes = [np.max(np.abs(a[np.isfinite(a)]), initial=0.0)
                  for a in [expected] + [np.asarray(i, dtype=np.float64) for i in inputs]]
    return np.allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-5 * max(1.0, *magnitudes))
