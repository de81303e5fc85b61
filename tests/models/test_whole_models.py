"""The brief's CNN and LSTM models end to end: the same weights whatever the thread
count (every output element is owned by one thread, in every kernel), and no memory
growth over many consecutive predict and fit calls."""
import gc

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers.layers import fusion


def cnn():
    return keras.Sequential([layers.InputLayer(shape=(28, 28, 1)),
                             layers.Conv2D(32, (3, 3), activation="relu"),
                             layers.MaxPooling2D((2, 2)), layers.Flatten(),
                             layers.Dense(10, activation="softmax")])


def lstm():
    return keras.Sequential([layers.InputLayer(shape=(50, 10)), layers.LSTM(64),
                             layers.Dense(10, activation="softmax")])


def data(model, n=256):
    rng = np.random.default_rng(0)
    x = rng.random((n,) + model.input.shape[1:], dtype=np.float32)
    return x, rng.integers(0, 10, size=n)


@pytest.mark.parametrize("build", [cnn, lstm])
def test_training_is_bitwise_the_same_on_one_and_two_threads(build, restore_threads):
    results = []
    for threads in (1, 2):
        keras.set_num_threads(threads)
        keras.utils.set_random_seed(5)
        model = build()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x, y = data(model)
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        results.append(model.get_weights() + [model.predict(x, verbose=0)])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("conv_pool_in_one_call", [False, True])
def test_two_hundred_predict_and_fit_calls_do_not_grow_memory(conv_pool_in_one_call,
                                                              monkeypatch):
    if conv_pool_in_one_call:   # the convolution and pooling train through their C pair
        monkeypatch.setattr(fusion, "MIN_FUSED_BYTES", 0)
    model = keras.Sequential([layers.InputLayer(shape=(12, 12, 1)),   # the CNN, smaller
                              layers.Conv2D(8, (3, 3), activation="relu"),
                              layers.MaxPooling2D((2, 2)), layers.Flatten(),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data(model, 32)
    for _ in range(20):                       # warm-up: buffers, pools, allocator arenas
        model.fit(x, y, batch_size=32, verbose=0)
        model.predict(x[:1], verbose=0)
    gc.collect()
    before = resident_bytes()
    for _ in range(200):
        model.fit(x, y, batch_size=32, verbose=0)
        model.predict(x[:1], verbose=0)
    gc.collect()
    growth = resident_bytes() - before
    assert conv_pool_in_one_call == any("pool_chunks" in getattr(layer, "_remembered", {})
                                        for layer in model.layers)
    assert growth < 8 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB over 200 fit+predict calls"


class Scaled(layers.Layer):
    """A custom layer written with ops: it trains under the tape."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, inputs):
        return keras.ops.tanh(inputs * self.scale)


def test_a_training_step_frees_its_tape_without_the_cycle_collector():
    """Tensors refer to their tape weakly, so a step's recorded arrays go as soon as the
    step ends (else each step's arrays lived until the next cycle collection)."""
    from pylayers.ops import Tape, Tensor
    model = keras.Sequential([layers.InputLayer(shape=(6,)), Scaled(),
                              layers.Dense(4, activation=keras.activations.gelu),
                              layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.ones((8, 6), np.float32), np.zeros((8, 1), np.float32)
    model.train_on_batch(x, y)
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        for _ in range(3):
            model.train_on_batch(x, y)
        gc.collect()
        stranded = [o for o in gc.garbage if isinstance(o, (Tape, Tensor))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert stranded == []
