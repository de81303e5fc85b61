"""The Keras 3 `.keras` format: an uncompressed zip of metadata.json, config.json and
model.weights.h5. Each object's variables sit in `<path>/vars` as datasets "0", "1", ...
where the path of a model's layer is `layers/<snake_case class name>[_N]`; the
optimizer's state sits at `optimizer/vars`. Writes go to a temporary file in the same
folder, renamed over the target only when complete."""
import contextlib
import datetime
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from pylayers.backend import snake_case

KERAS_VERSION = "3.15.1"   # the format version these files follow
CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME = "config.json", "metadata.json", "model.weights.h5"


def h5py_module():
    try:
        import h5py
    except ImportError:
        raise ImportError("Saving and loading weights needs h5py, the `hdf5` extra: "
                          "pip install 'pylayers[hdf5]'") from None
    return h5py


@contextlib.contextmanager
def atomic_write(filepath, mode="wb"):
    """Yield a temporary file beside `filepath`; rename it into place only on success."""
    folder = os.path.dirname(os.path.abspath(filepath))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(filepath))
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, filepath)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# ---- weights: object paths -> arrays --------------------------------------------------

def layer_paths(layers, prefix="layers"):
    """[(path, layer)] with Keras' naming: snake_case class name, _1, _2 for repeats."""
    used, paths = {}, []
    for layer in layers:
        base = snake_case(type(layer).__name__)
        count = used.get(base, 0)
        used[base] = count + 1
        paths.append((f"{prefix}/{base}" if count == 0 else f"{prefix}/{base}_{count}", layer))
    return paths


def own_variables(layer):
    """The layer's own variables (not its sublayers'), in creation order."""
    return layer._trainable_vars + layer._non_trainable_vars


def collect_weights(model, include_optimizer=True):
    """{path: [arrays]} for the model, its layers (recursively) and the optimizer."""
    stores = {}

    def visit(layer, path):
        stores[f"{path}/vars" if path else "vars"] = [v.value for v in own_variables(layer)]
        children = getattr(layer, "layers", None) if hasattr(layer, "_stack") or hasattr(layer, "_graph") \
            else layer._sublayers
        for child_path, child in layer_paths(children or [], f"{path}/layers" if path else "layers"):
            visit(child, child_path)
    visit(model, "")
    optimizer = getattr(model, "optimizer", None)
    if include_optimizer and optimizer is not None and optimizer.built:
        stores["optimizer/vars"] = list(optimizer.variables)
    return stores


def write_weights_h5(stream, stores):
    h5py = h5py_module()
    with h5py.File(stream, "w") as f:
        for path, arrays in stores.items():
            group = f.require_group(path)
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=np.asarray(array))


def read_weights_h5(stream):
    h5py = h5py_module()
    stores = {}
    with h5py.File(stream, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars":
                stores[name] = [obj[str(i)][()] for i in range(len(obj))]
        f.visititems(visit)
    return stores


def assign_weights(model, stores, skip_optimizer=False):
    """Check every stored array against the model first, then assign them all."""
    expected = collect_weights(model, include_optimizer=False)
    assignments = []
    for path, arrays in expected.items():
        stored = stores.get(path, [])
        if len(stored) != len(arrays):
            raise ValueError(f"Weight file mismatch at '{path}': the model has {len(arrays)} "
                             f"variables, the file has {len(stored)}")
        for target, value in zip(arrays, stored):
            if target.shape != value.shape:
                raise ValueError(f"Weight file mismatch at '{path}': expected shape "
                                 f"{target.shape}, the file has {value.shape}")
            assignments.append((target, value))
    for target, value in assignments:
        target[...] = value
    optimizer_state = stores.get("optimizer/vars")
    if optimizer_state and not skip_optimizer and getattr(model, "optimizer", None) is not None:
        model.optimizer.build(model.trainable_weights)
        model.optimizer.set_weights(optimizer_state)


# ---- whole models ---------------------------------------------------------------------

def serialize_model(model):
    from pylayers.saving.serialization import serialize_keras_object
    entry = {"module": "keras", "class_name": type(model).__name__,
             "config": model.get_config(), "registered_name": None}
    if getattr(model, "_built_input_shape", None) is not None:
        entry["build_config"] = {"input_shape": list(model._built_input_shape)}
    if model.compiled:
        entry["compile_config"] = {
            "optimizer": serialize_keras_object(model.optimizer),
            "loss": _serialize_specs(model._loss_spec),
            "loss_weights": model.loss_weights,
            "metrics": _serialize_specs(model._metrics_spec),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}
    return entry


def _serialize_specs(spec):
    """Loss/metric arguments as written to compile_config: names stay names."""
    from pylayers.saving.serialization import serialize_keras_object
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, (list, tuple)):
        return [_serialize_specs(s) for s in spec]
    if isinstance(spec, dict):
        return {k: _serialize_specs(v) for k, v in spec.items()}
    return serialize_keras_object(spec)


def save_model(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` "
                         f"extension for the native Keras format. Received: filepath={filepath}")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    weights = io.BytesIO()
    write_weights_h5(weights, collect_weights(model))
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    with atomic_write(filepath) as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata))
        archive.writestr(CONFIG_NAME, json.dumps(serialize_model(model), default=_json_default))
        archive.writestr(WEIGHTS_NAME, weights.getvalue())


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    from pylayers.saving.serialization import deserialize_layer
    filepath = os.fspath(filepath)
    if not zipfile.is_zipfile(filepath):
        raise ValueError(f"File format not supported: filepath={filepath}. "
                         "pylayers reads `.keras` zip files.")
    with zipfile.ZipFile(filepath) as archive:
        entry = json.loads(archive.read(CONFIG_NAME))
        weights = io.BytesIO(archive.read(WEIGHTS_NAME))
    model = deserialize_layer(entry, custom_objects)
    if "build_config" in entry and not model.built:
        model.build(tuple(entry["build_config"]["input_shape"]))
    compile_config = entry.get("compile_config")
    if compile and compile_config:
        model.compile(**{k: compile_config[k] for k in ("optimizer", "loss", "metrics", "loss_weights")})
    assign_weights(model, read_weights_h5(weights), skip_optimizer=not compile)
    return model


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError("The filename must end in `.weights.h5`. "
                         f"Received: filepath={filepath}")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    with atomic_write(filepath) as stream:
        write_weights_h5(stream, collect_weights(model))


def load_weights(model, filepath, skip_mismatch=False):
    with open(os.fspath(filepath), "rb") as stream:
        assign_weights(model, read_weights_h5(io.BytesIO(stream.read())))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"Cannot serialize {type(obj).__name__} to JSON")
