"""Weight penalties, as `keras.regularizers`: each object gives its penalty `reg(w)` and,
for the training loop, its gradient `reg.gradient(w)` with respect to w."""
from pylayers.initializers._registry import Registry
from pylayers.regularizers.regularizers import (L1, L1L2, L2, OrthogonalRegularizer,
                                                Regularizer)

# Lower-case spellings, as Keras exports them (keras.regularizers.l1_l2 ...).
l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

_REGISTRY = Registry("regularizer", "keras.regularizers", {
    Regularizer: ("regularizer",),
    L1: ("l1",),
    L2: ("l2",),
    L1L2: ("l1l2", "l1_l2"),
    OrthogonalRegularizer: ("orthogonal_regularizer",),
})
ALL_OBJECTS_DICT = _REGISTRY.classes


def serialize(regularizer):
    """The regularizer's Keras config dict: module, class_name, config, registered_name."""
    return _REGISTRY.serialize(regularizer)


def deserialize(config):
    """A regularizer from a dict written by `serialize` (or by Keras)."""
    return _REGISTRY.deserialize(config)


def get(identifier):
    """A regularizer from a name ("l2", "L2", "l1_l2"), a config dict, a class, an
    instance or a callable; None gives None. Anything else is a ValueError."""
    return _REGISTRY.get(identifier)
