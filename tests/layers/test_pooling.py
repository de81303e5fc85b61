"""Pooling layers: compiled kernels against the float64 reference, finite-difference
gradients, thread agreement, Keras shapes and defaults, bad inputs."""
import numpy as np
import pytest

import pylayers
from pylayers import layers
from pylayers.testing import (check_layer_gradients, check_layer_native_matches_reference,
                              run_layer_test)

rng = np.random.default_rng(0)


def distinct(*shape):
    """Values with well separated entries, so a max never changes under small steps."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0


GRADIENT_CASES = {
    "MaxPooling1D_same": (lambda: layers.MaxPooling1D(3, strides=2, padding="same"),
                          distinct(2, 7, 2), False),
    "MaxPooling2D": (lambda: layers.MaxPooling2D(), distinct(2, 5, 4, 3), False),
    "MaxPooling2D_same_overlapping": (lambda: layers.MaxPooling2D(3, strides=2, padding="same"),
                                      distinct(1, 5, 6, 2), False),
    "MaxPooling3D": (lambda: layers.MaxPooling3D((2, 2, 1), padding="same"),
                     distinct(1, 3, 4, 2, 2), False),
    "AveragePooling1D": (lambda: layers.AveragePooling1D(2), distinct(2, 5, 3), False),
    "AveragePooling2D_same": (lambda: layers.AveragePooling2D(3, strides=2, padding="same"),
                              distinct(2, 5, 4, 2), False),
    "AveragePooling3D": (lambda: layers.AveragePooling3D(2, strides=1), distinct(1, 3, 3, 3, 2), False),
    "GlobalMaxPooling1D": (lambda: layers.GlobalMaxPooling1D(), distinct(2, 5, 3), False),
    "GlobalMaxPooling2D_keepdims": (lambda: layers.GlobalMaxPooling2D(keepdims=True),
                                    distinct(2, 3, 4, 3), False),
    "GlobalMaxPooling3D": (lambda: layers.GlobalMaxPooling3D(), distinct(2, 2, 3, 2, 2), False),
    "GlobalAveragePooling1D": (lambda: layers.GlobalAveragePooling1D(), distinct(2, 5, 3), False),
    "GlobalAveragePooling2D": (lambda: layers.GlobalAveragePooling2D(), distinct(2, 3, 4, 3), False),
    "GlobalAveragePooling3D_keepdims": (lambda: layers.GlobalAveragePooling3D(keepdims=True),
                                        distinct(2, 2, 3, 2, 2), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


GEOMETRY_CASES = [
    (layers.MaxPooling1D, dict(pool_size=4, strides=3), (3, 11, 5)),
    (layers.MaxPooling2D, dict(pool_size=(3, 2), strides=(1, 2), padding="same"), (2, 7, 9, 3)),
    (layers.MaxPooling2D, dict(pool_size=2, strides=3), (2, 8, 8, 33)),
    (layers.MaxPooling3D, dict(pool_size=2, strides=(1, 2, 2)), (2, 3, 5, 5, 2)),
    (layers.AveragePooling1D, dict(pool_size=3, padding="same"), (2, 10, 4)),
    (layers.AveragePooling2D, dict(pool_size=(2, 3), strides=1, padding="same"), (2, 5, 7, 3)),
    (layers.AveragePooling3D, dict(pool_size=(1, 2, 3), padding="same"), (2, 3, 5, 7, 2)),
]


@pytest.mark.parametrize("cls, kwargs, shape", GEOMETRY_CASES)
def test_geometry_matches_reference(cls, kwargs, shape):
    check_layer_native_matches_reference(cls(**kwargs), distinct(*shape))


@pytest.mark.parametrize("cls, kwargs, shape", GEOMETRY_CASES)
def test_inference_gives_the_training_forward_bits(cls, kwargs, shape):
    """Inference keeps no argmax (max pooling); its outputs are the training forward's."""
    layer, x = cls(**kwargs), rng.normal(size=shape).astype(np.float32)
    np.testing.assert_array_equal(layer._infer(x), layer._forward(x, True)[0].copy())


def test_same_average_excludes_padding_and_max_ignores_it():
    x = -np.arange(1.0, 6.0).reshape(1, 5, 1)
    np.testing.assert_allclose(layers.AveragePooling1D(2, padding="same")(x).ravel(),
                               [-1.5, -3.5, -5.0])
    np.testing.assert_allclose(layers.MaxPooling1D(2, padding="same")(x).ravel(), [-1, -3, -5])


