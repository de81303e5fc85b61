"""Model: a Layer that trains. compile / fit / evaluate / predict and the batch-level
methods, shared by Sequential, functional graphs and subclassed models.

Inside, data is always a list of arrays per model input and per model output. A model
provides `_forward_for_loss(xs, training) -> (y_preds, backward)` where
`backward(d_preds, preactivation_flags)` runs the whole backward pass, and
`_output_activations()`, the final activation of each output (which the loss may fuse).
Model(inputs, outputs) builds a functional graph; a subclass with its own `call` trains
through the tape."""
import functools

import numpy as np

from pylayers import config
from pylayers.layers.layer import Layer
from pylayers.ops import value_of
from pylayers.utils.rng import global_rng


def _distribution_for(model):
    """The data-parallel replica of `model` when compiled inside a strategy's scope."""
    from pylayers import distribute
    strategy = distribute.get_strategy()
    return None if strategy is None else strategy._replica(model)


def _one_failing_rank_aborts_all(method):
    """Under a distribution, an exception in `method` on one rank aborts every rank,
    which would otherwise wait forever in their next allreduce."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        distribution = getattr(self, "_distribution", None)
        if distribution is None:
            return method(self, *args, **kwargs)
        with distribution.abort_on_error():
            return method(self, *args, **kwargs)
    return guarded


def _runs_only_pylayers_code(metric):
    """Whether updating and reading the metric runs pylayers' code alone: its class and,
    for a metric wrapping a function, the function are pylayers' own."""
    function = getattr(metric, "_fn", None)
    return type(metric).__module__.startswith("pylayers.") and \
        (function is None or getattr(function, "__module__", "").startswith("pylayers."))


