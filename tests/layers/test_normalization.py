"""BatchNormalization and LayerNormalization: fused kernels against the float64
reference, finite-difference gradients, Keras 3 training/inference/frozen behaviour,
moving statistics, thread agreement and bad inputs."""
import numpy as np
import pytest

import pylayers
from pylayers import layers
from pylayers.testing import (check_layer_gradients, check_layer_native_matches_reference,
                              run_layer_test)

rng = np.random.default_rng(0)


def normal(*shape):
    return rng.normal(size=shape)


def random_affine_bn(**kwargs):
    return layers.BatchNormalization(gamma_initializer="random_uniform",
                                     beta_initializer="random_normal",
                                     moving_mean_initializer="random_normal", **kwargs)


GRADIENT_CASES = {
    "BatchNormalization_training": (lambda: random_affine_bn(), normal(6, 3), True),
    "BatchNormalization_training_4d": (lambda: random_affine_bn(), normal(2, 3, 2, 3), True),
    "BatchNormalization_inference": (lambda: random_affine_bn(), normal(4, 3), False),
    "BatchNormalization_axis1_no_scale": (lambda: layers.BatchNormalization(axis=1, scale=False),
                                          normal(4, 3, 2), True),
    "BatchNormalization_no_center": (lambda: random_affine_bn(center=False), normal(5, 2), True),
    "LayerNormalization": (lambda: layers.LayerNormalization(gamma_initializer="random_uniform",
                                                             beta_initializer="random_normal"),
                           normal(3, 4), True),
    "LayerNormalization_3d_two_axes": (lambda: layers.LayerNormalization(axis=[1, 2]),
                                       normal(2, 3, 4), False),
    "LayerNormalization_middle_axis": (lambda: layers.LayerNormalization(axis=1, center=False),
                                       normal(2, 3, 4), False),
    "LayerNormalization_rms": (lambda: layers.LayerNormalization(rms_scaling=True), normal(3, 4), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (33, 17), (4, 5, 6, 65), (300, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_shapes_match_reference(shape, training):
    check_layer_native_matches_reference(random_affine_bn(), normal(*shape) * 3 + 1, training)


@pytest.mark.parametrize("shape", [(1, 3), (7, 5), (4, 5, 130)])
def test_layer_norm_shapes_match_reference(shape):
    check_layer_native_matches_reference(layers.LayerNormalization(), normal(*shape) * 3 + 1)


def test_batch_norm_training_uses_batch_statistics_and_updates_moving_ones_once():
    bn = layers.BatchNormalization()
    x = (normal(64, 3) * 2 + 5).astype(np.float32)
    bn.build(x.shape)
    y, _ = bn._train_forward(x, True)
    mean, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * var, rtol=1e-5)
    moving = [w.copy() for w in bn.get_weights()]
    inferred = bn(x)   # inference: moving statistics, no update
    np.testing.assert_allclose(inferred, (x - moving[2]) / np.sqrt(moving[3] + 1e-3), rtol=1e-5)
    for a, b in zip(moving, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_frozen_batch_norm_uses_moving_statistics_in_training_and_learns_nothing():
    bn = random_affine_bn()
    x = normal(16, 4).astype(np.float32)
    bn(x)
    bn.trainable = False
    before = bn.get_weights()
    y, backprop = bn._train_forward(x, True)
    np.testing.assert_allclose(y, bn(x), rtol=1e-6)
    backprop(np.ones_like(y))
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert bn.trainable_weights == [] and all(w.grad is None for w in bn.weights)


def test_weights_in_keras_order():
    bn = layers.BatchNormalization()
    bn(np.zeros((2, 3, 3, 5)))
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert (len(bn.trainable_weights), len(bn.non_trainable_weights), bn.count_params()) == (2, 2, 20)
    ln = layers.LayerNormalization()
    ln(np.zeros((2, 5)))
    assert [w.name for w in ln.weights] == ["gamma", "beta"] and ln.count_params() == 10


def test_one_and_two_threads_agree_bitwise():
    x = normal(512, 48).astype(np.float32)
    dy = normal(512, 48).astype(np.float32)
    saved = pylayers.get_num_threads()
    for layer, training in ((random_affine_bn(), True), (layers.LayerNormalization(), True)):
        layer(x)
        results = []
        try:
            for threads in (1, 2):
                pylayers.set_num_threads(threads)
                for w in layer.trainable_weights:
                    w.grad = None
                y, backprop = layer._forward(x, training)
                results.append([y, backprop(dy)] + [w.grad for w in layer.trainable_weights])
        finally:
            pylayers.set_num_threads(saved)
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, kwargs, in_shape, n_train, n_non_train", [
    (layers.BatchNormalization, {}, (4, 3), 2, 2),
    (layers.BatchNormalization, {"axis": 1, "center": False, "momentum": 0.9}, (4, 3, 2), 1, 2),
    (layers.LayerNormalization, {}, (4, 3), 2, 0),
    (layers.LayerNormalization, {"axis": [1, 2], "epsilon": 0.1}, (2, 3, 4), 2, 0),
])
def test_run_layer_test(cls, kwargs, in_shape, n_train, n_non_train):
    run_layer_test(cls, kwargs, in_shape, in_shape, n_train, n_non_train)


@pytest.mark.parametrize("factory, message", [
    (lambda: layers.BatchNormalization(momentum=2), "momentum"),
    (lambda: layers.BatchNormalization(epsilon=-1), "epsilon"),
    (lambda: layers.BatchNormalization(axis="x"), "axis"),
    (lambda: layers.LayerNormalization(axis="x"), "axis"),
])
def test_bad_arguments(factory, message):
    with pytest.raises((ValueError, TypeError), match=message):
        factory()


def test_bad_inputs_name_layer_and_shape():
    bn = layers.BatchNormalization(name="bn_chan")
    bn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"bn_chan.*value 3.*\(2, 4\)"):
        bn(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"bn_axis.*axis=3.*\(2, 3\)"):
        layers.BatchNormalization(axis=3, name="bn_axis")(np.zeros((2, 3)))
    ln = layers.LayerNormalization(name="ln_chan")
    ln(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"ln_chan.*\(2, 5\)"):
        ln(np.zeros((2, 5)))