@pytest.mark.parametrize("kernel_path", ["generic", "auto"])
def test_max_pool_propagates_nan_wherever_it_sits_in_the_window(kernel_path):
    x = np.tile(np.array([0.9, np.nan, 0.2, 0.5, 1.5, np.nan], np.float32).reshape(1, 6, 1),
                (1, 1, 16))    # 16 channels: the vectorised select runs
    saved = pylayers.get_kernel_path()
    pylayers.set_kernel_path(kernel_path)
    layer = layers.MaxPooling1D(2)
    try:   # inference (no argmax kept) and the training forward
        outputs = [layer._infer(x).copy(), layer._forward(x, True)[0].copy()]
    finally:
        pylayers.set_kernel_path(saved)
    for got in outputs:
        np.testing.assert_array_equal(got[0, :, 0], [np.nan, 0.5, np.nan])
        assert np.all(np.isnan(got[0, ::2]))


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.MaxPooling1D(3, strides=2, padding="same"), (3, 11, 8)),
    (lambda: layers.MaxPooling2D(2), (2, 9, 7, 24)),
    (lambda: layers.MaxPooling2D(3, strides=1, padding="same"), (2, 6, 5, 16)),
    (lambda: layers.MaxPooling3D(2, padding="same"), (1, 5, 4, 3, 8)),
    (lambda: layers.MaxPooling2D(2), (2, 7, 6, 32)),                       # four blocks at once
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (2, 7, 7, 72))])   # then one
def test_max_pool_in_blocks_of_8_channels_gives_the_generic_maxima_and_argmax(make, shape):
    """Channels a multiple of 8 run the AVX2 path in registers, four blocks of 8 at a
    time where 32 remain: the same maxima and argmax as the generic kernel, with ties
    (the first in the window wins) and NaNs."""
    from pylayers._kernels import pooling as pool_kernels
    layer = make()
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)   # many ties
    x.flat[rng.choice(x.size, 5, replace=False)] = np.nan
    geometry, out_shape = layer._geometry(shape)
    results = {}
    saved = pylayers.get_kernel_path()
    try:
        for path in ("generic", "auto"):
            pylayers.set_kernel_path(path)
            y = np.empty(int(np.prod(out_shape)), np.float32)
            argmax = np.empty(y.size, np.intc)
            pool_kernels.max_pool_forward(geometry, x.reshape(-1), y, argmax)
            results[path] = (y, argmax)
    finally:
        pylayers.set_kernel_path(saved)
    np.testing.assert_array_equal(results["auto"][0], results["generic"][0])
    np.testing.assert_array_equal(results["auto"][1], results["generic"][1])


@pytest.mark.parametrize("cls", [layers.MaxPooling2D, layers.AveragePooling2D])
def test_one_and_two_threads_agree_bitwise(cls):
    layer = cls(3, strides=2, padding="same")
    x = rng.normal(size=(32, 13, 13, 16)).astype(np.float32)
    dy = rng.normal(size=layer(x).shape).astype(np.float32)
    results = []
    saved = pylayers.get_num_threads()
    try:
        for threads in (1, 2):
            pylayers.set_num_threads(threads)
            y, backprop = layer._forward(x, True)
            results.append((y, backprop(dy)))
    finally:
        pylayers.set_num_threads(saved)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape", [
    (layers.MaxPooling1D, {}, (2, 5, 3), (2, 2, 3)),
    (layers.MaxPooling2D, {"pool_size": (2, 2)}, (2, 26, 26, 3), (2, 13, 13, 3)),
    (layers.MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 7, 8, 3), (2, 4, 4, 3)),
    (layers.MaxPooling3D, {}, (1, 4, 4, 5, 2), (1, 2, 2, 2, 2)),
    (layers.AveragePooling1D, {"pool_size": 3, "strides": 1}, (2, 5, 3), (2, 3, 3)),
    (layers.AveragePooling2D, {}, (2, 5, 5, 3), (2, 2, 2, 3)),
    (layers.AveragePooling3D, {"padding": "same"}, (1, 3, 3, 3, 2), (1, 2, 2, 2, 2)),
    (layers.GlobalMaxPooling1D, {}, (2, 5, 3), (2, 3)),
    (layers.GlobalMaxPooling2D, {"keepdims": True}, (2, 5, 4, 3), (2, 1, 1, 3)),
    (layers.GlobalMaxPooling3D, {}, (2, 2, 2, 2, 3), (2, 3)),
    (layers.GlobalAveragePooling1D, {"keepdims": True}, (2, 5, 3), (2, 1, 3)),
    (layers.GlobalAveragePooling2D, {}, (2, 5, 4, 3), (2, 3)),
    (layers.GlobalAveragePooling3D, {}, (2, 2, 2, 2, 3), (2, 3)),
])
def test_run_layer_test(cls, kwargs, in_shape, out_shape):
    run_layer_test(cls, kwargs, in_shape, out_shape)


