"""Sequential: a plain stack of layers; training runs them as a flat list of fused
forward calls and, in reverse, their backprops (consecutive Dense layers as one chain,
pylayers.layers.dense_runs); inference runs a compiled plan per input shape
(pylayers.layers.inference)."""
import numpy as np

from pylayers import config
from pylayers.layers.dense_runs import dense_run_forward, dense_run_length
from pylayers.layers.fusion import conv_pool_forward, conv_pool_fusable
from pylayers.layers.inference import make_plan
from pylayers.layers.input_layer import InputLayer
from pylayers.layers.keras_tensor import KerasTensor
from pylayers.layers.layer import Layer
from pylayers.models.dense_steps import DenseStackSteps
from pylayers.models.model import Model
from pylayers.ops.mode import floatx, reference_mode_on
from pylayers.ops.tape import current_tape

PLANS_KEPT = 2   # input shapes: a predict's full batches and its last, shorter one


def _read_as_it_is(x):
    """Whether x is an array of floatx that the kernels read without a copy."""
    if type(x) is not np.ndarray or x.dtype != floatx():
        return False
    flags = x.flags
    return flags.c_contiguous and flags.aligned


class Sequential(Model):
    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._input_layer = None
        self._stack = []
        self._output_shapes = {}
        self._plans = {}
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
            self._plans = {}
            if self.built and rebuild:
                self._symbolic_output = self._call_symbolic(layer, self._symbolic_output)
                return
        if rebuild:
            self._build_from_input_layer()

    def pop(self, rebuild=True):
        if not self._stack:
            raise TypeError(f"There are no layers in the Sequential model '{self.name}'.")
        layer = self._stack.pop()
        self._plans = {}
        self._sublayers.remove(layer)
        self._output_shapes.pop(layer.name, None)
        self.built = False
        self._checked_input_shapes = None
        if rebuild:
            self._build_from_input_layer()
        return layer

    @property
    def layers(self):
        return list(self._stack)

    def _input_layers(self):
        return [self._stack[0]] if self._stack else [self]

    # ---- shapes ---------------------------------------------------------------------

    def _build_from_input_layer(self):
        if self._input_layer is not None and self._stack:
            self.build(self._input_layer.batch_shape)

    def build(self, input_shape=None):
        """Call every layer symbolically from an InputLayer: this checks and builds them,
        records each output shape, and gives `model.input`/`layer.output`."""
        if input_shape is None:
            raise ValueError(f"Sequential model '{self.name}' cannot be built without an input shape.")
        if self._input_layer is None:
            self._input_layer = InputLayer(batch_shape=(None,) + tuple(input_shape)[1:])
        tensor = self._input_layer.output
        for layer in self._stack:
            tensor = self._call_symbolic(layer, tensor)
        self._symbolic_output = tensor
        self._built_input_shape = self._input_layer.batch_shape
        self.built = True

    def _call_symbolic(self, layer, tensor):
        output = layer(tensor)
        if isinstance(output, list):
            raise ValueError(f"Layer '{layer.name}' returns {len(output)} outputs; a Sequential "
                             "model needs layers with one output each. Use the functional API.")
        self._output_shapes[layer.name] = output.shape
        return output

    @property
    def inputs(self):
        return [self.input]

    @property
    def outputs(self):
        return [self.output]

    @property
    def input(self):
        return self._require_graph().output

    @property
    def output(self):
        self._require_graph()
        return self._symbolic_output

    def _require_graph(self):
        if not self.built or self._input_layer is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input yet: "
                                 "give it an input shape or call it on data first.")
        return self._input_layer

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._stack:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def _check_input_data(self, shapes):
        if not self._stack:
            raise ValueError(f"Sequential model '{self.name}' has no layers.")
        shape = tuple(shapes[0])
        if not self.built:
            self.build((None,) + shape[1:])
        if self._checked_input_shapes == shape[1:]:
            return
        expected = self._input_layer.batch_shape
        if len(expected) != len(shape) or any(
                e is not None and e != s for e, s in zip(expected[1:], shape[1:])):
            raise ValueError(f"Input 0 of layer '{self._stack[0].name}' is incompatible with the "
                             f"layer: expected shape={expected}, found shape={shape}")
        self._checked_input_shapes = shape[1:]

    def _check_input(self, input_shape):
        self._check_input_data([input_shape])

    def _prepare(self, x, y=None, sample_weight=None, class_weight=None):
        """Inputs alone that the kernels read as they are, of a shape checked before,
        pass unconverted (a predict call's fast path)."""
        if y is None and sample_weight is None and _read_as_it_is(x) and \
                x.shape[1:] == self._checked_input_shapes and \
                not config.is_check_numerics_enabled():
            return [x], None, None
        return super()._prepare(x, y, sample_weight, class_weight)

    # ---- computation ----------------------------------------------------------------

    def call(self, inputs, training=False):
        for layer in self._stack:
            inputs = layer(inputs, training=training)
        return inputs

    def _forward_for_loss(self, xs, training=True, mask=None):
        """Run every layer, handing each the mask its predecessor computed (in training,
        a convolution and the max pooling after it as one where pylayers.layers.fusion
        takes them); return [y] and backward(d_preds, preactivation_flags, need_dx). The
        output's mask is kept in `_output_mask` for the loss."""
        x, backprops, i, stack = xs[0], [], 0, self._stack
        while i < len(stack):   # backprops: (index of the first layer, its backprop)
            layer, first = stack[i], i
            run = dense_run_length(stack, i, x, mask) if training else 0
            if run:
                y, backprop = dense_run_forward(stack[i:i + run], x)
                i += run - 1
            elif training and i + 1 < len(stack) and \
                    conv_pool_fusable(layer, stack[i + 1], np.shape(x), mask):
                y, backprop = conv_pool_forward(layer, stack[i + 1], x)
                i += 1
            else:
                y, backprop = (layer._train_forward(x, training, mask) if training
                               else layer._forward_masked(x, False, mask))
                mask = layer.compute_mask(x, mask)
            x = y
            backprops.append((first, backprop))
            i += 1
        self._output_mask = mask

        def backward(d_preds, preactivation_flags=None, need_dx=False):
            d, last = d_preds[0], len(backprops) - 1
            for j in range(last, -1, -1):
                first, backprop = backprops[j]
                needed = first > 0 or need_dx
                if j == last and preactivation_flags and preactivation_flags[0]:
                    d = backprop(d, need_dx=needed, from_preactivation=True)
                else:
                    d = backprop(d, need_dx=needed)
            return [d] if need_dx else None
        return [x], backward

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        """Inference on one array the plan takes: its answer, with no conversion."""
        if not training and mask is None and not kwargs and current_tape() is None:
            y = self._planned_output(inputs)
            if y is not None:
                return y
        return super().__call__(inputs, training=training, mask=mask, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """A silent predict of one batch that the plan takes: its answer, with no
        batching machinery."""
        one_batch = 32 if batch_size is None else batch_size if type(batch_size) is int else 0
        if verbose == 0 and type(x) is np.ndarray and x.ndim and 0 < len(x) <= one_batch:
            y = self._planned_output(x)
            if y is not None:
                return y
        return super().predict(x, batch_size, verbose, steps, callbacks)

    def predict_on_batch(self, x):
        y = self._planned_output(x)
        return y if y is not None else super().predict_on_batch(x)

    def _planned_output(self, x):
        """The plan's answer for x when x is an array the kernels read as it is, of a
        shape a plan was made for, with no numerics check or reference mode in the way;
        None otherwise, or while another thread runs that plan."""
        plan = self._plans.get(x.shape) if _read_as_it_is(x) else None
        if plan is None or config.is_check_numerics_enabled() or reference_mode_on():
            return None
        y = plan.run(x)
        return y if y is None or plan.output_is_new else np.array(y)

    def _infer_batch(self, xs):
        plan = self._inference_plan(xs[0])
        y = plan.run(xs[0]) if plan is not None else None
        if y is not None:
            self._output_mask = None
            return [y]
        if self._hands_on_masks():
            return super()._infer_batch(xs)   # the full forward
        x = xs[0]
        for layer in self._stack:
            x = layer._infer(x)
        self._output_mask = None
        return [x]

    def _inference_plan(self, x):
        """The compiled inference plan for x's shape (made on first use; None where the
        layers hand on masks, x is not float32, or in reference mode)."""
        if x.dtype != np.float32 or not x.size or reference_mode_on():
            return None
        if x.shape not in self._plans:
            if len(self._plans) >= PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
            self._plans[x.shape] = self._make_plan(x.shape)
        return self._plans[x.shape]

    def _make_plan(self, shape):
        return None if self._hands_on_masks() else make_plan(self._stack, shape)

    def _hands_on_masks(self):
        return any(type(layer).compute_mask is not Layer.compute_mask for layer in self._stack)

    def _epoch_train_batch(self, xs, ys):
        """A model of Dense layers only (its step neither overridden) steps through
        DenseStackSteps; any other, Model._train_batch."""
        steps = None
        if type(self)._train_batch is Model._train_batch and \
                type(self)._forward_for_loss is Sequential._forward_for_loss:
            steps = DenseStackSteps.of(self, xs, ys)
        return self._train_batch if steps is None else steps.train_batch

    def _forward(self, inputs, training=False, mask=None):
        """This model used as a layer: one input, one output."""
        (y,), backward = self._forward_for_loss([inputs], training, mask)

        def backprop(dy, need_dx=True, from_preactivation=False):
            dxs = backward([dy], [from_preactivation], need_dx)
            return dxs[0] if need_dx else None
        return y, backprop

    def compute_mask(self, inputs, previous_mask):
        """The output mask of the forward pass just run (its layers computed it)."""
        return getattr(self, "_output_mask", None)

    def _output_activations(self):
        return [self.output_activation()]

    def output_activation(self):
        last = self._stack[-1] if self._stack else None
        if last is None or last.activity_regularizer is not None:
            return None
        activation = getattr(last, "output_activation", None)
        return activation() if activation else None

    def summary_rows(self):
        from pylayers.models.summary import layer_fields
        return [layer_fields(layer, self._output_shapes.get(layer.name))
                for layer in self._stack], True

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
