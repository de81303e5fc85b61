"""Embedding (integer indices -> rows of a trained table) and Masking (keras.layers)."""
import numpy as np

from pylayers import constraints, initializers, ops, regularizers
from pylayers._kernels import embedding as embedding_kernels
from pylayers.layers.core import grad_buffer
from pylayers.layers.layer import Layer
from pylayers.ops import Tensor, Variable, value_of
from pylayers.ops.mode import reference_mode_on


def _serialize(obj):
    from pylayers.saving.serialization import serialize_keras_object
    return serialize_keras_object(obj)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"Received an invalid value for argument `{name}`, expected a "
                         f"positive integer. Received: {name}={value}")
    return int(value)


class Embedding(Layer):
    """out[..., :] = embeddings[inputs[...]]; embeddings (input_dim, output_dim)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, input_length=None, quantization_config=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.input_dim = _positive_int("input_dim", input_dim)
        self.output_dim = _positive_int("output_dim", output_dim)
        if lora_rank is not None or quantization_config is not None:
            raise ValueError(f"Layer '{self.name}': LoRA and quantization are not supported "
                             f"by pylayers. Received: lora_rank={lora_rank}, "
                             f"quantization_config={quantization_config}")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        if weights is not None:   # as Keras: built at once, so the table is there to read
            self.build()
            self.set_weights([weights] if isinstance(weights, np.ndarray) else weights)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(name="embeddings",
                                          shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs, previous_mask=None):
        if not self.mask_zero:
            return None
        return np.not_equal(value_of(inputs), 0)

    def _convert_one(self, x):
        """Indices stay integers; floats must hold whole numbers; all within the table."""
        if isinstance(x, (Tensor, Variable)):
            x = value_of(x)
        array = np.asarray(x)
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
                raise ValueError(f"Layer '{self.name}' expects integer indices; received a "
                                 f"{array.dtype} array of shape {array.shape} holding "
                                 "non-integer values")
        elif array.dtype.kind not in "iub":
            raise TypeError(f"Layer '{self.name}' expects integer indices; received an array "
                            f"of dtype {array.dtype} and shape {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= self.input_dim):
            bad = array.min() if array.min() < 0 else array.max()
            raise ValueError(f"Layer '{self.name}': index {bad} is out of range for an "
                             f"embedding of input_dim={self.input_dim} (valid indices are "
                             f"0 to {self.input_dim - 1})")
        return np.ascontiguousarray(array, dtype=np.int64)

    @staticmethod
    def _indices(inputs):
        array = np.asarray(value_of(inputs))
        if array.dtype.kind == "f":
            array = np.rint(array)
        return np.ascontiguousarray(array, dtype=np.int64)

    def call(self, inputs):
        return ops.take_slice(self.embeddings, self._indices(inputs))

    def _forward(self, inputs, training=False):
        if reference_mode_on():
            return super()._forward(inputs, training)
        self._step_losses = []
        indices = self._indices(inputs)
        flat = indices.reshape(-1)
        try:
            y = embedding_kernels.embedding_forward(flat, self.embeddings.value)
        except ValueError as error:
            raise ValueError(f"Layer '{self.name}': {error}") from None

        def backprop(dy, need_dx=True):
            if self.trainable:
                dy_rows = np.ascontiguousarray(dy, dtype=np.float32).reshape(-1, self.output_dim)
                embedding_kernels.embedding_backward(flat, dy_rows, grad_buffer(self.embeddings))
            return np.zeros(indices.shape, dtype=np.float32) if need_dx else None
        return y.reshape(indices.shape + (self.output_dim,)), backprop

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim, "output_dim": self.output_dim,
            "embeddings_initializer": _serialize(self.embeddings_initializer),
            "embeddings_regularizer": _serialize(self.embeddings_regularizer),
            "activity_regularizer": _serialize(self.activity_regularizer),
            "embeddings_constraint": _serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero, "quantization_config": None})
        return config


class Masking(Layer):
    """Marks time steps whose features all equal mask_value as masked, and zeroes them."""

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, previous_mask=None):
        return np.any(np.not_equal(value_of(inputs), self.mask_value), axis=-1)

    def call(self, inputs):
        keep = self.compute_mask(inputs)[..., None]
        return ops.multiply(inputs, keep.astype(np.asarray(value_of(inputs)).dtype))

    def get_config(self):
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config
