"""Sequential: a plain stack of layers; training runs them as a flat list of fused
forward calls and, in reverse, their backprops."""
from pylayers.layers.input_layer import InputLayer
from pylayers.layers.keras_tensor import KerasTensor
from pylayers.layers.layer import Layer
from pylayers.models.model import Model


class Sequential(Model):
    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._input_layer = None
        self._stack = []
        self._output_shapes = {}
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._build_from_input_layer()

    # ---- structure ----------------------------------------------------------------

    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer
        if not isinstance(layer, Layer):
            raise TypeError("Only instances of `keras.Layer` can be added to a Sequential "
                            f"model. Received: {layer!r} (of type {type(layer).__name__})")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._stack:
                raise ValueError(f"Sequential model '{self.name}' can only take an InputLayer "
                                 "as its first layer.")
            self._input_layer = layer
        else:
            if any(known.name == layer.name for known in self._stack):
                raise ValueError("All layers added to a Sequential model should have unique "
                                 f"names. Name '{layer.name}' is already the name of a layer "
                                 "in this model. Update the `name` argument to pass a unique name.")
            if not self._stack and self._input_layer is None and layer._batch_input_shape:
                self._input_layer = InputLayer(batch_shape=layer._batch_input_shape)
            self._stack.append(layer)
            self._track_layer(layer)
        if rebuild:
            self._build_from_input_layer()

    def pop(self, rebuild=True):
        if not self._stack:
            raise TypeError(f"There are no layers in the Sequential model '{self.name}'.")
        layer = self._stack.pop()
        self._sublayers.remove(layer)
        self.built = False
        if rebuild:
            self._build_from_input_layer()
        return layer

    @property
    def layers(self):
        return list(self._stack)

    def get_layer(self, name=None, index=None):
        if index is not None:
            if not -len(self._stack) <= index < len(self._stack):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(self._stack)} layers.")
            return self._stack[index]
        for layer in self._stack:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[layer.name for layer in self._stack]}.")

    def _first_layer(self):
        return self._stack[0] if self._stack else self

    # ---- shapes ---------------------------------------------------------------------

    def _build_from_input_layer(self):
        if self._input_layer is not None and self._stack:
            self.build(self._input_layer.batch_shape)

    def build(self, input_shape=None):
        """Check and build every layer from the input shape, recording output shapes."""
        if input_shape is None:
            raise ValueError(f"Sequential model '{self.name}' cannot be built without an input shape.")
        shape = tuple(input_shape)
        for layer in self._stack:
            layer._check_input(shape)
            layer._build_once(shape)
            shape = tuple(layer.compute_output_shape(shape))
            self._output_shapes[layer.name] = shape
        self._built_input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._stack:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def _check_input_data(self, shape):
        if not self._stack:
            raise ValueError(f"Sequential model '{self.name}' has no layers.")
        sample_shape = tuple(shape[1:])
        if self._checked_input_shape != sample_shape:
            if self._input_layer is not None:
                expected = self._input_layer.batch_shape[1:]
                if len(expected) != len(sample_shape) or any(
                        e is not None and e != s for e, s in zip(expected, sample_shape)):
                    raise ValueError(f"Input 0 of layer '{self._stack[0].name}' is incompatible "
                                     f"with the layer: expected shape={self._input_layer.batch_shape}, "
                                     f"found shape={tuple(shape)}")
            self.build((None,) + sample_shape)
            self._checked_input_shape = sample_shape

    def _check_input(self, input_shape):
        self._check_input_data(input_shape)

    # ---- computation ----------------------------------------------------------------

    def call(self, inputs, training=False):
        for layer in self._stack:
            inputs = layer(inputs, training=training)
        return inputs

    def _forward(self, inputs, training=False, mask=None):
        return self._forward_for_loss(inputs, training, mask)

    def compute_mask(self, inputs, previous_mask):
        """The output mask of the forward pass just run (its layers computed it)."""
        return getattr(self, "_output_mask", None)

    def _forward_for_loss(self, x, training=True, mask=None):
        """Run every layer, handing each the mask its predecessor computed; return y and
        backward(d, need_dx=True, from_preactivation=False). The output's mask is kept
        in `_output_mask` for the loss."""
        backprops = []
        for layer in self._stack:
            y, backprop = (layer._train_forward(x, training, mask) if training
                           else layer._forward_masked(x, False, mask))
            mask = layer.compute_mask(x, mask)
            x = y
            backprops.append(backprop)
        self._output_mask = mask

        def backward(d, need_dx=True, from_preactivation=False):
            last = len(backprops) - 1
            for i in range(last, -1, -1):
                needed = i > 0 or need_dx
                if i == last and from_preactivation:
                    d = backprops[i](d, need_dx=needed, from_preactivation=True)
                else:
                    d = backprops[i](d, need_dx=needed)
            return d
        return x, backward

    def _predict_batch(self, x):
        return self._forward_for_loss(x, training=False)[0]

    def _fusable_activation(self):
        last = self._stack[-1] if self._stack else None
        if last is None or last.activity_regularizer is not None:
            return None
        activation = getattr(last, "output_activation", None)
        return activation() if activation else None

    def output_activation(self):
        return self._fusable_activation()

    # ---- config -----------------------------------------------------------------------

    def get_config(self):
        from pylayers.saving.serialization import serialize_layer
        layers = [serialize_layer(layer) for layer in self._stack]
        if self._input_layer is not None:
            layers.insert(0, serialize_layer(self._input_layer))
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype,
                  "layers": layers}
        if getattr(self, "_built_input_shape", None) is not None:
            config["build_input_shape"] = self._built_input_shape
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pylayers.saving.serialization import deserialize_layer
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for layer_config in config["layers"]:
            model.add(deserialize_layer(layer_config, custom_objects), rebuild=False)
        if model._input_layer is not None:
            model._build_from_input_layer()
        elif config.get("build_input_shape"):
            model.build(config["build_input_shape"])
        return model
