"""The MNIST handwritten digits, downloaded once into the cache (as Keras does)."""
import numpy as np

from pylayers.datasets._download import get_file

# The file Keras downloads, and its sha256 as keras.datasets.mnist checks it.
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def load_data(path="mnist.npz"):
    """Load MNIST: 60,000 training and 10,000 test 28x28 grey images of digits.

    The file is downloaded from `ORIGIN` on first use into
    `$PYLAYERS_HOME/datasets/` (default `~/.pylayers/datasets/`) and its sha256
    checked against `SHA256`.

    Args:
        path: the file's name in the cache.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images of shape
        (n, 28, 28) with values 0..255 and uint8 labels 0..9 of shape (n,).

    MNIST is by Yann LeCun and Corinna Cortes, under the Creative Commons
    Attribution-Share Alike 3.0 licence.
    """
    local_path = get_file(path, origin=ORIGIN, file_hash=SHA256)
    with np.load(local_path) as arrays:
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
