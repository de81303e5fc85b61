"""Core and activation layers: run_layer_test checks, finite-difference gradients in the
float64 reference, fused kernels against the reference, and clear errors."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers.testing import (check_layer_gradients, check_layer_native_matches_reference,
                              layer_train_step, run_layer_test)

rng = np.random.default_rng(0)


def away_from_zero(*shape):
    return np.sign(rng.uniform(-1, 1, size=shape)) * rng.uniform(0.2, 1.5, size=shape)


# name -> (factory, input, training). Inputs avoid activation kinks.
GRADIENT_CASES = {
    "Dense_relu": (lambda: layers.Dense(4, activation="relu", bias_initializer="ones"),
                   rng.uniform(0, 1, size=(3, 5)), False),
    "Dense_softmax": (lambda: layers.Dense(6, activation="softmax"), rng.normal(size=(4, 3)), False),
    "Dense_sigmoid_3d": (lambda: layers.Dense(3, activation="sigmoid"), rng.normal(size=(2, 3, 4)), False),
    "Dense_tanh": (lambda: layers.Dense(3, activation="tanh"), rng.normal(size=(5, 2)), False),
    "Dense_gelu": (lambda: layers.Dense(3, activation="gelu"), rng.normal(size=(4, 2)), False),
    "Dense_linear_no_bias": (lambda: layers.Dense(3, use_bias=False), rng.normal(size=(4, 2)), False),
    "Activation_elu": (lambda: layers.Activation("elu"), away_from_zero(3, 4), False),
    "Activation_swish": (lambda: layers.Activation("swish"), rng.normal(size=(3, 4)), False),
    "ReLU": (lambda: layers.ReLU(), away_from_zero(3, 4), False),
    "ReLU_capped": (lambda: layers.ReLU(max_value=1.0, negative_slope=0.1),
                    np.array([[-1.0, 0.5, 0.8, 1.5]]), False),
    "LeakyReLU": (lambda: layers.LeakyReLU(negative_slope=0.1), away_from_zero(3, 4), False),
    "ELU": (lambda: layers.ELU(alpha=0.5), away_from_zero(3, 4), False),
    "Softmax": (lambda: layers.Softmax(), rng.normal(size=(3, 4)), False),
    "PReLU": (lambda: layers.PReLU(alpha_initializer="random_uniform"), away_from_zero(3, 2, 4), False),
    "PReLU_shared": (lambda: layers.PReLU(shared_axes=[1], alpha_initializer="ones"),
                     away_from_zero(3, 2, 4), False),
    "Flatten": (lambda: layers.Flatten(), rng.normal(size=(2, 3, 4)), False),
    "Reshape": (lambda: layers.Reshape((2, -1)), rng.normal(size=(2, 6)), False),
    "Dropout_training": (lambda: layers.Dropout(0.4), rng.normal(size=(4, 5)), True),
    "ActivityRegularization": (lambda: layers.ActivityRegularization(l1=0.01, l2=0.1),
                               away_from_zero(3, 4), True),
    "Lambda": (lambda: layers.Lambda(lambda x: keras.ops.square(x) * 0.5), rng.normal(size=(2, 3)), False),
    "Dense_activity_regularized": (lambda: layers.Dense(3, activity_regularizer="l2"),
                                   rng.normal(size=(4, 2)), True),
}

@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape, n_train", [
    (layers.Dense, {"units": 3, "activation": "relu"}, (2, 5), (2, 3), 2),
    (layers.Dense, {"units": 3, "use_bias": False}, (2, 4, 5), (2, 4, 3), 1),
    (layers.Activation, {"activation": "tanh"}, (2, 5), (2, 5), 0),
    (layers.Flatten, {}, (2, 3, 4), (2, 12), 0),
    (layers.Reshape, {"target_shape": (3, 2)}, (2, 6), (2, 3, 2), 0),
    (layers.Dropout, {"rate": 0.5}, (2, 5), (2, 5), 0),
    (layers.ActivityRegularization, {"l1": 0.1}, (2, 5), (2, 5), 0),
    (layers.ReLU, {"max_value": 6.0}, (2, 5), (2, 5), 0),
    (layers.LeakyReLU, {}, (2, 5), (2, 5), 0),
    (layers.ELU, {"alpha": 0.5}, (2, 5), (2, 5), 0),
    (layers.Softmax, {}, (2, 5), (2, 5), 0),
    (layers.PReLU, {}, (2, 3, 5), (2, 3, 5), 1),
])
def test_run_layer_test(cls, kwargs, in_shape, out_shape, n_train):
    run_layer_test(cls, kwargs, in_shape, out_shape, expected_num_trainable_weights=n_train)


def test_dense_keras_defaults_and_layout():
    keras.utils.set_random_seed(0)
    dense = layers.Dense(32)
    dense(np.zeros((1, 10)))
    kernel, bias = dense.get_weights()
    assert kernel.shape == (10, 32) and bias.shape == (32,)
    limit = np.sqrt(6 / (10 + 32))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    np.testing.assert_array_equal(bias, 0)
    assert dense.count_params() == 10 * 32 + 32


def test_prelu_parameter_count_and_leaky_relu_default_slope():
    prelu = layers.PReLU(shared_axes=[1, 2])
    prelu(np.zeros((1, 4, 5, 3)))
    assert prelu.count_params() == 3
    np.testing.assert_allclose(layers.LeakyReLU()(np.array([[-1.0, 2.0]])), [[-0.3, 2.0]])


def test_dropout_is_inverted_and_inactive_at_inference():
    x = np.ones((1000, 50), dtype=np.float32)
    drop = layers.Dropout(0.2)
    np.testing.assert_array_equal(drop(x), x)
    y = drop(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.8)}
    assert abs((y == 0).mean() - 0.2) < 0.01


def test_dense_on_numpy_returns_float32_from_float64_input():
    y = layers.Dense(5, activation="relu")(np.random.rand(1, 10))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (1, 5)


def test_default_names_count_up():
    keras.backend.clear_session()
    assert [layers.Dense(1).name for _ in range(3)] == ["dense", "dense_1", "dense_2"]
    assert layers.ActivityRegularization().name == "activity_regularization"


@pytest.mark.parametrize("kwargs, message", [
    ({"units": -3}, "Received: units=-3"),
    ({"units": 0}, "Received: units=0"),
    ({"units": 4, "activation": "nope"}, "nope"),
    ({"units": 4, "foo": 1}, "foo"),
])
def test_dense_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layers.Dense(**kwargs)


def test_dense_rejects_wrong_input_width_without_touching_weights():
    dense = layers.Dense(3)
    dense(np.zeros((2, 4)))
    before = dense.get_weights()
    with pytest.raises(ValueError, match=r"dense.*expected axis -1 of input shape to have value 4.*\(2, 5\)"):
        dense(np.zeros((2, 5)))
    for a, b in zip(before, dense.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_set_weights_checks_every_shape_before_assigning():
    dense = layers.Dense(3)
    dense(np.zeros((1, 2)))
    before = dense.get_weights()
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        dense.set_weights([np.ones((2, 3)), np.ones(4)])
    np.testing.assert_array_equal(dense.get_weights()[0], before[0])


def test_complex_and_object_inputs_are_type_errors():
    with pytest.raises(TypeError, match="dense"):
        layers.Dense(2, name="dense_c")(np.zeros((1, 3), dtype=complex))
    with pytest.raises(TypeError):
        layers.Dense(2)(np.array([[object()]], dtype=object))


def test_custom_layer_trains_through_ops_with_no_backward():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, inputs):
            return keras.ops.tanh(inputs * self.w) + self.w

    check_layer_gradients(Scale(), rng.normal(size=(3, 4)))


def test_builtin_layer_inside_custom_layer_gets_gradients():
    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(3, activation="tanh")

        def call(self, inputs):
            return self.inner(inputs) * 2.0

    block = Block()
    block(np.zeros((1, 4)))
    assert len(block.trainable_weights) == 2
    check_layer_gradients(block, rng.normal(size=(3, 4)))


@pytest.mark.parametrize("base", [layers.Dense, layers.Conv1D])
def test_a_subclass_that_writes_its_own_call_runs_it(base):
    """Not the parent's compiled forward, which was written for the parent's call: in a
    model's predict, in __call__, and in its gradients."""
    class Doubled(base):
        def call(self, inputs):
            return super().call(inputs) * 2.0

    keras.utils.set_random_seed(0)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    layer = Doubled(4, **({"kernel_size": 2} if base is layers.Conv1D else {}))
    model = keras.Sequential([layers.InputLayer(shape=x.shape[1:]), layer])
    plain = base.call(layer, x)   # the parent's call on the same weights
    np.testing.assert_allclose(model.predict(x, verbose=0), 2.0 * plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x), 2.0 * plain, rtol=1e-5, atol=1e-6)
    check_layer_gradients(layer, rng.normal(size=x.shape))


