"""Objects to and from Keras' serialized form {module, class_name, config, registered_name}.

Classes are found by `registered_name` (custom objects) and by `class_name`, never by
module path, so configs written by Keras 3, Keras 2 and tf.keras resolve alike. Configs
of built-in classes pass through `keras_configs.translate_config` first."""
import inspect

import numpy as np

from pylayers.saving import keras_configs
from pylayers.saving.functions import deserialize_function, serialize_function
from pylayers.saving.object_registration import get_registered_name, get_registered_object

# The module Keras writes for a built-in model class (Keras locates classes by it).
_MODEL_MODULES = {"Functional": "keras.src.models.functional", "Sequential": "keras"}
# Keras class names of pylayers classes that pylayers calls otherwise.
_KERAS_ALIASES = {"Functional": "Model"}


def _is_builtin(cls):
    return cls.__module__.startswith("pylayers.")


def serialize_keras_object(obj):
    """None, names and numbers pass through; objects with get_config become a dict."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "get_config"):
        cls = type(obj)
        builtin = _is_builtin(cls)
        module = f"keras.{cls.__module__.split('.')[1]}" if builtin else cls.__module__
        return {"module": module,
                "class_name": cls.__name__, "config": obj.get_config(),
                "registered_name": None if builtin else get_registered_name(cls)}
    return getattr(obj, "__name__", repr(obj))


def _is_model_class(cls):
    from pylayers.models import Model
    return inspect.isclass(cls) and issubclass(cls, Model)


def keras_class_name(layer):
    """The class name Keras writes: a plain functional Model is a 'Functional'."""
    cls = type(layer)
    if cls.__name__ == "Model" and _is_builtin(cls) and getattr(layer, "_graph", None) is not None:
        return "Functional"
    return cls.__name__


def serialize_layer(layer):
    """Keras 3's layer entry: module, class_name, config, registered_name, build_config.
    The Keras 2 style `batch_input_shape` is left out of the config: Keras 3 layers do not
    take it, and models carry the input shape in their InputLayer."""
    cls = type(layer)
    class_name = keras_class_name(layer)
    if not _is_builtin(cls):
        module, registered_name = cls.__module__, get_registered_name(cls)
    elif _is_model_class(cls):
        module, registered_name = _MODEL_MODULES.get(class_name, "keras"), None
    else:
        module, registered_name = "keras.layers", None
    config = layer.get_config()
    if class_name != "InputLayer":
        config.pop("batch_input_shape", None)
    if class_name == "Lambda" and _is_builtin(cls):
        config.update(_lambda_functions(layer))
    entry = {"module": module, "class_name": class_name, "config": config,
             "registered_name": registered_name}
    build_shape = getattr(layer, "_built_input_shape", None)
    if build_shape is not None:
        entry["build_config"] = {"input_shape": list(build_shape)}
    return entry


def _lambda_functions(layer):
    """A Lambda's function (and output_shape function) as Keras 3 writes them."""
    functions = {"function": serialize_function(layer.function)}
    if callable(layer._output_shape):
        functions["output_shape"] = serialize_function(layer._output_shape)
    return functions


def _lambda_functions_from(config, owner, custom_objects):
    config = dict(config, function=deserialize_function(config["function"], owner, custom_objects))
    if isinstance(config.get("output_shape"), dict):
        config["output_shape"] = deserialize_function(config["output_shape"], owner, custom_objects)
    return config


def resolve_class(entry, custom_objects=None):
    """The class of a serialized entry: custom objects and registered classes by
    registered_name then class_name, then pylayers' layers and models by class_name."""
    from pylayers import layers, models
    class_name = entry.get("class_name")
    for name in (entry.get("registered_name"), class_name):
        if name:
            found = get_registered_object(name, custom_objects)
            if found is not None:
                return found
    builtin_name = _KERAS_ALIASES.get(class_name, class_name)
    for module in (layers, models):
        found = getattr(module, str(builtin_name), None)
        if inspect.isclass(found):
            return found
    raise ValueError(
        f"Unknown layer class '{class_name}' for {keras_configs.layer_owner(entry)}: pylayers "
        f"has no such layer. If it is your own class, pass custom_objects={{'{class_name}': "
        "YourClass}} or decorate it with @register_keras_serializable().")


def deserialize_layer(entry, custom_objects=None):
    """A layer or model from its serialized entry (written by pylayers or by Keras)."""
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"Not a serialized layer (a dict with 'class_name' and 'config'): {entry!r}")
    cls = resolve_class(entry, custom_objects)
    config = entry.get("config") or {}
    if isinstance(config, list) and _is_model_class(cls):   # Keras 2.2: a Sequential's layers
        config = {"layers": config}
    config = dict(config)
    if "layers" in config and _is_model_class(cls):   # Sequential or functional model
        config = keras_configs.keras3_graph_config(config)
    elif _is_builtin(getattr(cls.from_config, "__func__", cls.from_config)):
        owner = keras_configs.layer_owner(entry)
        if cls.__name__ == "Lambda" and "function" in config:
            config = _lambda_functions_from(config, owner, custom_objects)
        config = keras_configs.translate_config(cls, config, owner)
    if "custom_objects" in inspect.signature(cls.from_config).parameters:
        return cls.from_config(config, custom_objects=custom_objects)
    return cls.from_config(config)
