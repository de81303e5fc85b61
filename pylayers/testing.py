"""Checks every layer and op must pass: finite-difference gradients in float64
reference mode, compiled kernels against that reference, and a run_layer_test-style
check of shapes, weight counts and the get_config round trip."""
import contextlib

import numpy as np

from pylayers.ops import Tape, Tensor, reference_mode, value_of
from pylayers.utils.rng import set_random_seed


@contextlib.contextmanager
def float64_weights(layer):
    """Hold the layer's weights in float64 while a reference-mode check runs."""
    variables = layer.weights
    saved = [(v.value, v.grad) for v in variables]
    try:
        for v in variables:
            v.value, v.grad = v.value.astype(np.float64), None
        yield variables
    finally:
        for v, (value, grad) in zip(variables, saved):
            v.value, v.grad = value, grad


def _layer_objective(layer, training, seed):
    """f(x) -> (y, backprop) with the same random draws every call (dropout)."""
    def forward(x):
        if seed is not None:
            set_random_seed(seed)
        return layer._train_forward(x, training)
    return forward


def _numeric_gradient(f, array, eps):
    """Central differences of the scalar f() with respect to every entry of `array`."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat, grad_flat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        upper = f()
        flat[i] = original - eps
        lower = f()
        flat[i] = original
        grad_flat[i] = (upper - lower) / (2 * eps)
    return grad


def check_layer_gradients(layer, x, training=False, seed=0, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Finite-difference check of dx and every trainable weight's gradient, float64."""
    layer(np.asarray(x, dtype=np.float32) if not isinstance(x, list) else x)  # build
    rng = np.random.default_rng(1)
    inputs = [np.array(v, dtype=np.float64) for v in x] if isinstance(x, list) else np.array(x, dtype=np.float64)
    with reference_mode(), float64_weights(layer):
        forward = _layer_objective(layer, training, seed)
        y, backprop = forward(inputs)
        dy = rng.standard_normal(np.shape(y))
        trainable = layer.trainable_weights
        for v in trainable:
            v.grad = np.zeros_like(v.value)
        dx = backprop(dy)

        def objective():
            """<y, dy> plus the layer's own loss terms (activity regularization)."""
            y_value = value_of(forward(inputs)[0])
            return float(np.sum(y_value * dy)) + sum(layer.losses)
        targets = list(zip(inputs, dx)) if isinstance(inputs, list) else [(inputs, dx)]
        targets += [(v.value, v.grad.copy()) for v in trainable]
        for array, analytic in targets:
            np.testing.assert_allclose(analytic, _numeric_gradient(objective, array, eps),
                                       rtol=rtol, atol=atol)


def check_layer_native_matches_reference(layer, x, training=False, seed=0, rtol=1e-5, atol=1e-5):
    """The compiled (float32) forward and backward agree with the float64 reference."""
    layer(np.asarray(x, dtype=np.float32))
    dy = np.random.default_rng(2).standard_normal(layer(np.asarray(x, dtype=np.float32)).shape)
    results = []
    for reference in (False, True):
        context = reference_mode() if reference else contextlib.nullcontext()
        with context:
            for v in layer.trainable_weights:
                v.grad = None
            set_random_seed(seed)
            inputs = np.asarray(x, dtype=np.float64 if reference else np.float32)
            y, backprop = layer._train_forward(inputs, training)
            dx = backprop(dy.astype(y.dtype))
            grads = [np.array(v.grad, dtype=np.float64) for v in layer.trainable_weights]
        results.append((np.asarray(y, np.float64), np.asarray(dx, np.float64), grads))
    (y32, dx32, g32), (y64, dx64, g64) = results
    np.testing.assert_allclose(y32, y64, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx32, dx64, rtol=rtol, atol=atol)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1, np.abs(b).max()))



def layer_train_step(layer, x, dy):
    """[output, input gradient, then each trainable weight's gradient] of one compiled
    training step of layer on x with output gradient dy (gradients reset first)."""
    for v in layer.trainable_weights:
        v.grad = None
    y, backprop = layer._train_forward(x, True)
    dx = backprop(dy)
    return [y, dx] + [v.grad.copy() for v in layer.trainable_weights]

def check_op_gradients(op, *args, eps=1e-6, rtol=1e-5, atol=1e-7, seed=3):
    """Finite-difference check of op(*args) with respect to every float array argument."""
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              else a for a in args]
    with reference_mode():
        with Tape() as tape:
            leaves = [tape.leaf(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                      for a in arrays]
            out = op(*leaves)
        dy = rng.standard_normal(np.shape(value_of(out)))
        tracked = [leaf for leaf in leaves if isinstance(leaf, Tensor)]
        grads = tape.backward(out, dy, tracked)

        def objective():
            return float(np.sum(np.asarray(value_of(op(*arrays))) * dy))
        for leaf, analytic in zip(tracked, grads):
            analytic = np.zeros_like(leaf.data) if analytic is None else analytic
            # leaf.data is the very array objective() reads, so perturbing it moves f.
            np.testing.assert_allclose(analytic, _numeric_gradient(objective, leaf.data, eps),
                                       rtol=rtol, atol=atol)


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape,
                   expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
                   input_dtype="float32"):
    """Build, call, count weights, and round-trip the config of a layer class."""
    layer = layer_cls(**init_kwargs)
    x = np.random.default_rng(0).standard_normal(input_shape).astype(input_dtype)
    y = layer(x)
    assert tuple(y.shape) == tuple(expected_output_shape), (y.shape, expected_output_shape)
    assert y.dtype == np.float32
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    symbolic_shape = tuple(layer.compute_output_shape((None,) + tuple(input_shape[1:])))
    assert symbolic_shape == (None,) + tuple(expected_output_shape[1:])
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)
    return layer
