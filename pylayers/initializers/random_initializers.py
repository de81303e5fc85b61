"""Initializers drawing random numbers.

As in Keras 3, every instance owns an integer seed and each call draws from a fresh
generator seeded with it, so calling one instance twice returns the same values. An
instance made without `seed` takes its seed from `pylayers.utils.global_rng()` when it is
constructed (Keras draws it from Python's `random`), so `set_random_seed` makes model
construction reproducible while every `initializers.get("glorot_uniform")` differs.
"""
import math
import numbers

import numpy as np

from pylayers.initializers._registry import is_real_number, validate_number
from pylayers.initializers.initializer import (Initializer, standardize_dtype,
                                               standardize_shape)
from pylayers.utils.rng import global_rng

# The standard deviation of a unit normal truncated to [-2, 2].
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978
TRUNCATION_BOUND = 2.0


class RandomInitializer(Initializer):
    """Holds the seed; `_generator()` gives the same fresh generator on every call."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError("`seed` argument should be a non-negative integer. "
                             f"Received: seed={seed!r}")
        self._init_seed = seed
        self.seed = int(global_rng().integers(1, 10**9)) if seed is None else int(seed)

    def _generator(self):
        return np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self._init_seed}


class RandomNormal(RandomInitializer):
    """Normal draws with `mean` and `stddev`."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = validate_number(mean, "mean")
        self.stddev = validate_number(stddev, "stddev", minimum=0)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        draws = self._generator().normal(self.mean, self.stddev, standardize_shape(shape))
        return draws.astype(standardize_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    """Normal draws with `mean` and `stddev`, redrawn when more than 2 stddev away."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = validate_number(mean, "mean")
        self.stddev = validate_number(stddev, "stddev", minimum=0)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        unit = truncated_unit_normal(self._generator(), standardize_shape(shape))
        return (self.mean + self.stddev * unit).astype(standardize_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Uniform draws in [minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = validate_number(minval, "minval")
        self.maxval = validate_number(maxval, "maxval")
        if minval > maxval:
            raise ValueError("RandomUniform expects minval <= maxval. "
                             f"Received: minval={minval}, maxval={maxval}")
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        draws = self._generator().uniform(self.minval, self.maxval, standardize_shape(shape))
        return draws.astype(standardize_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Draws with variance `scale / n`, n the fan chosen by `mode` (fan_in, fan_out or
    their mean fan_avg), from a truncated normal, a normal or a uniform distribution."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if not is_real_number(scale) or scale <= 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale!r}")
        if mode not in self.MODES:
            raise ValueError(f"Invalid `mode` argument: {mode!r}. Please use one of {self.MODES}")
        distribution = _standardize_distribution(distribution)
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"Invalid `distribution` argument: {distribution!r}. "
                             f"Please use one of {self.DISTRIBUTIONS}")
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape = standardize_shape(shape)
        variance = self.scale / max(1.0, self._fan(shape))
        rng = self._generator()
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / TRUNCATED_NORMAL_STDDEV
            draws = stddev * truncated_unit_normal(rng, shape)
        elif self.distribution == "untruncated_normal":
            draws = rng.normal(0.0, math.sqrt(variance), shape)
        else:
            limit = math.sqrt(3.0 * variance)
            draws = rng.uniform(-limit, limit, shape)
        return draws.astype(standardize_dtype(dtype))

    def _fan(self, shape):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        return {"fan_in": fan_in, "fan_out": fan_out,
                "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling whose scale, mode and distribution are fixed by the class."""

    SETTINGS = {}

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(**self.SETTINGS, seed=seed, input_axes=input_axes,
                         output_axes=output_axes)

    def get_config(self):
        return {"seed": self._init_seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(6 / (fan_in + fan_out))."""
    SETTINGS = {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform"}


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(2 / (fan_in + fan_out)) / 0.8796..."""
    SETTINGS = {"scale": 1.0, "mode": "fan_avg", "distribution": "truncated_normal"}


class LecunUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(3 / fan_in)."""
    SETTINGS = {"scale": 1.0, "mode": "fan_in", "distribution": "uniform"}


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(1 / fan_in) / 0.8796..."""
    SETTINGS = {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}


class HeUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(6 / fan_in)."""
    SETTINGS = {"scale": 2.0, "mode": "fan_in", "distribution": "uniform"}


class HeNormal(_FixedVarianceScaling):
    """Truncated normal, stddev sqrt(2 / fan_in) / 0.8796..."""
    SETTINGS = {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"}


class Orthogonal(RandomInitializer):
    """`gain` times an orthogonal matrix (Q of the QR of a unit normal matrix, columns
    signed so that R has a positive diagonal), reshaped from (prod(shape[:-1]), shape[-1])."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = validate_number(gain, "gain")
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape = standardize_shape(shape)
        if len(shape) < 2:
            raise ValueError("The tensor to initialize must be at least two-dimensional. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        normal = self._generator().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(normal)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(standardize_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


def compute_fans(shape, input_axes=None, output_axes=None):
    """(fan_in, fan_out) of a weight shape, as Keras: explicit axes when both are given;
    else rank 0 -> (1, 1), rank 1 -> (n, n), rank 2 -> (in, out), and for a convolution
    kernel (*kernel_size, in, out) each fan times the receptive field prod(kernel_size)."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[axis] for axis in input_axes),
                math.prod(shape[axis] for axis in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def truncated_unit_normal(rng, shape):
    """Unit normal draws, each outside [-2, 2] redrawn until it falls inside."""
    draws = rng.standard_normal(shape)
    outside = np.abs(draws) > TRUNCATION_BOUND
    while outside.any():
        draws[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(draws) > TRUNCATION_BOUND
    return draws


def _standardize_distribution(distribution):
    """Lower case, with Keras' old name "normal" meaning "truncated_normal"."""
    if not isinstance(distribution, str):
        return distribution
    distribution = distribution.lower()
    return "truncated_normal" if distribution == "normal" else distribution
