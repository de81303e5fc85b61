"""Keras 3's `model.weights.h5` layout: each object's own variables in `<path>/vars` as
datasets "0", "1", ... The paths follow Keras' walk of the object tree: a Sequential or
functional model's layers sit under `<path>/layers/<snake_case class name>[_N]` (NOT the
layer's own name); any other layer's sublayers under `<path>/<attribute name>` (a list
attribute adds `/<snake_case class name>[_N]`), attributes in natural sort order; an
object reached twice is stored once, at its first path; the optimizer's state sits at
`optimizer/vars` (iterations, learning rate, then the slots).

Loading checks every array against the model first and assigns only when all match,
so a bad file leaves the model as it was."""
import contextlib
import os
import re
import stat
import tempfile
import warnings

import numpy as np

from pylayers.backend import snake_case

_NOT_SUBLAYERS = {"_sublayers", "_outer", "_inbound_nodes"}
OPTIMIZER_PATH = "optimizer/vars"


def h5py_module():
    try:
        import h5py
    except ImportError:
        raise ImportError("Saving and loading weights needs h5py, the `hdf5` extra: "
                          "pip install 'pylayers[hdf5]'") from None
    return h5py


def _permissions_for(filepath):
    """The mode a plain open() would give a new file (the umask applied), or the mode of
    the file being replaced: mkstemp's 0600 would make saved models private."""
    if os.path.exists(filepath):
        return stat.S_IMODE(os.stat(filepath).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(filepath, mode="wb"):
    """Yield a temporary file beside `filepath`; rename it into place only on success."""
    folder = os.path.dirname(os.path.abspath(filepath))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(filepath))
    try:
        os.fchmod(handle, _permissions_for(filepath))
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, filepath)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# ---- the object tree ----------------------------------------------------------------------

def _natural_key(name):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _is_graph_model(layer):
    return getattr(layer, "_graph", None) is not None or hasattr(layer, "_stack")


def _children(layer):
    """[(relative path, sublayer or list of sublayers)] in Keras' walk order."""
    from pylayers.layers.layer import Layer
    if _is_graph_model(layer):
        return [("layers", layer.layers)]
    children = []
    for attribute in sorted(vars(layer), key=_natural_key):
        value = vars(layer)[attribute]
        if attribute in _NOT_SUBLAYERS:
            continue
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, Layer) or (isinstance(value, (list, tuple)) and value
                                        and all(isinstance(v, Layer) for v in value)):
            children.append((attribute, value))
    return children


def _container_paths(prefix, layers):
    """[(path, layer)] for a list of layers: snake_case class name, _1, _2 for repeats."""
    used, paths = {}, []
    for layer in layers:
        base = snake_case(type(layer).__name__)
        count = used.get(base, 0)
        used[base] = count + 1
        paths.append((f"{prefix}/{base}" if count == 0 else f"{prefix}/{base}_{count}", layer))
    return paths


def object_paths(model):
    """[(path, layer)] for the model and every layer inside it, each once."""
    found, seen = [], set()

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append((path, layer))
        for attribute, child in _children(layer):
            child_path = f"{path}/{attribute}" if path else attribute
            if isinstance(child, (list, tuple)):
                for grandchild_path, grandchild in _container_paths(child_path, child):
                    visit(grandchild, grandchild_path)
            else:
                visit(child, child_path)
    visit(model, "")
    return found


def vars_path(path):
    return f"{path}/vars" if path else "vars"


def own_variables(layer):
    """The layer's own Variables (not its sublayers'), in creation order."""
    return layer._trainable_vars + layer._non_trainable_vars


def collect(model, include_optimizer=True):
    """{vars path: [arrays]} for the model, its layers and its optimizer."""
    stores = {vars_path(path): [v.value for v in own_variables(layer)]
              for path, layer in object_paths(model)}
    optimizer = getattr(model, "optimizer", None)
    if include_optimizer and optimizer is not None and optimizer.built:
        stores[OPTIMIZER_PATH] = list(optimizer.variables)
    return stores


# ---- the HDF5 file ------------------------------------------------------------------------

def write(stream, stores):
    h5py = h5py_module()
    with h5py.File(stream, "w") as f:
        for path, arrays in stores.items():
            group = f.require_group(path)
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=np.asarray(array))


def open_h5(stream, filepath):
    h5py = h5py_module()
    try:
        return h5py.File(stream, "r")
    except OSError as error:
        raise ValueError(f"'{filepath}' is not a readable HDF5 weights file ({error})") from error


def is_legacy_layout(stream):
    """True for a Keras 2 / legacy weights layout (`layer_names` per model)."""
    with open_h5(stream, "<weights>") as f:
        legacy = "layer_names" in f.attrs or "model_weights" in f
    stream.seek(0)
    return legacy


def read(stream, filepath):
    """{vars path: [arrays]} of a Keras 3 weights file."""
    h5py = h5py_module()
    stores = {}
    with open_h5(stream, filepath) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars":
                stores[name] = [obj[str(i)][()] for i in range(len(obj))]
        f.visititems(visit)
    return stores


# ---- assigning ----------------------------------------------------------------------------

def _describe(layer, path):
    return f"layer '{layer.name}' ({type(layer).__name__}, stored at '{path}')"


def checked_pairs(layer, path, variables, arrays, filepath):
    """[(variable, array)] after checking count and shapes; ValueError otherwise."""
    expected = [tuple(v.shape) for v in variables]
    received = [tuple(np.shape(a)) for a in arrays]
    if expected != received:
        raise ValueError(f"'{filepath}': {_describe(layer, path)} expects {len(expected)} "
                         f"variables of shapes {expected}; the file has {len(received)} of "
                         f"shapes {received}")
    return list(zip(variables, arrays))


def assign(model, stores, filepath, skip_optimizer=False, skip_mismatch=False):
    """Check every stored array against the model, then assign them all."""
    pairs, expected_paths = [], {OPTIMIZER_PATH}
    for path, layer in object_paths(model):
        key = vars_path(path)
        expected_paths.add(key)
        try:
            pairs += checked_pairs(layer, key, own_variables(layer), stores.get(key, []), filepath)
        except ValueError as error:
            if not skip_mismatch:
                raise
            warnings.warn(f"Skipping {error}")
    unexpected = sorted(p for p, arrays in stores.items() if arrays and p not in expected_paths)
    if unexpected:
        raise ValueError(f"'{filepath}' holds weights for objects model '{model.name}' does not "
                         f"have: {unexpected[:5]} (a different architecture?)")
    optimizer_state = _optimizer_state(model, stores, skip_optimizer)
    for variable, array in pairs:
        variable.assign(array)
    if optimizer_state is not None:
        model.optimizer.set_weights(optimizer_state)


def _optimizer_state(model, stores, skip_optimizer):
    """The stored optimizer state when it fits the model's optimizer, else None (with a
    warning when the shapes differ, as Keras)."""
    state = stores.get(OPTIMIZER_PATH)
    optimizer = getattr(model, "optimizer", None)
    if not state or skip_optimizer or optimizer is None:
        return None
    optimizer.build(model.trainable_weights)
    current = optimizer.variables
    if [np.shape(a) for a in state] != [np.shape(v) for v in current]:
        warnings.warn(f"Skipping variable loading for optimizer '{optimizer.name}': it has "
                      f"{len(current)} variables, the saved optimizer has {len(state)}.")
        return None
    return state
