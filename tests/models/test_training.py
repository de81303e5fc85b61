"""Training end to end: parity with real Keras and a numpy Adam step, accuracy on the
bundled digits, callbacks and validation split, and rejected input."""
import pathlib

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"


def mlp_784_64_10(weights=None):
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(784,)),
                              layers.Dense(10, activation="softmax")])
    if weights is not None:
        model.set_weights(weights)
    return model


def keras_fixture_arrays(seed=1234, batch=8):
    """The weights, inputs and labels tests/fixtures/make_keras_fixtures.py used."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 0.05, size=shape).astype("float32")
               for shape in [(784, 64), (64,), (64, 10), (10,)]]
    x = rng.random((batch, 784)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, size=batch)]
    return weights, x, y


def numpy_adam_step(weights, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """One step written from Keras' formulas in float64: forward, clipped crossentropy,
    backward, Adam with bias-corrected learning rate."""
    w1, b1_, w2, b2_ = [w.astype(np.float64) for w in weights]
    h_pre = x @ w1 + b1_
    h = np.maximum(h_pre, 0)
    z = h @ w2 + b2_
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = np.mean(-np.sum(y * np.log(np.clip(p, 1e-7, 1 - 1e-7)), axis=1))
    dz = (p - y) / len(x)
    grads = [None, None, h.T @ dz, dz.sum(axis=0)]
    dh = dz @ w2.T * (h_pre > 0)
    grads[0], grads[1] = x.T @ dh, dh.sum(axis=0)
    alpha = lr * np.sqrt(1 - b2) / (1 - b1)
    new = []
    for w, g in zip([w1, b1_, w2, b2_], grads):
        m = (1 - b1) * g
        v = (1 - b2) * g * g
        new.append(w - alpha * m / (np.sqrt(v) + eps))
    return loss, new


def test_one_adam_step_matches_numpy_formulas_and_real_keras():
    weights, x, y = keras_fixture_arrays()
    model = mlp_784_64_10(weights)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    fixture = np.load(FIXTURES / "mlp_adam_step.npz")
    np.testing.assert_allclose(model.predict_on_batch(x), fixture["predictions_before"], atol=1e-6)
    loss = model.train_on_batch(x, y)
    expected_loss, expected_weights = numpy_adam_step(weights, x, y)
    assert abs(loss - expected_loss) < 1e-5
    assert abs(loss - float(fixture["loss"])) < 1e-5
    for got, want in zip(model.get_weights(), expected_weights):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(model.predict_on_batch(x), fixture["predictions_after"], atol=1e-5)


def test_brief_mlp_reaches_95_percent_on_bundled_digits():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 16.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 16.0
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(64,)),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.95, accuracy


def test_fit_returns_history_with_validation_taken_from_the_end():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(4,))])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    val_loss = model.evaluate(x[80:], y[80:], verbose=0)[0]
    assert abs(history.history["val_loss"][-1] - val_loss) < 1e-6


def test_early_stopping_and_regularized_loss_are_reported():
    x = np.ones((32, 3), dtype="float32")
    model = keras.Sequential([layers.Dense(1, input_shape=(3,), kernel_regularizer=keras.regularizers.L2(1.0))])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=1)
    history = model.fit(x, np.zeros((32, 1)), epochs=10, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 2          # no improvement with lr 0
    kernel = model.layers[0].get_weights()[0]
    prediction = x[:1] @ kernel
    expected = float(np.mean(prediction ** 2) + np.sum(kernel.astype(np.float64) ** 2))
    assert abs(history.history["loss"][0] - expected) < 1e-4


def test_thread_count_does_not_change_training():
    results = []
    for threads in (1, 2):
        keras.set_num_threads(threads)
        keras.utils.set_random_seed(3)
        model = keras.Sequential([layers.Dense(512, activation="relu", input_shape=(784,)),
                                  layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x = np.random.default_rng(0).random((256, 784)).astype("float32")
        model.fit(x, np.arange(256) % 10, batch_size=128, epochs=1, verbose=0)
        results.append(model.get_weights())
    keras.set_num_threads(2)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def compiled_mlp():
    model = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


@pytest.mark.parametrize("call, message", [
    (lambda m: m.fit(np.zeros((8, 5)), np.zeros((8, 3)), verbose=0), r"expected .*\(None, 4\).*\(8, 5\)"),
    (lambda m: m.fit(np.zeros((8, 4)), np.zeros((8, 7)), verbose=0), r"\(8, 7\).*\(8, 3\)|\(8, 3\).*\(8, 7\)"),
    (lambda m: m.fit(np.zeros((8, 4)), np.zeros((6, 3)), verbose=0), "x sizes: 8"),
    (lambda m: m.predict(np.zeros((2, 9)), verbose=0), r"\(2, 9\)"),
    (lambda m: m.fit(np.zeros((8, 4)), np.zeros((8, 3)), batch_size=0, verbose=0), "batch_size=0"),
])
def test_bad_input_is_rejected_and_weights_stay(call, message):
    model = compiled_mlp()
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        call(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_before_compile_and_unknown_names():
    model = keras.Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="not_a_loss"):
        model.compile(optimizer="adam", loss="not_a_loss")
    with pytest.raises(ValueError, match="not_an_optimizer"):
        model.compile(optimizer="not_an_optimizer", loss="mse")


def test_terminate_on_nan_stops_training():
    model = keras.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    x = np.full((64, 2), 1e10, dtype="float32")
    history = model.fit(x, np.zeros((64, 1)), epochs=5, batch_size=8, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1
    assert not np.isfinite(history.history["loss"][0])