def test_unaligned_inputs_are_aligned_at_the_layer_boundary():
    """The C kernels load floats at 4-byte alignment (UBSan found misaligned loads): the
    kernel wrappers refuse unaligned arrays, and layers copy such user data once."""
    from pylayers._kernels import dense as dense_kernels
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    unaligned = np.zeros(x.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x.shape)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    layer = layers.Dense(3)
    np.testing.assert_array_equal(np.asarray(layer(unaligned)), np.asarray(layer(x)))
    with pytest.raises(ValueError, match="dense_forward: .* not aligned"):
        dense_kernels.dense_forward(unaligned, layer.kernel.value, None, 0, 0.0,
                                    np.empty((4, 3), np.float32))


@pytest.mark.parametrize("operand", ["x", "w", "bias", "y"])
def test_dense_forward_checks_the_alignment_of_each_operand_itself(operand):
    """dense_forward (the batch-1 predict's hot call) checks its pointers in Cython rather
    than through the wrappers' Python check: each unaligned operand is refused by name,
    before y is written."""
    from pylayers._kernels import dense as dense_kernels

    def unaligned(array):
        copy = np.zeros(array.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(array.shape)
        copy[...] = array
        return copy

    rng = np.random.default_rng(3)
    operands = {"x": rng.standard_normal((2, 5)).astype(np.float32),
                "w": rng.standard_normal((5, 3)).astype(np.float32),
                "bias": rng.standard_normal(3).astype(np.float32),
                "y": np.full((2, 3), 7.0, np.float32)}
    operands[operand] = unaligned(operands[operand])
    with pytest.raises(ValueError, match=f"dense_forward: received {operand} whose data is "
                                         "not aligned"):
        dense_kernels.dense_forward(operands["x"], operands["w"], operands["bias"], 1, 0.0,
                                    operands["y"])
    np.testing.assert_array_equal(operands["y"], 7.0)


def test_dense_backward_overwrites_zeroed_gradients_and_adds_to_others():
    """zero_grad defers its zeros; Dense's kernel then writes the gradient instead of
    adding to it. Stale values never leak in, later uses add, and a gradient set by hand
    is added to."""
    dense = layers.Dense(3, activation="relu")
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    dy = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    dense(x)
    y, backprop = dense._forward(x, training=True)
    dz = dy.astype(np.float64) * (y > 0)
    expected_kernel, expected_bias = x.astype(np.float64).T @ dz, dz.sum(axis=0)
    for variable in dense.trainable_weights:
        variable.grad = np.full(variable.shape, 99.0, np.float32)
        variable.zero_grad()
    np.testing.assert_array_equal(dense.bias.grad, 0.0)     # read: the zeros appear
    dense.bias.zero_grad()
    backprop(dy)
    np.testing.assert_allclose(dense.kernel.grad, expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense.bias.grad, expected_bias, rtol=1e-5, atol=1e-6)
    backprop(dy)                                              # a second use adds
    np.testing.assert_allclose(dense.kernel.grad, 2 * expected_kernel, rtol=1e-5, atol=1e-6)
    dense.kernel.zero_grad()
    dense.bias.grad = np.ones(3, np.float32)                 # set by hand: added to
    backprop(dy)
    np.testing.assert_allclose(dense.kernel.grad, expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense.bias.grad, 1 + expected_bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "softmax", "linear"])
