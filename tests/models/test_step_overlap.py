"""A training step's end (metrics, logs, callbacks) and the next step's beginning (its
begin hook and batch) run on the calling thread while the optimizer's other threads step
the weights (Model._fit_epoch, Optimizer._apply_alongside, optim.AdamStep.run). The
weights, losses and callback events are the same as with the steps one after another;
the overlap is taken only when nothing that runs alongside can read the weights."""
import threading

import numpy as np
import pytest

import pylayers as keras
from pylayers import constraints, layers, optimizers
from pylayers._kernels import optim as optim_kernels
from pylayers.models import model as model_module
from pylayers.ops.variable import Variable


def mlp(optimizer):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        layers.InputLayer(shape=(20,)),
        layers.Dense(300, activation="relu", kernel_constraint=constraints.MaxNorm(2.0)),
        layers.Dense(260, activation="relu"), layers.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n=200):
    rng = np.random.default_rng(4)
    return rng.standard_normal((n, 20)).astype(np.float32), rng.integers(0, 4, n)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("end", batch, logs["loss"], logs["accuracy"]))


def fit(optimizer, overlap, monkeypatch, callbacks=None):
    """Weights, history and the number of steps that ran alongside, after 2 epochs of
    batches of 64 (the last one 8 rows), overlapped or forced one after another."""
    model = mlp(optimizer)
    alongside_steps = []
    original = model.optimizer._apply_alongside

    def spy(grads, variables, alongside):
        alongside_steps.append(alongside is not None)
        return original(grads, variables, alongside)
    with monkeypatch.context() as patch:
        patch.setattr(model.optimizer, "_apply_alongside", spy)
        if overlap is not None:
            patch.setattr(model_module.Model, "_steps_overlap", lambda self, c: overlap)
        x, y = data()
        history = model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=callbacks)
    return model.get_weights(), history.history, sum(alongside_steps)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("threads", [1, 2])
def test_overlapped_steps_train_with_the_bits_of_steps_one_after_another(
        optimizer, threads, monkeypatch, restore_threads):
    keras.set_num_threads(threads)
    weights, history, overlapped = fit(optimizer, None, monkeypatch)
    want_weights, want_history, _ = fit(optimizer, False, monkeypatch)
    assert overlapped == 8   # every step of both epochs
    for got, want in zip(weights, want_weights):
        np.testing.assert_array_equal(got, want)
    assert history == want_history


def test_callbacks_see_the_same_events_whether_or_not_steps_overlap(monkeypatch,
                                                                   restore_threads):
    keras.set_num_threads(2)
    runs = {}
    for overlap in (True, False):
        recorder = Recorder()
        weights, _, overlapped = fit("adam", overlap, monkeypatch, [recorder])
        runs[overlap] = (weights, recorder.events, overlapped)
    assert runs[True][2] == 8 and runs[False][2] == 0
    assert runs[True][1] == runs[False][1]
    assert [e[:2] for e in runs[True][1][:4]] == [("begin", 0), ("end", 0), ("begin", 1),
                                                  ("end", 1)]
    for got, want in zip(runs[True][0], runs[False][0]):
        np.testing.assert_array_equal(got, want)


def test_no_overlap_when_a_callback_or_a_metric_could_read_the_weights(monkeypatch):
    """A user's callback keeps the steps one after another; a user's metric keeps the
    metrics after the optimizer's step."""
    _, _, overlapped = fit("adam", None, monkeypatch, [Recorder()])
    assert overlapped == 0
    model = mlp("adam")
    seen_weights = []

    def reads_weights(y_true, y_pred):
        seen_weights.append(model.layers[0].kernel.value.copy())
        return np.zeros(len(y_true))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[reads_weights])
    x, y = data(64)
    model.fit(x, y, batch_size=64, verbose=0)
    np.testing.assert_array_equal(seen_weights[0], model.layers[0].kernel.value)


@pytest.mark.parametrize("optimizer", [optimizers.Adam, optimizers.SGD])
def test_an_error_alongside_is_raised_once_the_step_is_complete(optimizer):
    rng = np.random.default_rng(5)
    start = rng.standard_normal((400, 300)).astype(np.float32)
    grad = rng.standard_normal((400, 300)).astype(np.float32)
    stepped = {}
    for failing in (False, True):
        variable = Variable(start.copy(), name="w")
        opt = optimizer(learning_rate=0.01)

        def alongside():
            if failing:
                raise KeyError("alongside")
        if failing:
            with pytest.raises(KeyError, match="alongside"):
                opt._apply_alongside([grad], [variable], alongside)
        else:
            opt._apply_alongside([grad], [variable], alongside)
        assert opt.iterations == 1
        stepped[failing] = variable.value
    np.testing.assert_array_equal(stepped[True], stepped[False])
    assert not np.array_equal(stepped[True], start)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_adam_step_calls_alongside_once_on_the_calling_thread(threads, restore_threads):
    """optim.AdamStep.run with alongside: the bits of the step without it (a large
    parameter split by itself and small ones shared), alongside called once on the
    calling thread; its exception raised after the step."""
    keras.set_num_threads(threads)
    rng = np.random.default_rng(6)
    sizes = [70000, 3, 40000, 1025]

    def params():
        arrays = [[rng.standard_normal(n).astype(np.float32) for _ in range(4)]
                  for n in sizes]
        return [(w, g, m, np.abs(v), None, 1.0, 0.0, 0.0) for w, g, m, v in arrays]
    plain = params()
    with_alongside = [tuple(a.copy() if isinstance(a, np.ndarray) else a for a in p)
                      for p in plain]
    optim_kernels.AdamStep(plain).run(1e-3, 0.9, 0.999, 1e-7)
    callers = []
    optim_kernels.AdamStep(with_alongside).run(
        1e-3, 0.9, 0.999, 1e-7, lambda: callers.append(threading.get_ident()))
    assert callers == [threading.get_ident()]
    for got, want in zip(with_alongside, plain):
        for a, b in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(a, b)
    before = [p[0].copy() for p in with_alongside]

    def fails():
        raise RuntimeError("alongside failed")
    with pytest.raises(RuntimeError, match="alongside failed"):
        optim_kernels.AdamStep(with_alongside).run(1e-3, 0.9, 0.999, 1e-7, fails)
    assert all(not np.array_equal(p[0], b) for p, b in zip(with_alongside, before))


def test_a_model_with_nothing_to_train_still_ends_its_steps():
    """No trainable weights, no optimizer update: the step's end and the next step's
    beginning still run, once per step."""
    model = mlp("adam")
    for layer in model.layers:
        layer.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.get_weights()
    x, y = data()
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
