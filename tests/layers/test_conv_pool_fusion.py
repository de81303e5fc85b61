"""Training a convolution followed by max pooling in chunks of images
(pylayers.layers.fusion): the same outputs as the two layers one after the other, the same
gradients to float rounding, the same bits on any thread count, and the two layers run
apart wherever the fused path does not apply."""
import math

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers, regularizers
from pylayers._kernels import conv as conv_kernels
from pylayers._kernels import pooling as pool_kernels
from pylayers._kernels.dense import ACTIVATION_CODES
from pylayers.layers import fusion
from pylayers.layers.fusion import RELU

rng = np.random.default_rng(0)


@pytest.fixture
def fused_everywhere(monkeypatch):
    """Fuse whatever the size, in chunks of 3 images (so batches end in a short one)."""
    monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
    monkeypatch.setattr(fusion, "chunk_images", lambda conv_shape: 3)


# name -> (input shape (no batch), the layers: conv, pool, the rest)
CASES = {
    "2d_relu_remainder": ((27, 27, 2), lambda: [layers.Conv2D(8, 3, activation="relu"),
                                                 layers.MaxPooling2D(2)]),
    "2d_linear_same": ((12, 12, 3), lambda: [layers.Conv2D(5, 3, padding="same"),
                                             layers.MaxPooling2D(2, padding="same")]),
    "2d_overlapping_windows": ((14, 14, 1), lambda: [layers.Conv2D(4, 3, activation="relu"),
                                                     layers.MaxPooling2D(3, strides=2)]),
    "1d_relu": ((40, 3), lambda: [layers.Conv1D(6, 5, activation="relu"),
                                  layers.MaxPooling1D(4)]),
    "3d_relu": ((7, 8, 6, 2), lambda: [layers.Conv3D(3, 2, activation="relu"),
                                       layers.MaxPooling3D(2)]),
    "2d_strided_no_bias": ((17, 17, 3), lambda: [
        layers.Conv2D(4, 3, strides=2, use_bias=False, activation="relu"),
        layers.MaxPooling2D(2)]),
    "second_pair_needs_dx": ((16, 16, 2), lambda: [
        layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, padding="same", activation="relu"), layers.MaxPooling2D(2)]),
    "after_padding_needs_dx": ((10, 10, 2), lambda: [
        layers.ZeroPadding2D(1), layers.Conv2D(4, 3, activation="relu"),
        layers.MaxPooling2D(2)]),
}


