"""Layer: the base class of every layer, built-in or user-written (keras.layers.Layer).

A layer is called three ways:
- on numpy data: builds on first use, returns a float32 numpy array, records nothing;
- on symbolic KerasTensors (Input): builds from shapes, returns a KerasTensor;
- by a model's training step through `_forward(x, training) -> (y, backprop)`, where
  `backprop(dy, need_dx=True)` accumulates weight gradients into each Variable's
  `.grad` and returns dx. The base `_forward` runs `call` under a tape (so a custom
  layer written with pylayers.ops trains with no backward of its own); built-in layers
  override it with fused compiled kernels and keep `call` as their float64 reference.
"""
import inspect

import numpy as np

from pylayers import backend
from pylayers.layers.keras_tensor import KerasTensor, Node, is_symbolic
from pylayers.ops import Tape, Tensor, Variable, value_of
from pylayers.ops.errors import named
from pylayers.ops.mode import floatx, reference_mode_on
from pylayers.ops.tape import current_tape

_forward_accepts_mask = {}

_LAYER_KWARGS = {"input_shape", "input_dim", "batch_size", "batch_input_shape", "weights",
                 "activity_regularizer", "autocast"}


class Layer:
    supports_masking = False   # pass an incoming mask on unchanged (see compute_mask)
    _paths_run_call = False    # True: the class's _forward/_infer run `call`, whatever it is

    def __init_subclass__(cls, **kwargs):
        """A subclass that writes its own `call` runs it: the compiled paths it would
        inherit (a Dense's fused forward, written for Dense.call) give way to the generic
        ones that run `call`, unless it writes them too."""
        super().__init_subclass__(**kwargs)
        if "call" in vars(cls) and not cls._paths_run_call:
            for name in ("_forward", "_infer", "_inference_step"):
                if name not in vars(cls):
                    setattr(cls, name, vars(Layer)[name])

    def __init__(self, *, name=None, trainable=True, dtype=None, **kwargs):
        unknown = set(kwargs) - _LAYER_KWARGS
        if unknown:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{ {k: kwargs[k] for k in sorted(unknown)} }")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Layer name must be a non-empty string without '/'. Received: name={name!r}")
        object.__setattr__(self, "_sublayers", [])
        self.name = name or backend.unique_name(backend.snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = "float32" if dtype in (None, "float32") or isinstance(dtype, dict) else dtype
        self.built = False
        self._trainable_vars = []
        self._non_trainable_vars = []
        self._step_losses = []
        self._batch_input_shape = _batch_input_shape_from(kwargs)
        self._initial_weights = kwargs.get("weights")
        from pylayers import regularizers
        self.activity_regularizer = regularizers.get(kwargs.get("activity_regularizer"))
        call_parameters = inspect.signature(self.call).parameters
        self._call_accepts_training = "training" in call_parameters
        self._call_accepts_mask = "mask" in call_parameters
        self.input_spec_ndim = None   # (min_ndim,) check in __call__ when set by a subclass
        self._inbound_nodes = []      # symbolic calls of this layer (Node objects)

    # ---- attribute tracking ---------------------------------------------------------

    def __setattr__(self, key, value):
        if isinstance(value, Layer) and key != "_outer":
            self._track_layer(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
            for layer in value:
                self._track_layer(layer)
        object.__setattr__(self, key, value)

    def _track_layer(self, layer):
        if layer is not self and all(layer is not known for known in self._sublayers):
            self._sublayers.append(layer)

    # ---- weights ----------------------------------------------------------------------

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   regularizer=None, constraint=None, name=None, **kwargs):
        """Create, register and return a Variable (Keras argument names and defaults)."""
        from pylayers import constraints, initializers, regularizers
        shape = () if shape is None else tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"Layer '{self.name}': add_weight got a negative dimension in "
                             f"shape={shape} for weight {name!r}")
        init = initializers.get(initializer if initializer is not None else "glorot_uniform")
        name = name or f"variable_{len(self._trainable_vars) + len(self._non_trainable_vars)}"
        variable = Variable(init(shape, dtype="float32"), name=name, trainable=trainable,
                            regularizer=regularizers.get(regularizer),
                            constraint=constraints.get(constraint),
                            path=f"{self.name}/{name}")
        (self._trainable_vars if trainable else self._non_trainable_vars).append(variable)
        return variable

    @property
    def weights(self):
        owned = self._trainable_vars + self._non_trainable_vars
        return _unique(owned + [w for layer in self._sublayers for w in layer.weights])

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        owned = [v for v in self._trainable_vars + self._non_trainable_vars if v.trainable]
        return _unique(owned + [w for layer in self._sublayers for w in layer.trainable_weights])

    @property
    def non_trainable_weights(self):
        trainable_ids = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable_ids]

    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self._sublayers:
            layer.trainable = value

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        """Assign all weights at once; nothing changes unless every shape matches."""
        current = self.weights
        if len(weights) != len(current):
            raise ValueError(f"Layer '{self.name}' expects {len(current)} weight arrays "
                             f"(shapes {[v.shape for v in current]}), but received {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for variable, array in zip(current, arrays):
            if array.shape != variable.shape:
                raise ValueError(f"Layer '{self.name}' weight '{variable.name}' has shape "
                                 f"{variable.shape}; received an array of shape {array.shape}")
        for variable, array in zip(current, arrays):
            variable.assign(array)

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', "
                             "but the layer isn't built. You can build it manually via: "
                             f"`{self.name}.build(batch_input_shape)`.")
        return int(sum(np.prod(v.shape, dtype=np.int64) for v in self.weights))

    @property
    def losses(self):
        return list(self._step_losses)

    # ---- building -------------------------------------------------------------------

    def build(self, input_shape):
        self.built = True

    def _build_once(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True
            if self._initial_weights is not None:
                self.set_weights(self._initial_weights)
                self._initial_weights = None

    def compute_output_shape(self, input_shape):
        """Shape inference by running `call` on zeros twice, with the unknown dimensions
        set to 2 and to 3: output dimensions that differ between the runs are unknown."""
        outputs = [self._probe_output_shape(input_shape, fill) for fill in (2, 3)]
        return _merge_probe_shapes(*outputs)

    def _probe_output_shape(self, input_shape, fill):
        if _is_shape_list(input_shape):
            probe = [np.zeros([fill if d is None else d for d in s], dtype="float32")
                     for s in input_shape]
        else:
            probe = np.zeros([fill if d is None else d for d in input_shape], dtype="float32")
        out = self._call_with_training(probe, False)
        if isinstance(out, (list, tuple)):
            return [np.shape(value_of(o)) for o in out]
        return np.shape(value_of(out))

    # ---- calling --------------------------------------------------------------------

    def call(self, inputs, *args, **kwargs):
        return inputs

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        if is_symbolic(inputs):
            return self._symbolic_call(inputs)
        try:
            return self._call_on_values(inputs, training, mask)
        except (ValueError, TypeError, IndexError) as error:
            if f"'{self.name}'" in str(error):
                raise
            items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            raise named(error, f"Exception encountered when calling layer '{self.name}' "
                               f"({type(self).__name__})", items) from error

    def _call_on_values(self, inputs, training, mask):
        """__call__ on arrays, Tensors or Variables: check, build, forward (or record)."""
        inputs = self._convert_inputs(inputs)
        self._check_input(_shapes_of(inputs))
        self._build_once(_shapes_of(inputs))
        tape = current_tape()
        if tape is not None and self._under_tape(tape, inputs):
            return self._record_on_tape(tape, inputs, training, mask)
        values = [value_of(x) for x in inputs] if isinstance(inputs, list) else value_of(inputs)
        outputs, _ = self._forward_masked(values, bool(training), mask)
        return outputs

    def compute_mask(self, inputs, previous_mask):
        """The mask of this layer's output (Keras' mask propagation)."""
        return previous_mask if self.supports_masking else None

    def _forward_masked(self, inputs, training, mask):
        """`_forward`, handing it the incoming mask when it takes one."""
        if mask is not None and self._accepts_mask():
            return self._forward(inputs, training=training, mask=mask)
        return self._forward(inputs, training=training)

    def _infer(self, inputs):
        """Inference: the outputs alone, for a model that passes no masks (layers with a
        lean path skip building their backprop)."""
        return self._forward(inputs, training=False)[0]

    def _inference_step(self, input_shape):
        """An InferenceStep (pylayers.layers.inference) for inputs of input_shape, or None:
        a plan then runs this layer's `_infer`."""
        return None

    def _accepts_mask(self):
        cls = type(self)
        if cls not in _forward_accepts_mask:
            _forward_accepts_mask[cls] = "mask" in inspect.signature(self._forward).parameters
        return _forward_accepts_mask[cls]

    def _under_tape(self, tape, inputs):
        items = inputs if isinstance(inputs, list) else [inputs]
        return any(tape.tracks(x) for x in items) or any(tape.tracks(v) for v in self.weights)

    def _record_on_tape(self, tape, inputs, training, mask=None):
        """One node for the whole layer: its fused backward is the node's backward."""
        items = inputs if isinstance(inputs, list) else [inputs]
        values = [value_of(x) for x in items]
        y, backprop = self._train_forward(values if isinstance(inputs, list) else values[0],
                                          training=bool(training), mask=mask)
        if isinstance(inputs, list):
            return tape.record(y, tuple(items), lambda dy: tuple(backprop(dy)))
        return tape.record(y, (inputs,), lambda dy: (backprop(dy),))

    def _call_with_training(self, inputs, training, mask=None):
        kwargs = {}
        if self._call_accepts_training:
            kwargs["training"] = training
        if mask is not None and self._call_accepts_mask:
            kwargs["mask"] = mask
        return self.call(inputs, **kwargs)

    def _forward(self, inputs, training=False, mask=None):
        """Generic forward/backward: `call` under a tape that watches this layer's
        trainable weights. Returns (outputs as arrays, backprop)."""
        self._step_losses = []
        with Tape(watch=self.trainable_weights) as tape:
            leaves = ([tape.leaf(x) for x in inputs] if isinstance(inputs, list)
                      else tape.leaf(inputs))
            out = self._call_with_training(leaves, training, mask)
        y = value_of(out)
        if not isinstance(out, Tensor):
            y = np.array(y, dtype=floatx())

        def backprop(dy, need_dx=True):
            sources = leaves if isinstance(leaves, list) else [leaves]
            dxs = tape.backward(out, dy, sources) if isinstance(out, Tensor) else [None] * len(sources)
            dxs = [np.zeros_like(s.data) if d is None else d for s, d in zip(sources, dxs)]
            return dxs if isinstance(leaves, list) else dxs[0]
        return y, backprop

    def _train_forward(self, inputs, training=True, mask=None):
        """`_forward` plus this layer's activity-regularization loss and its gradient
        (Keras divides the penalty by the batch size). Models train through this."""
        y, backprop = self._forward_masked(inputs, training, mask)
        regularizer = self.activity_regularizer
        if regularizer is None:
            return y, backprop
        batch = y.shape[0] if y.ndim else 1
        self._step_losses.append(float(regularizer(y)) / batch)

        def regularized_backprop(dy, need_dx=True):
            return backprop(dy + regularizer.gradient(y) / batch, need_dx)
        return y, regularized_backprop

    def add_loss(self, loss):
        """Record a scalar loss value for this step (reported with the model's loss)."""
        self._step_losses.append(float(value_of(loss)))

    def _convert_inputs(self, inputs):
        if isinstance(inputs, (list, tuple)):
            return [self._convert_one(x) for x in inputs]
        return self._convert_one(inputs)

    def _convert_one(self, x):
        if isinstance(x, (Tensor, Variable)):
            return x
        array = np.asarray(x)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"Layer '{self.name}' expects numeric input; received an array of "
                            f"dtype {array.dtype} and shape {array.shape}")
        flags = array.flags
        if array.dtype != floatx() or not (flags.c_contiguous and flags.aligned):
            array = np.array(array, dtype=floatx(), order="C")   # what C reads
        return array

    def _check_input(self, input_shape):
        """Subclasses with an expected rank or last dimension raise ValueError here."""
        if self.input_spec_ndim is not None and not _is_shape_list(input_shape):
            if len(input_shape) < self.input_spec_ndim:
                raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                                 f"expected min_ndim={self.input_spec_ndim}, found "
                                 f"ndim={len(input_shape)}. Full shape received: {tuple(input_shape)}")

    def _symbolic_call(self, inputs):
        """Build from shapes and record a Node; returns the output KerasTensor(s)."""
        as_list = isinstance(inputs, (list, tuple))
        shapes = [tuple(x.shape) for x in inputs] if as_list else tuple(inputs.shape)
        self._check_input(shapes)
        self._build_once(shapes)
        out_shape = self.compute_output_shape(shapes)
        if _is_shape_list(out_shape):
            outputs = [KerasTensor(s, name=f"{self.name}_output_{i}") for i, s in enumerate(out_shape)]
        else:
            outputs = [KerasTensor(out_shape, name=f"{self.name}_output")]
        Node(self, inputs if as_list else [inputs], outputs, as_list)
        return outputs if _is_shape_list(out_shape) else outputs[0]

    def _first_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called and thus has no "
                                 f"defined {what}.")
        return self._inbound_nodes[0]

    @property
    def output(self):
        outputs = self._first_node("output").outputs
        return outputs[0] if len(outputs) == 1 else list(outputs)

    @property
    def input(self):
        node = self._first_node("input")
        return list(node.inputs) if node.inputs_as_list else node.inputs[0]

    # ---- config -----------------------------------------------------------------------

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = self._batch_input_shape
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        return None

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _batch_input_shape_from(kwargs):
    if kwargs.get("batch_input_shape") is not None:
        return tuple(kwargs["batch_input_shape"])
    shape = kwargs.get("input_shape")
    if shape is None and kwargs.get("input_dim") is not None:
        shape = (kwargs["input_dim"],)
    if shape is None:
        return None
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return (kwargs.get("batch_size"),) + shape


def _unique(variables):
    seen, result = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            result.append(v)
    return result


def _is_shape_list(shape):
    return isinstance(shape, list) and all(isinstance(s, (tuple, list)) for s in shape)


def _shapes_of(inputs):
    if isinstance(inputs, list):
        return [tuple(np.shape(value_of(x))) for x in inputs]
    return tuple(np.shape(value_of(inputs)))


def _merge_probe_shapes(first, second):
    if isinstance(first, list):
        return [_merge_probe_shapes(a, b) for a, b in zip(first, second)]
    return tuple(a if a == b else None for a, b in zip(first, second))
