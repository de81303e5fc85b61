"""A Sequential model of Dense layers only trains an epoch with no user code through
DenseStackSteps (pylayers.models.dense_steps): the same weights, history and errors,
bit for bit, as Model._train_batch, and the general step wherever it does not apply."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import constraints, layers, regularizers
from pylayers.models import dense_steps
from pylayers.models.model import Model
from pylayers.models.sequential import Sequential


def data(n=100, features=12, classes=4):
    rng = np.random.default_rng(5)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def two_layers(**dense_options):
    return [layers.Dense(16, activation="relu", **dense_options),
            layers.Dense(4, activation="softmax")]


# name -> (layers, compile arguments, targets from the labels)
CASES = {
    "sparse_adam": (lambda: [layers.Dense(24, activation="relu"),
                             layers.Dense(16, activation="tanh", use_bias=False),
                             layers.Dense(4, activation="softmax")],
                    dict(optimizer="adam", loss="sparse_categorical_crossentropy",
                         metrics=["accuracy"]), lambda y: y),
    "one_hot_rmsprop": (two_layers, dict(optimizer="rmsprop", loss="categorical_crossentropy"),
                        lambda y: np.eye(4, dtype=np.float32)[y]),
    "mse_sgd_sigmoid": (lambda: [layers.Dense(16, activation="elu"),
                                 layers.Dense(4, activation="sigmoid")],
                        dict(optimizer="sgd", loss="mse"),
                        lambda y: np.eye(4, dtype=np.float32)[y]),
    "frozen_constrained_weighted_loss": (
        lambda: [layers.Dense(16, activation="relu", kernel_constraint=constraints.MaxNorm(1.0)),
                 layers.Dense(16, activation="relu", trainable=False),
                 layers.Dense(4, activation="softmax")],
        dict(optimizer="adam", loss="sparse_categorical_crossentropy", loss_weights=[0.5]),
        lambda y: y),
}


def fit(name, planned, monkeypatch, sample_weight=None, threads=None):
    """Weights, history and the number of steps DenseStackSteps took, after 2 epochs of
    batches of 32 (the last one 4 rows), with the steps allowed or not."""
    build, compile_args, targets = CASES[name]
    taken = []
    original = dense_steps.DenseStackSteps.train_batch

    def spy(self, *args, **kwargs):
        taken.append(1)
        return original(self, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(dense_steps.DenseStackSteps, "train_batch", spy)
        if not planned:
            patch.setattr(Sequential, "_epoch_train_batch", Model._epoch_train_batch)
        if threads:
            keras.set_num_threads(threads)
        keras.utils.set_random_seed(9)
        model = keras.Sequential([layers.InputLayer(shape=(12,))] + build())
        model.compile(**compile_args)
        x, y = data()
        history = model.fit(x, targets(y), batch_size=32, epochs=2, verbose=0,
                            sample_weight=sample_weight)
    return model.get_weights(), history.history, len(taken)


@pytest.mark.parametrize("name", CASES)
def test_the_steps_give_the_bits_of_the_general_step(name, monkeypatch):
    weights, history, taken = fit(name, True, monkeypatch)
    expected_weights, expected_history, _ = fit(name, False, monkeypatch)
    assert taken == 8   # every step of both epochs
    for got, expected in zip(weights, expected_weights):
        np.testing.assert_array_equal(got, expected)
    assert history == expected_history


def test_sample_weights_and_two_threads_give_the_same_bits(monkeypatch, restore_threads):
    sample_weight = np.random.default_rng(6).random(100).astype(np.float32)
    runs = [fit("sparse_adam", planned, monkeypatch, sample_weight, threads)
            for planned, threads in ((False, 1), (True, 1), (True, 2))]
    assert [taken for _, _, taken in runs] == [0, 8, 8]
    for weights, history, _ in runs[1:]:
        for got, expected in zip(weights, runs[0][0]):
            np.testing.assert_array_equal(got, expected)
        assert history == runs[0][1]


class Counting(keras.callbacks.Callback):
    pass


@pytest.mark.parametrize("what", ["user_callback", "weight_regularizer", "non_dense_layer",
                                  "one_dense_layer"])
def test_the_general_step_where_the_steps_do_not_apply(what, monkeypatch):
    build = {"weight_regularizer": lambda: two_layers(kernel_regularizer=regularizers.L2(0.1)),
             "non_dense_layer": lambda: [layers.Dense(16, activation="relu"),
                                         layers.Dropout(0.5), layers.Dense(4)],
             "one_dense_layer": lambda: [layers.Dense(4, activation="softmax")]}.get(what, two_layers)
    taken = []
    original = dense_steps.DenseStackSteps.train_batch
    monkeypatch.setattr(dense_steps.DenseStackSteps, "train_batch",
                        lambda self, *a, **k: taken.append(1) or original(self, *a, **k))
    model = keras.Sequential([layers.InputLayer(shape=(12,))] + build())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data()
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                        callbacks=[Counting()] if what == "user_callback" else None)
    assert taken == [] and len(history.history["loss"]) == 2


def test_a_bad_label_is_reported_as_by_the_general_step(monkeypatch):
    def error(planned):
        with monkeypatch.context() as patch:
            if not planned:
                patch.setattr(Sequential, "_epoch_train_batch", Model._epoch_train_batch)
            model = keras.Sequential([layers.InputLayer(shape=(12,))] + two_layers())
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            x, y = data()
            y[70] = 4   # the third batch
            with pytest.raises(ValueError) as raised:
                model.fit(x, y, batch_size=32, verbose=0)
            return str(raised.value), model.optimizer.iterations
    assert error(True) == error(False)
