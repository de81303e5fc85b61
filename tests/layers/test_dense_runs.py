"""Training consecutive Dense layers as one chain of kernel calls
(pylayers.layers.dense_runs): the same weights, losses and input gradients, bit for bit,
as the layers trained one by one, on one thread and on two; and the layers one by one
wherever a chain does not apply."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import constraints, layers, regularizers
from pylayers.layers import dense_runs


class OwnCall(layers.Dense):
    """A Dense subclass writing its own call: trained under a tape, never chained."""

    def call(self, inputs):
        return super().call(inputs) * 0.5


# name -> (input features, layers, loss, layers expected to train in a chain)
CASES = {
    "four_in_a_row": (12, lambda: [
        layers.Dense(16, activation="relu"), layers.Dense(9, activation="tanh", use_bias=False),
        layers.Dense(7), layers.Dense(5, activation="softmax")],
        "sparse_categorical_crossentropy", 4),
    "sigmoid_output_mse": (6, lambda: [
        layers.Dense(8, activation="elu"), layers.Dense(5, activation="sigmoid")], "mse", 2),
    "frozen_middle_and_regularized": (10, lambda: [
        layers.Dense(8, activation="relu", kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                     kernel_constraint=constraints.MaxNorm(1.5)),
        layers.Dense(8, activation="leaky_relu", trainable=False),
        layers.Dense(5, activation="softmax")], "sparse_categorical_crossentropy", 3),
    "activity_regularizer_splits_the_run": (10, lambda: [
        layers.Dense(8, activation="relu"), layers.Dense(8, activation="relu"),
        layers.Dense(6, activity_regularizer=regularizers.L2(0.1)),
        layers.Dense(7, activation="relu"), layers.Dense(5, activation="softmax")],
        "sparse_categorical_crossentropy", 4),
    "subclass_and_activation_layer_between": (10, lambda: [
        layers.Dense(8, activation="relu"), OwnCall(8), layers.Dense(6),
        layers.Activation("relu"), layers.Dense(5, activation="softmax")],
        "sparse_categorical_crossentropy", 0),
}


def data(features, n=40):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, 5, n)


def trained(name, chained, monkeypatch, threads=None):
    """Weights, per-epoch losses and the model after 3 epochs of batches of 16 (the last
    one 8 rows), with chains allowed or not."""
    features, build, loss, _ = CASES[name]
    with monkeypatch.context() as patch:
        if not chained:
            patch.setattr(dense_runs, "chains", lambda layer: False)
        if threads:
            keras.set_num_threads(threads)
        keras.utils.set_random_seed(7)
        model = keras.Sequential([layers.InputLayer(shape=(features,))] + build())
        model.compile(optimizer="adam", loss=loss)
        x, y = data(features)
        if loss == "mse":
            y = np.random.default_rng(2).random((len(x), 5)).astype(np.float32)
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=True, verbose=0)
    return model.get_weights(), history.history["loss"], model


def chained_layers(model):
    return sum(1 for layer in model.layers if "_dense_chains" in layer.__dict__)


@pytest.mark.parametrize("name", CASES)
def test_a_chain_trains_with_the_bits_of_the_layers_one_by_one(name, monkeypatch):
    weights, losses, model = trained(name, True, monkeypatch)
    expected_weights, expected_losses, unchained = trained(name, False, monkeypatch)
    for got, expected in zip(weights, expected_weights):
        np.testing.assert_array_equal(got, expected)
    assert losses == expected_losses
    runs = chained_layers(model)   # each run keeps its chains on its first layer
    assert (runs > 0) == (CASES[name][3] > 0) and chained_layers(unchained) == 0
    if name == "activity_regularizer_splits_the_run":
        assert runs == 2   # Dense, Dense | regularized Dense alone | Dense, Dense


@pytest.mark.parametrize("name", ["four_in_a_row", "frozen_middle_and_regularized"])
def test_a_chain_gives_the_same_bits_on_one_and_two_threads(name, monkeypatch,
                                                            restore_threads):
    one, _, _ = trained(name, True, monkeypatch, threads=1)
    two, _, _ = trained(name, True, monkeypatch, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_a_chained_sequential_inside_a_model_hands_back_its_input_gradient(monkeypatch):
    def weights_after_training(chained):
        with monkeypatch.context() as patch:
            if not chained:
                patch.setattr(dense_runs, "chains", lambda layer: False)
            keras.utils.set_random_seed(3)
            inner = keras.Sequential([layers.InputLayer(shape=(8,)),
                                      layers.Dense(6, activation="relu"),
                                      layers.Dense(6, activation="tanh")])
            inputs = keras.Input(shape=(5,))
            outputs = layers.Dense(4, activation="softmax")(
                inner(layers.Dense(8, activation="relu")(inputs)))
            model = keras.Model(inputs, outputs)
            model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
            x, y = data(5, 24)
            model.fit(x, y % 4, batch_size=8, epochs=2, verbose=0)
            return model.get_weights(), chained_layers(inner)
    got, runs = weights_after_training(True)
    expected, _ = weights_after_training(False)
    assert runs == 1
    for a, b in zip(got, expected):   # the first Dense learns through the chain's dx
        np.testing.assert_array_equal(a, b)


def test_no_chain_for_inputs_the_kernels_cannot_read_as_they_are():
    stack = [layers.Dense(4), layers.Dense(3)]
    for layer in stack:
        layer.build((None, 6))
    x = np.zeros((5, 6), np.float32)
    assert dense_runs.dense_run_length(stack, 0, x, None) == 2
    assert dense_runs.dense_run_length(stack, 1, x, None) == 0   # one layer is no run
    for other in (x.astype(np.float64), np.asfortranarray(np.zeros((5, 6), np.float32)),
                  np.zeros((5, 2, 6), np.float32)):
        assert dense_runs.dense_run_length(stack, 0, other, None) == 0
    assert dense_runs.dense_run_length(stack, 0, x, np.ones(5, bool)) == 0


def test_a_chain_backward_refuses_arrays_of_other_shapes_by_layer():
    stack = [layers.Dense(4, activation="relu"), layers.Dense(3)]
    for layer, width in zip(stack, (6, 4)):
        layer.build((None, width))
    x = np.ones((5, 6), np.float32)
    y, backprop = dense_runs.dense_run_forward(stack, x)
    chain = stack[0]._dense_chains[next(iter(stack[0]._dense_chains))]
    dy = np.ones((5, 3), np.float32)
    targets = [layer._gradient_targets() for layer in stack]
    bad_targets = [targets[0], (np.zeros((3, 4), np.float32), targets[1][1], False)]
    with pytest.raises(ValueError, match=f"Dense layer '{stack[1].name}': kernel gradient has "
                                         "shape \\(3, 4\\); expected \\(4, 3\\)"):
        chain.backward(x, y, dy, bad_targets, False, None)
    with pytest.raises(ValueError, match="backward arrays of other shapes than the forward's"):
        chain.backward(x, y, dy[:4], targets, False, None)
    assert backprop(dy).shape == x.shape


def test_a_chain_backward_writes_the_gradient_arrays_each_call_hands_it():
    """The chain keeps the gradient arrays it has checked. Arrays handed in their place
    are checked and written, with the bits the first ones got, and the first ones are
    left alone; a frozen layer's arrays are not written; a bad array is refused by layer
    name after good ones were met."""
    stack = [layers.Dense(4, activation="relu"), layers.Dense(3)]
    for layer, width in zip(stack, (6, 4)):
        layer.build((None, width))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y, _ = dense_runs.dense_run_forward(stack, x)
    chain = stack[0]._dense_chains[next(iter(stack[0]._dense_chains))]
    dy = rng.standard_normal((5, 3)).astype(np.float32)

    def unwritten():
        return [(np.full(layer.kernel.shape, np.nan, np.float32),
                 np.full(layer.bias.shape, np.nan, np.float32), False) for layer in stack]
    first, second = unwritten(), unwritten()
    chain.backward(x, y, dy, first, False, None)
    kept = [array.copy() for kernel, bias, _ in first for array in (kernel, bias)]
    assert not any(np.isnan(array).any() for array in kept)
    chain.backward(x, y, dy * 0.5, second, False, None)   # other gradients, other arrays
    for array, was in zip((a for kernel, bias, _ in first for a in (kernel, bias)), kept):
        np.testing.assert_array_equal(array, was)
    assert not np.array_equal(second[1][0], kept[2])
    chain.backward(x, y, dy, second, False, None)
    for array, want in zip((a for kernel, bias, _ in second for a in (kernel, bias)), kept):
        np.testing.assert_array_equal(array, want)
    frozen = unwritten()
    chain.backward(x, y, dy, [frozen[0], (None, None, True)], False, None)
    assert np.isnan(frozen[1][0]).all() and np.isnan(frozen[1][1]).all()
    bad = [second[0], (np.zeros((3, 4), np.float32), second[1][1], False)]
    with pytest.raises(ValueError, match=f"Dense layer '{stack[1].name}': kernel gradient has "
                                         "shape \\(3, 4\\); expected \\(4, 3\\)"):
        chain.backward(x, y, dy, bad, False, None)


def test_a_penalty_removed_after_a_step_leaves_nothing_behind_in_a_chain():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([layers.InputLayer(shape=(6,)),
                              layers.Dense(5, activity_regularizer=regularizers.L2(1.0)),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = data(6, 8)
    model.fit(x, y % 3, batch_size=8, verbose=0)   # layer by layer, with the penalty
    assert model.layers[0]._step_losses
    model.layers[0].activity_regularizer = None
    model.fit(x, y % 3, batch_size=8, verbose=0)   # now chained
    assert chained_layers(model) == 1 and model.layers[0]._step_losses == []
