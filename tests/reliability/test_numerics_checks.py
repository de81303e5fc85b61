"""NaN in the data: pylayers.config.enable_check_numerics() makes models refuse it by
name before training; TerminateOnNaN stops fit at the first non-finite loss."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import config, layers


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), layers.Dense(4, activation="relu"), layers.Dense(1)],
                         name="checked")
    m.compile(optimizer="sgd", loss="mse")
    return m


@pytest.fixture
def check_numerics():
    config.enable_check_numerics()
    yield
    config.disable_check_numerics()


def data(bad_x=None, bad_y=None):
    x = np.arange(24, dtype=np.float32).reshape(8, 3) / 24
    y = np.ones((8, 1), dtype=np.float32)
    if bad_x is not None:
        x[2, 1] = bad_x
    if bad_y is not None:
        y[5, 0] = bad_y
    return x, y


def test_the_switch_mirrors_keras_config_names():
    assert keras.config is config
    assert not config.is_check_numerics_enabled()   # off by default, as fit is in Keras
    config.enable_check_numerics()
    try:
        assert config.is_check_numerics_enabled()
    finally:
        config.disable_check_numerics()
    assert not config.is_check_numerics_enabled()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fit_refuses_nan_inputs_by_name_before_any_weight_changes(check_numerics, bad):
    m = model()
    before = [w.copy() for w in m.get_weights()]
    x, y = data(bad_x=bad)
    with pytest.raises(ValueError, match=r"Model 'checked': x contains NaN/inf .*first at index "
                                         r"\(2, 1\).*shape \(8, 3\)"):
        m.fit(x, y, verbose=0)
    for got, expected in zip(m.get_weights(), before):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match=r"Model 'checked': x contains NaN/inf"):
        m.predict(x, verbose=0)


def test_fit_refuses_nan_targets(check_numerics):
    x, y = data(bad_y=np.nan)
    with pytest.raises(ValueError, match=r"Model 'checked': y contains NaN/inf .*\(5, 0\)"):
        model().train_on_batch(x, y)


def test_without_the_switch_nan_flows_through_as_in_keras():
    x, y = data(bad_x=np.nan)
    m = model()
    assert np.isnan(m.predict(x, verbose=0)[2]).all()
    history = m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isnan(history.history["loss"][0])


def test_check_finite_ignores_integers_and_none(check_numerics):
    config.check_finite([np.arange(3), None, np.ones(2)], "here")
    with pytest.raises(ValueError, match=r"here\[1\] contains NaN/inf"):
        config.check_finite([np.ones(2), np.array([1.0, np.nan])], "here")


def test_terminate_on_nan_stops_training_at_the_first_nan_loss():
    x, y = data()
    x_big = np.concatenate([x] * 4)
    y_big = np.concatenate([y] * 4)
    y_big[19, 0] = np.nan                     # batch 4 (of 4 samples each) has a NaN loss
    m = model()
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    history = m.fit(x_big, y_big, batch_size=4, epochs=5, shuffle=False, verbose=0,
                    callbacks=[keras.callbacks.TerminateOnNaN(), record])
    assert seen == [0, 1, 2, 3, 4]            # stopped after batch 4, in the first epoch
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
