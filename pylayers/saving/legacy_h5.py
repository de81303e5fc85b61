"""Legacy HDF5 model files (`.h5`), as written by Keras 2, tf.keras and Keras 3's
`model.save("x.h5")`: root attributes `keras_version`, `backend`, `model_config` (JSON)
and `training_config` (JSON); group `model_weights` with attribute `layer_names`, one
group per layer with attribute `weight_names`, each name the path of a dataset in that
group; `optimizer_weights` likewise. Weights load by order: the layers that have weights,
in the model's layer order, each taking its trainable then non-trainable weights."""
import io
import json
import os
import warnings

import numpy as np

from pylayers.saving import keras_configs, saving_lib, weights_store
from pylayers.saving.functions import safe_mode_scope

MODEL_WEIGHTS, OPTIMIZER_WEIGHTS = "model_weights", "optimizer_weights"


# ---- attributes ---------------------------------------------------------------------------

def _text(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def read_name_list(group, name):
    """A list of strings stored as an attribute, possibly in chunks name0, name1, ...
    (Keras splits attributes over 64 kB)."""
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    names, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        names += [_text(v) for v in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return names


def write_name_list(group, name, values):
    group.attrs[name] = np.array([v.encode("utf8") for v in values], dtype="S") if values \
        else np.array([], dtype=np.float64)


def _json_attribute(f, name):
    value = f.attrs.get(name)
    return None if value is None else json.loads(_text(value))


# ---- weights ------------------------------------------------------------------------------

def legacy_variables(layer):
    """Keras' legacy weight order: trainable weights, then non-trainable ones."""
    return layer.trainable_weights + layer.non_trainable_weights


def read_layer_weights(group):
    """[(layer name, [arrays])] in the file's layer order."""
    return [(name, [group[name][w][()] for w in read_name_list(group[name], "weight_names")])
            for name in read_name_list(group, "layer_names")]


def _pairs_by_order(model, stored, filepath):
    """[(variable, array)] matching the model's layers that have weights with the file's,
    in order; ValueError naming the layer on any count or shape difference."""
    layers = [layer for layer in model.layers if layer.weights]
    stored = [(name, arrays) for name, arrays in stored if arrays]
    if len(layers) != len(stored):
        raise ValueError(f"'{filepath}': the model has {len(layers)} layers with weights "
                         f"({[layer.name for layer in layers]}), the file has {len(stored)} "
                         f"({[name for name, _ in stored]})")
    pairs = []
    for layer, (name, arrays) in zip(layers, stored):
        pairs += weights_store.checked_pairs(layer, f"{MODEL_WEIGHTS}/{name}",
                                              legacy_variables(layer), arrays, filepath)
    return pairs


def load_weights(model, stream, filepath, skip_mismatch=False):
    """Assign a legacy file's weights to `model` (by layer order); all checked first."""
    h5py = weights_store.h5py_module()
    with h5py.File(stream, "r") as f:
        group = f[MODEL_WEIGHTS] if MODEL_WEIGHTS in f else f
        stored = read_layer_weights(group)
    if skip_mismatch:
        warnings.warn("skip_mismatch is not supported for legacy .h5 weights; all layers are checked.")
    for variable, array in _pairs_by_order(model, stored, filepath):
        variable.assign(array)


# ---- whole models -------------------------------------------------------------------------

def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    with open(filepath, "rb") as stream:
        data = io.BytesIO(stream.read())
    with weights_store.open_h5(data, filepath) as f, saving_lib.errors_naming(filepath), \
            safe_mode_scope(safe_mode):
        model_config = _json_attribute(f, "model_config")
        if model_config is None:
            raise ValueError(f"'{filepath}' holds no model_config (a weights-only HDF5 file): "
                             "build the model in code and call model.load_weights() instead")
        model = saving_lib.model_from_entry(model_config, custom_objects, compile=False)
        pairs = _pairs_by_order(model, read_layer_weights(f[MODEL_WEIGHTS]), filepath)
        training_config = _json_attribute(f, "training_config")
        optimizer_state = _optimizer_state(f)
    for variable, array in pairs:
        variable.assign(array)
    if compile and training_config:
        with saving_lib.errors_naming(filepath):
            saving_lib.compile_from_config(model, keras_configs.compile_args_from_training_config(training_config))
        _restore_optimizer(model, optimizer_state, filepath)
    return model


def _optimizer_state(f):
    if OPTIMIZER_WEIGHTS not in f:
        return None
    group = f[OPTIMIZER_WEIGHTS]
    return [group[name][()] for name in read_name_list(group, "weight_names")]


def _restore_optimizer(model, state, filepath):
    if not state:
        return
    optimizer = model.optimizer
    optimizer.build(model.trainable_weights)
    if [np.shape(a) for a in state] != [np.shape(v) for v in optimizer.variables]:
        warnings.warn(f"'{filepath}': the saved optimizer state ({len(state)} arrays) does not "
                      f"fit optimizer '{optimizer.name}' ({len(optimizer.variables)}); training "
                      "restarts with a fresh optimizer state.")
        return
    optimizer.set_weights(state)


def _unique_weight_names(layer, variables):
    """Dataset names for a layer's variables: `<layer>/<variable path>`, made unique."""
    names = []
    for i, variable in enumerate(variables):
        path = getattr(variable, "path", None) or variable.name
        name = path if path.startswith(f"{layer.name}/") else f"{layer.name}/{path}"
        names.append(name if name not in names else f"{name}_{i}")
    return names


def _write_weights(group, layers):
    write_name_list(group, "layer_names", [layer.name for layer in layers])
    for layer in layers:
        layer_group = group.create_group(layer.name)
        variables = legacy_variables(layer)
        names = _unique_weight_names(layer, variables)
        write_name_list(layer_group, "weight_names", names)
        for name, variable in zip(names, variables):
            layer_group.create_dataset(name, data=np.asarray(variable.numpy()))


def _write_optimizer(f, optimizer):
    group = f.create_group(OPTIMIZER_WEIGHTS)
    names = [f"{optimizer.name}/variable_{i}" for i in range(len(optimizer.variables))]
    write_name_list(group, "weight_names", names)
    for name, value in zip(names, optimizer.variables):
        group.create_dataset(name, data=np.asarray(value))


def save_model(model, filepath, overwrite=True):
    """The legacy HDF5 file Keras 3's `model.save("x.h5")` writes (atomic)."""
    h5py = weights_store.h5py_module()
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    entry = saving_lib.serialize_model(model)
    model_config = json.dumps({"class_name": entry["class_name"], "config": entry["config"]},
                              default=saving_lib.to_json_default)
    training_config = (json.dumps(keras_configs.training_config(entry["compile_config"]),
                                  default=saving_lib.to_json_default)
                       if "compile_config" in entry else None)
    with weights_store.atomic_write(filepath) as stream, h5py.File(stream, "w") as f:
        f.attrs["keras_version"] = saving_lib.KERAS_VERSION
        f.attrs["backend"] = "pylayers"
        f.attrs["model_config"] = model_config
        if training_config is not None:
            f.attrs["training_config"] = training_config
        _write_weights(f.create_group(MODEL_WEIGHTS), model.layers)
        if model.optimizer is not None and model.optimizer.built:
            _write_optimizer(f, model.optimizer)
