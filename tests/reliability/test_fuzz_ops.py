"""Fuzzing every public op (through the GRADIENT_CASES registry of tests/ops) with
hostile inputs: the float32 op returns numpy's float64 answer on the same values, or
raises a ValueError/TypeError whose message starts with the op's name."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inputs import FUZZ_EXAMPLES, float64_view, hostile, is_real, same
from registries import gradient_cases

CASES = gradient_cases("ops")


def _shift(x, axis):
    """x minus its max along axis; an empty axis has nothing to shift (and np.max no
    answer), so softmax of an empty array is the empty array, as in Keras."""
    return x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)


def _softmax(x, axis=-1):
    e = np.exp(_shift(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = _shift(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_erf = np.vectorize(math.erf, otypes=[np.float64])

# case name -> the same computation written directly in float64 numpy
NUMPY_REFERENCE = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "power": np.power, "maximum": np.maximum, "minimum": np.minimum, "negative": np.negative,
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "square": np.square, "abs": np.abs,
    "clip": lambda x: np.clip(x, -1.0, 1.0),
    "where": lambda a, b: np.where(np.array([True, False, True]), a, b),
    "matmul": np.matmul, "matmul_batched": np.matmul, "matmul_vector": np.matmul,
    "sum": lambda x: np.sum(x, axis=1), "mean": lambda x: np.mean(x, axis=(0, 2), keepdims=True),
    "max": lambda x: np.max(x, axis=-1), "min": lambda x: np.min(x, axis=0),
    "reshape": lambda x: np.reshape(x, (4, 3)), "transpose": lambda x: np.transpose(x, (2, 0, 1)),
    "expand_dims": lambda x: np.expand_dims(x, 1), "squeeze": lambda x: np.squeeze(x, 1),
    "concatenate": lambda a, b: np.concatenate([a, b], axis=1),
    "stack": lambda a, b: np.stack([a, b], axis=0),
    "take_slice": lambda x: x[:, [0, 2, 2]],
    "relu": lambda x: np.maximum(x, 0), "sigmoid": _sigmoid, "tanh": np.tanh,
    "elu": lambda x: _elu(x, 0.7), "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "softmax": _softmax, "log_softmax": lambda x: _log_softmax(x, 0),
    "softplus": lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "selu": lambda x: 1.0507009873554805 * _elu(x, 1.6732632423543772),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "relu6": lambda x: np.clip(x, 0, 6),
}


def test_every_op_case_has_a_numpy_reference():
    assert set(CASES) == set(NUMPY_REFERENCE)


def numpy_answer(name, args):
    """numpy's float64 answer on the values the op sees, or None if numpy refuses."""
    try:
        with np.errstate(all="ignore"):
            return NUMPY_REFERENCE[name](*[float64_view(a) for a in args])
    except (ValueError, TypeError, IndexError):
        return None


def check_op_call(name, args):
    op = CASES[name][0]
    expected = numpy_answer(name, args) if all(is_real(a) for a in args) else None
    try:
        with np.errstate(all="ignore"):
            got = op(*args)
    except (ValueError, TypeError) as error:
        assert str(error).startswith("ops."), f"{name}: unnamed error {error!r}"
        return "error"
    assert expected is not None, f"{name} accepted inputs numpy refuses: {args}"
    assert same(got, expected, [a for a in args if isinstance(a, np.ndarray)]), \
        f"{name}: {got!r} != numpy {expected!r} for {args}"
    return "ok"


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_op_returns_numpy_answer_or_a_named_error(name, data):
    args = [data.draw(hostile(a), label=f"arg{i}") if isinstance(a, np.ndarray) else a
            for i, a in enumerate(CASES[name][1])]
    check_op_call(name, args)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_on_its_own_case_matches_numpy(name):
    assert check_op_call(name, list(CASES[name][1])) == "ok"
