"""Long runs and numerics: 10,000 training steps of an MLP and 500 of the brief's CNN
with bounded memory growth (process RSS from /proc/self/statm and Python allocations
from tracemalloc, both measured after a warm-up); an LSTM over 1,000 time steps against
the float64 reference mode; softmax + categorical crossentropy at logits of +-1e4
against a float64 log-sum-exp reference."""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers, ops
from pylayers.testing import check_layer_native_matches_reference

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20
RSS_DRIFT_LIMIT = 20 * MB      # generous: allocator noise, not a leak of ~1 KB per step
PYTHON_GROWTH_LIMIT = 512 * 1024   # Python objects kept (History's lists are ~100 bytes/epoch)


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class MemoryProbe(keras.callbacks.Callback):
    """Counts steps; records RSS (or, with `traced`, tracemalloc's count of live Python
    allocations, tracing from the warm-up on) at the end of the warm-up epochs and at
    the end of training. RSS is measured without tracemalloc: its bookkeeping is RSS."""

    def __init__(self, warmup_epochs, traced=False):
        super().__init__()
        self.warmup_epochs, self.traced, self.steps = warmup_epochs, traced, 0

    def _measure(self):
        # each training step leaves a reference cycle (ops Tape <-> its Tensors) holding
        # that step's arrays until the cyclic GC runs: collect it so that what is measured
        # is what stays alive, not how much garbage awaits collection
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if self.traced else rss()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.warmup_epochs:
            if self.traced:
                tracemalloc.start()
            self.start = self._measure()

    def on_train_end(self, logs=None):
        self.growth = self._measure() - self.start
        if self.traced:
            tracemalloc.stop()


def train_and_probe(model, x, y, batch_size, epochs, warmup_epochs, traced=False):
    probe = MemoryProbe(warmup_epochs, traced)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                        callbacks=[probe])
    return probe, history


def check_memory(model, x, y, batch_size, epochs, warmup_epochs, traced_epochs, what):
    """The long run with RSS measured, then a shorter one under tracemalloc (which slows
    every allocation) for the Python side. Returns the long run's history."""
    probe, history = train_and_probe(model, x, y, batch_size, epochs, warmup_epochs)
    traced, _ = train_and_probe(model, x, y, batch_size, traced_epochs, 1, traced=True)
    print(f"\n{what}: {probe.steps} steps, RSS drift after warm-up {probe.growth / MB:.2f} MB; "
          f"Python allocations kept over {traced.steps} traced steps {traced.growth / 1024:.1f} KB")
    assert probe.growth < RSS_DRIFT_LIMIT
    assert traced.growth < PYTHON_GROWTH_LIMIT
    return probe, history


def test_mlp_10000_steps_memory_is_stable():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, :2].sum(axis=1, keepdims=True) > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    probe, history = check_memory(model, x, y, batch_size=16, epochs=2500, warmup_epochs=100,
                                  traced_epochs=250, what="MLP")
    assert probe.steps == 10_000
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]   # it learned


