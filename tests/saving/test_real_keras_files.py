"""Files written by real Keras load in pylayers and predict Keras' numbers, and files
written by pylayers load in real Keras (recorded by tests/fixtures/make_saving_fixtures.py,
which also says how each fixture was made)."""
import hashlib
import json
import pathlib

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "saving"
# Layers a fixture needs that pylayers may not have yet.
NEEDS = {"keras_cnn": ("Conv2D", "MaxPooling2D"), "keras_lstm": ("LSTM",)}
KERAS_FILES = [f"{name}{suffix}" for name in ("keras_mlp", "keras_cnn", "keras_lstm", "keras_merge")
               for suffix in (".keras", ".h5")] + ["keras2_functional.h5", "keras2_sequential.h5"]


def skip_unless_layers_exist(name):
    for class_name in NEEDS.get(name, ()):
        if not hasattr(layers, class_name):
            pytest.skip(f"{class_name} not in pylayers yet")


@pytest.mark.parametrize("file", KERAS_FILES)
def test_keras_file_loads_and_predicts_keras_numbers(file):
    name = file.rsplit(".", 1)[0]
    skip_unless_layers_exist(name)
    data = np.load(FIXTURES / f"{name}.npz")
    model = keras.models.load_model(FIXTURES / file)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compile_config_and_optimizer_state_come_back(suffix):
    model = keras.models.load_model(FIXTURES / f"keras_merge{suffix}")
    assert type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.iterations == 4   # 16 samples, batches of 8, 2 epochs
    assert type(model.loss).__name__ == "SparseCategoricalCrossentropy"
    assert [layer.name for layer in model.layers][:2] == ["features", "branch_a"]
    assert model.get_layer("inner").layers[0].kernel.shape == (6, 8)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_training_resumes_from_a_keras_file_as_in_keras(suffix):
    """Keras loaded keras_merge.keras, ran one more step on a fixed batch and recorded its
    predictions: pylayers, from either file, makes the same step."""
    data = np.load(FIXTURES / "keras_merge_resumed.npz")
    model = keras.models.load_model(FIXTURES / f"keras_merge{suffix}")
    model.fit(data["x"], data["y"], epochs=1, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["predictions_after"],
                               atol=1e-5, rtol=0)


def test_keras2_file_conventions_are_translated():
    """keras2_functional.h5 is written by hand as tf.keras 2.13 does: old inbound nodes,
    batch_input_shape, GlorotUniform dicts without module, `name:0` weight names, a
    Keras 2 training_config (MeanMetricWrapper, Adam with decay/jit_compile)."""
    model = keras.models.load_model(FIXTURES / "keras2_functional.h5")
    assert type(model.optimizer).__name__ == "Adam"
    assert model.get_layer("batch_normalization").get_weights()[2].shape == (16,)
    single = model.predict(np.zeros((1, 6)), verbose=0)
    assert isinstance(single, np.ndarray) and single.shape == (1, 3)   # not a one-item list
    sequential = keras.models.load_model(FIXTURES / "keras2_sequential.h5")
    assert [type(layer).__name__ for layer in sequential.layers] == ["Dense", "Dropout", "Dense"]


def test_keras_weights_load_into_a_model_built_in_code():
    data = np.load(FIXTURES / "keras_mlp.npz")
    for file in ("keras_mlp.keras", "keras_mlp.h5"):
        model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(784,)),
                                  layers.Dense(10, activation="softmax")])
        model.load_weights(FIXTURES / file)
        np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], atol=1e-5)


def test_real_keras_loads_pylayers_files():
    """What real Keras did with each pylayers-made file (make_saving_fixtures.py check):
    the record belongs to the files checked in (same sha256), each loaded and predicted
    pylayers' numbers; a file Keras cannot compile must be one whose Keras-made twin
    Keras cannot compile either (Keras 3.15 fails on its own legacy .h5 with loss "mse")."""
    record = json.loads((FIXTURES / "keras_loads_pylayers.json").read_text())
    made = sorted(p.name for p in (FIXTURES / "pylayers_made").iterdir() if p.suffix in (".keras", ".h5"))
    assert sorted(record["files"]) == made
    keras_own_error = record["keras_own_keras_lstm_h5"].get("error")
    for file, result in record["files"].items():
        digest = hashlib.sha256((FIXTURES / "pylayers_made" / file).read_bytes()).hexdigest()
        assert result["sha256"] == digest, f"{file} changed since Keras checked it"
        if not result["loaded"]:
            assert keras_own_error and result["error"] == keras_own_error, (file, result)
            result = result["without_compile"]
        assert result["loaded"] and result["max_abs_diff"] < 1e-5, (file, result)
        if result["optimizer"]:   # the optimizer state came across: 2 epochs of 2 batches
            assert result["optimizer_iterations"] == 4, (file, result)


@pytest.mark.parametrize("file", sorted(p.name for p in (FIXTURES / "pylayers_made").glob("*.keras")))
def test_pylayers_made_files_still_load_in_pylayers(file):
    data = np.load(FIXTURES / "pylayers_made" / file.replace(".keras", ".npz"))
    model = keras.models.load_model(FIXTURES / "pylayers_made" / file)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], atol=1e-6)


def test_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024


@pytest.mark.parametrize("name", ["keras_mlp", "keras_cnn", "keras_lstm", "keras_merge"])
def test_pylayers_writes_the_weight_paths_keras_wrote(name, tmp_path):
    """Same model, same `model.weights.h5` layout: every group and dataset shape."""
    import h5py
    import zipfile
    skip_unless_layers_exist(name)

    def layout(file):
        shapes = {}
        with h5py.File(file) as f:
            f.visititems(lambda path, obj: shapes.setdefault(path, getattr(obj, "shape", None)))
        return shapes
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        archive.extract("model.weights.h5", tmp_path / "keras")
    keras.models.load_model(FIXTURES / f"{name}.keras").save(tmp_path / "again.keras")
    with zipfile.ZipFile(tmp_path / "again.keras") as archive:
        archive.extract("model.weights.h5", tmp_path / "pylayers")
    assert layout(tmp_path / "pylayers" / "model.weights.h5") == \
        layout(tmp_path / "keras" / "model.weights.h5")
