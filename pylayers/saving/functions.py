"""Python functions inside configs (a Lambda layer's function), in Keras 3's two forms:
a named function as {"module", "class_name": "function", "config": <name>,
"registered_name"}, found again through custom_objects, the registry or its module; a
`lambda` as {"class_name": "__lambda__", "config": {"code", "defaults", "closure"}}, its
bytecode marshalled in base64. Loading a lambda runs code read from the file, so it is
refused unless the caller passes safe_mode=False (and needs the same Python version)."""
import base64
import builtins
import contextlib
import contextvars
import importlib
import marshal
import types

import numpy as np

from pylayers.saving.object_registration import get_registered_name, get_registered_object

_SAFE_MODE = contextvars.ContextVar("pylayers_saving_safe_mode", default=True)


@contextlib.contextmanager
def safe_mode_scope(safe_mode):
    token = _SAFE_MODE.set(safe_mode is not False)
    try:
        yield
    finally:
        _SAFE_MODE.reset(token)


def serialize_function(function):
    if function.__name__ == "<lambda>":
        closure = (tuple(cell.cell_contents for cell in function.__closure__)
                   if function.__closure__ else None)
        return {"class_name": "__lambda__", "config": {
            "code": base64.b64encode(marshal.dumps(function.__code__)).decode("ascii"),
            "defaults": function.__defaults__, "closure": closure}}
    return {"module": function.__module__, "class_name": "function",
            "config": function.__name__, "registered_name": get_registered_name(function)}


def deserialize_function(entry, owner, custom_objects=None):
    """The function of a serialized entry (or of a bare name); `owner` names the layer."""
    if isinstance(entry, str):
        entry = {"class_name": "function", "config": entry}
    if entry.get("class_name") == "__lambda__":
        if _SAFE_MODE.get():
            raise ValueError(f"{owner} wraps a Python lambda: loading it runs code stored in "
                             "the file. If you trust the file, pass safe_mode=False.")
        return _load_lambda(entry["config"], custom_objects)
    name = entry.get("config")
    for key in (entry.get("registered_name"), name):
        found = get_registered_object(key, custom_objects) if key else None
        if found is not None:
            return found
    found = _from_module(entry.get("module"), name)
    if found is None:
        raise ValueError(f"{owner} calls the function '{name}', which cannot be found: pass "
                         f"custom_objects={{'{name}': function}} or register it with "
                         "@register_keras_serializable().")
    return found


def _from_module(module, name):
    if not module or module == "builtins":
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _load_lambda(config, custom_objects):
    import pylayers
    code = marshal.loads(base64.b64decode(config["code"]))
    namespace = {"__builtins__": builtins, "keras": pylayers, "ops": pylayers.ops, "np": np,
                 **(custom_objects or {})}
    closure = tuple(types.CellType(value) for value in config["closure"]) if config.get("closure") else None
    defaults = tuple(config["defaults"]) if config.get("defaults") else None
    return types.FunctionType(code, namespace, code.co_name, defaults, closure)
