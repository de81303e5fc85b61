"""Objects to and from Keras' serialized form {module, class_name, config, registered_name}."""
import numpy as np

_MODULES = {"initializers": "keras.initializers", "regularizers": "keras.regularizers",
            "constraints": "keras.constraints"}


def serialize_keras_object(obj):
    """None, names and numbers pass through; objects with get_config become a dict."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "get_config"):
        package = type(obj).__module__.split(".")[1] if type(obj).__module__.startswith("pylayers.") else ""
        return {"module": _MODULES.get(package, type(obj).__module__),
                "class_name": type(obj).__name__, "config": obj.get_config(),
                "registered_name": None}
    return getattr(obj, "__name__", repr(obj))


def serialize_layer(layer):
    """Keras 3's layer entry: module, class_name, config, registered_name, build_config."""
    module = "keras.layers" if type(layer).__module__.startswith("pylayers.") else type(layer).__module__
    entry = {"module": module, "class_name": type(layer).__name__,
             "config": layer.get_config(), "registered_name": None}
    build_shape = getattr(layer, "_built_input_shape", None)
    if build_shape is not None:
        entry["build_config"] = {"input_shape": list(build_shape)}
    return entry


def deserialize_layer(entry, custom_objects=None):
    """A layer from its serialized entry, the class looked up by class_name."""
    from pylayers import layers, models
    class_name = entry["class_name"]
    cls = ((custom_objects or {}).get(class_name) or getattr(layers, class_name, None)
           or getattr(models, class_name, None))
    if cls is None:
        raise ValueError(f"Unknown layer class '{class_name}'. Pass it in `custom_objects` "
                         "(a dict of name -> class) or register it.")
    config = dict(entry["config"])
    if hasattr(cls, "_stack"):
        return cls.from_config(config, custom_objects)
    return cls.from_config(config)
