"""Model: a Layer that trains. compile / fit / evaluate / predict and the batch-level
methods, shared by Sequential and the functional Model.

A subclass provides `_forward_for_loss(x, training) -> (y_pred, backward)` where
`backward(d, from_preactivation)` runs the whole backward pass, and
`output_activation()`, the name of a final activation that the loss may fuse with."""
import numpy as np

from pylayers.layers.layer import Layer
from pylayers.utils.rng import global_rng


class Model(Layer):
    def __init__(self, *, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._metric_specs = []
        self._compiled_metrics = None
        self._checked_input_shape = None

    # ---- compile ----------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        from pylayers import losses, optimizers
        if loss is None:
            raise ValueError(f"Model '{self.name}': compile() needs a loss. Received: loss=None")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError("Expected `metrics` argument to be a list or tuple. "
                            f"Received: metrics={metrics!r}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self._loss_spec = loss
        self.loss_weights = loss_weights
        self._metric_specs = list(metrics or []) + list(weighted_metrics or [])
        self._compiled_metrics = None
        self._loss_tracker = None
        self.compiled = True

    def _require_compiled(self, method):
        if not self.compiled:
            raise RuntimeError(f"You must call `compile()` before using the model "
                               f"'{self.name}' in `{method}()`.")

    @property
    def metrics(self):
        if self._compiled_metrics is None:
            return []
        return [self._loss_tracker] + self._compiled_metrics

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def _resolve_metrics(self, y, y_pred_shape):
        from pylayers import metrics as metrics_module
        if self._compiled_metrics is None:
            self._loss_tracker = metrics_module.Mean(name="loss")
            self._compiled_metrics = [
                metrics_module.resolve(spec, np.shape(y), y_pred_shape, self.loss)
                for spec in self._metric_specs]

    def _reset_metrics(self):
        for metric in self.metrics:
            metric.reset_state()

    def _logs(self):
        """Metric results keyed by name, sorted by name as Keras' logs are."""
        return dict(sorted((m.name, float(m.result())) for m in self.metrics))

    # ---- data ---------------------------------------------------------------------

    def _convert_x(self, x):
        if x is None:
            raise ValueError(f"Model '{self.name}': the input data `x` is None")
        return self._first_layer()._convert_one(x)

    def _first_layer(self):
        return self

    def _prepare(self, x, y=None, sample_weight=None, class_weight=None):
        """Convert once, check that every array has the same number of samples and that
        x fits the model, before any weight or optimizer state changes."""
        x = self._convert_x(x)
        arrays = {"x": len(x)}
        if y is not None:
            y = np.asarray(y)
            if y.dtype.kind == "f" and y.dtype != np.float32:
                y = y.astype(np.float32)
            arrays["y"] = len(y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float32)
            arrays["sample_weight"] = len(sample_weight)
        if len(set(arrays.values())) > 1:
            sizes = "\n".join(f"  {k} sizes: {v}" for k, v in arrays.items())
            raise ValueError(f"Data cardinality is ambiguous:\n{sizes}\n"
                             "Make sure all arrays contain the same number of samples.")
        if class_weight is not None and y is not None:
            sample_weight = _class_weights_to_samples(class_weight, y, sample_weight)
        self._check_input_data(x.shape)
        return x, y, sample_weight

    def _check_input_data(self, shape):
        """Subclasses check the data shape against the model (and build from it)."""

    @staticmethod
    def _batches(n, batch_size, shuffle):
        order = global_rng().permutation(n) if shuffle else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield (order[start:stop] if order is not None else slice(start, stop))

    # ---- one step -----------------------------------------------------------------

    def _fusable_activation(self):
        return None

    def _train_batch(self, x, y, sample_weight):
        """Forward, loss, backward, optimizer step. Returns y_pred (for metrics)."""
        variables = self.trainable_weights
        for variable in variables:
            variable.zero_grad()
        y_pred, backward = self._forward_for_loss(x, training=True)
        sample_weight = self._masked_sample_weight(sample_weight)
        self._resolve_metrics(y, y_pred.shape)
        activation = self._fusable_activation()
        fused = (self.loss.fused_backward(y, y_pred, activation, sample_weight)
                 if activation else None)
        loss_value, d_pred = fused or self.loss.forward_backward(y, y_pred, sample_weight)
        backward(d_pred, from_preactivation=fused is not None)
        loss_value += self._regularization_step(variables)
        self.optimizer.apply([v.grad for v in variables], variables)
        self._update_metrics(loss_value, y, y_pred, sample_weight)
        return y_pred

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
        return total + sum(sum(layer._step_losses) for layer in self._all_layers())

    def _all_layers(self):
        layers, stack = [], list(self._sublayers)
        while stack:
            layer = stack.pop(0)
            layers.append(layer)
            stack.extend(layer._sublayers)
        return layers

    def _update_metrics(self, loss_value, y, y_pred, sample_weight):
        self._loss_tracker.update_state(loss_value, sample_weight=len(y_pred))
        for metric in self._compiled_metrics:
            metric.update_state(y, y_pred, sample_weight=sample_weight)

    def _test_batch(self, x, y, sample_weight):
        y_pred = self._predict_batch(x)
        sample_weight = self._masked_sample_weight(sample_weight)
        self._resolve_metrics(y, y_pred.shape)
        loss_value = float(self.loss(y, y_pred, sample_weight=sample_weight))
        loss_value += sum(float(v.regularizer(v.value)) for v in self.trainable_weights
                          if v.regularizer is not None)
        self._update_metrics(loss_value, y, y_pred, sample_weight)
        return y_pred

    def _predict_batch(self, x):
        y, _ = self._forward(x, training=False)
        return y

    # ---- fit / evaluate / predict ---------------------------------------------------

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
        x, y, sample_weight = self._prepare(x, y, sample_weight, class_weight)
        if validation_data is None and validation_split:
            x, y, sample_weight, validation_data = _split_last(x, y, sample_weight, validation_split)
        validation = self._prepare_validation(validation_data)
        steps = -(-len(x) // batch_size)
        verbose = 1 if verbose == "auto" else verbose
        callback_list = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                     model=self, verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            callback_list.on_epoch_begin(epoch)
            logs = self._fit_epoch(x, y, sample_weight, batch_size, shuffle, callback_list)
            if validation is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(*validation, validation_batch_size or batch_size)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callback_list.on_train_end(logs if epochs > initial_epoch else None)
        return self.history

    def _fit_epoch(self, x, y, sample_weight, batch_size, shuffle, callback_list):
        logs = {}
        for step, index in enumerate(self._batches(len(x), batch_size, shuffle)):
            callback_list.on_train_batch_begin(step)
            batch_weight = None if sample_weight is None else sample_weight[index]
            self._train_batch(x[index], y[index], batch_weight)
            logs = self._logs()
            callback_list.on_train_batch_end(step, logs)
            if self.stop_training:
                break
        return logs

    def _prepare_validation(self, validation_data):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("`validation_data` must be a tuple (x_val, y_val) or "
                             "(x_val, y_val, val_sample_weight).")
        return self._prepare(*validation_data)

    def _evaluate_arrays(self, x, y, sample_weight, batch_size):
        self._reset_metrics()
        for index in self._batches(len(x), batch_size, shuffle=False):
            self._test_batch(x[index], y[index], None if sample_weight is None else sample_weight[index])
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        self._require_compiled("evaluate")
        batch_size = _check_batch_size(batch_size, "evaluate")
        if y is None:
            raise ValueError(f"Model '{self.name}': evaluate() needs targets `y`.")
        x, y, sample_weight = self._prepare(x, y, sample_weight)
        logs = self._evaluate_arrays(x, y, sample_weight, batch_size)
        if verbose != 0:
            _print_evaluate_line(len(x), batch_size, logs, verbose)
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        batch_size = _check_batch_size(batch_size, "predict")
        x, _, _ = self._prepare(x)
        outputs = [self._predict_batch(x[index])
                   for index in self._batches(len(x), batch_size, shuffle=False)]
        if verbose != 0:
            _print_predict_line(len(x), batch_size)
        if not outputs:
            return np.zeros((0,) + tuple(self._output_shape_for(x.shape)[1:]), dtype=np.float32)
        return np.concatenate(outputs, axis=0)

    def _output_shape_for(self, input_shape):
        return self.compute_output_shape((None,) + tuple(input_shape[1:]))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        x, y, sample_weight = self._prepare(x, y, sample_weight, class_weight)
        self._reset_metrics()
        self._train_batch(x, y, sample_weight)
        return self._result(return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        x, y, sample_weight = self._prepare(x, y, sample_weight)
        self._reset_metrics()
        self._test_batch(x, y, sample_weight)
        return self._result(return_dict)

    def predict_on_batch(self, x):
        x, _, _ = self._prepare(x)
        return self._predict_batch(x)

    def _result(self, return_dict):
        logs = self._logs()
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names]
        return values[0] if len(values) == 1 else values

    # ---- saving -------------------------------------------------------------------

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Keras 3 `.keras` file: config, weights and optimizer state (atomic write)."""
        from pylayers.saving import saving_lib
        saving_lib.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        from pylayers.saving import saving_lib
        saving_lib.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        from pylayers.saving import saving_lib
        saving_lib.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs):
        import json
        from pylayers.saving import saving_lib
        return json.dumps(saving_lib.serialize_model(self), default=saving_lib._json_default, **kwargs)

    # ---- summary ----------------------------------------------------------------------

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        from pylayers.models.summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)


def _check_batch_size(batch_size, method):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` of {method}() must be a positive integer. "
                         f"Received: batch_size={batch_size!r}")
    return int(batch_size)


def _split_last(x, y, sample_weight, validation_split):
    """Keras takes the validation samples from the END of the data, before shuffling."""
    split_at = int(len(x) * (1.0 - validation_split))
    validation = (x[split_at:], y[split_at:],
                  None if sample_weight is None else sample_weight[split_at:])
    weights = None if sample_weight is None else sample_weight[:split_at]
    return x[:split_at], y[:split_at], weights, validation


def _class_weights_to_samples(class_weight, y, sample_weight):
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    labels = np.round(labels).astype(np.int64)
    unknown = set(np.unique(labels).tolist()) - set(class_weight)
    if unknown:
        raise ValueError(f"`class_weight` has no entry for classes {sorted(unknown)}. "
                         f"Received: class_weight={class_weight}")
    weights = np.array([class_weight[c] for c in labels], dtype=np.float32)
    return weights if sample_weight is None else weights * sample_weight


def _print_predict_line(n, batch_size):
    from pylayers.utils.progbar import Progbar
    steps = max(1, -(-n // batch_size))
    Progbar(steps, verbose=1).update(steps, finalize=True)


def _print_evaluate_line(n, batch_size, logs, verbose):
    from pylayers.utils.progbar import Progbar
    steps = max(1, -(-n // batch_size))
    Progbar(steps, verbose=1 if verbose == "auto" else verbose).update(
        steps, values=list(logs.items()), finalize=True)
