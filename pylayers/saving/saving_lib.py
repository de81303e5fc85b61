"""The Keras 3 `.keras` format: an uncompressed zip of metadata.json, config.json and
model.weights.h5, and `.weights.h5` files. Writes go to a temporary file in the same
folder, renamed over the target only when complete; loads check every array against
the model before assigning any. Legacy `.h5` files go to `legacy_h5`."""
import contextlib
import datetime
import io
import json
import os
import zipfile

from pylayers.saving import weights_store
from pylayers.saving.functions import safe_mode_scope

KERAS_VERSION = "3.15.1"   # the format version these files follow
CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME = "config.json", "metadata.json", "model.weights.h5"
LEGACY_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


@contextlib.contextmanager
def errors_naming(filepath):
    """Re-raise ValueError/TypeError with the file they concern in the message."""
    try:
        yield
    except (ValueError, TypeError) as error:
        if str(filepath) in str(error):
            raise
        raise _with_message(error, f"Cannot load '{filepath}': {error}") from error


def _with_message(error, message):
    """An exception of the same type with `message` (its base type when the subclass
    takes other constructor arguments)."""
    try:
        return type(error)(message)
    except TypeError:
        return (TypeError if isinstance(error, TypeError) else ValueError)(message)


def file_signature(filepath):
    with open(filepath, "rb") as stream:
        return stream.read(8)


def is_hdf5(filepath):
    return file_signature(filepath) == HDF5_SIGNATURE


# ---- configs ----------------------------------------------------------------------------

def serialize_model(model):
    from pylayers.saving.serialization import serialize_layer
    entry = serialize_layer(model)
    if model.compiled:
        entry["compile_config"] = compile_config(model)
    return entry


def compile_config(model):
    from pylayers.saving.serialization import serialize_keras_object
    return {"optimizer": serialize_keras_object(model.optimizer),
            "loss": _serialize_specs(model._loss_spec),
            "loss_weights": model.loss_weights,
            "metrics": _serialize_specs(model._metrics_spec),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


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


def compile_from_config(model, config):
    """compile() with the arguments of a saved compile config."""
    from pylayers.saving.keras_configs import translate_optimizer
    model.compile(optimizer=translate_optimizer(config.get("optimizer")) or "rmsprop",
                  loss=config.get("loss"),
                  metrics=config.get("metrics"), loss_weights=config.get("loss_weights"))


def model_from_entry(entry, custom_objects=None, compile=True):
    """The model of a config.json entry: layers, build, and (optionally) compile."""
    from pylayers.saving.serialization import deserialize_layer
    model = deserialize_layer(entry, custom_objects)
    build_config = entry.get("build_config")
    if build_config and not model.built:
        build_from_config(model, build_config["input_shape"])
    if compile and entry.get("compile_config"):
        compile_from_config(model, entry["compile_config"])
    return model


def build_from_config(model, input_shape):
    """Create the model's weights for `input_shape`, as Keras' build_from_config. A
    subclassed model (no graph, no layer stack) builds by a call on zeros, its unknown
    dimensions taken as 1, as Keras builds one by a call on a symbolic input."""
    import numpy as np
    if getattr(model, "_graph", None) is not None or hasattr(model, "_stack"):
        model.build(tuple(input_shape))
        return
    model(np.zeros([1 if d is None else d for d in input_shape], dtype="float32"))
    model.built = True


def to_json_default(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"Cannot serialize {type(obj).__name__} to JSON")




# ---- .keras archives --------------------------------------------------------------------

def save_model(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if filepath.endswith(LEGACY_SUFFIXES):
        from pylayers.saving import legacy_h5
        return legacy_h5.save_model(model, filepath, overwrite=overwrite)
    if not filepath.endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` "
                         f"extension for the native Keras format. Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    weights = io.BytesIO()
    weights_store.write(weights, weights_store.collect(model))
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    config = json.dumps(serialize_model(model), default=to_json_default)
    with weights_store.atomic_write(filepath) as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata))
        archive.writestr(CONFIG_NAME, config)
        archive.writestr(WEIGHTS_NAME, weights.getvalue())


def _check_overwrite(filepath, overwrite):
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"{filepath} exists and overwrite=False")


def read_archive(filepath):
    """(config entry, model.weights.h5 bytes) of a .keras file, with errors that say
    what is wrong with the file."""
    if not zipfile.is_zipfile(filepath):
        if file_signature(filepath).startswith(ZIP_SIGNATURE):
            raise ValueError(f"'{filepath}' is a damaged .keras archive (truncated or corrupt zip).")
        raise ValueError(f"'{filepath}' is not a Keras model file: pylayers reads .keras zip "
                         "archives and legacy HDF5 (.h5) files.")
    try:
        with zipfile.ZipFile(filepath) as archive:
            names = set(archive.namelist())
            if CONFIG_NAME not in names:
                raise ValueError(f"'{filepath}' is a zip archive without {CONFIG_NAME}: not a "
                                 f"Keras model file (it holds {sorted(names)[:5]})")
            config = archive.read(CONFIG_NAME)
            weights = archive.read(WEIGHTS_NAME) if WEIGHTS_NAME in names else None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"'{filepath}' is a damaged .keras archive: {error}") from error
    try:
        entry = json.loads(config)
    except json.JSONDecodeError as error:
        raise ValueError(f"'{filepath}': {CONFIG_NAME} is not valid JSON ({error})") from error
    return entry, weights


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a `.keras` archive or a legacy `.h5` file (Keras 3, Keras 2, tf.keras
    or pylayers); every weight checked against the model before it is assigned.
    safe_mode=False allows Lambda layers whose function is a Python lambda (their code
    is in the file)."""
    filepath = os.fspath(filepath)
    if is_hdf5(filepath):
        from pylayers.saving import legacy_h5
        return legacy_h5.load_model(filepath, custom_objects=custom_objects, compile=compile,
                                    safe_mode=safe_mode)
    entry, weights = read_archive(filepath)
    with errors_naming(filepath), safe_mode_scope(safe_mode):
        model = model_from_entry(entry, custom_objects, compile)
        if weights is not None:
            stores = weights_store.read(io.BytesIO(weights), filepath)
            weights_store.assign(model, stores, filepath, skip_optimizer=not compile)
    return model


# ---- weights files ----------------------------------------------------------------------

def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError("The filename must end in `.weights.h5`. "
                         f"Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    stores = weights_store.collect(model)
    with weights_store.atomic_write(filepath) as stream:
        weights_store.write(stream, stores)


def load_weights(model, filepath, skip_mismatch=False):
    """Weights from a `.weights.h5`, a `.keras` archive or a legacy `.h5` file."""
    filepath = os.fspath(filepath)
    if not is_hdf5(filepath):
        _, weights = read_archive(filepath)
        if weights is None:
            raise ValueError(f"'{filepath}' holds no {WEIGHTS_NAME}")
        stream = io.BytesIO(weights)
    else:
        with open(filepath, "rb") as f:
            stream = io.BytesIO(f.read())
    if weights_store.is_legacy_layout(stream):
        from pylayers.saving import legacy_h5
        return legacy_h5.load_weights(model, stream, filepath, skip_mismatch=skip_mismatch)
    weights_store.assign(model, weights_store.read(stream, filepath), filepath,
                         skip_mismatch=skip_mismatch)
