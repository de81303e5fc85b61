"""The 8x8 handwritten digits shipped with the package (scikit-learn's copy of UCI's).

1,797 grey images of 8x8 pixels with values 0..16, labels 0..9. See
data/LICENSE-digits.txt for the origin and licence (BSD-3-Clause).
"""
import gzip
from importlib import resources

import numpy as np

N_SAMPLES = 1797


def load_digits():
    """All the digits: `(images, labels)`, uint8 of shapes (1797, 8, 8) and (1797,)."""
    data_file = resources.files("pylayers.datasets") / "data" / "digits.csv.gz"
    with data_file.open("rb") as compressed, gzip.open(compressed, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].copy()


def load_data(test_split=0.2, seed=113):
    """The digits split into training and test sets, as Keras' loaders return data.

    The samples are shuffled by `np.random.RandomState(seed).permutation` (a
    generator whose stream NumPy keeps fixed across versions), then the last
    `int(1797 * test_split)` samples form the test set: with the defaults, 1,438
    training and 359 test images, always the same ones.

    Args:
        test_split: fraction of the samples kept for the test set, in [0, 1).
        seed: seed of the shuffle.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images (n, 8, 8) with
        values 0..16 and uint8 labels 0..9.
    """
    if isinstance(test_split, bool) or not isinstance(test_split, (int, float)) \
            or not 0 <= test_split < 1:
        raise ValueError(f"test_split must be a fraction in [0, 1). "
                         f"Received: test_split={test_split!r}")
    images, labels = load_digits()
    order = np.random.RandomState(seed).permutation(len(labels))
    n_train = len(labels) - int(len(labels) * test_split)
    train, test = order[:n_train], order[n_train:]
    return (images[train], labels[train]), (images[test], labels[test])
