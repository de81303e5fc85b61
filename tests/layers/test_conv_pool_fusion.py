"""Training a convolution followed by max pooling in chunks of images
(pylayers.layers.fusion): the same outputs as the two layers one after the other, the same
gradients to float rounding, the same bits on any thread count, and the two layers run
apart wherever the fused path does not apply."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers, regularizers
from pylayers.layers import fusion

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
