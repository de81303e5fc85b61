"""Every differentiable op: finite-difference gradients (float64 reference mode), the
float32 forward against numpy, and Python operators recording on the tape."""
import inspect

import numpy as np
import pytest

from pylayers import ops
from pylayers.testing import check_op_gradients

rng = np.random.default_rng(0)


def arr(*shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape)


def away_from_zero(*shape):
    return np.sign(arr(*shape)) * rng.uniform(0.3, 2.0, size=shape)


# op name -> (callable, args). Inputs avoid kinks (|x| near 0 for relu/abs, ties for max).
GRADIENT_CASES = {
    "add": (ops.add, (arr(3, 4), arr(4))),
    "subtract": (ops.subtract, (arr(3, 1), arr(3, 4))),
    "multiply": (ops.multiply, (arr(2, 3, 4), arr(3, 1))),
    "divide": (ops.divide, (arr(3, 4), rng.uniform(0.5, 2.0, size=(4,)))),
    "power": (ops.power, (rng.uniform(0.5, 2.0, size=(3, 4)), arr(3, 4))),
    "maximum": (ops.maximum, (arr(3, 4), arr(3, 4))),
    "minimum": (ops.minimum, (arr(3, 4), arr(4))),
    "negative": (ops.negative, (arr(3, 4),)),
    "exp": (ops.exp, (arr(3, 4),)),
    "log": (ops.log, (rng.uniform(0.2, 3.0, size=(3, 4)),)),
    "sqrt": (ops.sqrt, (rng.uniform(0.2, 3.0, size=(3, 4)),)),
    "square": (ops.square, (arr(3, 4),)),
    "abs": (ops.abs, (away_from_zero(3, 4),)),
    "clip": (lambda x: ops.clip(x, -1.0, 1.0), (np.array([-1.7, -0.5, 0.2, 0.9, 1.6]),)),
    "where": (lambda a, b: ops.where(np.array([True, False, True]), a, b), (arr(2, 3), arr(3))),
    "matmul": (ops.matmul, (arr(4, 3), arr(3, 5))),
    "matmul_batched": (ops.matmul, (arr(2, 4, 3), arr(3, 5))),
    "matmul_vector": (ops.matmul, (arr(3), arr(2, 3, 4))),
    "sum": (lambda x: ops.sum(x, axis=1), (arr(3, 4, 2),)),
    "mean": (lambda x: ops.mean(x, axis=(0, 2), keepdims=True), (arr(3, 4, 2),)),
    "max": (lambda x: ops.max(x, axis=-1), (arr(3, 5),)),
    "min": (lambda x: ops.min(x, axis=0), (arr(3, 5),)),
    "reshape": (lambda x: ops.reshape(x, (4, 3)), (arr(2, 6),)),
    "transpose": (lambda x: ops.transpose(x, (2, 0, 1)), (arr(2, 3, 4),)),
    "expand_dims": (lambda x: ops.expand_dims(x, 1), (arr(2, 3),)),
    "squeeze": (lambda x: ops.squeeze(x, 1), (arr(2, 1, 3),)),
    "concatenate": (lambda a, b: ops.concatenate([a, b], axis=1), (arr(2, 3), arr(2, 2))),
    "stack": (lambda a, b: ops.stack([a, b], axis=0), (arr(2, 3), arr(2, 3))),
    "take_slice": (lambda x: ops.take_slice(x, (slice(None), [0, 2, 2])), (arr(2, 4),)),
    "relu": (ops.relu, (away_from_zero(3, 4),)),
    "sigmoid": (ops.sigmoid, (arr(3, 4, low=-30, high=30),)),
    "tanh": (ops.tanh, (arr(3, 4),)),
    "elu": (lambda x: ops.elu(x, 0.7), (away_from_zero(3, 4),)),
    "leaky_relu": (ops.leaky_relu, (away_from_zero(3, 4),)),
    "softmax": (ops.softmax, (arr(3, 5),)),
    "log_softmax": (lambda x: ops.log_softmax(x, axis=0), (arr(3, 5),)),
    "softplus": (ops.softplus, (arr(3, 4, low=-20, high=20),)),
    "softsign": (ops.softsign, (arr(3, 4),)),
    "selu": (ops.selu, (away_from_zero(3, 4),)),
    "silu": (ops.silu, (arr(3, 4),)),
    "gelu": (lambda x: ops.gelu(x, approximate=False), (arr(3, 4),)),
    "gelu_tanh": (lambda x: ops.gelu(x, approximate=True), (arr(3, 4),)),
    "hard_sigmoid": (ops.hard_sigmoid, (np.array([-4.0, -1.0, 0.5, 2.0, 5.0]),)),
    "relu6": (ops.relu6, (np.array([-1.0, 0.5, 3.0, 5.5, 7.0]),)),
}

# Public ops that are not differentiable functions of float inputs.
NOT_DIFFERENTIABLE = {"convert_to_numpy", "convert_to_tensor", "shape", "cast", "value_of",
                      "reference_mode", "Tape", "Tensor", "Variable"}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_gradient_matches_finite_differences(name):
    op, args = GRADIENT_CASES[name]
    check_op_gradients(op, *args)


def test_every_public_op_has_a_gradient_check():
    public = {name for name, obj in vars(ops).items()
              if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))}
    checked = {name.split("_batched")[0].split("_vector")[0].split("_tanh")[0]
               for name in GRADIENT_CASES}
    assert public - NOT_DIFFERENTIABLE - checked == set()


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_float32_forward_matches_float64_reference(name):
    op, args = GRADIENT_CASES[name]
    expected = np.asarray(ops.convert_to_numpy(_reference(op, args)))
    got = op(*[a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
               for a in args])
    assert np.asarray(got).dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def _reference(op, args):
    with ops.reference_mode():
        return op(*args)


def test_python_operators_record_and_differentiate():
    x = rng.uniform(0.5, 1.5, size=(3, 4))
    w = ops.Variable(rng.uniform(-1, 1, size=(4, 2)))
    with ops.reference_mode(), ops.Tape(watch=[w]) as tape:
        leaf = tape.leaf(x)
        out = ops.sum((leaf @ w) * 2.0 - 1.0 / leaf[:, :2] + leaf.T[0:2].T ** 2)
        (dx,) = tape.backward(out, np.float64(1.0), [leaf])
    expected_dx = 2.0 * np.repeat(w.value.sum(axis=1, keepdims=True).T, 3, 0).astype(np.float64)
    expected_dx[:, :2] += 1.0 / x[:, :2] ** 2 + 2 * x[:, :2]
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-6)
    np.testing.assert_allclose(w.grad, 2.0 * np.repeat(x.sum(axis=0)[:, None], 2, 1), rtol=1e-6)


def test_numpy_on_the_left_defers_to_tensor_operators():
    with ops.Tape() as tape:
        leaf = tape.leaf(np.ones((2, 2), dtype=np.float32))
        out = np.full((2, 2), 3.0, dtype=np.float32) * leaf
    assert isinstance(out, ops.Tensor)
    (d,) = tape.backward(out, np.ones((2, 2), dtype=np.float32), [leaf])
    np.testing.assert_array_equal(d, np.full((2, 2), 3.0))


def test_ops_outside_a_tape_return_plain_float32_arrays():
    y = ops.relu(ops.matmul(np.ones((2, 3), np.float32), ops.Variable(np.ones((3, 4)))))
    assert type(y) is np.ndarray and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.full((2, 4), 3.0))
