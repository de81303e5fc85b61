"""Embedding and Masking: gradients, the gather/scatter kernels against the reference,
masks flowing into recurrent layers and the loss, and clear errors on bad indices."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers.testing import (check_layer_gradients, check_layer_native_matches_reference,
                              run_layer_test)

rng = np.random.default_rng(0)
INDICES = np.array([[1, 4, 4, 0], [3, 0, 2, 4]])

# name -> (factory, input, training)
GRADIENT_CASES = {
    "Embedding": (lambda: layers.Embedding(5, 3), INDICES, False),
    "Embedding_mask_zero_3d_indices": (lambda: layers.Embedding(6, 2, mask_zero=True),
                                       rng.integers(0, 6, size=(2, 3, 2)), False),
    "Masking": (lambda: layers.Masking(mask_value=0.5),
                np.where(rng.random((2, 4, 3)) < 0.3, 0.5, rng.normal(size=(2, 4, 3))), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


def test_embedding_gathers_rows_and_scatters_repeated_gradients():
    layer = layers.Embedding(5, 3)
    layer(INDICES)
    table = layer.get_weights()[0]
    np.testing.assert_array_equal(layer(INDICES), table[INDICES])
    y, backprop = layer._train_forward(INDICES, True)
    layer.embeddings.grad = None
    backprop(np.ones_like(y))
    counts = np.bincount(INDICES.ravel(), minlength=5)[:, None] * np.ones((1, 3))
    np.testing.assert_array_equal(layer.embeddings.grad, counts)


def test_embedding_scatter_is_thread_independent():
    layer = layers.Embedding(50, 64)
    indices = rng.integers(0, 50, size=(300, 20))
    layer(indices)
    y, backprop = layer._train_forward(indices, True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    grads = []
    threads = keras.get_num_threads()
    try:
        for n in (1, 2):
            keras.set_num_threads(n)
            layer.embeddings.grad = None
            backprop(dy)
            grads.append(layer.embeddings.grad.copy())
    finally:
        keras.set_num_threads(threads)
    np.testing.assert_array_equal(grads[0], grads[1])


def test_keras_defaults_and_config():
    keras.utils.set_random_seed(0)
    layer = run_layer_test(layers.Embedding, {"input_dim": 10, "output_dim": 4}, (2, 3), (2, 3, 4),
                           expected_num_trainable_weights=1, input_dtype="int64")
    table = layer.get_weights()[0]
    assert layer.weights[0].name == "embeddings" and layer.count_params() == 40
    assert np.abs(table).max() <= 0.05 and np.abs(table).max() > 0.01
    config = layer.get_config()
    assert config["mask_zero"] is False and config["input_dim"] == 10
    run_layer_test(layers.Masking, {"mask_value": 1.0}, (2, 3, 4), (2, 3, 4))


def test_mask_zero_gives_the_mask_and_integer_input_stays_integer():
    layer = layers.Embedding(5, 2, mask_zero=True)
    np.testing.assert_array_equal(layer.compute_mask(INDICES, None), INDICES != 0)
    assert layers.Embedding(5, 2).compute_mask(INDICES, None) is None
    assert layer._convert_one(INDICES.astype(np.int32)).dtype == np.int64
    assert layer._convert_one(INDICES.astype(np.float64)).dtype == np.int64


@pytest.mark.parametrize("bad, message", [
    (np.array([[1, 5]]), "index 5 is out of range"),
    (np.array([[-1, 2]]), "index -1 is out of range"),
    (np.array([[1.5, 2.0]]), "non-integer"),
    (np.array([["a", "b"]]), "integer indices"),
])
def test_bad_indices_are_clear_errors_before_any_change(bad, message):
    model = keras.Sequential([layers.Embedding(5, 2, input_shape=(2,)), layers.Flatten(),
                              layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=message):
        model.predict(bad, verbose=0)
    with pytest.raises((ValueError, TypeError), match=message):
        model.layers[0](bad)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="input_dim=0"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim=-2"):
        layers.Embedding(3, -2)


def test_masking_layer_masks_steps_and_zeroes_them():
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    x[0, 1] = 0
    x[1, 3] = 0
    layer = layers.Masking()
    np.testing.assert_array_equal(layer.compute_mask(x, None),
                                  [[True, False, True, True], [True, True, True, False]])
    np.testing.assert_array_equal(layer(x), x)


def test_padded_sequences_give_the_same_result_as_unpadded_ones():
    """mask_zero -> LSTM: trailing padding changes nothing (Keras semantics)."""
    model = keras.Sequential([layers.InputLayer(shape=(None,), dtype="int32"),
                              layers.Embedding(20, 4, mask_zero=True), layers.LSTM(3)])
    short = np.array([[3, 7, 2]])
    padded = np.array([[3, 7, 2, 0, 0]])
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(short, verbose=0),
                               rtol=1e-6, atol=1e-6)
    masked = keras.Sequential([layers.InputLayer(shape=(None, 2)), layers.Masking(), layers.SimpleRNN(2)])
    x = rng.normal(size=(1, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(masked.predict(np.concatenate([x, np.zeros((1, 2, 2))], 1), verbose=0),
                               masked.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_sequence_output_mask_weights_the_loss():
    model = keras.Sequential([layers.Embedding(10, 3, mask_zero=True),
                              layers.LSTM(2, return_sequences=True), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([[1, 2, 0, 0]])
    model.predict(x, verbose=0)
    model._forward_for_loss([x], training=False)
    np.testing.assert_array_equal(model._masked_sample_weight(None), [[1, 1, 0, 0]])


def test_embedding_kernels_refuse_none_indices():
    """None indices used to be read as an empty lookup (found by kernel fuzzing)."""
    from pylayers._kernels import embedding as embedding_kernels
    with pytest.raises(TypeError):
        embedding_kernels.embedding_forward(None, np.ones((3, 2), np.float32))
