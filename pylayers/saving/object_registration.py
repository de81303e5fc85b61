"""Custom classes and functions known by name to the loaders, as Keras'
`register_keras_serializable`: a registered object is written with
registered_name "<package>><name>" and found again by that name."""
import inspect

_OBJECTS_BY_NAME = {}   # "Custom>MyLayer" -> class or function
_NAMES_BY_OBJECT = {}   # class or function -> "Custom>MyLayer"


def register_keras_serializable(package="Custom", name=None):
    """Decorator: register a class (which needs `get_config`) or a function under
    "<package>><name>" (name defaults to its own __name__)."""
    if ">" in package:
        raise ValueError(f"The package name must not contain '>'. Received: package={package!r}")

    def decorator(obj):
        registered_name = f"{package}>{name or obj.__name__}"
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() "
                             f"method. Received: {obj.__name__}")
        if registered_name in _OBJECTS_BY_NAME and _OBJECTS_BY_NAME[registered_name] is not obj:
            raise ValueError(f"{registered_name} has already been registered to "
                             f"{_OBJECTS_BY_NAME[registered_name]}")
        _OBJECTS_BY_NAME[registered_name] = obj
        _NAMES_BY_OBJECT[obj] = registered_name
        return obj
    return decorator


def get_registered_name(obj):
    """The name `obj` is registered under, else its __name__."""
    return _NAMES_BY_OBJECT.get(obj, getattr(obj, "__name__", None))


def get_registered_object(name, custom_objects=None):
    """The object for `name`, from `custom_objects` first, then the registry."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return _OBJECTS_BY_NAME.get(name)
