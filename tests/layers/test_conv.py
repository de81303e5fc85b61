"""Convolution layers: compiled kernels against the float64 reference over many
geometries, finite-difference gradients, thread-count and kernel-path agreement,
run_layer_test checks, Keras 3 argument errors and bad inputs."""
import contextlib
import json
import pathlib

import numpy as np
import pytest

import pylayers
from pylayers import layers
from pylayers.testing import (check_layer_gradients, check_layer_native_matches_reference,
                              layer_train_step, run_layer_test)

rng = np.random.default_rng(0)


def normal(*shape):
    return rng.normal(size=shape)


# name -> (factory, input, training); small shapes keep the finite differences quick.
GRADIENT_CASES = {
    "Conv1D_causal_dilated": (lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2),
                              normal(2, 7, 2), False),
    "Conv1D_same_strided_tanh": (lambda: layers.Conv1D(2, 4, strides=2, padding="same",
                                                       activation="tanh"), normal(2, 7, 3), False),
    "Conv2D_valid_sigmoid": (lambda: layers.Conv2D(3, 3, activation="sigmoid"),
                             normal(2, 5, 4, 2), False),
    "Conv2D_same_strided": (lambda: layers.Conv2D(2, (3, 2), strides=2, padding="same"),
                            normal(2, 5, 6, 3), False),
    "Conv2D_groups_dilated_no_bias": (lambda: layers.Conv2D(4, 2, groups=2, dilation_rate=2,
                                                            use_bias=False), normal(1, 5, 5, 4), False),
    "Conv2D_gelu": (lambda: layers.Conv2D(2, 2, activation="gelu"), normal(2, 3, 3, 2), False),
    "Conv3D_same": (lambda: layers.Conv3D(2, 2, strides=(1, 2, 1), padding="same"),
                    normal(1, 3, 4, 3, 2), False),
    "Conv1DTranspose_valid": (lambda: layers.Conv1DTranspose(2, 3, strides=2), normal(2, 4, 3), False),
    "Conv2DTranspose_same": (lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                            activation="tanh"), normal(2, 3, 3, 2), False),
    "Conv2DTranspose_output_padding": (lambda: layers.Conv2DTranspose(2, 4, strides=3, padding="same",
                                                                      output_padding=1),
                                       normal(1, 2, 3, 2), False),
    "Conv3DTranspose": (lambda: layers.Conv3DTranspose(2, 2, strides=2), normal(1, 2, 2, 2, 2), False),
    "DepthwiseConv2D_multiplier": (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2,
                                                                  padding="same"),
                                   normal(2, 4, 4, 3), False),
    "SeparableConv2D": (lambda: layers.SeparableConv2D(3, 2, depth_multiplier=2,
                                                       activation="sigmoid"), normal(2, 4, 4, 2), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


# Compiled forward and backward against the reference over many geometries: odd sizes,
# every padding, strides, dilations, groups, 1x1 kernels (the no-unfold path), batches
# bigger than one unfolding chunk.
GEOMETRIES = [
    (layers.Conv1D, dict(filters=5, kernel_size=1), (3, 9, 4)),
    (layers.Conv1D, dict(filters=3, kernel_size=5, strides=3, padding="same"), (2, 11, 2)),
    (layers.Conv1D, dict(filters=4, kernel_size=3, padding="causal", dilation_rate=3), (2, 10, 3)),
    (layers.Conv1D, dict(filters=6, kernel_size=2, groups=3), (2, 5, 6)),
    (layers.Conv2D, dict(filters=7, kernel_size=3), (3, 9, 7, 5)),
    (layers.Conv2D, dict(filters=4, kernel_size=(2, 5), strides=(2, 3), padding="same"), (2, 7, 11, 3)),
    (layers.Conv2D, dict(filters=4, kernel_size=4, strides=2, padding="same"), (2, 8, 9, 2)),
    (layers.Conv2D, dict(filters=3, kernel_size=3, dilation_rate=(2, 3), padding="same"), (2, 8, 9, 2)),
    (layers.Conv2D, dict(filters=8, kernel_size=3, groups=4, padding="same"), (2, 5, 5, 8)),
    (layers.Conv2D, dict(filters=4, kernel_size=1, strides=2), (2, 5, 5, 3)),
    (layers.Conv2D, dict(filters=33, kernel_size=3, activation="relu"), (3, 13, 13, 17)),
    (layers.Conv2D, dict(filters=2, kernel_size=7), (2, 7, 7, 1)),
    (layers.Conv3D, dict(filters=3, kernel_size=(2, 3, 1), strides=(2, 1, 1), padding="same"),
     (2, 5, 4, 3, 2)),
    (layers.Conv2DTranspose, dict(filters=3, kernel_size=3, strides=2), (2, 4, 5, 2)),
    (layers.Conv2DTranspose, dict(filters=3, kernel_size=(2, 3), strides=(3, 2), padding="same"),
     (2, 3, 4, 2)),
    (layers.Conv2DTranspose, dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"),
     (2, 5, 5, 3)),
    (layers.Conv2DTranspose, dict(filters=2, kernel_size=1, strides=3), (2, 3, 3, 2)),
    (layers.DepthwiseConv2D, dict(kernel_size=3, strides=2, padding="same"), (2, 7, 6, 4)),
    (layers.SeparableConv2D, dict(filters=5, kernel_size=3, padding="same", dilation_rate=2),
     (2, 6, 7, 3)),
]


@pytest.mark.parametrize("cls, kwargs, shape", GEOMETRIES)
def test_geometry_matches_reference(cls, kwargs, shape):
    check_layer_native_matches_reference(cls(**kwargs), normal(*shape))


def test_reference_is_the_direct_loop_definition():
    """A naive 7-loop convolution (with TF-style same padding) equals the reference."""
    x, w = normal(2, 5, 6, 3), normal(3, 3, 3, 4)
    layer = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    layer(x)
    layer.set_weights([w])
    out_h, out_w = 3, 3
    pad_h, pad_w = (2 * 2 + 3 - 5) // 2, (2 * 2 + 3 - 6) // 2
    expected = np.zeros((2, out_h, out_w, 4))
    for n, i, j, a, b, c, f in np.ndindex(2, out_h, out_w, 3, 3, 3, 4):
        h, v = i * 2 - pad_h + a, j * 2 - pad_w + b
        if 0 <= h < 5 and 0 <= v < 6:
            expected[n, i, j, f] += x[n, h, v, c] * w[a, b, c, f]
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


@contextlib.contextmanager
def runtime(threads=None, path=None):
    saved = pylayers.get_num_threads(), pylayers.get_kernel_path()
    try:
        if threads:
            pylayers.set_num_threads(threads)
        if path:
            pylayers.set_kernel_path(path)
        yield
    finally:
        pylayers.set_num_threads(saved[0])
        pylayers.set_kernel_path(saved[1])


def available_paths():
    paths = []
    with runtime():
        for name in ("generic", "avx2", "avx512"):
            try:
                pylayers.set_kernel_path(name)
                paths.append(name)
            except ValueError:
                pass
    return paths


def on_each_path(paths, run):
    """run()'s results on each kernel path of `paths` in turn."""
    results = []
    for path in paths:
        with runtime(path=path):
            results.append(run())
    return results


def assert_same_on_one_and_two_threads(run):
    """run() on one thread, then on two: every array it returns bitwise the same."""
    results = []
    for threads in (1, 2):
        with runtime(threads=threads):
            results.append(run())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, kwargs, shape", [
    (layers.Conv2D, dict(filters=32, kernel_size=3, activation="relu"), (64, 14, 14, 3)),
    (layers.Conv2DTranspose, dict(filters=8, kernel_size=3, strides=2), (16, 6, 6, 8)),
    (layers.DepthwiseConv2D, dict(kernel_size=3, padding="same"), (16, 8, 8, 6)),
])
def test_one_and_two_threads_agree_bitwise(cls, kwargs, shape):
    """Every output element and weight gradient has one owner thread and a fixed
    summation order (GEMM tiles, gathers, fixed batch chunks): results are identical."""
    layer = cls(**kwargs)
    x = normal(*shape).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        with runtime(threads=threads):
            results.append(layer_train_step(layer, x, dy))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(len(available_paths()) < 2, reason="CPU without AVX2")
