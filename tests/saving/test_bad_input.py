"""Broken, foreign or mismatched files: a clear error naming the file and the layer, and
the model in memory unchanged. Interrupted saves leave the previous file in place."""
import json
import os
import pathlib
import shutil
import sys
import zipfile

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "saving"


def mlp(hidden=8, last=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([layers.Dense(hidden, activation="relu", input_shape=(4,)),
                             layers.Dense(last, activation="softmax")])


def rewrite_config(source, target, edit):
    """Copy a .keras archive with its config.json changed by `edit(config)`."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    edit(config)
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


def test_truncated_archive(tmp_path):
    mlp().save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.keras' is a damaged \.keras archive"):
        keras.models.load_model(tmp_path / "cut.keras")


@pytest.mark.parametrize("content, message", [
    (b"just some text, not a model\n", "is not a Keras model file"),
    (bytes(range(256)) * 4, "is not a Keras model file"),
])
def test_non_keras_file(tmp_path, content, message):
    path = tmp_path / "notes.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"notes\.keras' {message}"):
        keras.models.load_model(path)


def test_zip_that_is_not_a_keras_archive(tmp_path):
    with zipfile.ZipFile(tmp_path / "photos.keras", "w") as archive:
        archive.writestr("cat.jpg", b"\xff\xd8")
    with pytest.raises(ValueError, match=r"photos\.keras' is a zip archive without config\.json"):
        keras.models.load_model(tmp_path / "photos.keras")


def test_hdf5_file_without_a_model(tmp_path):
    model = mlp()
    model.save_weights(tmp_path / "w.weights.h5")
    shutil.copy(tmp_path / "w.weights.h5", tmp_path / "w.h5")
    with pytest.raises(ValueError, match=r"w\.h5.*no model_config.*load_weights"):
        keras.models.load_model(tmp_path / "w.h5")


def test_layer_class_pylayers_lacks(tmp_path):
    def rename(config):
        config["config"]["layers"][1]["class_name"] = "MultiHeadAttention"
    path = rewrite_config(FIXTURES / "keras_merge.keras", tmp_path / "mha.keras", rename)
    with pytest.raises(ValueError, match=r"mha\.keras.*Unknown layer class 'MultiHeadAttention' "
                                         r"for layer 'branch_a'.*custom_objects"):
        keras.models.load_model(path)


@pytest.mark.parametrize("key, value, message", [
    ("lora_rank", 4, r"layer 'dense' \(Dense\) uses the Keras setting lora_rank=4"),
    ("quantization_config", {"mode": "int8"}, r"quantization_config=\{'mode': 'int8'\}"),
    ("dtype", {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}},
     r"dtype='mixed_float16'.*float32 only"),
])
def test_keras_setting_pylayers_cannot_honour(tmp_path, key, value, message):
    def set_setting(config):
        config["config"]["layers"][1]["config"][key] = value
    path = rewrite_config(FIXTURES / "keras_mlp.keras", tmp_path / "setting.keras", set_setting)
    with pytest.raises(ValueError, match=rf"setting\.keras.*{message}"):
        keras.models.load_model(path)


def test_harmless_keras_settings_are_dropped(tmp_path):
    def set_defaults(config):
        dense = config["config"]["layers"][1]["config"]
        dense.update(lora_rank=None, quantization_config=None)
        dense["kernel_initializer"]["config"].update(input_axes=None, shared_object_id=7)
    path = rewrite_config(FIXTURES / "keras_mlp.keras", tmp_path / "defaults.keras", set_defaults)
    data = np.load(FIXTURES / "keras_mlp.npz")
    np.testing.assert_allclose(keras.models.load_model(path).predict(data["x"], verbose=0),
                               data["y"], atol=1e-5)


def test_archive_whose_weights_disagree_with_its_config(tmp_path):
    def widen(config):
        config["config"]["layers"][1]["config"]["units"] = 65
    path = rewrite_config(FIXTURES / "keras_mlp.keras", tmp_path / "wide.keras", widen)
    with pytest.raises(ValueError, match=r"wide\.keras.*layer 'dense' \(Dense, stored at "
                                         r"'layers/dense/vars'\).*\(784, 65\).*\(784, 64\)"):
        keras.models.load_model(path)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras", ".h5"])
def test_mismatched_weights_leave_the_model_unchanged(tmp_path, suffix):
    """The first layer fits, the last does not: nothing is assigned."""
    source = mlp(last=3)
    path = tmp_path / f"w{suffix}"
    source.save_weights(path) if suffix == ".weights.h5" else source.save(path)
    target = mlp(last=5)
    before = target.get_weights()
    with pytest.raises(ValueError, match=rf"w{suffix}.*layer 'dense_\d+'.*\(8, 5\).*\(8, 3\)"):
        target.load_weights(path)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_legacy_file_with_other_layers(tmp_path):
    mlp().save(tmp_path / "m.h5")
    three = keras.Sequential([layers.Dense(8, input_shape=(4,)), layers.Dense(8), layers.Dense(3)])
    with pytest.raises(ValueError, match=r"m\.h5.*3 layers with weights.*the file has 2"):
        three.load_weights(tmp_path / "m.h5")


def test_weights_for_layers_the_model_lacks(tmp_path):
    bigger = keras.Sequential([layers.Dense(8, input_shape=(4,)), layers.Dense(3), layers.Dense(3)])
    bigger.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"w\.weights\.h5.*layers/dense_2/vars"):
        mlp(last=3).load_weights(tmp_path / "w.weights.h5")


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "w.weights.h5"])
def test_interrupted_save_leaves_the_previous_file(tmp_path, monkeypatch, name):
    """The disk fills up after two arrays were written: the old file stays, whole."""
    import h5py
    model = mlp()
    save = model.save_weights if name.endswith(".weights.h5") else model.save
    save(tmp_path / name)
    good = (tmp_path / name).read_bytes()
    written = []
    create_dataset = h5py.Group.create_dataset

    def fill_disk_on_third(self, *args, **kwargs):
        if len(written) == 2:
            raise OSError("No space left on device")
        written.append(args[0])
        return create_dataset(self, *args, **kwargs)
    monkeypatch.setattr(h5py.Group, "create_dataset", fill_disk_on_third)
    with pytest.raises(OSError, match="No space left"):
        save(tmp_path / name)
    assert (tmp_path / name).read_bytes() == good
    assert os.listdir(tmp_path) == [name]


def test_saved_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        mlp().save(tmp_path / "m.keras")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.keras").stat().st_mode & 0o777 == 0o644


def test_loading_without_h5py_names_the_extra(tmp_path, monkeypatch):
    mlp().save(tmp_path / "m.keras")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pylayers\[hdf5\]"):
        keras.models.load_model(tmp_path / "m.keras")


def test_file_kind_is_told_by_content_not_extension(tmp_path):
    mlp().save(tmp_path / "m.h5")
    shutil.copy(tmp_path / "m.h5", tmp_path / "legacy.keras")
    shutil.copy(FIXTURES / "keras_mlp.keras", tmp_path / "archive.h5")
    assert keras.models.load_model(tmp_path / "legacy.keras").count_params() == 4 * 8 + 8 + 8 * 3 + 3
    assert keras.models.load_model(tmp_path / "archive.h5").count_params() == 784 * 64 + 64 + 650
