"""Weight initializers, as `keras.initializers` (Keras 3 names, arguments and configs)."""
import numpy as np

from pylayers.initializers._registry import Registry
from pylayers.initializers.constant_initializers import Constant, Identity, Ones, Zeros
from pylayers.initializers.initializer import Initializer, standardize_dtype, standardize_shape
from pylayers.initializers.random_initializers import (GlorotNormal, GlorotUniform, HeNormal,
                                                       HeUniform, LecunNormal, LecunUniform,
                                                       Orthogonal, RandomNormal,
                                                       RandomUniform, TruncatedNormal,
                                                       VarianceScaling, compute_fans)

__all__ = ["Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
           "IdentityInitializer", "Initializer", "LecunNormal", "LecunUniform", "Ones",
           "Orthogonal", "OrthogonalInitializer", "RandomNormal", "RandomUniform",
           "TruncatedNormal", "VarianceScaling", "Zeros", "compute_fans", "constant",
           "deserialize", "get", "glorot_normal", "glorot_uniform", "he_normal",
           "he_uniform", "identity", "lecun_normal", "lecun_uniform", "ones", "orthogonal",
           "random_normal", "random_uniform", "serialize", "truncated_normal",
           "variance_scaling", "zeros"]

# Lower-case spellings, as the functions Keras exports (keras.initializers.he_normal ...).
constant = Constant
glorot_normal = GlorotNormal
glorot_uniform = GlorotUniform
he_normal = HeNormal
he_uniform = HeUniform
identity = Identity
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
ones = Ones
orthogonal = Orthogonal
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
variance_scaling = VarianceScaling
zeros = Zeros
IdentityInitializer = Identity
OrthogonalInitializer = Orthogonal

_REGISTRY = Registry("initializer", "keras.initializers", {
    Initializer: ("initializer",),
    Constant: ("constant",),
    Identity: ("identity", "IdentityInitializer"),
    Ones: ("ones", "one"),
    Zeros: ("zeros", "zero"),
    GlorotNormal: ("glorot_normal",),
    GlorotUniform: ("glorot_uniform",),
    HeNormal: ("he_normal",),
    HeUniform: ("he_uniform",),
    LecunNormal: ("lecun_normal",),
    LecunUniform: ("lecun_uniform",),
    Orthogonal: ("orthogonal", "OrthogonalInitializer"),
    RandomNormal: ("random_normal", "normal"),
    RandomUniform: ("random_uniform", "uniform"),
    TruncatedNormal: ("truncated_normal",),
    VarianceScaling: ("variance_scaling",),
})
ALL_OBJECTS_DICT = _REGISTRY.classes


def serialize(initializer):
    """The initializer's Keras config dict: module, class_name, config, registered_name."""
    return _REGISTRY.serialize(initializer)


def deserialize(config):
    """An initializer from a dict written by `serialize` (or by Keras)."""
    return _REGISTRY.deserialize(config)


def get(identifier):
    """An initializer from a name ("glorot_uniform" or "GlorotUniform"), a config dict,
    a class, an instance, a callable `f(shape, dtype=None)`, or an array of the weight's
    exact values; None gives None. Anything else is a ValueError."""
    if isinstance(identifier, (np.ndarray, np.generic)):
        return _fixed_values(identifier)
    return _REGISTRY.get(identifier)


def _fixed_values(values):
    """An initializer returning `values`, for a shape equal to theirs."""

    def initialize(shape, dtype=None):
        if standardize_shape(shape) != values.shape:
            raise ValueError(f"Expected `shape` to be {values.shape} for direct tensor as "
                             f"initializer. Received shape={shape}")
        return np.array(values, dtype=standardize_dtype(dtype))

    return initialize
