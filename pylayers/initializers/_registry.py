"""Name tables and Keras' `get` / `serialize` / `deserialize` for initializers,
regularizers and constraints (one implementation shared by the three packages)."""
import inspect
import math
import numbers


class Registry:
    """The classes of one kind of object (say "initializer"), each findable by its
    CamelCase class name and by its snake_case names, as Keras' `ALL_OBJECTS_DICT`."""

    def __init__(self, kind, module, names_by_class):
        self.kind = kind
        self.module = module
        self.classes = {}
        for cls, names in names_by_class.items():
            for name in (cls.__name__, *names):
                self.classes[name] = cls

    def serialize(self, obj):
        """The `{"module", "class_name", "config", "registered_name"}` dict Keras writes."""
        cls = type(obj)
        builtin = self.classes.get(cls.__name__) is cls
        return {"module": self.module if builtin else cls.__module__,
                "class_name": cls.__name__, "config": obj.get_config(),
                "registered_name": None if builtin else cls.__name__}

    def deserialize(self, config):
        """An instance from a serialized dict (`class_name` plus `config`)."""
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise ValueError(f"Could not interpret {self.kind} identifier: {config}")
        cls = self._lookup(config["class_name"], config)
        return cls.from_config(dict(config.get("config") or {}))

    def get(self, identifier):
        """None, a name, a config dict, a class, an instance or a callable -> the object."""
        if identifier is None:
            return None
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str):
            return self._lookup(identifier, identifier).from_config({})
        if inspect.isclass(identifier):
            return identifier()
        if callable(identifier):
            return identifier
        raise ValueError(f"Could not interpret {self.kind} identifier: {identifier}")

    def _lookup(self, name, identifier):
        if name not in self.classes:
            raise ValueError(f"Could not interpret {self.kind} identifier: {identifier}")
        return self.classes[name]


def is_real_number(value):
    """True for a finite int or float (bools and strings are not numbers here)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def validate_number(value, name, minimum=None):
    """`value` as given, after checking it is a finite number, >= `minimum` if set."""
    if not is_real_number(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"Invalid value for argument {name}: expected a finite "
                         f"number{bound}. Received: {name}={value!r}")
    return value