# ---- regressions found by tests/reliability (kernel fuzzing) ------------------------------

def test_moments_of_an_empty_batch_are_nan_not_stale_memory():
    """bn_moments used to return early for zero rows, leaving mean/var as whatever the
    caller's np.empty held (then folded into the moving statistics)."""
    from pylayers._kernels import normalization as norm_kernels
    mean, var = np.ones(3, np.float32), np.ones(3, np.float32)
    norm_kernels.bn_moments(np.zeros((0, 3), np.float32), mean, var)
    assert np.isnan(mean).all() and np.isnan(var).all()
    mean, inv_std = np.ones(2, np.float32), np.ones(2, np.float32)
    norm_kernels.layer_norm_forward(np.zeros((2, 0), np.float32), None, None, 1e-3,
                                    np.zeros((2, 0), np.float32), mean, inv_std)
    assert np.isnan(mean).all() and np.isnan(inv_std).all()


def test_inference_mode_bn_gradient_ignores_nan_elsewhere_in_x():
    """With fixed statistics dx = dy * gamma / sqrt(var + eps): a NaN in x used to leak
    into dx through a term multiplied by zero."""
    from pylayers._kernels import normalization as norm_kernels
    f32 = lambda *shape: normal(*shape).astype(np.float32)   # noqa: E731
    x = f32(4, 3)
    x[0, 0] = np.nan
    mean, var, gamma = f32(3), np.abs(f32(3)) + np.float32(0.5), f32(3)
    dy, dx = f32(4, 3), np.empty((4, 3), np.float32)
    norm_kernels.bn_backward(x, mean, var, gamma, 1e-3, dy, False, None, None, dx)
    np.testing.assert_allclose(dx, dy * gamma / np.sqrt(var.astype(np.float64) + 1e-3),
                               rtol=1e-5)


def test_normalization_kernels_refuse_none_arrays():
    from pylayers._kernels import normalization as norm_kernels
    with pytest.raises(TypeError):
        norm_kernels.bn_moments(np.zeros((2, 3), np.float32), None, np.zeros(3, np.float32))
