"""pylayers.constraints against Keras 3 outputs and float64 references of its formulas."""
import json
from pathlib import Path

import numpy as np
import pytest

from pylayers import constraints

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "init" /
                        "keras_reference.json").read_text())
EPSILON = 1e-7


def norms64(w, axis):
    axis = tuple(axis) if isinstance(axis, list) else axis
    return np.sqrt(np.square(w.astype(np.float64)).sum(axis=axis, keepdims=True))


def reference(class_name, config, w):
    """The Keras formula in float64."""
    w = w.astype(np.float64)
    if class_name == "NonNeg":
        return np.maximum(w, 0)
    defaults = {"MaxNorm": {"max_value": 2, "axis": 0}, "UnitNorm": {"axis": 0},
                "MinMaxNorm": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}}
    args = {**defaults[class_name], **config}
    n = norms64(w, args["axis"])
    if class_name == "UnitNorm":
        return w / (EPSILON + n)
    if class_name == "MaxNorm":
        desired = np.clip(n, 0, args["max_value"])
    else:
        clipped = np.clip(n, args["min_value"], args["max_value"])
        desired = args["rate"] * clipped + (1 - args["rate"]) * n
    return w * desired / (EPSILON + n)


@pytest.mark.parametrize("case", REFERENCE["constraints"],
                         ids=lambda c: c["class_name"] + json.dumps(c["config"]))
