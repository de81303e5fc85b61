"""The .keras format: layout as Keras 3 writes it, round trips, resumed training,
atomic writes."""
import json
import os
import zipfile

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

import h5py


def trained_mlp():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                              layers.Dropout(0.1),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.arange(64) % 3
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model, x, y


def test_keras_file_layout(tmp_path):
    model, _, _ = trained_mlp()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        config = json.loads(archive.read("config.json"))
        archive.extract("model.weights.h5", tmp_path)
    assert config["class_name"] == "Sequential" and config["module"] == "keras"
    assert [entry["class_name"] for entry in config["config"]["layers"]] == \
        ["InputLayer", "Dense", "Dropout", "Dense"]
    assert config["compile_config"]["loss"] == "sparse_categorical_crossentropy"
    with h5py.File(tmp_path / "model.weights.h5") as f:
        assert f["layers/dense/vars/0"].shape == (4, 8)
        assert f["layers/dense_1/vars/1"].shape == (3,)
        assert len(f["layers/dropout/vars"]) == 0
        assert int(f["optimizer/vars/0"][()]) == 4     # iterations: 64 samples / 16


def test_round_trip_predicts_bitwise_equal(tmp_path):
    model, x, _ = trained_mlp()
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]


def test_training_resumes_with_the_optimizer_state(tmp_path):
    model, x, y = trained_mlp()
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    for m in (model, restored):
        keras.utils.set_random_seed(7)
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_weights_file_round_trip_and_shape_mismatch(tmp_path):
    model, x, _ = trained_mlp()
    model.save_weights(tmp_path / "w.weights.h5")
    other = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                              layers.Dropout(0.1), layers.Dense(3, activation="softmax")])
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    wrong = keras.Sequential([layers.Dense(5, input_shape=(4,)), layers.Dropout(0.1), layers.Dense(3)])
    before = wrong.get_weights()
    with pytest.raises(ValueError, match=r"layers/dense/vars.*\(4, 5\).*\(4, 8\)"):
        wrong.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(before, wrong.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model, _, _ = trained_mlp()
    path = tmp_path / "m.keras"
    model.save(path)
    good = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")
    from pylayers.saving import saving_lib
    monkeypatch.setattr(saving_lib, "serialize_model", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.keras"]


def test_bad_extensions_are_rejected(tmp_path):
    model, _, _ = trained_mlp()
    with pytest.raises(ValueError, match=r"\.keras"):
        model.save(tmp_path / "m.zip")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "w.h5")


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    import sys
    model, _, _ = trained_mlp()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pylayers\[hdf5\]"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
