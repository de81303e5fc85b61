"""Weight constraints, as `keras.constraints`: `constraint(w)` returns the projected
weight, applied after each optimizer step."""
from pylayers.constraints.constraints import (Constraint, MaxNorm, MinMaxNorm, NonNeg,
                                              UnitNorm)
from pylayers.initializers._registry import Registry

# Lower-case spellings, as Keras exports them (keras.constraints.max_norm ...).
max_norm = MaxNorm
min_max_norm = MinMaxNorm
non_neg = NonNeg
unit_norm = UnitNorm

_REGISTRY = Registry("constraint", "keras.constraints", {
    Constraint: ("constraint",),
    MaxNorm: ("max_norm",),
    MinMaxNorm: ("min_max_norm",),
    NonNeg: ("non_neg",),
    UnitNorm: ("unit_norm",),
})
ALL_OBJECTS_DICT = _REGISTRY.classes


def serialize(constraint):
    """The constraint's Keras config dict: module, class_name, config, registered_name."""
    return _REGISTRY.serialize(constraint)


def deserialize(config):
    """A constraint from a dict written by `serialize` (or by Keras)."""
    return _REGISTRY.deserialize(config)


def get(identifier):
    """A constraint from a name ("max_norm" or "MaxNorm"), a config dict, a class, an
    instance or a callable; None gives None. Anything else is a ValueError."""
    return _REGISTRY.get(identifier)