def test_dense_takes_a_time_major_sequence_in_place(activation):
    """A recurrent layer's output in training is its time-major states seen batch-major:
    Dense takes the rows in that order (no copy), gives its output and input gradient
    back the same way, and computes what it computes on a batch-major copy."""
    layer = layers.Dense(6, activation=activation)
    x_tm = rng.standard_normal((9, 5, 4)).astype(np.float32)   # (time, batch, features)
    x = x_tm.transpose(1, 0, 2)
    dy = rng.standard_normal((5, 9, 6)).astype(np.float32)     # batch-major, from a loss
    layer(x)
    y, dx, dkernel, dbias = layer_train_step(layer, x, dy)
    assert not y.flags.c_contiguous and y.transpose(1, 0, 2).flags.c_contiguous
    assert not dx.flags.c_contiguous and dx.transpose(1, 0, 2).flags.c_contiguous
    copy = layer_train_step(layer, np.ascontiguousarray(x), dy)
    np.testing.assert_array_equal(y, copy[0])    # rows computed alone: the same bits
    np.testing.assert_array_equal(dx, copy[1])
    for got, want in zip((dkernel, dbias), copy[2:]):   # sums over rows in another order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    kernel = layer.kernel.value.astype(np.float64)
    if activation == "linear":   # against float64: dW = x^T dy, db = sum dy, dx = dy W^T
        np.testing.assert_allclose(dkernel, np.einsum("btk,btn->kn", x64, dy64), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(dbias, dy64.sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, dy64 @ kernel.T, rtol=1e-5, atol=1e-5)
