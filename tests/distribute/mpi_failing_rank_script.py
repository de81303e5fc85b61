"""Launched by test_mpi_training.py as `mpiexec -n 2 python mpi_failing_rank_script.py
MODE`: rank 1 fails in the middle of fit, and the whole job must end (not hang).

MODE: "exit" - rank 1's process dies (os._exit(1)) at its 4th step;
      "raise" - rank 1 raises an exception at its 4th step;
      "data" - rank 1 passes fit a different number of samples (a misuse);
      "one" - fit receives 1 sample for 2 processes (a misuse)."""
import os
import sys

import numpy as np

import pylayers as keras
from pylayers import layers
from pylayers.distribute import MPIStrategy


def fail(batch, logs):
    if batch == 3:
        if MODE == "exit":
            os._exit(1)
        raise RuntimeError("rank 1 failed on purpose")


MODE = sys.argv[1]
strategy = MPIStrategy()
rng = np.random.default_rng(0)
samples = 100_000 + (7 if MODE == "data" and strategy.rank == 1 else 0) if MODE != "one" else 1
x = rng.standard_normal((samples, 32)).astype(np.float32)
y = rng.integers(0, 10, samples)
with strategy.scope():
    model = keras.Sequential([layers.Input((32,)), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=fail)] if strategy.rank == 1 else []
# many epochs: a rank left waiting would hang far longer than the test's timeout
model.fit(x, y, batch_size=8, epochs=1000, verbose=0, callbacks=callbacks)
print("fit returned", flush=True)
