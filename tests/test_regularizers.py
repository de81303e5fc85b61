"""pylayers.regularizers against Keras 3: penalty values, gradients, names and configs."""
import json
from pathlib import Path

import numpy as np
import pytest

from pylayers import regularizers

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "init" /
                        "keras_reference.json").read_text())
KERAS_CASES = REFERENCE["regularizers"]


def numerical_gradient(penalty, w, step=1e-6):
    """Central differences of `penalty` at the float64 point w."""
    grad = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        bump = np.zeros_like(w)
        bump[index] = step
        grad[index] = (penalty(w + bump) - penalty(w - bump)) / (2 * step)
    return grad


def away_from_zero(shape, seed):
    """Float64 weights with |w| >= 0.1, where |w| is differentiable."""
    w = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(w) < 0.1, 0.5, w)


@pytest.mark.parametrize("case", KERAS_CASES,
                         ids=lambda c: c["class_name"] + c["config"].get("mode", ""))
def test_penalty_and_gradient_match_keras(case):
    regularizer = getattr(regularizers, case["class_name"])(**case["config"])
    w = np.array(case["w"], dtype=np.float32)
    value = regularizer(w)
    assert isinstance(value, float)
    assert value == pytest.approx(case["value"], rel=1e-5)
    gradient = regularizer.gradient(w)
    assert gradient.dtype == np.float32 and gradient.shape == w.shape
    np.testing.assert_allclose(gradient, case["gradient"], rtol=1e-4, atol=1e-6)


REGULARIZERS = [regularizers.L1(0.3), regularizers.L2(0.2), regularizers.L1L2(0.1, 0.05),
                regularizers.OrthogonalRegularizer(0.1, "rows"),
                regularizers.OrthogonalRegularizer(0.2, "columns")]


@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=lambda r: repr(r.get_config()))
def test_gradient_matches_finite_differences(regularizer):
    w = away_from_zero((6, 4), seed=1)
    np.testing.assert_allclose(regularizer.gradient(w), numerical_gradient(regularizer, w),
                               rtol=1e-4, atol=1e-6)


def test_orthogonal_gradient_with_a_zero_row():
    """A row of zeros is divided by epsilon, not by its norm, as in keras.ops.normalize."""
    w = away_from_zero((4, 3), seed=2)
    w[2] = 0.0
    regularizer = regularizers.OrthogonalRegularizer(0.5)
    np.testing.assert_allclose(regularizer.gradient(w), numerical_gradient(regularizer, w, 1e-9),
                               rtol=1e-4, atol=1e-5)


def test_l1_l2_formulas_in_float64():
    w = np.array([[0.5, -2.0], [0.0, 3.0]], dtype=np.float32)
    assert regularizers.L1L2(0.1, 0.2)(w) == pytest.approx(0.1 * 5.5 + 0.2 * 13.25, rel=1e-12)
    np.testing.assert_allclose(regularizers.L1L2(0.1, 0.2).gradient(w),
                               [[0.1 + 0.2, -0.1 - 0.8], [0.0, 0.1 + 1.2]], rtol=1e-6)


def test_l1_subgradient_at_zero_is_zero():
    """d|w|/dw at 0 is 0, as TensorFlow and PyTorch compute it (JAX gives +1)."""
    np.testing.assert_array_equal(regularizers.L1(0.5).gradient(np.zeros(3)), np.zeros(3))


def test_defaults_are_keras():
    assert regularizers.L1().get_config() == {"l1": 0.01}
    assert regularizers.L2().get_config() == {"l2": 0.01}
    assert regularizers.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.L1(None).l1 == 0.01 and regularizers.L1L2(l1=None).l1 == 0.0
    assert regularizers.OrthogonalRegularizer().get_config() == {"factor": 0.01, "mode": "rows"}
    assert regularizers.l1_l2 is regularizers.L1L2


def test_base_regularizer_and_a_subclass_without_gradient():
    base = regularizers.Regularizer()
    assert base(np.ones(3)) == 0.0
    np.testing.assert_array_equal(base.gradient(np.ones(3)), np.zeros(3))

    class Penalty(regularizers.Regularizer):
        def __call__(self, x):
            return float(np.sum(x))

    with pytest.raises(NotImplementedError, match="Penalty defines a penalty but not its gradient"):
        Penalty().gradient(np.ones(3))


@pytest.mark.parametrize("name, expected", sorted(REFERENCE["regularizer_names"].items()))
def test_get_by_name_matches_keras(name, expected):
    if expected is None:
        with pytest.raises(ValueError, match=f"Could not interpret regularizer identifier: {name}"):
            regularizers.get(name)
        return
    class_name, keras_config = expected
    found = regularizers.get(name)
    assert type(found).__name__ == class_name
    # Keras stores L1's factor as float32 (0.009999999776...); ours keeps 0.01.
    assert found.get_config() == {key: pytest.approx(value, rel=1e-6) if isinstance(value, float)
                                  else value for key, value in keras_config.items()}


def test_get_accepts_the_other_identifier_kinds():
    assert regularizers.get(None) is None
    l2 = regularizers.L2(0.5)
    assert regularizers.get(l2) is l2
    assert isinstance(regularizers.get(regularizers.L1), regularizers.L1)
    assert isinstance(regularizers.get("l1_l2"), regularizers.L1L2)  # Keras rejects this name
    assert regularizers.get(np.sum) is np.sum
    found = regularizers.get({"class_name": "L1L2", "config": {"l1": 0.2, "l2": 0.1}})
    assert found.get_config() == {"l1": 0.2, "l2": 0.1}
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: 3"):
        regularizers.get(3)


@pytest.mark.parametrize("keras_serialized", [s for s in REFERENCE["serialized"]
                                              if s["module"] == "keras.regularizers"])
def test_serialize_matches_keras(keras_serialized):
    assert regularizers.serialize(regularizers.deserialize(keras_serialized)) == keras_serialized


@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=lambda r: repr(r.get_config()))
def test_config_round_trip_through_json(regularizer):
    serialized = json.loads(json.dumps(regularizers.serialize(regularizer)))
    rebuilt = regularizers.deserialize(serialized)
    assert type(rebuilt) is type(regularizer)
    assert rebuilt.get_config() == regularizer.get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: regularizers.L1(-1), "Received: l1=-1"),
    (lambda: regularizers.L2("a"), "Received: l2='a'"),
    (lambda: regularizers.L1L2(l1=float("nan")), "Received: l1=nan"),
    (lambda: regularizers.L1L2(l2=float("inf")), "Received: l2=inf"),
    (lambda: regularizers.L1(True), "Received: l1=True"),
    (lambda: regularizers.OrthogonalRegularizer(factor=-0.1), "Received: factor=-0.1"),
    (lambda: regularizers.OrthogonalRegularizer(mode="diagonal"), "Received: mode='diagonal'"),
])
def test_bad_arguments_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_orthogonal_regularizer_input_checks():
    with pytest.raises(ValueError, match=r"rank 2. Received: inputs.shape=\(2, 2, 2\)"):
        regularizers.OrthogonalRegularizer()(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="at least 2 columns"):
        regularizers.OrthogonalRegularizer(mode="columns").gradient(np.ones((3, 1)))
