"""Per-batch Python overhead: the same small network as Sequential and as a functional
Model, one training step and one predict call each (kernel time negligible at this
size, so the difference is the graph machinery). Compare the medians as a ratio."""
import time

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


@pytest.mark.parametrize("step", ["predict_on_batch", "train_on_batch"])
def test_overhead_ratio_interleaved(benchmark, step):
    """This VM's speed swings about 2x on a scale of 10 ms, more than the overhead to be
    measured, so the two tests above, run one after the other, can disagree. Here the
    two models alternate call by call; extra_info["ratio"] is median(functional) /
    median(sequential), which compare.py prints."""
    benchmark.group = f"overhead_ratio:{step}"
    models = [BUILDERS[kind]() for kind in ("functional", "sequential")]
    for model in models:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
    args = (x,) if step == "predict_on_batch" else (x, y)
    times = [[], []]

    def alternate():
        for model, record in zip(models, times):
            start = time.perf_counter()
            getattr(model, step)(*args)
            record.append(time.perf_counter() - start)
    benchmark.pedantic(alternate, rounds=2000, warmup_rounds=50)
    benchmark.extra_info["ratio"] = float(np.median(times[0]) / np.median(times[1]))
