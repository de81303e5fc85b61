"""Reshaping layers: values against hand-computed results, finite-difference gradients,
run_layer_test checks and bad arguments or inputs."""
import numpy as np
import pytest

from pylayers import layers
from pylayers.testing import check_layer_gradients, run_layer_test

rng = np.random.default_rng(0)


def normal(*shape):
    return rng.normal(size=shape)


GRADIENT_CASES = {
    "ZeroPadding1D": (lambda: layers.ZeroPadding1D((1, 2)), normal(2, 3, 2), False),
    "ZeroPadding2D_asymmetric": (lambda: layers.ZeroPadding2D(((1, 0), (2, 1))), normal(2, 3, 2, 2), False),
    "Cropping2D": (lambda: layers.Cropping2D(((1, 0), (1, 2))), normal(2, 4, 5, 2), False),
    "UpSampling1D": (lambda: layers.UpSampling1D(3), normal(2, 3, 2), False),
    "UpSampling2D_nearest": (lambda: layers.UpSampling2D((2, 3)), normal(2, 2, 3, 2), False),
    "UpSampling2D_bilinear": (lambda: layers.UpSampling2D(2, interpolation="bilinear"),
                              normal(2, 3, 2, 2), False),
    "Permute": (lambda: layers.Permute((2, 3, 1)), normal(2, 3, 4, 2), False),
    "RepeatVector": (lambda: layers.RepeatVector(3), normal(2, 4), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


def test_values():
    x = np.arange(6.0).reshape(1, 2, 3, 1)
    np.testing.assert_array_equal(layers.ZeroPadding2D(((1, 0), (0, 1)))(x)[0, :, :, 0],
                                  [[0, 0, 0, 0], [0, 1, 2, 0], [3, 4, 5, 0]])
    np.testing.assert_array_equal(layers.Cropping2D(((0, 1), (1, 0)))(x)[0, :, :, 0], [[1, 2]])
    np.testing.assert_array_equal(layers.UpSampling2D((1, 2))(x)[0, 0, :, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(layers.UpSampling1D(2)(np.array([[[1.0], [2.0]]])).ravel(),
                                  [1, 1, 2, 2])
    np.testing.assert_array_equal(layers.RepeatVector(2)(np.array([[1.0, 2.0]])), [[[1, 2], [1, 2]]])
    assert layers.Permute((2, 1))(np.zeros((2, 3, 4))).shape == (2, 4, 3)


def test_bilinear_upsampling_uses_half_pixel_centres_with_clamped_edges():
    """jax.image.resize (Keras 3) on [0, 1, 2] by 2: [0, .25, .75, 1.25, 1.75, 2]."""
    x = np.array([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1)
    y = layers.UpSampling2D((1, 2), interpolation="bilinear")(x)
    np.testing.assert_allclose(y.ravel(), [0, 0.25, 0.75, 1.25, 1.75, 2.0])


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape", [
    (layers.ZeroPadding1D, {}, (2, 3, 4), (2, 5, 4)),
    (layers.ZeroPadding2D, {"padding": (1, 2)}, (2, 3, 4, 2), (2, 5, 8, 2)),
    (layers.Cropping2D, {"cropping": 1}, (2, 4, 5, 2), (2, 2, 3, 2)),
    (layers.UpSampling1D, {"size": 3}, (2, 3, 4), (2, 9, 4)),
    (layers.UpSampling2D, {}, (2, 3, 4, 2), (2, 6, 8, 2)),
    (layers.UpSampling2D, {"interpolation": "bilinear"}, (2, 3, 4, 2), (2, 6, 8, 2)),
    (layers.Permute, {"dims": (2, 1)}, (2, 3, 4), (2, 4, 3)),
    (layers.RepeatVector, {"n": 4}, (2, 3), (2, 4, 3)),
])
def test_run_layer_test(cls, kwargs, in_shape, out_shape):
    run_layer_test(cls, kwargs, in_shape, out_shape)


@pytest.mark.parametrize("factory, message", [
    (lambda: layers.ZeroPadding2D(-1), "padding"),
    (lambda: layers.ZeroPadding2D((1, 2, 3)), "padding"),
    (lambda: layers.Cropping2D("x"), "cropping"),
    (lambda: layers.UpSampling2D(0), "size"),
    (lambda: layers.UpSampling2D(interpolation="cubic"), "interpolation"),
    (lambda: layers.Permute((1, 3)), "dims"),
    (lambda: layers.RepeatVector(0), "n=0"),
])
def test_bad_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.parametrize("layer, shape, message", [
    (lambda: layers.Cropping2D(2, name="crop_all"), (1, 4, 6, 1), r"crop_all.*\(1, 4, 6, 1\)"),
    (lambda: layers.ZeroPadding2D(name="zp_rank"), (1, 4, 4), r"zp_rank.*ndim=4"),
    (lambda: layers.RepeatVector(2, name="rv_rank"), (1, 4, 4), r"rv_rank.*ndim=2"),
    (lambda: layers.Permute((2, 1), name="perm_rank"), (1, 4, 4, 1), r"perm_rank.*\(1, 4, 4, 1\)"),
])
def test_bad_input_shapes(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer()(np.zeros(shape))