def test_keras_defaults_in_config():
    config = layers.MaxPooling2D().get_config()
    assert (config["pool_size"], config["strides"], config["padding"]) == ((2, 2), (2, 2), "valid")
    assert layers.GlobalAveragePooling2D().get_config()["keepdims"] is False


@pytest.mark.parametrize("factory, kwargs, message", [
    (layers.MaxPooling2D, {"pool_size": 0}, "pool_size"),
    (layers.MaxPooling2D, {"strides": -1}, "strides"),
    (layers.AveragePooling1D, {"padding": "causal"}, "padding"),
    (layers.MaxPooling2D, {"data_format": "channels_first"}, "channels_last"),
])
def test_bad_arguments(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


@pytest.mark.parametrize("layer, shape, message", [
    (lambda: layers.MaxPooling2D(name="p_rank"), (2, 5, 5), r"p_rank.*ndim=4.*\(2, 5, 5\)"),
    (lambda: layers.MaxPooling2D(3, name="p_big"), (1, 2, 5, 1), r"p_big.*\(1, 2, 5, 1\).*larger"),
    (lambda: layers.AveragePooling1D(name="p_empty"), (1, 0, 2), r"p_empty"),
    (lambda: layers.GlobalMaxPooling2D(name="g_rank"), (2, 5, 5), r"g_rank.*ndim=4"),
])
def test_bad_input_shapes(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer()(np.zeros(shape))


def test_pooling_in_a_model_with_unknown_spatial_dims():
    inputs = pylayers.Input((None, None, 3))
    assert tuple(layers.MaxPooling2D()(inputs).shape) == (None, None, None, 3)
    assert tuple(layers.GlobalAveragePooling2D()(inputs).shape) == (None, 3)




# ---- regressions found by tests/reliability (kernel fuzzing) ------------------------------

@pytest.mark.parametrize("bad", [-1, 8, 2 ** 31 - 1])
def test_max_pool_backward_refuses_out_of_range_argmax(bad):
    """argmax indexes dx; an index outside the image used to write out of bounds."""
    from pylayers._kernels import pooling as pool_kernels
    geometry = (1, 2, (1, 1, 4), (1, 1, 2), (1, 1, 2), (1, 1, 2), (0, 0, 0))
    argmax = np.array([0, 3, 4, bad], dtype=np.intc)
    dx = np.full(8, 7.0, np.float32)
    with pytest.raises(ValueError, match="max_pool_backward: argmax"):
        pool_kernels.max_pool_backward(geometry, np.ones(4, np.float32), argmax, dx)
    np.testing.assert_array_equal(dx, 7.0)   # nothing written


@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool_backward_checks_every_image_before_writing(threads):
    """A bad argmax in the last image of a batch two threads share: no image is written,
    and the error names the entry."""
    from pylayers._kernels import pooling as pool_kernels
    batch, side, channels = 64, 16, 8
    geometry = (batch, channels, (1, side, side), (1, side // 2, side // 2), (1, 2, 2),
                (1, 2, 2), (0, 0, 0))
    x = np.random.default_rng(0).standard_normal((batch, side, side, channels), np.float32)
    y = np.empty(batch * (side // 2) ** 2 * channels, np.float32)
    argmax = np.empty(y.size, np.intc)
    pool_kernels.max_pool_forward(geometry, x.reshape(-1), y, argmax)
    argmax[-3] = side * side * channels
    dx = np.full(x.size, 7.0, np.float32)
    previous = pylayers.get_num_threads()
    pylayers.set_num_threads(threads)
    try:
        with pytest.raises(ValueError, match=f"holds {side * side * channels} at {y.size - 3}"):
            pool_kernels.max_pool_backward(geometry, np.ones_like(y), argmax, dx)
    finally:
        pylayers.set_num_threads(previous)
    np.testing.assert_array_equal(dx, 7.0)
