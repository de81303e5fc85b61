"""Threads: predict on one model from several Python threads at once gives the serial
answers (the kernels release the GIL, so the threads really overlap inside C), and
training one model while another thread predicts with a copy leaves both results equal
to their serial runs."""
import threading

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

THREADS = 4


def mlp():
    return keras.Sequential([keras.Input((12,)), layers.Dense(32, activation="relu"),
                             layers.Dense(16, activation="tanh"), layers.Dense(3)])


def cnn():
    return keras.Sequential([keras.Input((12, 12, 1)), layers.Conv2D(8, 3, activation="relu"),
                             layers.MaxPooling2D(), layers.Flatten(),
                             layers.Dense(10, activation="softmax")])


def lstm():
    return keras.Sequential([keras.Input((9, 5)), layers.LSTM(16, return_sequences=True),
                             layers.LSTM(8), layers.Dense(2)])


MODELS = {"mlp": (mlp, (12,)), "cnn": (cnn, (12, 12, 1)), "lstm": (lstm, (9, 5))}


def run_threads(targets):
    """Start every target together (a barrier), join them, re-raise the first error."""
    barrier, errors = threading.Barrier(len(targets)), []

    def wrap(target):
        def run():
            try:
                barrier.wait()
                target()
            except BaseException as error:   # noqa: BLE001 (re-raised below)
                errors.append(error)
        return run
    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_from_threads_equals_serial(name):
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((40 + 7 * i,) + shape).astype(np.float32)
              for i in range(THREADS)]
    serial = [model.predict(x, batch_size=16, verbose=0) for x in inputs]
    results = [[None] * 3 for _ in range(THREADS)]

    def worker(i):
        def run():
            for repeat in range(3):
                results[i][repeat] = model.predict(inputs[i], batch_size=16, verbose=0)
        return run
    run_threads([worker(i) for i in range(THREADS)])
    for i in range(THREADS):
        for got in results[i]:
            np.testing.assert_array_equal(got, serial[i])


def _data(shape, classes, n=96, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(classes, size=n)]
    return x, y


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_while_a_copy_predicts(name):
    build, shape = MODELS[name]
    classes = {"mlp": 3, "cnn": 10, "lstm": 2}[name]
    x, y = _data(shape, classes)
    probe = np.random.default_rng(3).standard_normal((50,) + shape).astype(np.float32)

    def fresh():
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="categorical_crossentropy" if name == "cnn" else "mse")
        return model

    def train(model):
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return [w.copy() for w in model.get_weights()]

    trained_serially = train(fresh())
    original = fresh()
    copy = build()
    copy.set_weights(original.get_weights())
    predicted_serially = copy.predict(probe, batch_size=8, verbose=0)

    predictions, trained = [], []

    def predictor():
        for _ in range(6):
            predictions.append(copy.predict(probe, batch_size=8, verbose=0))
    run_threads([lambda: trained.append(train(original)), predictor])
    for got, expected in zip(trained[0], trained_serially):
        np.testing.assert_array_equal(got, expected)
    assert len(predictions) == 6
    for got in predictions:
        np.testing.assert_array_equal(got, predicted_serially)