class Model(Layer):
    _paths_run_call = True   # a subclassed model's forward runs its own call

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if name is None and (inputs is not None or outputs is not None):
            from pylayers.backend import unique_name
            name = unique_name("functional")
        super().__init__(name=name, trainable=trainable, **kwargs)
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compiled_metrics = None
        self._checked_input_shapes = None
        self._graph = None
        self._distribution = None   # set by compile() inside a pylayers.distribute scope
        if inputs is not None or outputs is not None:
            from pylayers.models.functional import FunctionalGraph
            self._graph = FunctionalGraph(self, inputs, outputs)
            for layer in self._graph.layers:
                self._track_layer(layer)
            self.built = True

    # ---- structure ----------------------------------------------------------------

    @property
    def layers(self):
        if self._graph is not None:
            return list(self._graph.layers)
        return list(self._sublayers)

    def get_layer(self, name=None, index=None):
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(layers)} layers.")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[layer.name for layer in layers]}.")

    @property
    def inputs(self):
        return list(self._graph.inputs) if self._graph is not None else None

    @property
    def outputs(self):
        return list(self._graph.outputs) if self._graph is not None else None

    @property
    def input(self):
        if self._graph is None:
            return super().input
        return self._graph.structure_inputs

    @property
    def output(self):
        if self._graph is None:
            return super().output
        return self._graph.structure_outputs

    def _output_names(self):
        if self._graph is not None:
            return [t.layer.name for t in self._graph.outputs]
        return [self.name]

    # ---- compile ----------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        from pylayers import optimizers
        if loss is None:
            raise ValueError(f"Model '{self.name}': compile() needs a loss. Received: loss=None")
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise TypeError("Expected `metrics` argument to be a list, tuple or dict. "
                            f"Received: metrics={metrics!r}")
        names = self._output_names()
        output_losses = _per_output(loss, names, "loss")
        weights = _per_output(1.0 if loss_weights is None else loss_weights, names, "loss_weights")
        self._metric_specs = _per_output_metrics(metrics, names)
        self.optimizer = optimizers.get(optimizer)
        self._output_losses = [_get_loss(spec) for spec in output_losses]
        self._loss_weights = [float(w) for w in weights]
        self.loss = self._output_losses[0] if len(names) == 1 else self._output_losses
        self._loss_spec = loss
        self._metrics_spec = metrics
        self.loss_weights = loss_weights
        self._compiled_metrics = None
        self._distribution = _distribution_for(self)
        self.compiled = True

    def _require_compiled(self, method):
        if not self.compiled:
            raise RuntimeError(f"You must call `compile()` before using the model "
                               f"'{self.name}' in `{method}()`.")

    @property
    def metrics(self):
        if self._compiled_metrics is None:
            return []
        return self._loss_trackers + [m for _, m in self._compiled_metrics]

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def _resolve_metrics(self, ys, y_preds):
        from pylayers import metrics as metrics_module
        if self._compiled_metrics is not None:
            return
        names = self._output_names()
        multi = len(names) > 1
        self._loss_trackers = [metrics_module.Mean(name="loss")]
        if multi:
            self._loss_trackers += [metrics_module.Mean(name=f"{n}_loss") for n in names]
        self._compiled_metrics = []
        for i, specs in enumerate(self._metric_specs):
            for spec in specs:
                metric = metrics_module.resolve(spec, np.shape(ys[i]), y_preds[i].shape,
                                                self._output_losses[i])
                if multi:
                    metric.name = f"{names[i]}_{metric.name}"
                self._compiled_metrics.append((i, metric))
        self._metrics_run_only_pylayers_code = all(map(_runs_only_pylayers_code, self.metrics))

    def _reset_metrics(self):
        for metric in self.metrics:
            metric.reset_state()

    def _logs(self):
        """Metric results keyed by name, sorted by name as Keras' logs are."""
        return dict(sorted((m.name, float(m.result())) for m in self.metrics))

    # ---- data ---------------------------------------------------------------------

    def _input_layers(self):
        """The layer whose `_convert_one` converts each model input."""
        if self._graph is not None:
            return [t.layer for t in self._graph.inputs]
        return [self]

    def _to_input_list(self, x):
        if x is None:
            raise ValueError(f"Model '{self.name}': the input data `x` is None")
        converters = self._input_layers()
        if isinstance(x, dict) and self._graph is not None:
            x = self._graph.inputs_from_dict(x)
        elif isinstance(x, (list, tuple)) and len(converters) > 1:
            x = list(x)
        elif isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            x = [x[0]]
        else:
            x = [x]
        if len(x) != len(converters):
            raise ValueError(f"Model '{self.name}' expects {len(converters)} input(s), but it "
                             f"received {len(x)} input arrays.")
        return [layer._convert_one(a) for layer, a in zip(converters, x)]

    def _to_target_list(self, y):
        names = self._output_names()
        if isinstance(y, dict):
            missing = set(names) - set(y)
            if missing:
                raise ValueError(f"Model '{self.name}': targets are missing for outputs "
                                 f"{sorted(missing)}. Received keys: {sorted(y)}")
            y = [y[n] for n in names]
        elif len(names) == 1 or not isinstance(y, (list, tuple)):
            y = [y]
        if len(y) != len(names):
            raise ValueError(f"Model '{self.name}' has {len(names)} outputs {names}, but it "
                             f"received {len(y)} target arrays.")
        return [_as_target(t) for t in y]

    def _prepare(self, x, y=None, sample_weight=None, class_weight=None):
        """Convert once, check every array has the same number of samples and that x
        fits the model, before any weight or optimizer state changes."""
        xs = self._to_input_list(x)
        ys = self._to_target_list(y) if y is not None else None
        if config.is_check_numerics_enabled():
            config.check_finite(xs, f"Model '{self.name}': x")
            config.check_finite(ys, f"Model '{self.name}': y")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float32)
        if ys is not None or sample_weight is not None or len(xs) > 1:
            self._check_cardinality(xs, ys, sample_weight)
        if class_weight is not None and ys is not None:
            sample_weight = _class_weights_to_samples(class_weight, ys[0], sample_weight)
        self._check_input_data([a.shape for a in xs])
        return xs, ys, sample_weight

    @staticmethod
    def _check_cardinality(xs, ys, sample_weight):
        sizes = {f"x[{i}]" if len(xs) > 1 else "x": len(a) for i, a in enumerate(xs)}
        for i, t in enumerate(ys or []):
            sizes[f"y[{i}]" if len(ys) > 1 else "y"] = len(t)
        if sample_weight is not None:
            sizes["sample_weight"] = len(sample_weight)
        if len(set(sizes.values())) > 1:
            listing = "\n".join(f"  {k} sizes: {v}" for k, v in sizes.items())
            raise ValueError(f"Data cardinality is ambiguous:\n{listing}\n"
                             "Make sure all arrays contain the same number of samples.")

    def _check_input_data(self, shapes):
        """Check the data shapes against the model (and build from them)."""
        if self._graph is not None and self._checked_input_shapes != shapes:
            self._graph.check_input_shapes(shapes)
            self._checked_input_shapes = shapes

    @staticmethod
    def _batches(n, batch_size, shuffle):
        order = global_rng().permutation(n) if shuffle else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield (order[start:stop] if order is not None else slice(start, stop))

    # ---- forward ------------------------------------------------------------------

    def _forward_for_loss(self, xs, training=True):
        if self._graph is not None:
            return self._graph.forward(xs, training)
        x = xs[0] if len(xs) == 1 else xs
        self._build_once([np.shape(a) for a in xs] if len(xs) > 1 else np.shape(x))
        y, backprop = Layer._forward(self, x, training)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]

        def backward(d_preds, preactivation_flags=None, need_dx=False):
            dx = backprop(d_preds[0] if len(ys) == 1 else d_preds)
            return (dx if len(xs) > 1 else [dx]) if need_dx else None
        return ys, backward

    def _build_once(self, input_shape):
        """A subclassed model records the shape it was first built for (batch size
        unknown), which its saved build_config carries, as Keras does."""
        if not self.built and self._graph is None:
            shapes = input_shape if isinstance(input_shape, list) else [input_shape]
            batchless = [(None,) + tuple(s[1:]) for s in shapes]
            self._built_input_shape = batchless if isinstance(input_shape, list) else batchless[0]
        super()._build_once(input_shape)

    def __call__(self, inputs, *args, **kwargs):
        """A functional model takes its inputs as a dict keyed by input name too."""
        if isinstance(inputs, dict) and self._graph is not None:
            inputs = self._graph.inputs_from_dict(inputs)
            inputs = inputs if len(inputs) > 1 else inputs[0]
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=False):
        """A functional model's call runs its graph; a subclass defines its own."""
        if self._graph is None:
            return super().call(inputs)
        xs = [value_of(x) for x in self._to_graph_inputs(inputs)]
        ys = self._graph.forward(xs, bool(training))[0]
        return self._graph.structure_like_outputs(ys)

    def _to_graph_inputs(self, inputs):
        if isinstance(inputs, dict):
            return self._graph.inputs_from_dict(inputs)
        return list(inputs) if len(self._graph.inputs) > 1 else [inputs]

    def compute_output_shape(self, input_shape):
        """A functional model's output shapes come from its graph, for the batch size of
        input_shape; input shapes the graph cannot take raise a ValueError."""
        if self._graph is None:
            return super().compute_output_shape(input_shape)
        shapes = [tuple(s) for s in self._to_graph_inputs(input_shape)]
        if len(shapes) != len(self._graph.inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self._graph.inputs)} input(s); "
                             f"received input_shape={input_shape}")
        self._graph.check_input_shapes(shapes)
        batch = shapes[0][0] if shapes[0] else None
        outputs = [(batch,) + tuple(t.shape[1:]) for t in self._graph.outputs]
        return self._graph.structure_like_outputs(outputs)

    def _output_activations(self):
        if self._graph is not None:
            return self._graph.output_activations()
        return [None]

    def _forward(self, inputs, training=False, mask=None):
        """A model used as a layer inside another model."""
        xs = inputs if isinstance(inputs, list) and len(self._input_layers()) > 1 else [inputs]
        ys, backward = self._forward_for_loss(xs, training)

        def backprop(dy, need_dx=True):
            d_preds = dy if len(ys) > 1 else [dy]
            dxs = backward(d_preds, [False] * len(ys), need_dx)
            return dxs if len(xs) > 1 else dxs[0]
        return (ys if len(ys) > 1 else ys[0]), backprop

    def _predict_batch(self, xs):
        if self._graph is not None:
            return self._graph.infer(xs)
        return self._infer_batch(xs)

    def _infer_batch(self, xs):
        """The outputs for inputs xs, no backprops kept (Sequential runs its layers'
        lean inference when none makes masks)."""
        return self._forward_for_loss(xs, training=False)[0]

    # ---- one step -----------------------------------------------------------------

    def _train_batch(self, xs, ys, sample_weight, alongside=None):
        """Forward, loss, backward, optimizer step, metrics. Returns the predictions.
        alongside (or None): work after the metrics that reads no weights (see
        _step_variables)."""
        if self._distribution is not None and not self._distribution.prepare_step(xs):
            return self._distribution.step_without_samples()
        y_preds, backward = self._forward_for_loss(xs, training=True)
        variables = self.trainable_weights   # after the forward: it builds subclassed models
        for variable in variables:
            variable.zero_grad()
        self._resolve_metrics(ys, y_preds)
        sample_weight = self._masked_sample_weight(sample_weight)
        total, per_output, d_preds, fused_flags = self._losses_and_gradients(ys, y_preds,
                                                                              sample_weight)
        backward(d_preds, fused_flags)
        if self._distribution is not None:
            self._distribution.average_gradients(variables, len(y_preds[0]))
        total += self._regularization_step(variables)
        self._step_variables(variables, total, per_output, ys, y_preds, sample_weight, alongside)
        return y_preds

    def _epoch_train_batch(self, xs, ys):
        """_train_batch, or a faster step with its bits, for the batches of an epoch of
        fit in which no code but pylayers' own runs between steps (Sequential's)."""
        return self._train_batch

    def _losses_and_gradients(self, ys, y_preds, sample_weight):
        """(total loss, each output's loss, d(loss)/d(each output), whether that gradient
        is through the output's activation, fused with the loss)."""
        total, per_output, d_preds, fused_flags = 0.0, [], [], []
        for loss, weight, activation, y, y_pred in zip(
                self._output_losses, self._loss_weights, self._output_activations(), ys, y_preds):
            fused = loss.fused_backward(y, y_pred, activation, sample_weight) if activation else None
            value, d_pred = fused or loss.forward_backward(y, y_pred, sample_weight)
            total += weight * value
            per_output.append(value)
            d_preds.append(d_pred * np.float32(weight) if weight != 1.0 else d_pred)
            fused_flags.append(fused is not None)
        return total, per_output, d_preds, fused_flags

    def _step_variables(self, variables, total, per_output, ys, y_preds, sample_weight,
                        alongside):
        """The optimizer step from the variables' gradients, then the metrics and
        alongside(). When the metrics are pylayers' own, they and alongside run while the
        optimizer steps the weights (Optimizer._apply_alongside); else after the step."""
        grads = [v.grad for v in variables]

        def bookkeeping():
            self._update_metrics(total, per_output, ys, y_preds, sample_weight)
            if alongside is not None:
                alongside()
        if alongside is not None and self._metrics_run_only_pylayers_code:
            self.optimizer._apply_alongside(grads, variables, bookkeeping)
        else:
            self.optimizer.apply(grads, variables)
            bookkeeping()

    def _masked_sample_weight(self, sample_weight):
        """Keras weights the loss by the output mask (e.g. padded time steps count 0)."""
        mask = getattr(self, "_output_mask", None)
        if mask is None:
            return sample_weight
        mask = np.asarray(mask, dtype=np.float32)
        if sample_weight is None:
            return mask
        return sample_weight.reshape(sample_weight.shape + (1,) * (mask.ndim - sample_weight.ndim)) * mask

    def _regularization_step(self, variables):
        """Add weight-regularizer gradients to .grad; return all extra loss terms."""
        total = 0.0
        for variable in variables:
            if variable.regularizer is not None:
                total += float(variable.regularizer(variable.value))
                variable.grad += variable.regularizer.gradient(variable.value)
        return total + sum(sum(layer._step_losses) for layer in self._all_layers()
                           if layer._step_losses)

    def _all_layers(self):
        """Every layer under this model, nested ones included (cached per structure)."""
        key = len(self._sublayers)
        if getattr(self, "_all_layers_cache", (None,))[0] != key:
            layers, stack = [], list(self._sublayers)
            while stack:
                layer = stack.pop(0)
                layers.append(layer)
                stack.extend(layer._sublayers)
            self._all_layers_cache = (key, layers)
        return self._all_layers_cache[1]

    def _update_metrics(self, total, per_output, ys, y_preds, sample_weight):
        batch = len(y_preds[0])
        self._loss_trackers[0].update_state(total, sample_weight=batch)
        for tracker, value in zip(self._loss_trackers[1:], per_output):
            tracker.update_state(value, sample_weight=batch)
        for i, metric in self._compiled_metrics:
            metric.update_state(ys[i], y_preds[i], sample_weight=sample_weight)

    def _test_batch(self, xs, ys, sample_weight):
        y_preds = self._predict_batch(xs)
        self._resolve_metrics(ys, y_preds)
        sample_weight = self._masked_sample_weight(sample_weight)
        per_output = [float(loss(y, p, sample_weight=sample_weight))
                      for loss, y, p in zip(self._output_losses, ys, y_preds)]
        total = sum(w * v for w, v in zip(self._loss_weights, per_output))
        total += sum(float(v.regularizer(v.value)) for v in self.trainable_weights
                     if v.regularizer is not None)
        self._update_metrics(total, per_output, ys, y_preds, sample_weight)
        return y_preds

    # ---- fit / evaluate / predict ---------------------------------------------------

    @_one_failing_rank_aborts_all
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        from pylayers.callbacks import CallbackList
        self._require_compiled("fit")
        batch_size = _check_batch_size(batch_size, "fit")
        if y is None:
            raise ValueError(f"Model '{self.name}': fit() needs targets `y`. Received: y=None")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError("`validation_split` must be in [0, 1). "
                             f"Received: validation_split={validation_split}")
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, class_weight)
        if validation_data is None and validation_split:
            xs, ys, sample_weight, validation = _split_last(xs, ys, sample_weight, validation_split)
        else:
            validation = self._prepare_validation(validation_data)
        if self._distribution is not None:   # data parallel: global batch, rank 0 prints
            batch_size, verbose, callbacks, validation = self._distribution.prepare_fit(
                batch_size, verbose, callbacks, validation, len(xs[0]))
        steps = -(-len(xs[0]) // batch_size)
        verbose = 1 if verbose == "auto" else verbose
        callback_list = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                     model=self, verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        callback_list.on_train_begin()
        logs = None
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            callback_list.on_epoch_begin(epoch)
            logs = self._fit_epoch(xs, ys, sample_weight, batch_size, shuffle, callback_list)
            if self._distribution is not None:
                self._distribution.end_epoch()
            if validation is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(*validation, validation_batch_size or batch_size)
                if self._distribution is not None:
                    val_logs = self._distribution.global_logs()
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callback_list.on_train_end(logs)
        return self.history

    def _fit_epoch(self, xs, ys, sample_weight, batch_size, shuffle, callback_list):
        batches = self._batches if self._distribution is None else self._distribution.shard_batches
        steps = enumerate(batches(len(xs[0]), batch_size, shuffle))

        def begin_next():
            """The next step's begin hook, then (step, inputs, targets, weights), or None."""
            for step, index in steps:
                callback_list.on_train_batch_begin(step)
                weights = None if sample_weight is None else sample_weight[index]
                return step, [a[index] for a in xs], [t[index] for t in ys], weights
            return None

        overlap = self._steps_overlap(callback_list)
        train_batch = self._epoch_train_batch(xs, ys) if overlap else self._train_batch
        logs, batch = {}, begin_next()
        while batch is not None:
            step, batch_xs, batch_ys, batch_weight = batch
            ended = {}

            def end_step():
                """This step's logs and end hook, then the next step's begin and batch."""
                ended["logs"] = self._training_logs()
                callback_list.on_train_batch_end(step, ended["logs"])
                ended["next"] = None if self.stop_training else begin_next()
            if overlap:
                train_batch(batch_xs, batch_ys, batch_weight, alongside=end_step)
            else:
                train_batch(batch_xs, batch_ys, batch_weight)
                end_step()
            logs, batch = ended["logs"], ended["next"]
        return logs

    def _steps_overlap(self, callback_list):
        """Whether a step's end and the next step's beginning may run while the optimizer
        steps the weights: when nothing they call can read the weights, that is, when
        the callbacks are pylayers' History and progress bar (and no distribution)."""
        from pylayers.callbacks import History, ProgbarLogger
        return self._distribution is None and \
            all(type(callback) in (History, ProgbarLogger) for callback in callback_list.callbacks)

    def _training_logs(self):
        """The logs of a training step; under a distribution, over every rank's samples."""
        return self._logs() if self._distribution is None else self._distribution.global_logs()

    def _prepare_validation(self, validation_data):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("`validation_data` must be a tuple (x_val, y_val) or "
                             "(x_val, y_val, val_sample_weight).")
        return self._prepare(*validation_data)

    def _evaluate_arrays(self, xs, ys, sample_weight, batch_size, progbar=None):
        self._reset_metrics()
        for step, index in enumerate(self._batches(len(xs[0]), batch_size, shuffle=False)):
            self._test_batch([a[index] for a in xs], [t[index] for t in ys],
                             None if sample_weight is None else sample_weight[index])
            if progbar is not None:
                progbar.update(step + 1, values=list(self._logs().items()))
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        self._require_compiled("evaluate")
        batch_size = _check_batch_size(batch_size, "evaluate")
        if y is None:
            raise ValueError(f"Model '{self.name}': evaluate() needs targets `y`.")
        xs, ys, sample_weight = self._prepare(x, y, sample_weight)
        progbar = _progbar(len(xs[0]), batch_size, verbose)
        logs = self._evaluate_arrays(xs, ys, sample_weight, batch_size, progbar)
        return self._result(return_dict, logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        batch_size = _check_batch_size(batch_size, "predict")
        xs, _, _ = self._prepare(x)
        progbar = _progbar(len(xs[0]), batch_size, verbose)
        if 0 < len(xs[0]) <= batch_size:   # one batch: no slicing, no concatenation
            outputs = [np.array(y) for y in self._predict_batch(xs)]   # own the memory
            if progbar is not None:
                progbar.update(1)
            return self._structure_outputs(outputs)
        batches = []
        for step, index in enumerate(self._batches(len(xs[0]), batch_size, shuffle=False)):
            batches.append(self._predict_batch([a[index] for a in xs]))
            if progbar is not None:
                progbar.update(step + 1)
        if not batches:
            batches = [self._predict_batch([a[:0] for a in xs])]
        outputs = [np.concatenate(parts, axis=0) for parts in zip(*batches)]
        return self._structure_outputs(outputs)

    def _structure_outputs(self, outputs):
        if self._graph is not None:
            return self._graph.structure_like_outputs(outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    @_one_failing_rank_aborts_all
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, class_weight)
        self._reset_metrics()
        self._train_batch(xs, ys, sample_weight)
        return self._result(return_dict, self._training_logs())

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        xs, ys, sample_weight = self._prepare(x, y, sample_weight)
        self._reset_metrics()
        self._test_batch(xs, ys, sample_weight)
        return self._result(return_dict, self._logs())

    def predict_on_batch(self, x):
        xs, _, _ = self._prepare(x)
        return self._structure_outputs(self._predict_batch(xs))

    def _result(self, return_dict, logs):
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names]
        return values[0] if len(values) == 1 else values

    # ---- saving -------------------------------------------------------------------

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Keras 3 `.keras` file: config, weights and optimizer state (atomic write)."""
        from pylayers.saving import saving_lib
        if self._distribution is not None and not self._distribution.should_write():
            return   # data parallel: only rank 0 writes files
        saving_lib.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        from pylayers.saving import saving_lib
        if self._distribution is not None and not self._distribution.should_write():
            return   # data parallel: only rank 0 writes files
        saving_lib.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        from pylayers.saving import saving_lib
        saving_lib.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs):
        import json
        from pylayers.saving import saving_lib
        return json.dumps(saving_lib.serialize_model(self), default=saving_lib.to_json_default,
                          **kwargs)

    def get_config(self):
        if self._graph is not None:
            return self._graph.get_config()
        return super().get_config()

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "layers" in config and "input_layers" in config:
            from pylayers.models.functional import model_from_graph_config
            return model_from_graph_config(cls, config, custom_objects)
        return cls(**config)

    # ---- summary ----------------------------------------------------------------------

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from pylayers.models.summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    def summary_rows(self):
        if self._graph is not None:
            return self._graph.summary_rows()
        from pylayers.models.summary import layer_fields
        return [layer_fields(layer, None) for layer in self.layers], True


def _as_target(y):
    y = np.asarray(y)
    return y.astype(np.float32) if y.dtype.kind == "f" and y.dtype != np.float32 else y


def _get_loss(spec):
    from pylayers import losses
    return losses.get(spec)


def _per_output(spec, names, argument):
    """A single spec for every output, a list in output order, or a dict by output name."""
    if isinstance(spec, dict):
        unknown = set(spec) - set(names)
        if unknown:
            raise ValueError(f"`{argument}` has keys {sorted(unknown)} that match no output; "
                             f"the outputs are {names}")
        missing = set(names) - set(spec)
        if missing and argument == "loss":
            raise ValueError(f"`loss` has no entry for outputs {sorted(missing)}")
        return [spec.get(n, 1.0) for n in names]
    if isinstance(spec, (list, tuple)):
        if len(spec) != len(names):
            raise ValueError(f"`{argument}` has {len(spec)} entries but the model has "
                             f"{len(names)} outputs {names}")
        return list(spec)
    return [spec] * len(names)


def _per_output_metrics(metrics, names):
    if metrics is None:
        return [[] for _ in names]
    if isinstance(metrics, dict):
        return [list(_as_list(metrics.get(n, []))) for n in names]
    if len(names) > 1 and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
        return [list(m) for m in _per_output(list(metrics), names, "metrics")]
    return [list(metrics) for _ in names]


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


def _check_batch_size(batch_size, method):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` of {method}() must be a positive integer. "
                         f"Received: batch_size={batch_size!r}")
    return int(batch_size)


def _split_last(xs, ys, sample_weight, validation_split):
    """Keras takes the validation samples from the END of the data, before shuffling."""
    split_at = int(len(xs[0]) * (1.0 - validation_split))
    validation = ([a[split_at:] for a in xs], [t[split_at:] for t in ys],
                  None if sample_weight is None else sample_weight[split_at:])
    weights = None if sample_weight is None else sample_weight[:split_at]
    return [a[:split_at] for a in xs], [t[:split_at] for t in ys], weights, validation


def _class_weights_to_samples(class_weight, y, sample_weight):
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    labels = np.round(labels).astype(np.int64)
    unknown = set(np.unique(labels).tolist()) - set(class_weight)
    if unknown:
        raise ValueError(f"`class_weight` has no entry for classes {sorted(unknown)}. "
                         f"Received: class_weight={class_weight}")
    weights = np.array([class_weight[c] for c in labels], dtype=np.float32)
    return weights if sample_weight is None else weights * sample_weight


def _progbar(n, batch_size, verbose):
    """Keras' per-call progress bar for evaluate/predict (None when verbose=0)."""
    if verbose == 0:
        return None
    from pylayers.utils.progbar import Progbar
    return Progbar(max(1, -(-n // batch_size)), verbose=1 if verbose == "auto" else verbose)
