"""Training steps of a Sequential model whose layers all train as one Dense chain
(pylayers.layers.dense_runs), for the batches of one epoch of fit whose callbacks are
pylayers' own. Model._train_batch works out at every step which layers chain, the
chain for the batch, the variables and their regularization. Nothing pylayers runs
between the steps of such an epoch changes them (Keras itself fixes them when it traces
its train step), so here they are worked out once, and a step is the chain's forward,
the loss, the chain's backward and the optimizer step: the calls Model._train_batch
makes, with the same arguments, so the same bits."""
from pylayers.layers import dense_runs
from pylayers.layers.buffers import empty_buffer
from pylayers.layers.core import as_rows


class DenseStackSteps:
    """`train_batch` steps the model as Model._train_batch does. Made per epoch (of),
    for batches gathered from the epoch's inputs."""

    def __init__(self, model, layers):
        self._model = model
        self._layers = layers
        self._last = layers[-1]
        self._variables = model.trainable_weights
        self._chains = {}   # rows -> the layers' DenseTrainChain

    @classmethod
    def of(cls, model, xs, ys):
        """The steps of `model` (a Sequential) for batches of xs, ys; None when its layers
        do not all train as one chain on xs, or a step has more to do than the chain's
        forward and backward: several inputs or outputs, a distribution, a weight
        regularizer."""
        stack = model._stack
        if len(xs) != 1 or len(ys) != 1 or model._distribution is not None \
                or dense_runs.dense_run_length(stack, 0, xs[0], None) != len(stack) \
                or any(v.regularizer is not None for v in model.trainable_weights):
            return None
        for layer in stack:   # as the chain's forward leaves them: no activity penalties
            layer._step_losses.clear()
        model._output_mask = None
        return cls(model, list(stack))

    def train_batch(self, xs, ys, sample_weight, alongside=None):
        """Model._train_batch on a batch of the epoch."""
        model, x, last = self._model, xs[0], self._last
        chain = self._chains.get(len(x))
        if chain is None:
            chain = self._chains[len(x)] = dense_runs._chain(self._layers, len(x))
        y = empty_buffer(last, "y", chain.output_shape)
        chain.run(x, y)
        y_preds = [y]
        for variable in self._variables:
            variable.zero_grad()
        model._resolve_metrics(ys, y_preds)
        total, per_output, d_preds, fused_flags = model._losses_and_gradients(ys, y_preds,
                                                                               sample_weight)
        targets = [layer._gradient_targets() for layer in self._layers]
        chain.backward(x, y, as_rows(d_preds[0], last.units), targets, fused_flags[0], None)
        for layer, (_, _, accumulate) in zip(self._layers, targets):
            layer._gradients_written(accumulate)
        model._step_variables(self._variables, total, per_output, ys, y_preds, sample_weight,
                              alongside)
        return y_preds
