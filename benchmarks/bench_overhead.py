"""Per-batch Python overhead: the same small network as Sequential and as a functional
Model, one training step and one predict call each (kernel time negligible at this
size, so the difference is the graph machinery). Compare the medians as a ratio."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers


def sequential():
    return keras.Sequential([layers.Dense(8, activation="relu", input_shape=(8,)),
                             layers.Dense(8, activation="relu"),
                             layers.Dense(2, activation="softmax")])


def functional():
    x = keras.Input(shape=(8,))
    h = layers.Dense(8, activation="relu")(x)
    h = layers.Dense(8, activation="relu")(h)
    return keras.Model(x, layers.Dense(2, activation="softmax")(h))


BUILDERS = {"sequential": sequential, "functional": functional}
x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
y = np.arange(16) % 2


@pytest.mark.parametrize("kind", BUILDERS)
def test_train_step_overhead(benchmark, kind):
    benchmark.group = "overhead:train_on_batch"
    model = BUILDERS[kind]()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    benchmark(model.train_on_batch, x, y)


@pytest.mark.parametrize("kind", BUILDERS)
def test_predict_overhead(benchmark, kind):
    benchmark.group = "overhead:predict_on_batch"
    model = BUILDERS[kind]()
    benchmark(model.predict_on_batch, x)
