"""The process-wide random generator behind initializers, dropout and shuffling."""
import random

import numpy as np

_state = {"rng": np.random.default_rng()}


def set_random_seed(seed):
    """Seed pylayers' generator (and Python's and numpy's legacy ones, as Keras does)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed expects a non-negative integer. Received: seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _state["rng"] = np.random.default_rng(int(seed))


def global_rng():
    """The generator every random draw in pylayers takes its numbers from."""
    return _state["rng"]