def test_generic_and_avx2_paths_agree():
    layer = layers.Conv2D(16, 3, padding="same", activation="tanh")
    x = normal(8, 10, 10, 5).astype(np.float32)
    dy = normal(8, 10, 10, 16).astype(np.float32)
    layer(x)
    results = on_each_path(("generic", "avx2"), lambda: layer_train_step(layer, x, dy))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.skipif("avx512" not in available_paths(), reason="CPU without AVX-512")
@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Conv2D(16, 3, padding="same", activation="tanh"), (8, 10, 10, 5)),
    (lambda: layers.Conv2D(40, 5, strides=2), (4, 17, 15, 9)),
    (lambda: layers.Conv1D(33, 4, padding="causal"), (6, 30, 70)),
    # the direct path (few taps times channels): positions four at a time, remainders
    (lambda: layers.Conv2D(32, 3, activation="relu"), (5, 12, 11, 1)),
    (lambda: layers.Conv1D(40, 5, padding="same"), (3, 23, 3)),
    (lambda: layers.Conv2D(64, 3, strides=2, padding="same"), (2, 9, 10, 3))])
def test_avx512_path_gives_the_bits_of_avx2(make, shape):
    """The AVX-512 GEMM tile and direct kernels sum in the AVX2 ones' order: forward and
    gradients bitwise."""
    layer = make()
    x = normal(*shape).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    results = on_each_path(("avx2", "avx512"), lambda: layer_train_step(layer, x, dy))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape, n_train", [
    (layers.Conv1D, {"filters": 3, "kernel_size": 2, "padding": "causal"}, (2, 5, 4), (2, 5, 3), 2),
    (layers.Conv2D, {"filters": 3, "kernel_size": (2, 3), "strides": 2, "use_bias": False},
     (2, 6, 7, 2), (2, 3, 3, 3), 1),
    (layers.Conv2D, {"filters": 4, "kernel_size": 3, "groups": 2, "padding": "same",
                     "kernel_regularizer": "l2", "activation": "relu"}, (2, 5, 5, 2), (2, 5, 5, 4), 2),
    (layers.Conv3D, {"filters": 2, "kernel_size": 2}, (1, 3, 4, 5, 2), (1, 2, 3, 4, 2), 2),
    (layers.Conv1DTranspose, {"filters": 2, "kernel_size": 3, "strides": 2}, (2, 4, 3), (2, 9, 2), 2),
    (layers.Conv2DTranspose, {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"},
     (2, 4, 5, 3), (2, 8, 10, 2), 2),
    (layers.Conv2DTranspose, {"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 1},
     (2, 4, 4, 3), (2, 10, 10, 2), 2),
    (layers.Conv3DTranspose, {"filters": 2, "kernel_size": 2, "strides": 2}, (1, 2, 2, 2, 2),
     (1, 4, 4, 4, 2), 2),
    (layers.DepthwiseConv2D, {"kernel_size": 3, "depth_multiplier": 3}, (2, 5, 5, 2), (2, 3, 3, 6), 2),
    (layers.SeparableConv2D, {"filters": 4, "kernel_size": 3, "padding": "same"}, (2, 5, 5, 2),
     (2, 5, 5, 4), 3),
])
def test_run_layer_test(cls, kwargs, in_shape, out_shape, n_train):
    run_layer_test(cls, kwargs, in_shape, out_shape, expected_num_trainable_weights=n_train)


