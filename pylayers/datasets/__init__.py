"""Data sets: the bundled 8x8 digits and a cached MNIST download (Keras-style loaders)."""
from pylayers.datasets import digits, mnist
from pylayers.datasets._download import get_file

__all__ = ["digits", "mnist", "get_file"]
