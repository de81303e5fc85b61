"""Merge layers: gradients, shapes, Keras' shape errors."""
import numpy as np
import pytest

from pylayers import layers
from pylayers.testing import check_layer_gradients

rng = np.random.default_rng(0)
a, b, c = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 1))

GRADIENT_CASES = {
    "Add": (layers.Add, [a, b, c], False),
    "Subtract": (layers.Subtract, [a, c], False),
    "Multiply": (layers.Multiply, [a, b, c], False),
    "Average": (layers.Average, [a, b], False),
    "Maximum": (layers.Maximum, [a, b], False),
    "Minimum": (layers.Minimum, [a, b], False),
    "Concatenate": (lambda: layers.Concatenate(axis=1), [a, rng.normal(size=(3, 2))], False),
    "Dot_2d": (lambda: layers.Dot(axes=1), [a, b], False),
    "Dot_3d_normalized": (lambda: layers.Dot(axes=(2, 2), normalize=True),
                          [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))], False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_merge_gradients_match_finite_differences(name):
    factory, inputs, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), inputs, training=training)


def test_merge_values_and_output_shapes():
    np.testing.assert_allclose(layers.Add()([a, b, c]), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(layers.Average()([a, b]), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(layers.Dot(axes=1)([a, b]), np.sum(a * b, axis=1, keepdims=True), rtol=1e-5)
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    np.testing.assert_allclose(layers.Dot(axes=(2, 2))([x, y]), np.einsum("bik,bjk->bij", x, y), rtol=1e-5)
    assert layers.Concatenate().compute_output_shape([(None, 4), (None, 2)]) == (None, 6)
    assert layers.Add().compute_output_shape([(None, 4), (None, 1)]) == (None, 4)
    assert layers.Dot(axes=1).compute_output_shape([(None, 4), (None, 4)]) == (None, 1)


@pytest.mark.parametrize("layer, shapes, message", [
    (layers.Add(name="add_bad"), [(2, 4), (2, 5)], r"add_bad.*incompatible shapes.*\(2, 4\).*\(2, 5\)"),
    (layers.Subtract(), [(2, 4), (2, 4), (2, 4)], "exactly 2 inputs"),
    (layers.Concatenate(name="cat_bad"), [(2, 4), (2, 5, 3)], r"cat_bad.*matching shapes"),
    (layers.Concatenate(axis=1), [(2, 4, 3), (2, 4, 5)], r"\(2, 4, 3\).*\(2, 4, 5\)"),
    (layers.Multiply(), [(2, 4), (3, 4)], "different batch sizes"),
    (layers.Dot(axes=1), [(2, 4), (2, 5)], "incompatibility"),
])
def test_merge_shape_errors_name_layer_and_shapes(layer, shapes, message):
    with pytest.raises(ValueError, match=message):
        layer([np.zeros(s) for s in shapes])


def test_merge_needs_a_list():
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Add()(np.zeros((2, 3)))
