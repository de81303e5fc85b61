"""Layers reuse their large output and gradient arrays across steps (pylayers.layers.
buffers); a reused array must never be one somebody still holds."""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers.layers import buffers
from pylayers.layers.buffers import empty_buffer

rng = np.random.default_rng(0)
LARGE = (512, 256)   # 512 KiB of float32: above buffers.MIN_BYTES


class Holder:
    pass


def test_a_free_buffer_is_handed_out_again():
    owner = Holder()
    first = empty_buffer(owner, "y", LARGE)
    first_id = id(first)
    del first
    assert id(empty_buffer(owner, "y", LARGE)) == first_id


def test_large_buffers_start_on_a_cache_line():
    owner = Holder()
    for role, dtype in [("y", np.float32), ("i", np.intc), ("d", np.float64)]:
        array = empty_buffer(owner, role, LARGE, dtype)
        assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous
        assert array.shape == LARGE and array.dtype == dtype


@pytest.mark.parametrize("keep", ["array", "view", "view of a view"])
def test_a_held_buffer_is_not_handed_out(keep):
    owner = Holder()
    first = empty_buffer(owner, "y", LARGE)
    kept = {"array": first, "view": first.reshape(-1)[10:],
            "view of a view": first[3:].T[1:]}[keep]
    del first
    second = empty_buffer(owner, "y", LARGE)
    assert not np.shares_memory(second, kept)


def test_other_shapes_dtypes_and_small_arrays_are_new():
    owner = Holder()
    first_id = id(empty_buffer(owner, "y", LARGE))
    assert id(empty_buffer(owner, "y", (256, 512))) != first_id
    assert empty_buffer(owner, "y", LARGE, np.intc).dtype == np.intc
    empty_buffer(owner, "small", (4, 4))
    assert "small" not in owner._buffers


@pytest.mark.parametrize("layer", [
    lambda: layers.Conv2D(16, 3, activation="relu"),
    lambda: layers.MaxPooling2D(2),
    lambda: layers.Dense(64, activation="relu"),
])
def test_outputs_kept_by_the_caller_survive_later_calls(layer):
    layer = layer()
    x1 = rng.random((32, 24, 24, 4), dtype=np.float32)
    x2 = rng.random((32, 24, 24, 4), dtype=np.float32)
    y1 = layer(x1)
    expected = y1.copy()
    y2 = layer(x2)
    np.testing.assert_array_equal(y1, expected)
    assert not np.shares_memory(y1, y2)


def cnn_weights_after_training(monkeypatch, min_bytes):
    monkeypatch.setattr(buffers, "MIN_BYTES", min_bytes)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([layers.Input((16, 16, 3)),
                              layers.Conv2D(16, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(),
                              layers.Dense(32, activation="relu"), layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).random((64, 16, 16, 3), dtype=np.float32)
    y = np.arange(64) % 4
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    return model.get_weights(), model.predict(x, verbose=0)


def test_training_with_reused_buffers_equals_training_without(monkeypatch):
    reused = cnn_weights_after_training(monkeypatch, 0)            # every array reused
    fresh = cnn_weights_after_training(monkeypatch, float("inf"))  # none reused
    for a, b in zip(reused[0] + [reused[1]], fresh[0] + [fresh[1]]):
        np.testing.assert_array_equal(a, b)
