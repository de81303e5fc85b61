"""Data sets: the bundled digits, and the cached, checksummed download (offline)."""
import hashlib
import io
import os

import numpy as np
import pytest

from pylayers.datasets import digits, get_file, mnist

# Images per class in the 1,797 digits (scikit-learn's copy of the UCI test set).
DIGIT_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_load_digits_returns_all_images_and_labels():
    images, labels = digits.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert images.min() == 0 and images.max() == 16
    assert np.bincount(labels).tolist() == DIGIT_CLASS_COUNTS
    # The first image of the file is a 0: an empty centre column, a full ring.
    assert labels[0] == 0 and images[0, 3:5, 3:5].sum() == 0


def test_load_data_split_is_fixed_and_a_partition():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1438, 8, 8) and x_test.shape == (359, 8, 8)
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    (x_again, y_again), _ = digits.load_data()
    np.testing.assert_array_equal(x_train, x_again)
    np.testing.assert_array_equal(y_train, y_again)
    def samples(images, labels):
        return sorted(image.tobytes() + bytes([label]) for image, label in zip(images, labels))

    assert samples(np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])) \
        == samples(*digits.load_digits())
    assert set(np.unique(y_test)) == set(range(10))


def test_load_data_seed_and_test_split():
    (_, y_seed_1), _ = digits.load_data(seed=1)
    (_, y_seed_2), _ = digits.load_data(seed=2)
    assert not np.array_equal(y_seed_1, y_seed_2)
    (x_train, _), (x_test, _) = digits.load_data(test_split=0.5)
    assert len(x_train) == 899 and len(x_test) == 898
    (x_train, _), (x_test, _) = digits.load_data(test_split=0)
    assert len(x_train) == 1797 and len(x_test) == 0


@pytest.mark.parametrize("test_split", [1.0, -0.1, "0.2", None, True])
def test_load_data_rejects_bad_test_split(test_split):
    with pytest.raises(ValueError, match=f"Received: test_split={test_split!r}"):
        digits.load_data(test_split=test_split)


def fake_mnist_file(folder):
    """A small npz with MNIST's layout; returns (its file:// URL, sha256, arrays)."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 2, dtype=np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = folder / "served-mnist.npz"
    path.write_bytes(buffer.getvalue())
    return path.as_uri(), hashlib.sha256(buffer.getvalue()).hexdigest(), arrays


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty PYLAYERS_HOME."""
    monkeypatch.setenv("PYLAYERS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    return fake_mnist_file(folder)


def test_mnist_downloads_once_into_the_cache(home, served, monkeypatch):
    origin, sha256, arrays = served
    monkeypatch.setattr(mnist, "ORIGIN", origin)
    monkeypatch.setattr(mnist, "SHA256", sha256)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert x_test.dtype == np.uint8 and y_train.shape == (6,)
    assert os.listdir(home / "datasets") == ["mnist.npz"]
    os.remove(origin[len("file://"):])            # the source is gone: the cache serves
    (x_again, _), _ = mnist.load_data()
    np.testing.assert_array_equal(x_again, arrays["x_train"])


def test_mnist_bad_checksum_raises_and_leaves_nothing(home, served, monkeypatch):
    origin, _, _ = served
    monkeypatch.setattr(mnist, "ORIGIN", origin)
    with pytest.raises(ValueError, match=f"expected {mnist.SHA256}. Nothing was saved"):
        mnist.load_data()
    assert os.listdir(home / "datasets") == []


def test_mnist_constants_are_keras_ones():
    assert mnist.ORIGIN.endswith("/tf-keras-datasets/mnist.npz")
    assert mnist.SHA256 == "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def test_get_file_replaces_a_corrupted_cached_file(home, served):
    origin, sha256, _ = served
    cached = home / "datasets" / "data.npz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert get_file("data.npz", origin, file_hash=sha256) == str(cached)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256


def test_get_file_keeps_a_good_cached_file_when_download_fails(home, served):
    origin, sha256, _ = served
    path = get_file("data.npz", origin, file_hash=sha256)
    with pytest.raises(OSError, match="Could not download file:///nowhere/data.npz"):
        get_file("data.npz", "file:///nowhere/data.npz", force_download=True)
    assert os.listdir(home / "datasets") == ["data.npz"]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha256


def test_get_file_md5_cache_dir_and_subdir(tmp_path, served):
    origin, _, _ = served
    md5 = hashlib.md5(open(origin[len("file://"):], "rb").read()).hexdigest()
    path = get_file("m.npz", origin, file_hash=md5.upper(), cache_dir=str(tmp_path / "c"),
                    cache_subdir="sub")
    assert path == str(tmp_path / "c" / "sub" / "m.npz") and os.path.exists(path)


def test_get_file_default_cache_is_home_dot_pylayers(monkeypatch, tmp_path, served):
    monkeypatch.delenv("PYLAYERS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = get_file("d.npz", served[0])
    assert path == str(tmp_path / ".pylayers" / "datasets" / "d.npz")


@pytest.mark.parametrize("kwargs, message", [
    ({"fname": "", "origin": "file:///x"}, "Received: fname=''"),
    ({"fname": "a", "origin": "file:///x", "file_hash": "abc"}, "Received: file_hash='abc'"),
])
def test_get_file_rejects_bad_arguments(home, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_file(**kwargs)