def test_outputs_match_keras_and_the_float64_formula(case):
    w = np.array(case["w"], dtype=np.float32)
    out = getattr(constraints, case["class_name"])(**case["config"])(w)
    assert out.dtype == np.float32 and out.shape == w.shape
    np.testing.assert_allclose(out, case["out"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out, reference(case["class_name"], case["config"], w),
                               rtol=1e-6, atol=1e-7)


@pytest.fixture
def kernel():
    """A conv kernel (3, 3, 4, 5) whose filters have norms between about 1 and 14."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal((3, 3, 4, 5)) * rng.uniform(0.2, 2.5, 5)).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, -1, [0, 1, 2], (0, 1)])
def test_max_norm_caps_norms_and_keeps_small_slices(kernel, axis):
    out = constraints.MaxNorm(max_value=3.0, axis=axis)(kernel)
    before, after = norms64(kernel, axis), norms64(out, axis)
    assert (after <= 3.0 * (1 + 1e-6)).all()
    small = np.broadcast_to(before < 3.0, kernel.shape)
    np.testing.assert_allclose(out[small], kernel[small], rtol=1e-6)
    np.testing.assert_allclose(out, reference("MaxNorm", {"max_value": 3.0, "axis": axis},
                                              kernel), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axis", [0, -1, [0, 1, 2]])
def test_unit_norm_gives_norm_one(kernel, axis):
    np.testing.assert_allclose(norms64(constraints.UnitNorm(axis)(kernel), axis), 1.0, rtol=1e-6)


@pytest.mark.parametrize("min_value, max_value", [(0.0, 1.0), (2.0, 4.0), (5.0, 5.0)])
def test_min_max_norm_at_full_rate_lands_in_the_interval(kernel, min_value, max_value):
    axis = [0, 1, 2]
    after = norms64(constraints.MinMaxNorm(min_value, max_value, axis=axis)(kernel), axis)
    assert (after >= min_value * (1 - 1e-6)).all() and (after <= max_value * (1 + 1e-6)).all()


def test_min_max_norm_rate_moves_part_of_the_way():
    w = np.array([[3.0], [4.0]], dtype=np.float32)  # norm 5
    out = constraints.MinMaxNorm(0.5, 1.0, rate=0.25)(w)
    assert norms64(out, 0).item() == pytest.approx(0.25 * 1.0 + 0.75 * 5.0, rel=1e-6)
    np.testing.assert_array_equal(constraints.MinMaxNorm(0.5, 1.0, rate=0.0)(w), w)


def test_non_neg_zeroes_negatives_only(kernel):
    out = constraints.NonNeg()(kernel)
    assert (out >= 0).all()
    np.testing.assert_array_equal(out[kernel > 0], kernel[kernel > 0])


def test_zero_slices_stay_zero_thanks_to_epsilon():
    w = np.zeros((3, 2), dtype=np.float32)
    for constraint in [constraints.MaxNorm(), constraints.UnitNorm(), constraints.MinMaxNorm()]:
        np.testing.assert_array_equal(constraint(w), w)


def test_inputs_of_other_dtypes_give_float32():
    assert constraints.MaxNorm()(np.array([[3, 0], [4, 0]])).dtype == np.float32
    assert constraints.NonNeg()(np.array([-1.0, 2.0])).dtype == np.float32
    assert constraints.Constraint()([1, 2]).dtype == np.float32


def test_defaults_are_keras():
    assert constraints.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert constraints.UnitNorm().get_config() == {"axis": 0}
    assert constraints.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0,
                                                     "rate": 1.0, "axis": 0}
    assert constraints.NonNeg().get_config() == {}
    assert constraints.max_norm is constraints.MaxNorm


@pytest.mark.parametrize("name, expected", sorted(REFERENCE["constraint_names"].items()))
def test_get_by_name_matches_keras(name, expected):
    if expected is None:
        with pytest.raises(ValueError, match=f"Could not interpret constraint identifier: {name}"):
            constraints.get(name)
        return
    found = constraints.get(name)
    assert [type(found).__name__, found.get_config()] == expected


def test_get_accepts_the_other_identifier_kinds():
    assert constraints.get(None) is None
    unit = constraints.UnitNorm(axis=1)
    assert constraints.get(unit) is unit
    assert isinstance(constraints.get(constraints.NonNeg), constraints.NonNeg)
    assert constraints.get(np.abs) is np.abs
    found = constraints.get({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": [0, 1]}})
    assert found.get_config() == {"max_value": 3, "axis": [0, 1]}
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 1.5"):
        constraints.get(1.5)


@pytest.mark.parametrize("keras_serialized", [s for s in REFERENCE["serialized"]
                                              if s["module"] == "keras.constraints"])
def test_serialize_matches_keras(keras_serialized):
    assert constraints.serialize(constraints.deserialize(keras_serialized)) == keras_serialized


@pytest.mark.parametrize("constraint", [
    constraints.MaxNorm(1.5, axis=[0, 1, 2]), constraints.UnitNorm(axis=-1),
    constraints.NonNeg(), constraints.MinMaxNorm(0.5, 2.0, 0.3, axis=1)],
    ids=lambda c: type(c).__name__)
def test_config_round_trip_through_json(constraint, kernel):
    rebuilt = constraints.deserialize(json.loads(json.dumps(constraints.serialize(constraint))))
    assert type(rebuilt) is type(constraint)
    assert rebuilt.get_config() == constraint.get_config()
    np.testing.assert_array_equal(rebuilt(kernel), constraint(kernel))


@pytest.mark.parametrize("make, message", [
    (lambda: constraints.MaxNorm(max_value=-1), "max_value=-1"),
    (lambda: constraints.MaxNorm(max_value="2"), "max_value='2'"),
    (lambda: constraints.MaxNorm(axis=1.5), "axis=1.5"),
    (lambda: constraints.UnitNorm(axis="rows"), "axis='rows'"),
    (lambda: constraints.UnitNorm(axis=[]), r"axis=\[\]"),
    (lambda: constraints.UnitNorm(axis=True), "axis=True"),
    (lambda: constraints.MinMaxNorm(min_value=2.0, max_value=1.0), "min_value=2.0"),
    (lambda: constraints.MinMaxNorm(rate=1.5), "rate=1.5"),
    (lambda: constraints.MinMaxNorm(rate=-0.1), "rate=-0.1"),
    (lambda: constraints.MinMaxNorm(min_value=float("nan")), "min_value=nan"),
])
def test_bad_arguments_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_axis_out_of_range_names_the_constraint_and_shape():
    with pytest.raises(ValueError, match=r"MaxNorm: axis=2 is out of range .* \(3, 4\)"):
        constraints.MaxNorm(axis=2)(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"UnitNorm: axis=\[0, 3\]"):
        constraints.UnitNorm(axis=[0, 3])(np.ones((3, 4)))
