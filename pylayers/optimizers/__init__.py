"""Optimizers with Keras 3's update formulas, each update one fused C loop.

`get(identifier)` accepts a name ('adam', 'sgd', 'rmsprop', 'adamw', 'adagrad', any
case), an Optimizer instance, or a config dict {'class_name': ..., 'config': ...}."""
from pylayers.optimizers import schedules
from pylayers.optimizers.adagrad import Adagrad
from pylayers.optimizers.adam import Adam, AdamW
from pylayers.optimizers.base import Optimizer
from pylayers.optimizers.rmsprop import RMSprop
from pylayers.optimizers.sgd import SGD

ALL_OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "schedules", "get",
           "serialize", "deserialize"]


def serialize(optimizer):
    """Keras' serialized form: {'module', 'class_name', 'config', 'registered_name'}."""
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def _class_named(name):
    cls = ALL_OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer: {name!r}. Known optimizers: "
                         f"{sorted(ALL_OPTIMIZERS)}")
    return cls


def deserialize(config, custom_objects=None):
    class_name = config.get("class_name")
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name].from_config(config.get("config", {}))
    return _class_named(class_name).from_config(config.get("config", {}), custom_objects)


def get(identifier):
    """An Optimizer from a name, a config dict, or an instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return _class_named(identifier)()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. Expected a "
                     f"name ({sorted(ALL_OPTIMIZERS)}), an Optimizer or a config dict.")
