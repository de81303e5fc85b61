"""Advanced activation layers: ReLU, LeakyReLU, ELU, Softmax (fused C) and PReLU."""
import numpy as np

from pylayers import activations, ops
from pylayers._kernels.dense import ACTIVATION_CODES
from pylayers.layers.core import ElementwiseActivation, _serialize
from pylayers.layers.layer import Layer


def _check_non_negative(layer_name, argument, value):
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"The {argument} value of a {layer_name} layer cannot be None or negative. "
                         f"Received: {argument}={value}")
    return float(value)


class ReLU(ElementwiseActivation):
    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None:
            _check_non_negative("ReLU", "max_value", max_value)
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = _check_non_negative("ReLU", "negative_slope", negative_slope)
        self.threshold = _check_non_negative("ReLU", "threshold", threshold)

    def activation_fn(self, x):
        return activations.relu(x, self.negative_slope, self.max_value, self.threshold)

    def fused(self):
        if self.max_value is not None or self.threshold != 0.0:
            return None
        if self.negative_slope == 0.0:
            return ACTIVATION_CODES["relu"], 0.0
        return ACTIVATION_CODES["leaky_relu"], self.negative_slope

    def get_config(self):
        config = super().get_config()
        config.update({"max_value": self.max_value, "negative_slope": self.negative_slope,
                       "threshold": self.threshold})
        return config


class LeakyReLU(ElementwiseActivation):
    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _check_non_negative("LeakyReLU", "negative_slope", negative_slope)

    def activation_fn(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def fused(self):
        return ACTIVATION_CODES["leaky_relu"], self.negative_slope

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


class ELU(ElementwiseActivation):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def activation_fn(self, x):
        return ops.elu(x, self.alpha)

    def fused(self):
        return ACTIVATION_CODES["elu"], self.alpha

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


class Softmax(ElementwiseActivation):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def activation_fn(self, x):
        return ops.softmax(x, axis=self.axis)

    def fused(self):
        return (ACTIVATION_CODES["softmax"], 0.0) if self.axis == -1 else None

    def output_activation(self):
        return "softmax" if self.axis == -1 else None

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


class PReLU(Layer):
    """y = relu(x) - alpha * relu(-x) with a learned alpha per input element (or shared)."""

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer
        self.alpha_regularizer = alpha_regularizer
        self.alpha_constraint = alpha_constraint
        if shared_axes is None or isinstance(shared_axes, (list, tuple)):
            self.shared_axes = None if shared_axes is None else list(shared_axes)
        else:
            self.shared_axes = [shared_axes]

    def build(self, input_shape):
        param_shape = list(input_shape[1:])
        for axis in self.shared_axes or []:
            if not 1 <= axis < len(input_shape):
                raise ValueError(f"Layer '{self.name}': shared_axes entries must be in "
                                 f"[1, {len(input_shape) - 1}]. Received: shared_axes={self.shared_axes}")
            param_shape[axis - 1] = 1
        if any(d is None for d in param_shape):
            raise ValueError(f"Layer '{self.name}' needs every non-shared input dimension to be "
                             f"known. Received: input_shape={input_shape}")
        self.alpha = self.add_weight(name="alpha", shape=param_shape,
                                     initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        self.built = True

    def _check_input(self, input_shape):
        """After building, every non-shared axis must keep its size: alpha would
        otherwise broadcast the input to a different shape without a word."""
        super()._check_input(input_shape)
        if not self.built:
            return
        shared = {a % len(input_shape) for a in self.shared_axes or []} if input_shape else set()
        sample = tuple(input_shape[1:])
        if len(sample) != len(self.alpha.shape) or any(
                axis + 1 not in shared and size != alpha_size
                for axis, (size, alpha_size) in enumerate(zip(sample, self.alpha.shape))):
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"alpha has shape {self.alpha.shape} (shared_axes="
                             f"{self.shared_axes}), but received input with shape "
                             f"{tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs):
        return ops.subtract(ops.relu(inputs), ops.multiply(self.alpha, ops.relu(ops.negative(inputs))))

    def get_config(self):
        config = super().get_config()
        config.update({"alpha_initializer": _serialize(self.alpha_initializer),
                       "alpha_regularizer": _serialize(self.alpha_regularizer),
                       "alpha_constraint": _serialize(self.alpha_constraint),
                       "shared_axes": self.shared_axes})
        return config
