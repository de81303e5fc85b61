"""Ctrl-C during fit leaves a usable model holding the weights of its last completed
step (the optimizer defers SIGINT around its updates), and an interrupted
ModelCheckpoint save leaves the previous file intact."""
import os
import signal
import threading
import zipfile

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers.optimizers import base

X = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
Y = np.random.default_rng(1).standard_normal((64, 2)).astype(np.float32)
BATCH = 8


OPTIMIZERS = {"adam": lambda: keras.optimizers.Adam(1e-2),   # one call for all variables
              "sgd": lambda: keras.optimizers.SGD(1e-2, momentum=0.9)}   # one per variable


def fresh(optimizer="adam"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), layers.Dense(16, activation="tanh"),
                              layers.Dense(8, activation="relu"), layers.Dense(2)])
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="mse")
    return model


def reference_after(steps, optimizer="adam"):
    """A model trained by exactly `steps` steps over the batches fit uses (no shuffle)."""
    model = fresh(optimizer)
    batches = len(X) // BATCH
    for step in range(steps):
        index = slice(step % batches * BATCH, (step % batches + 1) * BATCH)
        model.train_on_batch(X[index], Y[index])
    return model


def assert_same_weights(model, reference):
    for got, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("optimizer, hook, call", [("adam", "_update_all", 7),
                                                   ("sgd", "_update", 6 * 6 + 1)])
def test_sigint_inside_an_update_is_delivered_after_the_step(monkeypatch, optimizer, hook,
                                                             call):
    """SIGINT sent while the optimizer is inside step 7: Adam's one call for all
    variables done, the step not yet counted nor the constraints applied; SGD's first
    variable updated (6 variables a step). Without the deferral the model would be left
    half-way through the step."""
    model = fresh(optimizer)
    model.fit(X[:BATCH], Y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)   # build
    model = fresh(optimizer)
    calls = {"n": 0}
    original = getattr(type(model.optimizer), hook)

    def update(self, *args):
        calls["n"] += 1
        original(self, *args)
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(type(model.optimizer), hook, update)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=BATCH, epochs=5, shuffle=False, verbose=0)
    monkeypatch.undo()
    assert model.optimizer.iterations == 7
    assert_same_weights(model, reference_after(7, optimizer))
    # usable: it predicts and trains on exactly like the reference
    np.testing.assert_array_equal(model.predict(X, verbose=0),
                                  reference_after(7, optimizer).predict(X, verbose=0))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_at_a_random_moment_leaves_the_last_completed_step():
    for delay in (0.05, 0.13, 0.21):
        model = fresh()
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                model.fit(X, Y, batch_size=BATCH, epochs=10_000, shuffle=False, verbose=0)
        finally:
            timer.cancel()
        steps = model.optimizer.iterations
        assert steps > 0
        assert_same_weights(model, reference_after(steps))
        model.train_on_batch(X[:BATCH], Y[:BATCH])   # training goes on from there
        assert np.isfinite(model.predict(X, verbose=0)).all()


def test_deferral_restores_a_custom_handler_and_calls_it_once():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with base._sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            assert seen == []
        assert seen == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("suffix, weights_only", [(".keras", False), (".weights.h5", True)])
def test_interrupted_checkpoint_keeps_the_previous_file(tmp_path, monkeypatch, suffix,
                                                        weights_only):
    pytest.importorskip("h5py")
    path = tmp_path / f"checkpoint{suffix}"
    model = fresh()
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=weights_only)
    model.fit(X, Y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[checkpoint])
    saved = path.read_bytes()
    weights_epoch_1 = [w.copy() for w in model.get_weights()]

    real_fsync = os.fsync

    def interrupted(fd):   # the data is written to the temporary file, not yet renamed
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[checkpoint])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]   # no temporary left
    restored = fresh()
    if weights_only:
        restored.load_weights(str(path))
    else:
        restored = keras.saving.load_model(str(path))
    for got, expected in zip(restored.get_weights(), weights_epoch_1):
        np.testing.assert_array_equal(got, expected)
    if not weights_only:
        assert zipfile.is_zipfile(path)