def test_keras_weight_shapes_and_parameter_counts():
    conv = layers.Conv2D(32, (3, 3))
    conv(np.zeros((1, 28, 28, 1)))
    assert [w.shape for w in conv.get_weights()] == [(3, 3, 1, 32), (32,)]
    assert conv.count_params() == 320
    grouped = layers.Conv2D(6, 3, groups=3)
    grouped(np.zeros((1, 5, 5, 9)))
    assert grouped.kernel.shape == (3, 3, 3, 6)
    transpose = layers.Conv2DTranspose(5, 3)
    transpose(np.zeros((1, 4, 4, 2)))
    assert transpose.kernel.shape == (3, 3, 5, 2)
    separable = layers.SeparableConv2D(4, 3, depth_multiplier=2)
    separable(np.zeros((1, 5, 5, 3)))
    assert [w.name for w in separable.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert [w.shape for w in separable.weights] == [(3, 3, 3, 2), (1, 1, 6, 4), (4,)]
    depthwise = layers.DepthwiseConv2D(3, depth_multiplier=2)
    depthwise(np.zeros((1, 5, 5, 3)))
    assert [w.shape for w in depthwise.weights] == [(3, 3, 3, 2), (6,)]


def test_same_padding_puts_the_extra_pad_at_the_end():
    """k=3, s=2 on [1, 2, 3, 4] with a ones kernel gives [6, 7] (Keras, checked)."""
    conv = layers.Conv1D(1, 3, strides=2, padding="same", kernel_initializer="ones")
    np.testing.assert_allclose(conv(np.array([1.0, 2, 3, 4]).reshape(1, 4, 1)).ravel(), [6, 7])


@pytest.mark.parametrize("kwargs, message", [
    ({"filters": -3, "kernel_size": 3}, "Received filters=-3"),
    ({"filters": 0, "kernel_size": 3}, "Received filters=0"),
    ({"filters": 4, "kernel_size": 0}, "kernel_size"),
    ({"filters": 4, "kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"filters": 4, "kernel_size": 3, "strides": 0}, "strides"),
    ({"filters": 4, "kernel_size": 3, "padding": "causal"}, "padding"),
    ({"filters": 4, "kernel_size": 3, "groups": 3}, "groups=3"),
    ({"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, "dilation_rate"),
    ({"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, "channels_last"),
    ({"filters": 4, "kernel_size": 3, "activation": "nope"}, "nope"),
])
def test_conv2d_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layers.Conv2D(**kwargs)


@pytest.mark.parametrize("layer, shape, message", [
    (lambda: layers.Conv2D(2, 3, name="c_rank"), (1, 5, 5), r"c_rank.*ndim=4.*\(1, 5, 5\)"),
    (lambda: layers.Conv2D(2, 5, name="c_big"), (1, 4, 6, 1), r"c_big.*\(1, 4, 6, 1\).*larger"),
    (lambda: layers.Conv1D(2, 3, dilation_rate=3, name="c_dil"), (1, 6, 1), r"c_dil.*larger"),
    (lambda: layers.Conv2D(4, 3, groups=2, name="c_grp"), (1, 5, 5, 3), r"groups=2.*3 channels"),
    (lambda: layers.Conv2D(2, 3, name="c_empty"), (1, 0, 5, 1), r"c_empty.*empty"),
    (lambda: layers.DepthwiseConv2D(3, name="d_rank"), (1, 5, 5, 2, 1), r"d_rank.*ndim=4"),
])
def test_bad_input_shapes_raise_value_errors_naming_layer_and_shape(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer()(np.zeros(shape))


def test_wrong_channels_after_build_leave_weights_untouched():
    conv = layers.Conv2D(2, 3, name="c_chan")
    conv(np.zeros((1, 5, 5, 3)))
    before = conv.get_weights()
    with pytest.raises(ValueError, match=r"c_chan.*value 3.*\(1, 5, 5, 4\)"):
        conv(np.zeros((1, 5, 5, 4)))
    for a, b in zip(before, conv.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_symbolic_shapes_with_unknown_spatial_dims():
    inputs = pylayers.Input((None, None, 3))
    out = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    assert tuple(out.shape) == (None, None, None, 4)
    y = layers.Conv2D(4, 3)(np.zeros((2, 7, 9, 3)))
    assert y.shape == (2, 5, 7, 4)


def test_batch_larger_than_one_unfolding_chunk_matches_per_sample_results():
    conv = layers.Conv2D(4, 3, padding="same")
    x = normal(40, 30, 30, 32).astype(np.float32)   # 30*30*288 floats per image: 4 per chunk
    full = conv(x)
    np.testing.assert_allclose(full[37:38], conv(x[37:38]), rtol=1e-5, atol=1e-5)


def test_seed_cnn_has_keras_parameter_counts_and_names():
    pylayers.backend.clear_session()
    model = pylayers.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(10, activation="softmax"))
    assert model.count_params() == 320 + 18496 + 16010
    assert [layer.name for layer in model.layers] == [
        "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dense"]
    assert [layer.compute_output_shape((None, 28, 28, 1))[1:] for layer in model.layers[:1]] == [
        (26, 26, 32)]


def test_brief_cnn_learns_the_digits():
    """Conv2D(32, 3x3, relu) -> MaxPooling2D -> Flatten -> Dense(10, softmax) on the
    bundled 8x8 digits from a fixed seed (real Keras: 97% on this split)."""
    pylayers.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = pylayers.datasets.digits.load_data()
    x_train = x_train.reshape(-1, 8, 8, 1).astype("float32") / 16
    x_test = x_test.reshape(-1, 8, 8, 1).astype("float32") / 16
    model = pylayers.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.96


def test_cnn_with_batch_norm_and_every_layer_family_trains():
    pylayers.utils.set_random_seed(1)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("float32")
    model = pylayers.Sequential([
        layers.Input((8, 8, 2)), layers.ZeroPadding2D(1),
        layers.Conv2D(8, 3, use_bias=False), layers.BatchNormalization(),
        layers.Activation("relu"), layers.SeparableConv2D(8, 3, padding="same"),
        layers.AveragePooling2D(), layers.DepthwiseConv2D(3, padding="same"),
        layers.UpSampling2D(), layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
        layers.GlobalMaxPooling2D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=pylayers.optimizers.Adam(0.01), loss="binary_crossentropy")
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


KERAS_FIXTURES = np.load(pathlib.Path(__file__).parents[1] / "fixtures" / "conv" / "layers.npz")
KERAS_CASES = sorted({key.split("/")[0] for key in KERAS_FIXTURES.files})


def fixture_arrays(case, prefix):
    keys = sorted((k for k in KERAS_FIXTURES.files if k.startswith(f"{case}/{prefix}")
                   and k[len(case) + 1 + len(prefix):].isdigit()),
                  key=lambda k: int(k[len(case) + 1 + len(prefix):]))
    return [KERAS_FIXTURES[k] for k in keys]


def assert_close_to_keras(actual, expected):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("case", KERAS_CASES)
def test_matches_keras_fixture(case):
    """Output, input gradient, weight gradients and updated moving statistics agree with
    Keras 3 (tests/fixtures/make_conv_fixtures.py; conv, pooling, reshaping and
    normalisation layers, BatchNormalization in training and inference)."""
    config = json.loads(str(KERAS_FIXTURES[f"{case}/config"]))
    layer = getattr(layers, config["class_name"])(**config["kwargs"])
    x = KERAS_FIXTURES[f"{case}/x"]
    layer(x)
    layer.set_weights(fixture_arrays(case, "w"))
    for w in layer.trainable_weights:
        w.grad = None
    y, backprop = layer._train_forward(x, config["training"])
    assert_close_to_keras(y, KERAS_FIXTURES[f"{case}/y"])
    assert_close_to_keras(backprop(KERAS_FIXTURES[f"{case}/dy"]), KERAS_FIXTURES[f"{case}/dx"])
    for w, expected in zip(layer.trainable_weights, fixture_arrays(case, "g")):
        assert_close_to_keras(w.grad, expected)
    for w, expected in zip(layer.non_trainable_weights, fixture_arrays(case, "after")):
        assert_close_to_keras(w.numpy(), expected)


# ---- regressions found by tests/reliability (kernel fuzzing) ------------------------------

def test_relu_conv_propagates_nan_like_the_reference():
    """The fused relu used to turn NaN into 0 (x > 0 ? x : 0), hiding bad inputs."""
    layer = layers.Conv2D(3, 2, activation="relu")
    x = normal(1, 4, 4, 2)
    x[0, 1, 1, 0] = np.nan
    layer(x)
    got = np.asarray(layer(x))
    with pylayers.ops.reference_mode():
        expected = np.asarray(layer(x.astype(np.float64)))
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-5,
                               atol=1e-6)


def test_conv_relu_backward_matches_dense_on_infinite_gradients():
    """dz = dy * relu'(y): inf * 0 is NaN in both fused kernels (it was 0 in conv only)."""
    from pylayers._kernels import conv as conv_kernels, dense as dense_kernels
    y = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    dy = np.array([[np.inf, 2.0, 3.0]], dtype=np.float32)
    dz_conv, dz_dense = np.empty_like(y), np.empty_like(y)
    conv_kernels.bias_act_backward(y, dy, 1, 0.0, dz_conv, None)
    dense_kernels.act_backward(y, dy, dz_dense, 1, 0.0)
    np.testing.assert_array_equal(dz_conv, [[np.nan, 2.0, 0.0]])
    np.testing.assert_array_equal(dz_conv, dz_dense)


def test_conv_kernels_refuse_none_arrays():
    from pylayers._kernels import conv as conv_kernels
    geometry = (1, (1, 1, 3), (1, 1, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, 1, 1)
    with pytest.raises(TypeError):
        conv_kernels.conv_backward_data(geometry, np.ones(3, np.float32),
                                        np.ones(1, np.float32), None)


# ---- the direct path (csrc/conv_direct.h): few taps x channels, e.g. a first layer ----

@contextlib.contextmanager
def direct_path(enabled):
    from pylayers._kernels import conv as conv_kernels
    conv_kernels.set_direct_path(enabled)
    try:
        yield
    finally:
        conv_kernels.set_direct_path(True)


@contextlib.contextmanager
def winograd(enabled):
    from pylayers._kernels import conv as conv_kernels
    conv_kernels.set_winograd(enabled)
    try:
        yield
    finally:
        conv_kernels.set_winograd(True)


DIRECT_CASES = [   # (layer, input shape): taps * cin <= 32, some cout not a multiple of 32
    (lambda: layers.Conv2D(32, 3, activation="relu"), (12, 28, 28, 1)),
    (lambda: layers.Conv2D(40, 3, padding="same", activation="relu"), (9, 11, 10, 3)),
    (lambda: layers.Conv2D(5, (2, 3), strides=(2, 1), dilation_rate=1), (3, 9, 8, 2)),
    (lambda: layers.Conv2D(70, 3, dilation_rate=2, padding="same", use_bias=False), (2, 9, 9, 1)),
    (lambda: layers.Conv2D(32, 5, strides=2, padding="same", activation="tanh"), (4, 13, 13, 1)),
    (lambda: layers.Conv1D(33, 7, padding="causal", activation="relu"), (5, 20, 4)),
    (lambda: layers.Conv1D(64, 4, strides=3, padding="same"), (3, 17, 2)),
    (lambda: layers.Conv3D(16, 3, padding="same", activation="relu"), (2, 5, 6, 7, 1)),
]


def weight_gradients(layer, x, dy, need_dx):
    """Forward, then backprop with or without dx: [y, kernel grad, bias grad]."""
    for v in layer.trainable_weights:
        v.grad = None
    y, backprop = layer._train_forward(x, True)
    backprop(dy, need_dx=need_dx)
    return [y.copy()] + [v.grad.copy() for v in layer.trainable_weights]


@pytest.mark.parametrize("make, shape", DIRECT_CASES)
def test_direct_path_matches_im2col_and_the_reference(make, shape):
    layer = make()
    x = normal(*shape).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    with direct_path(False):
        general = weight_gradients(layer, x, dy, need_dx=True)
    fused = weight_gradients(layer, x, dy, need_dx=False)   # one pass, no dz written
    unfused = weight_gradients(layer, x, dy, need_dx=True)
    for a, b, c in zip(general, fused, unfused):
        scale = np.abs(a).max()
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5 * scale)
    with pylayers.ops.mode.reference_mode():
        expected = layer(x.astype(np.float64))
    np.testing.assert_allclose(fused[0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("make, shape", DIRECT_CASES[:2] + DIRECT_CASES[5:6])
def test_direct_path_is_bitwise_the_same_on_one_and_two_threads(make, shape):
    layer = make()
    x = normal(16 * shape[0], *shape[1:]).astype(np.float32)   # enough work for two threads
    dy = normal(*layer(x).shape).astype(np.float32)
    assert_same_on_one_and_two_threads(lambda: weight_gradients(layer, x, dy, need_dx=False))


@pytest.mark.skipif(len(available_paths()) < 2, reason="CPU without AVX2")
@pytest.mark.parametrize("make, shape", DIRECT_CASES[:3])
def test_direct_path_generic_and_avx2_agree(make, shape):
    layer = make()
    x = normal(*shape).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    results = on_each_path(("generic", "avx2"),
                           lambda: weight_gradients(layer, x, dy, need_dx=False))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_direct_path_relu_gradient_keeps_nan():
    layer = layers.Conv2D(32, 3, activation="relu")
    x = normal(2, 6, 6, 1).astype(np.float32)
    dy = np.ones(layer(x).shape, np.float32)
    dy[0, 0, 0, :] = np.nan
    kernel_grad, bias_grad = weight_gradients(layer, x, dy, need_dx=False)[1:]
    assert np.isnan(bias_grad).any() and np.isnan(kernel_grad).any()


# ---- the implicit-GEMM forward (csrc/conv.c): many taps x channels, AVX2 -------------

IMPLICIT_CASES = [   # taps * cin > 32: padding, strides, dilation, cout % 16 != 0, 1D/3D
    (lambda: layers.Conv2D(32, 3, padding="same", activation="relu"), (4, 16, 16, 16)),
    (lambda: layers.Conv2D(20, 3, strides=2, padding="same"), (3, 11, 9, 5)),
    (lambda: layers.Conv2D(33, (5, 3), dilation_rate=(1, 2), padding="same",
                           activation="tanh"), (2, 10, 12, 7)),
    (lambda: layers.Conv2D(17, 2, activation="relu"), (2, 9, 9, 40)),
    (lambda: layers.Conv2D(64, 3, activation="relu"), (3, 13, 13, 32)),   # K 288: two k blocks
    (lambda: layers.Conv1D(24, 5, padding="causal", activation="relu"), (3, 30, 9)),
    (lambda: layers.Conv3D(18, 3, padding="same"), (2, 5, 6, 7, 4)),
]


@pytest.mark.parametrize("make, shape", IMPLICIT_CASES)
def test_implicit_forward_matches_im2col_and_the_reference(make, shape):
    """The forward read in place (tiles of 6 positions, edges through gathered rows)
    against im2col + GEMM: bitwise when K fits one GEMM depth block (the same sums in the
    same order), within rounding otherwise; and against the float64 reference."""
    layer = make()
    x = normal(*shape).astype(np.float32)
    with winograd(False):
        implicit = layer(x)
    with direct_path(False):
        general = layer(x)
    depth = np.prod(layer.kernel.shape[:-1])
    if depth <= 256 and pylayers.get_kernel_path() in ("avx2", "avx512"):
        np.testing.assert_array_equal(implicit, general)
    np.testing.assert_allclose(implicit, general, rtol=1e-5, atol=1e-5 * np.abs(general).max())
    with pylayers.ops.mode.reference_mode():
        expected = layer(x.astype(np.float64))
    np.testing.assert_allclose(implicit, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("make, shape", IMPLICIT_CASES[:2] + IMPLICIT_CASES[5:] + [
    (lambda: layers.Conv2D(64, 3, activation="relu"), (8, 13, 13, 32)),   # Winograd tiles
])
def test_implicit_and_winograd_forwards_are_bitwise_the_same_on_one_and_two_threads(make, shape):
    layer = make()
    x = normal(16 * shape[0], *shape[1:]).astype(np.float32)   # enough work for two threads
    assert_same_on_one_and_two_threads(lambda: [layer(x)])


def test_implicit_forward_keeps_nan_next_to_padding():
    """A NaN input in a corner reaches exactly the outputs whose patches hold it, also
    those computed from gathered edge rows (0 * NaN stays NaN)."""
    layer = layers.Conv2D(16, 3, padding="same", use_bias=False)
    x = normal(1, 7, 7, 8).astype(np.float32)
    x[0, 0, 0, 3] = np.nan
    y = layer(x)
    nan_at = np.argwhere(np.isnan(y).any(axis=-1))[:, 1:]
    assert sorted(map(tuple, nan_at)) == [(0, 0), (0, 1), (1, 0), (1, 1)]


# ---- the implicit backward (csrc/conv.c): kernel gradients read in place, and the
# stride-1 data gradient as the forward of the flipped kernel -----------------------------

IMPLICIT_BACKWARD_CASES = IMPLICIT_CASES + [
    # many output lines: chunks of lines, runs over several images
    (lambda: layers.Conv2D(32, 3, padding="same", activation="relu"), (3, 32, 32, 16)),
    (lambda: layers.Conv2D(16, 3, dilation_rate=2, padding="same"), (2, 40, 40, 8)),
    (lambda: layers.Conv2D(32, (2, 4), padding="same"), (2, 16, 20, 6)),   # extra pad at the end
    (lambda: layers.Conv2D(48, 3, strides=(1, 2), padding="same"), (2, 9, 12, 13)),
    (lambda: layers.Conv1D(32, 3, padding="causal", dilation_rate=2), (3, 40, 5)),
    (lambda: layers.Conv2DTranspose(16, 3, padding="same"), (2, 16, 18, 20)),   # stride 1
]


@pytest.mark.parametrize("make, shape", IMPLICIT_BACKWARD_CASES)
def test_implicit_backward_matches_im2col_and_the_reference(make, shape):
    """Kernel and bias gradients and dx against im2col + GEMM + col2im, and every
    output and gradient against the float64 reference."""
    layer = make()
    x = normal(*shape).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    with winograd(False):   # the stride-1 dx of 3x3 kernels: the Winograd tests' business
        implicit = layer_train_step(layer, x, dy)
        with direct_path(False):
            general = layer_train_step(layer, x, dy)
        for a, b in zip(implicit, general):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
        check_layer_native_matches_reference(layer, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make, shape", IMPLICIT_BACKWARD_CASES[:2] + IMPLICIT_BACKWARD_CASES[7:])
def test_implicit_backward_is_bitwise_the_same_on_one_and_two_threads(make, shape):
    layer = make()
    x = normal(8 * shape[0], *shape[1:]).astype(np.float32)   # enough work for two threads
    dy = normal(*layer(x).shape).astype(np.float32)
    assert_same_on_one_and_two_threads(lambda: layer_train_step(layer, x, dy))


def test_implicit_kernel_gradient_keeps_nan_from_gradients_next_to_padding():
    """A NaN output gradient at a corner multiplies the padding zeros of its patch too
    (0 * NaN is NaN): every kernel tap's gradient for that filter is NaN, as im2col
    gives, although the read-in-place runs skip the padding."""
    layer = layers.Conv2D(16, 3, padding="same", use_bias=False)
    x = normal(2, 8, 8, 8).astype(np.float32)
    dy = normal(*layer(x).shape).astype(np.float32)
    dy[0, 0, 0, 5] = np.nan
    kernel_grad = layer_train_step(layer, x, dy)[2]
    with direct_path(False):
        expected = layer_train_step(layer, x, dy)[2]
    np.testing.assert_array_equal(np.isnan(kernel_grad), np.isnan(expected))
    assert np.isnan(kernel_grad[..., 5]).all() and not np.isnan(kernel_grad[..., 4]).any()


# ---- the Winograd F(4x4, 3x3) forward (csrc/conv_winograd.c): 3x3, stride 1, AVX2 -------

# Its transforms carry entries up to 8, so it rounds more than the direct sum: measured
# 3e-6 to 8e-6 of the largest output for 16 to 128 input channels (the implicit GEMM:
# 5e-7 to 1.5e-6).  The bound below leaves room for that, relative to the largest output.
WINOGRAD_ATOL = 3e-5

WINOGRAD_CASES = [   # odd output sizes (partial tiles), padding, several blocks; >= 96 tiles
    (lambda: layers.Conv2D(32, 3, padding="same", activation="relu"), (3, 32, 32, 16)),
    (lambda: layers.Conv2D(16, 3, activation="tanh"), (16, 9, 12, 24)),
    (lambda: layers.Conv2D(48, 3, padding="same", use_bias=False), (24, 7, 5, 32)),
    (lambda: layers.Conv2D(64, 3, activation="relu"), (16, 13, 13, 32)),   # the seed CNN's second
    (lambda: layers.Conv2D(128, 3, padding="same"), (8, 16, 16, 128)),   # deep sums
]


def assert_winograd_close(fast, expected):
    np.testing.assert_allclose(fast, expected, rtol=1e-4,
                               atol=WINOGRAD_ATOL * np.abs(expected).max())


@pytest.mark.skipif("avx2" not in available_paths(), reason="CPU without AVX2")
@pytest.mark.parametrize("make, shape", WINOGRAD_CASES)
def test_winograd_forward_matches_the_implicit_gemm_and_the_reference(make, shape):
    layer = make()
    x = normal(*shape).astype(np.float32)
    with runtime(path="avx2"):
        fast = layer(x)
        with winograd(False):
            implicit = layer(x)
    assert not np.array_equal(fast, implicit)   # the Winograd tiles ran: their rounding differs
    assert_winograd_close(fast, implicit)
    with pylayers.ops.mode.reference_mode():
        expected = layer(x.astype(np.float64))
    assert_winograd_close(fast, expected)


@pytest.mark.skipif("avx2" not in available_paths(), reason="CPU without AVX2")
def test_winograd_leaves_non_finite_inputs_to_the_implicit_gemm():
    """The transforms add and subtract neighbouring inputs: an inf input would come out
    as NaN (inf - inf) where the direct sum gives inf.  Such inputs go the implicit way."""
    layer = layers.Conv2D(16, 3, padding="same", use_bias=False)
    x = normal(32, 8, 8, 16).astype(np.float32)   # 128 tiles of 4x4 outputs
    with winograd(False):
        finite_implicit = layer(x)
    assert not np.array_equal(layer(x), finite_implicit)   # finite: the Winograd tiles
    x[0, 3, 4, 2] = np.inf
    y = layer(x)
    with winograd(False):
        expected = layer(x)
    assert np.isinf(expected).any()
    np.testing.assert_array_equal(y, expected)


@pytest.mark.skipif("avx2" not in available_paths(), reason="CPU without AVX2")
def test_winograd_data_gradient_matches_the_reference_and_leaves_non_finite_gradients():
    """dx of a stride-1 3x3 convolution goes through the Winograd tiles of the flipped
    kernel (within rounding of the implicit GEMM and the reference), except when dy holds
    inf or NaN."""
    layer = layers.Conv2D(32, 3, padding="same", use_bias=False)
    x = normal(16, 12, 12, 16).astype(np.float32)   # 144 tiles
    dy = normal(*layer(x).shape).astype(np.float32)
    with runtime(path="avx2"):
        fast = layer_train_step(layer, x, dy)[1]
        with winograd(False):
            implicit = layer_train_step(layer, x, dy)[1]
    assert not np.array_equal(fast, implicit)
    assert_winograd_close(fast, implicit)
    with pylayers.ops.mode.reference_mode():
        expected = layer_train_step(layer, x.astype(np.float64), dy.astype(np.float64))[1]
    assert_winograd_close(fast, expected)
    dy[1, 4, 5, 7] = np.inf
    with winograd(False):
        expected = layer_train_step(layer, x, dy)[1]
    assert np.isinf(expected).any()
    np.testing.assert_array_equal(layer_train_step(layer, x, dy)[1], expected)
