"""Trains the test models data-parallel; test_mpi_training.py launches it with
`mpiexec -n 2 python mpi_train_script.py OUT_DIR` and trains the same models in one
process with `train()` to compare.

Each rank seeds its generator differently (seed + 1000 x rank) before building its
model, so the replicas start apart and only fit's broadcast from rank 0 (seeded as the
single process) can make the runs equal; the shuffle must also come from rank 0."""
import contextlib
import json
import pathlib
import sys

import numpy as np

import pylayers as keras
from pylayers import layers

# name: (model, optimizer, samples, per-process batch size of the 2-rank run, epochs)
CONFIGS = {
    "mlp-adam": ("mlp", "adam", 1280, 64, 2),
    "mlp-sgd": ("mlp", "sgd", 1280, 64, 2),
    "cnn-adam": ("cnn", "adam", 1280, 64, 2),
    "cnn-sgd": ("cnn", "sgd", 1280, 64, 2),
    # last global batch of 1 sample: rank 1 has none in that step
    "mlp-adam-remainder-1": ("mlp", "adam", 1281, 64, 2),
    # last global batch of 3 samples: shards of 2 and 1
    "mlp-sgd-remainder-3": ("mlp", "sgd", 1283, 64, 2),
    # no Input: the model builds in its first step, before rank 0's weights go out
    "deferred-mlp-adam": ("deferred-mlp", "adam", 1280, 64, 2),
}
SEED = 7


def build(kind):
    if kind == "deferred-mlp":
        return keras.Sequential([layers.Dense(64, activation="relu"),
                                 layers.Dense(10, activation="softmax")])
    if kind == "mlp":
        return keras.Sequential([layers.Input((784,)),
                                 layers.Dense(64, activation="relu"),
                                 layers.Dense(10, activation="softmax")])
    return keras.Sequential([layers.Input((28, 28, 1)),
                             layers.Conv2D(32, 3, activation="relu"),
                             layers.MaxPooling2D(),
                             layers.Flatten(),
                             layers.Dense(10, activation="softmax")])


def data(kind, samples):
    rng = np.random.default_rng(1234)
    shape = (28, 28, 1) if kind == "cnn" else (784,)
    x = rng.standard_normal((samples,) + shape).astype(np.float32)
    y = rng.integers(0, 10, samples)
    return x, y


def train(name, batch_size, strategy=None):
    """(weights, history) of one config; `batch_size` per process."""
    kind, optimizer, samples, _, epochs = CONFIGS[name]
    rank = 0 if strategy is None else strategy.rank
    x, y = data(kind, samples)
    keras.utils.set_random_seed(SEED + 1000 * rank)
    scope = contextlib.nullcontext() if strategy is None else strategy.scope()
    with scope:
        model = build(kind)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return model.get_weights(), history.history


def main(out_dir):
    from pylayers.distribute import MPIStrategy
    strategy = MPIStrategy()
    out_dir = pathlib.Path(out_dir)
    for name, (_, _, _, batch_size, _) in CONFIGS.items():
        weights, history = train(name, batch_size, strategy)
        stem = out_dir / f"{name}.rank{strategy.rank}"
        np.savez(f"{stem}.npz", *weights)
        (stem.parent / f"{stem.name}.json").write_text(json.dumps(history))
    write_files(strategy, out_dir)
    batch_norm(strategy, out_dir)
    print(f"rank {strategy.rank} of {strategy.size}: trained {len(CONFIGS)} models", flush=True)


def write_files(strategy, out_dir):
    """A fit that prints progress and writes a checkpoint, a CSV log and a model saved
    from a callback, each to a path naming the rank: only rank 0's should appear."""
    rank = strategy.rank
    x, y = data("mlp", 256)
    with strategy.scope():
        model = build("mlp")
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    save = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: model.save(out_dir / f"lambda{rank}.keras"))
    model.fit(x, y, batch_size=32, epochs=2, verbose=1, callbacks=[
        keras.callbacks.ModelCheckpoint(str(out_dir / f"checkpoint{rank}.keras")),
        keras.callbacks.CSVLogger(str(out_dir / f"log{rank}.csv")), save])


def batch_norm(strategy, out_dir):
    """Each rank updates BatchNormalization's moving statistics from its own shards;
    fit averages them over the ranks at the end of each epoch."""
    x, y = data("mlp", 512)
    with strategy.scope():
        model = keras.Sequential([layers.Input((784,)), layers.Dense(16),
                                  layers.BatchNormalization(),
                                  layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    np.savez(out_dir / f"batch_norm.rank{strategy.rank}.npz",
             *[v.numpy() for v in model.non_trainable_weights])


if __name__ == "__main__":
    main(sys.argv[1])