def test_cnn_500_steps_memory_is_stable():
    """The brief's CNN at full size: 28x28x1 images, batch 32."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(320, 28, 28, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(10, size=320)]
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
                              layers.MaxPooling2D(), layers.Flatten(),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    probe, history = check_memory(model, x, y, batch_size=32, epochs=50, warmup_epochs=5,
                                  traced_epochs=6, what="CNN")
    assert probe.steps == 500
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]   # memorising


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_recurrent_layer_stable_over_1000_steps(cell):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).standard_normal((2, 1000, 3)).astype(np.float32)
    layer = getattr(layers, cell)(8, return_sequences=True)
    y = np.asarray(layer(x))
    assert np.isfinite(y).all() and np.abs(y).max() <= 1
    # forward, dx and weight gradients of the compiled kernels over all 1,000 steps
    # equal the float64 reference mode (float32 rounding accumulated over the sequence)
    check_layer_native_matches_reference(layer, x, rtol=1e-4, atol=1e-4)


LEARNING_RATE = 10.0   # steps of ~1 on kernel entries of 1e4: visible in float32


def _logits_model(logits_width, activation, loss):
    """Dense(identity kernel * 1e4, no bias): the logits are 1e4 * x."""
    model = keras.Sequential([keras.Input((logits_width,)),
                              layers.Dense(logits_width, use_bias=False, activation=activation)])
    model.layers[0].kernel.assign(np.eye(logits_width, dtype=np.float32) * 1e4)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE), loss=loss)
    return model


EXTREME_X = np.array([[1, -1, 0, 1], [-1, -1, -1, 1], [0, 0, 0, 0], [1, 1, -1, -1]],
                     dtype=np.float32)
EXTREME_Y = np.eye(4, dtype=np.float32)[[1, 3, 2, 0]]   # wrong classes mostly: huge losses


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    top = z.max(axis=-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))


def test_crossentropy_from_logits_at_1e4_matches_log_sum_exp():
    model = _logits_model(4, None, keras.losses.CategoricalCrossentropy(from_logits=True))
    kernel_before = model.layers[0].kernel.numpy().astype(np.float64)
    loss = model.train_on_batch(EXTREME_X, EXTREME_Y)
    logits = EXTREME_X.astype(np.float64) @ kernel_before
    log_p = _log_softmax64(logits)
    expected_loss = np.mean(-(EXTREME_Y * log_p).sum(axis=1))
    assert np.isfinite(loss) and expected_loss > 1e3
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    # one SGD step: kernel -= lr * x^T (softmax - y) / batch
    d_logits = (np.exp(log_p) - EXTREME_Y) / len(EXTREME_X)
    expected_step = -LEARNING_RATE * EXTREME_X.T.astype(np.float64) @ d_logits
    got = model.layers[0].kernel.numpy()
    assert np.isfinite(got).all() and np.abs(expected_step).max() > 1
    np.testing.assert_allclose(got - kernel_before, expected_step, rtol=1e-3, atol=2e-3)


def test_softmax_output_with_crossentropy_at_1e4_is_finite():
    """Keras' probabilities are clipped to [1e-7, 1 - 1e-7]: the loss saturates at
    -log(1e-7) instead of overflowing; the fused gradient is softmax - y."""
    model = _logits_model(4, "softmax", "categorical_crossentropy")
    kernel_before = model.layers[0].kernel.numpy().astype(np.float64)
    loss = model.train_on_batch(EXTREME_X, EXTREME_Y)
    p = np.exp(_log_softmax64(EXTREME_X.astype(np.float64) @ kernel_before))
    expected_loss = np.mean(-(EXTREME_Y * np.log(np.clip(p, 1e-7, 1 - 1e-7))).sum(axis=1))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    d_logits = (p - EXTREME_Y) / len(EXTREME_X)
    expected_step = -LEARNING_RATE * EXTREME_X.T.astype(np.float64) @ d_logits
    got = model.layers[0].kernel.numpy()
    assert np.isfinite(got).all() and np.abs(expected_step).max() > 1
    np.testing.assert_allclose(got - kernel_before, expected_step, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_ops_at_1e4_match_float64(scale):
    z = (np.array([[1, -1, 0.5, 1], [0, 0, 0, 0], [-1, 1, 1, -0.25]]) * scale).astype(np.float32)
    expected = _log_softmax64(z)
    np.testing.assert_allclose(ops.softmax(z), np.exp(expected), atol=1e-7)
    np.testing.assert_allclose(ops.log_softmax(z), expected, rtol=1e-6, atol=1e-6)
    with ops.Tape() as tape:
        leaf = tape.leaf(z)
        out = ops.sum(ops.log_softmax(leaf)[:, 0])
        (grad,) = tape.backward(out, np.float32(1.0), [leaf])
    expected_grad = -np.exp(expected)
    expected_grad[:, 0] += 1
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, expected_grad, atol=1e-6)
