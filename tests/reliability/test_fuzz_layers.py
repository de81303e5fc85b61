"""Fuzzing every public layer (through the GRADIENT_CASES registries of tests/layers,
which every layer family must fill) with hostile inputs after building it on its own
case input: the float32 call returns the float64 reference mode's answer, with the
shape compute_output_shape promises, or raises a ValueError/TypeError naming the layer."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inputs import FUZZ_EXAMPLES, float64_view, hostile, is_real, same
from pylayers.ops import reference_mode
from pylayers.testing import float64_weights
from pylayers.utils.rng import set_random_seed
from registries import gradient_cases

CASES = gradient_cases("layers")


def built(name):
    factory, x, training = CASES[name]
    layer = factory()
    layer([np.asarray(v, np.float32) for v in x] if isinstance(x, list) else np.asarray(x, np.float32))
    return layer, training


def shapes(x):
    return [tuple(np.shape(v)) for v in x] if isinstance(x, list) else tuple(np.shape(x))


def reference_answer(layer, x, training):
    """The layer's float64 reference-mode output on the values the float32 call sees,
    or None if the reference refuses them."""
    if not all(is_real(v) for v in (x if isinstance(x, list) else [x])):
        return None
    x64 = [float64_view(v) for v in x] if isinstance(x, list) else float64_view(x)
    try:
        with reference_mode(), float64_weights(layer), np.errstate(all="ignore"):
            set_random_seed(0)
            return np.asarray(layer(x64, training=training))
    except (ValueError, TypeError, IndexError):
        return None


def check_layer_call(name, x):
    layer, training = built(name)
    expected = reference_answer(layer, x, training)
    try:
        set_random_seed(0)
        with np.errstate(all="ignore"):
            got = layer(x, training=training)
    except (ValueError, TypeError) as error:
        assert layer.name in str(error), f"{name}: error does not name the layer: {error!r}"
        return "error"
    assert expected is not None, f"{name} accepted inputs its reference refuses: {shapes(x)}"
    assert got.shape == tuple(layer.compute_output_shape(shapes(x))), \
        f"{name}: output {got.shape} for input {shapes(x)} (silent broadcast?)"
    inputs = x if isinstance(x, list) else [x]
    assert same(got, expected, inputs), f"{name}: {got!r} != reference {expected!r}"
    return "ok"


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_layer_returns_reference_answer_or_a_named_error(name, data):
    x = CASES[name][1]
    if isinstance(x, list):
        x = [data.draw(hostile(v), label=f"input{i}") for i, v in enumerate(x)]
    else:
        x = data.draw(hostile(x), label="input")
    check_layer_call(name, x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_on_its_own_case_matches_reference(name):
    assert check_layer_call(name, CASES[name][1]) == "ok"