def model_for(case, seed=0):
    shape, body = CASES[case]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([layers.InputLayer(shape=shape)] + body() +
                             [layers.Flatten(), layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    biases = np.random.default_rng(seed)
    for layer in model.layers:   # non-zero biases
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(biases.standard_normal(layer.bias.shape) * 0.1)
    return model


def step(model, x, dy):
    """One forward and backward: (outputs, every weight's gradient, dx)."""
    (y,), backward = model._forward_for_loss([x], training=True)
    for variable in model.trainable_weights:
        variable.zero_grad()
    (dx,) = backward([dy], [False], need_dx=True)
    return y.copy(), [v.grad.copy() for v in model.trainable_weights], dx.copy()


def data(case, n=8):
    shape = CASES[case][0]
    return (rng.standard_normal((n,) + shape).astype(np.float32),
            rng.standard_normal((n, 3)).astype(np.float32))


def fused(model):
    """Whether a training forward of `model` ran its convolutions in chunks."""
    return any("pool_chunks" in getattr(layer, "_remembered", {}) for layer in model.layers)


@pytest.mark.parametrize("case", CASES)
def test_fused_training_step_matches_the_layers_one_by_one(case, monkeypatch):
    x, dy = data(case)
    apart = model_for(case)
    y_apart, grads_apart, dx_apart = step(apart, x, dy)
    assert not fused(apart)
    monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
    monkeypatch.setattr(fusion, "chunk_images", lambda conv_shape: 3)
    model = model_for(case)
    y, grads, dx = step(model, x, dy)
    assert fused(model)
    np.testing.assert_array_equal(y, y_apart)
    for fused_grad, grad in zip(grads, grads_apart):
        scale = max(1.0, np.abs(grad).max())
        np.testing.assert_allclose(fused_grad, grad, rtol=1e-5, atol=2e-6 * scale)
    np.testing.assert_allclose(dx, dx_apart, rtol=1e-5, atol=1e-6)


def test_fused_gradients_have_the_same_bits_on_any_thread_count(monkeypatch, fused_everywhere,
                                                                 restore_threads):
    x, dy = data("second_pair_needs_dx", n=11)
    results = []
    for threads in (1, 2, 3):
        keras.set_num_threads(threads)
        results.append(step(model_for("second_pair_needs_dx"), x, dy))
    for other in results[1:]:
        for a, b in zip([results[0][0]] + results[0][1] + [results[0][2]],
                        [other[0]] + other[1] + [other[2]]):
            np.testing.assert_array_equal(a, b)


def test_training_fused_follows_training_apart(monkeypatch):
    x, y = data("2d_relu_remainder", n=12)
    apart = model_for("2d_relu_remainder")
    apart.fit(x, y, batch_size=6, epochs=3, shuffle=False, verbose=0)
    monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
    monkeypatch.setattr(fusion, "chunk_images", lambda conv_shape: 4)
    together = model_for("2d_relu_remainder")
    together.fit(x, y, batch_size=6, epochs=3, shuffle=False, verbose=0)
    assert fused(together)
    for a, b in zip(together.get_weights(), apart.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_frozen_convolution_gets_no_gradient(fused_everywhere):
    x, dy = data("2d_relu_remainder")
    model = model_for("2d_relu_remainder")
    model.layers[0].trainable = False
    frozen = [v.value.copy() for v in model.layers[0].weights]
    _, grads, _ = step(model, x, dy)
    assert fused(model) and len(grads) == 2   # the Dense layer's
    assert all(v.grad is None or not np.any(v.grad) for v in model.layers[0].weights)
    model.fit(x, dy, batch_size=4, verbose=0)
    for before, v in zip(frozen, model.layers[0].weights):
        np.testing.assert_array_equal(before, v.value)


@pytest.mark.parametrize("conv, pool", [
    (lambda: layers.Conv2D(4, 3, activation="sigmoid"), lambda: layers.MaxPooling2D(2)),
    (lambda: layers.Conv2D(4, 3, activation="relu"), lambda: layers.AveragePooling2D(2)),
    (lambda: layers.Conv2D(4, 3, activation="relu",
                           activity_regularizer=regularizers.L2(0.1)),
     lambda: layers.MaxPooling2D(2)),
    (lambda: layers.Conv2D(4, 3, activation="relu"),
     lambda: layers.MaxPooling2D(2, activity_regularizer=regularizers.L1(0.1))),
])
def test_pairs_the_fused_path_does_not_cover_run_apart(conv, pool, monkeypatch):
    monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
    conv_layer, pool_layer = conv(), pool()
    keras.Sequential([layers.InputLayer(shape=(9, 9, 2)), conv_layer, pool_layer])
    assert not fusion.conv_pool_fusable(conv_layer, pool_layer, (4, 9, 9, 2), None)


def test_small_outputs_and_subclasses_run_apart(monkeypatch):
    class Doubled(layers.Conv2D):
        def call(self, inputs):
            return super().call(inputs) * 2.0

    for conv in (layers.Conv2D(4, 3, activation="relu"), Doubled(4, 3, activation="relu")):
        pool = layers.MaxPooling2D(2)
        keras.Sequential([layers.InputLayer(shape=(9, 9, 2)), conv, pool])
        assert not fusion.conv_pool_fusable(conv, pool, (4, 9, 9, 2), None)   # 2.5 KB
        monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
        assert fusion.conv_pool_fusable(conv, pool, (4, 9, 9, 2), None) == (conv.__class__
                                                                            is layers.Conv2D)
        monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 8 << 20)


# ---- the C pair: conv_max_pool_forward and conv_max_pool_backward_weight ----------------

# name -> (batch, in_size, kernel, stride, pad, cin, cout, pool window); 1-D and 2-D
# geometries pass size 1 for the unused leading axes
C_PAIRS = {
    "cnn_like": (5, (1, 12, 12), (1, 3, 3), (1, 1, 1), (0, 0, 0), 1, 32, (1, 2, 2)),
    "uncovered_line_and_column": (4, (1, 11, 13), (1, 3, 3), (1, 1, 1), (0, 0, 0), 2, 8,
                                  (1, 2, 2)),
    "one_d_remainder": (3, (1, 1, 30), (1, 1, 5), (1, 1, 1), (0, 0, 0), 3, 6, (1, 1, 3)),
    "strided_padded_narrow": (9, (1, 12, 12), (1, 3, 3), (1, 2, 2), (0, 1, 1), 3, 5,
                              (1, 3, 2)),
    "three_d": (2, (4, 6, 6), (2, 3, 3), (1, 1, 1), (0, 0, 0), 1, 16, (1, 2, 2)),
}


def c_pair(name):
    """(conv geometry, pool geometry) tuples of C_PAIRS[name]."""
    batch, in_size, kernel, stride, pad, cin, cout, window = C_PAIRS[name]
    out = tuple((i + 2 * p - k) // s + 1 for i, p, k, s in zip(in_size, pad, kernel, stride))
    conv_geometry = (batch, in_size, out, kernel, stride, (1, 1, 1), pad, cin, cout, 1)
    pooled = tuple(o // w for o, w in zip(out, window))
    return conv_geometry, (batch, cout, out, pooled, window, window, (0, 0, 0))


def c_pair_arrays(name, seed=0):
    """x (with a NaN, an infinity and a run of equal values), kernel, bias."""
    (batch, in_size, _, kernel, *_), _ = c_pair(name)
    cin, cout = C_PAIRS[name][5:7]
    gen = np.random.default_rng(seed)
    x = gen.standard_normal(batch * math.prod(in_size) * cin).astype(np.float32)
    x[[3, 50]] = [np.nan, np.inf]
    x[100:140] = 0.5
    w = (gen.standard_normal(math.prod(kernel) * cin * cout) * 0.3).astype(np.float32)
    return x, w, (gen.standard_normal(cout) * 0.1).astype(np.float32)


def conv_then_pool(conv_geometry, pool_geometry, x, w, bias, act):
    """The two kernels one after the other: (pooled, argmax, the convolution's output)."""
    z = np.empty(conv_geometry[0] * math.prod(conv_geometry[2]) * conv_geometry[8], np.float32)
    conv_kernels.conv_forward(conv_geometry, x, w, bias, act, 0.0, z)
    y = np.empty(pool_geometry[0] * math.prod(pool_geometry[3]) * pool_geometry[1], np.float32)
    argmax = np.empty(y.size, np.intc)
    pool_kernels.max_pool_forward(pool_geometry, z, y, argmax)
    return y, argmax, z


@pytest.mark.parametrize("name", C_PAIRS)
@pytest.mark.parametrize("act", [RELU, fusion.LINEAR])
def test_the_c_pair_gives_the_bits_of_conv_then_pool(name, act, restore_threads):
    conv_geometry, pool_geometry = c_pair(name)
    x, w, bias = c_pair_arrays(name)
    expected_y, expected_argmax, _ = conv_then_pool(conv_geometry, pool_geometry, x, w, bias, act)
    assert np.isnan(expected_y).any() or name != "cnn_like"
    for threads in (1, 2, 3):
        keras.set_num_threads(threads)
        y = np.full(expected_y.size, 7.0, np.float32)
        argmax = np.full(y.size, -1, np.intc)
        assert conv_kernels.conv_max_pool_forward(conv_geometry, pool_geometry, x, w, bias, act,
                                                  y, argmax)
        np.testing.assert_array_equal(y, expected_y)
        np.testing.assert_array_equal(argmax, expected_argmax)


def kernel_gradient_float64(conv_geometry, x, dz):
    """float64 sum over images and output positions of each tap's inputs times dz."""
    batch, in_size, out, kernel, stride, _, pad, cin, cout, _ = conv_geometry
    xp = np.pad(x.astype(np.float64).reshape((batch,) + in_size + (cin,)),
                [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
    dz = dz.astype(np.float64).reshape((batch,) + out + (cout,))
    grad = np.zeros(kernel + (cin, cout))
    for tap in np.ndindex(*kernel):
        window = tuple(slice(t, t + s * (o - 1) + 1, s) for t, s, o in zip(tap, stride, out))
        grad[tap] = np.einsum("nabci,nabcj->ij", xp[(slice(None),) + window], dz)
    return grad.reshape(-1)


@pytest.mark.parametrize("name", C_PAIRS)
def test_the_c_pair_kernel_gradient_is_float64_exact_and_the_same_on_any_thread_count(
        name, restore_threads):
    conv_geometry, pool_geometry = c_pair(name)
    x, w, bias = c_pair_arrays(name)
    x[~np.isfinite(x)] = 1.0
    y, argmax, z = conv_then_pool(conv_geometry, pool_geometry, x, w, bias, RELU)
    dy = np.random.default_rng(1).standard_normal(y.size).astype(np.float32)
    dz_pooled = dy * (y > 0)
    dz = np.zeros(z.size, np.float32)
    pool_kernels.max_pool_backward(pool_geometry, dz_pooled, argmax, dz)
    expected_kernel = 0.5 + kernel_gradient_float64(conv_geometry, x, dz)
    expected_bias = 0.25 + dz_pooled.reshape(-1, conv_geometry[8]).astype(np.float64).sum(0)
    results = []
    for threads in (1, 2, 3):
        keras.set_num_threads(threads)
        dw, dbias = np.full(w.size, 0.5, np.float32), np.full(bias.size, 0.25, np.float32)
        assert conv_kernels.conv_max_pool_backward_weight(conv_geometry, pool_geometry, x, y, dy,
                                                          argmax, RELU, dw, dbias)
        np.testing.assert_allclose(dw, expected_kernel, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dbias, expected_bias, rtol=1e-5, atol=1e-4)
        results.append((dw, dbias))
    for dw, dbias in results[1:]:
        np.testing.assert_array_equal(dw, results[0][0])
        np.testing.assert_array_equal(dbias, results[0][1])


def test_an_argmax_entry_naming_a_position_outside_its_window_routes_nothing():
    conv_geometry, pool_geometry = c_pair("uncovered_line_and_column")
    x, w, bias = c_pair_arrays("uncovered_line_and_column")
    x[~np.isfinite(x)] = 1.0
    y, argmax, _ = conv_then_pool(conv_geometry, pool_geometry, x, w, bias, fusion.LINEAR)
    dy = np.zeros(y.size, np.float32)
    dy[0] = 1.0
    far = argmax.copy()
    far[0] = argmax[-1]   # a position of the last image's last window
    for entries, routed in ((argmax, True), (far, False)):
        dw = np.zeros(w.size, np.float32)
        conv_kernels.conv_max_pool_backward_weight(conv_geometry, pool_geometry, x, y, dy,
                                                   entries, fusion.LINEAR, dw, None)
        assert np.any(dw) == routed


@pytest.mark.parametrize("change", ["overlapping", "padded", "window_along_axis_0",
                                    "sigmoid", "many_taps"])
def test_pairs_the_c_pair_does_not_take_are_refused_with_nothing_written(change):
    conv_geometry, pool_geometry = c_pair("cnn_like")
    act = RELU
    batch, cout, out, pooled, window, stride, pad = pool_geometry
    if change == "overlapping":
        pool_geometry = (batch, cout, out, (1, 9, 9), window, (1, 1, 1), pad)
    elif change == "padded":
        pool_geometry = (batch, cout, out, pooled, window, stride, (0, 1, 1))
    elif change == "window_along_axis_0":
        conv_geometry, pool_geometry = c_pair("three_d")
        batch, cout, out, _, _, _, pad = pool_geometry
        pool_geometry = (batch, cout, out, (1, 2, 2), (2, 2, 2), (2, 2, 2), pad)
    elif change == "sigmoid":
        act = ACTIVATION_CODES["sigmoid"]
    elif change == "many_taps":   # 3 x 3 x 4 = 36 taps times channels: not the direct path
        conv_geometry = conv_geometry[:7] + (4,) + conv_geometry[8:]
    x = np.ones(conv_geometry[0] * math.prod(conv_geometry[1]) * conv_geometry[7], np.float32)
    w = np.ones(math.prod(conv_geometry[3]) * conv_geometry[7] * conv_geometry[8], np.float32)
    y = np.full(pool_geometry[0] * math.prod(pool_geometry[3]) * pool_geometry[1], 7.0,
                np.float32)
    argmax = np.zeros(y.size, np.intc)
    assert not conv_kernels.conv_max_pool_fusable(conv_geometry, pool_geometry, act)
    assert not conv_kernels.conv_max_pool_forward(conv_geometry, pool_geometry, x, w, None, act,
                                                  y, argmax)
    dw = np.zeros(w.size, np.float32)
    assert not conv_kernels.conv_max_pool_backward_weight(conv_geometry, pool_geometry, x, y, y,
                                                          argmax, act, dw, None)
    assert np.all(y == 7.0) and not np.any(argmax) and not np.any(dw)


def test_bad_sizes_are_refused_by_name_before_anything_is_written():
    conv_geometry, pool_geometry = c_pair("cnn_like")
    x, w, bias = c_pair_arrays("cnn_like")
    y = np.full(pool_geometry[0] * math.prod(pool_geometry[3]) * 32, 7.0, np.float32)
    argmax = np.zeros(y.size, np.intc)
    with pytest.raises(ValueError, match="bias"):
        conv_kernels.conv_max_pool_forward(conv_geometry, pool_geometry, x, w, bias[:-1], RELU,
                                           y, argmax)
    with pytest.raises(ValueError, match="argmax"):
        conv_kernels.conv_max_pool_forward(conv_geometry, pool_geometry, x, w, bias, RELU, y,
                                           argmax[:-1])
    with pytest.raises(ValueError, match="pooling"):
        conv_kernels.conv_max_pool_forward(conv_geometry, pool_geometry, x, w, bias, RELU, y[:-1],
                                           argmax[:-1])
    assert np.all(y == 7.0)


@pytest.mark.parametrize("case, takes", [("2d_relu_remainder", True), ("1d_relu", True),
                                         ("2d_strided_no_bias", True), ("2d_linear_same", True),
                                         ("2d_overlapping_windows", False), ("3d_relu", False)])
def test_which_model_pairs_take_the_c_pair(case, takes, fused_everywhere):
    x, dy = data(case)
    model = model_for(case)
    step(model, x, dy)
    layouts = [layer._remembered["pool_chunks"][1] for layer in model.layers
               if "pool_chunks" in getattr(layer, "_remembered", {})]
    assert layouts and all((layout.whole is not None) == takes for layout in layouts)
