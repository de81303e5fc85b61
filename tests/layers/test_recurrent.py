"""Recurrent layers: finite-difference gradients through time in the float64 reference,
the C time loops against that reference and against plain numpy cells, masks,
go_backwards, return_state, stateful, dropout, errors and configs."""
import contextlib
import json
import pathlib

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers, ops
from pylayers.ops import reference_mode, value_of
from pylayers.testing import (_numeric_gradient, check_layer_gradients,
                              check_layer_native_matches_reference, float64_weights,
                              run_layer_test)
from pylayers.utils.rng import set_random_seed

rng = np.random.default_rng(0)


class MinimalRNNCell(layers.Layer):
    """Keras' documented custom cell: h = tanh(x W + h_prev U), written with ops."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                initializer="orthogonal",
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel))
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def seq(*shape):
    return rng.normal(size=shape)


# name -> (factory, input, training)
GRADIENT_CASES = {
    "LSTM_sequences": (lambda: layers.LSTM(3, return_sequences=True), seq(2, 4, 3), False),
    "LSTM_last": (lambda: layers.LSTM(4, bias_initializer="random_normal"), seq(3, 3, 2), False),
    "LSTM_go_backwards": (lambda: layers.LSTM(3, go_backwards=True, return_sequences=True),
                          seq(2, 4, 2), False),
    "LSTM_dropout": (lambda: layers.LSTM(3, dropout=0.4, return_sequences=True), seq(3, 3, 4), True),
    "LSTM_recurrent_dropout": (lambda: layers.LSTM(3, recurrent_dropout=0.3), seq(2, 3, 2), True),
    "LSTM_softsign_reference_loop": (lambda: layers.LSTM(3, activation="softsign"),
                                     seq(2, 3, 2), False),
    "LSTM_no_bias": (lambda: layers.LSTM(2, use_bias=False, return_sequences=True),
                     seq(2, 3, 3), False),
    # units a multiple of 8: the one-pass default-activation kernels
    "LSTM_whole_vectors": (lambda: layers.LSTM(8, return_sequences=True,
                                               bias_initializer="random_normal"),
                           seq(2, 3, 3), False),
    "LSTM_relu_whole_vectors": (lambda: layers.LSTM(8, activation="relu"), seq(2, 3, 2), False),
    # inputs wider than the gates: weight gradients by separate products
    "LSTM_wide_input": (lambda: layers.LSTM(2, return_sequences=True), seq(2, 3, 12), False),
    "GRU_wide_input": (lambda: layers.GRU(2), seq(2, 3, 9), False),
    "GRU_reset_after": (lambda: layers.GRU(3, return_sequences=True,
                                           bias_initializer="random_normal"), seq(2, 4, 3), False),
    "GRU_reset_before": (lambda: layers.GRU(3, reset_after=False, return_sequences=True,
                                            bias_initializer="random_normal"), seq(2, 4, 3), False),
    "GRU_go_backwards_last": (lambda: layers.GRU(4, go_backwards=True), seq(2, 3, 2), False),
    "GRU_reset_before_no_bias": (lambda: layers.GRU(3, reset_after=False, use_bias=False),
                                 seq(2, 3, 2), False),
    "SimpleRNN_sequences": (lambda: layers.SimpleRNN(4, return_sequences=True), seq(2, 5, 3), False),
    "SimpleRNN_sigmoid_last": (lambda: layers.SimpleRNN(3, activation="sigmoid"), seq(3, 3, 2), False),
    "RNN_custom_cell": (lambda: layers.RNN(MinimalRNNCell(3), return_sequences=True),
                        seq(2, 3, 2), False),
    "LSTMCell_in_RNN": (lambda: layers.RNN(layers.LSTMCell(3)), seq(2, 3, 2), False),
    "GRUCell_in_RNN": (lambda: layers.RNN(layers.GRUCell(3, reset_after=False)), seq(2, 3, 2), False),
    "SimpleRNNCell_in_RNN": (lambda: layers.RNN(layers.SimpleRNNCell(3), go_backwards=True),
                             seq(2, 3, 2), False),
    "Bidirectional_concat_sequences": (lambda: layers.Bidirectional(
        layers.LSTM(2, return_sequences=True)), seq(2, 3, 2), False),
    "Bidirectional_sum": (lambda: layers.Bidirectional(layers.GRU(3), merge_mode="sum"),
                          seq(2, 3, 2), False),
    "Bidirectional_mul_sequences": (lambda: layers.Bidirectional(
        layers.SimpleRNN(2, return_sequences=True), merge_mode="mul"), seq(2, 3, 2), False),
    "Bidirectional_ave": (lambda: layers.Bidirectional(layers.LSTM(2), merge_mode="ave"),
                          seq(2, 3, 2), False),
    "TimeDistributed_dense": (lambda: layers.TimeDistributed(layers.Dense(3, activation="tanh")),
                              seq(2, 3, 4), False),
    "TimeDistributed_flatten": (lambda: layers.TimeDistributed(layers.Flatten()),
                                seq(2, 3, 2, 2), False),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_layer_gradients_match_finite_differences(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_gradients(factory(), x, training=training)


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_compiled_kernels_match_float64_reference(name):
    factory, x, training = GRADIENT_CASES[name]
    check_layer_native_matches_reference(factory(), x, training=training)


@pytest.mark.parametrize("factory", [
    lambda: layers.LSTM(8, return_sequences=True),
    lambda: layers.GRU(8, return_sequences=True, bias_initializer="random_normal"),
    lambda: layers.GRU(8, reset_after=False)])
@pytest.mark.parametrize("batch", [130, 200])
def test_weight_gradients_summed_by_row_groups_match_float64_reference(factory, batch):
    """Batches of 128 rows or more sum their weight gradients by groups of batch rows
    (rnn.c: grad_groups; 130 rows: 65 + 65, 200: 66 + 67 + 67), each group one product
    per step, then the groups in order: against the float64 reference."""
    set_random_seed(4)
    x = rng.normal(size=(batch, 6, 5)).astype(np.float32)
    check_layer_native_matches_reference(factory(), x, rtol=1e-4, atol=1e-5)


# ---- masks and several outputs: checks of our own -----------------------------------

def _forward(layer, x, training, mask):
    y, backprop = layer._train_forward(x, training, mask)
    return y, backprop


def _dot(ys, dys):
    ys = ys if isinstance(ys, list) else [ys]
    return sum(float(np.sum(np.asarray(value_of(y)) * d)) for y, d in zip(ys, dys))


def _random_like(ys, seed=2):
    r = np.random.default_rng(seed)
    return [r.standard_normal(np.shape(y)) for y in (ys if isinstance(ys, list) else [ys])]


def check_masked_gradients(layer, x, mask, training=False, eps=1e-6):
    """FD check of dx and weight gradients with a mask and any number of outputs."""
    layer(np.asarray(x, dtype=np.float32))
    x = np.array(x, dtype=np.float64)
    with reference_mode(), float64_weights(layer):
        y, backprop = _forward(layer, x, training, mask)
        dys = _random_like(y)
        for v in layer.trainable_weights:
            v.grad = np.zeros_like(v.value)
        dx = backprop(dys if isinstance(y, list) else dys[0])

        def objective():
            return _dot(_forward(layer, x, training, mask)[0], dys)
        targets = [(x, dx)] + [(v.value, v.grad.copy()) for v in layer.trainable_weights]
        for array, analytic in targets:
            np.testing.assert_allclose(analytic, _numeric_gradient(objective, array, eps),
                                       rtol=1e-5, atol=1e-7)


def check_masked_native(layer, x, mask, training=False, tol=1e-5):
    """The C path agrees with the reference on outputs, dx and weight gradients."""
    layer(np.asarray(x, dtype=np.float32))
    results = []
    for reference in (False, True):
        with reference_mode() if reference else contextlib.nullcontext():
            for v in layer.trainable_weights:
                v.grad = None
            set_random_seed(0)
            dtype = np.float64 if reference else np.float32
            y, backprop = _forward(layer, np.asarray(x, dtype=dtype), training, mask)
            dys = [d.astype(dtype) for d in _random_like(y)]
            dx = backprop(dys if isinstance(y, list) else dys[0])
            ys = y if isinstance(y, list) else [y]
            results.append(([np.asarray(v, np.float64) for v in ys], np.asarray(dx, np.float64),
                            [np.array(v.grad, np.float64) for v in layer.trainable_weights]))
    (y32, dx32, g32), (y64, dx64, g64) = results
    for a, b in zip(y32, y64):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx32, dx64, rtol=tol, atol=tol)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1, np.abs(b).max()))


MASK = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)

MASKED_CASES = {
    "lstm_sequences": lambda: layers.LSTM(3, return_sequences=True),
    "lstm_state": lambda: layers.LSTM(3, return_state=True),
    "lstm_backwards_state_sequences": lambda: layers.LSTM(2, go_backwards=True, return_state=True,
                                                          return_sequences=True),
    "gru_after_sequences_zero_output": lambda: layers.GRU(3, return_sequences=True,
                                                          zero_output_for_mask=True),
    "gru_before_state": lambda: layers.GRU(3, reset_after=False, return_state=True),
    "simple_backwards": lambda: layers.SimpleRNN(3, go_backwards=True, return_sequences=True),
    "custom_cell_state": lambda: layers.RNN(MinimalRNNCell(2), return_state=True),
    "bidirectional_concat_sequences": lambda: layers.Bidirectional(
        layers.LSTM(2, return_sequences=True)),
    "bidirectional_none_state": lambda: layers.Bidirectional(
        layers.GRU(2, return_state=True), merge_mode=None),
    "bidirectional_ave_state_sequences": lambda: layers.Bidirectional(
        layers.SimpleRNN(2, return_state=True, return_sequences=True), merge_mode="ave"),
}


@pytest.mark.parametrize("name", sorted(MASKED_CASES))
def test_masked_and_multi_output_gradients(name):
    x = seq(3, 5, 2)
    check_masked_gradients(MASKED_CASES[name](), x, MASK)
    check_masked_native(MASKED_CASES[name](), x, MASK)


def test_masked_steps_carry_the_state_and_repeat_the_output():
    layer = layers.LSTM(3, return_sequences=True, return_state=True)
    x = seq(3, 5, 2).astype(np.float32)
    y, h, c = layer(x, mask=MASK)
    np.testing.assert_array_equal(y[0, 2], y[0, 1])        # masked step repeats
    np.testing.assert_array_equal(y[2], np.zeros((5, 3)))   # fully masked row stays at h0
    np.testing.assert_array_equal(h, y[:, -1])
    # Dropping the masked steps gives the same final state.
    h_short = layers.LSTM(3, weights=layer.get_weights())(x[1:2, [0, 3, 4]])
    np.testing.assert_allclose(h[1:2], h_short, rtol=1e-6, atol=1e-6)


# ---- float64 numpy cells: the C kernels over many shapes -------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_lstm(x, kernel, recurrent, bias, units):
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), [h, c]


def numpy_gru(x, kernel, recurrent, bias, units, reset_after):
    h = np.zeros((x.shape[0], units))
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros(3 * units))
    hs = []
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + b_in, 3, axis=1)
        rec = h @ recurrent + b_rec
        z = sigmoid(xz + rec[:, :units])
        r = sigmoid(xr + rec[:, units:2 * units])
        if reset_after:
            hh = np.tanh(xh + r * rec[:, 2 * units:])
        else:
            hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * units:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs, 1), [h]


def numpy_simple_rnn(x, kernel, recurrent, bias, units):
    h = np.zeros((x.shape[0], units))
    hs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        hs.append(h)
    return np.stack(hs, 1), [h]


NUMPY_CELLS = {
    "lstm": (lambda u: layers.LSTM(u, return_sequences=True, return_state=True), numpy_lstm),
    "gru": (lambda u: layers.GRU(u, return_sequences=True, return_state=True),
            lambda *a: numpy_gru(*a, reset_after=True)),
    "gru_reset_before": (lambda u: layers.GRU(u, reset_after=False, return_sequences=True,
                                              return_state=True),
                         lambda *a: numpy_gru(*a, reset_after=False)),
    "simple_rnn": (lambda u: layers.SimpleRNN(u, return_sequences=True, return_state=True),
                   numpy_simple_rnn),
}


@pytest.mark.parametrize("kind", sorted(NUMPY_CELLS))
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 3, 5), (5, 3, 8, 16), (4, 20, 2, 33),
                                   (33, 4, 17, 9), (200, 3, 5, 7)])
def test_forward_matches_numpy_cells(kind, shape):
    batch, steps, features, units = shape
    factory, reference = NUMPY_CELLS[kind]
    layer = factory(units)
    x = rng.normal(size=(batch, steps, features)).astype(np.float32)
    layer(x)
    for v in layer.weights:   # larger than the initializers give, to reach saturation
        v.assign(rng.normal(scale=1.5 / np.sqrt(v.shape[0]), size=v.shape))
    y, *states = layer(x)
    expected_y, expected_states = reference(x.astype(np.float64),
                                            *[w.astype(np.float64) for w in layer.get_weights()],
                                            units)
    np.testing.assert_allclose(y, expected_y, rtol=1e-4, atol=1e-5)   # float32 over 20 steps
    for state, expected in zip(states, expected_states):
        np.testing.assert_allclose(state, expected, rtol=1e-4, atol=1e-5)


def test_fast_activations_are_accurate():
    from pylayers._kernels import rnn as rnn_kernels
    for value in np.concatenate([np.linspace(-20, 20, 4001), [0.0, 1e-8, -3e-5, 7.9, 8.1]]):
        assert abs(rnn_kernels.fast_tanh(value) - np.tanh(np.float32(value))) < 4e-7
        assert abs(rnn_kernels.fast_sigmoid(value) - sigmoid(np.float64(np.float32(value)))) < 4e-7


@pytest.mark.parametrize("path", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_step_activations_are_accurate_on_every_path(path, activation):
    """The step kernels' own tanh and sigmoid (AVX2: 8 at a time, AVX-512: 16, then a
    short vector), reached through a SimpleRNN whose step is act(x) in every unit: one
    feature, a kernel of ones, zero recurrence. Saturated values are exact, infinities
    saturate and NaN stays NaN."""
    paths = ["generic", "avx2", "avx512"]
    if paths.index(path) > paths.index(keras.show_config(False)["detected_kernel_path"]):
        pytest.skip(f"this CPU has no {path}")   # the generic case still runs
    units = 19   # two full vectors and a short one per row
    values = np.concatenate([np.linspace(-20, 20, 4001), [0.0, 1e-8, -3e-5, 7.9, 8.1, 100.0,
                                                          -100.0, np.inf, -np.inf, np.nan]])
    x = values.astype(np.float32).reshape(-1, 1, 1)
    layer = layers.SimpleRNN(units, activation=activation, kernel_initializer="ones",
                             recurrent_initializer="zeros", bias_initializer="zeros")
    layer(x[:1])
    old = keras.get_kernel_path()
    try:
        keras.set_kernel_path(path)
        got = layer(x).astype(np.float64)
    finally:
        keras.set_kernel_path(old)
    x64 = np.repeat(x[:, 0].astype(np.float64), units, axis=1)
    exact = np.tanh(x64) if activation == "tanh" else sigmoid(x64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    finite = ~np.isnan(exact)
    assert np.max(np.abs(got[finite] - exact[finite])) < 4e-7
    saturated = np.abs(x64) >= (100.0 if activation == "sigmoid" else 8.0)
    np.testing.assert_array_equal(got[saturated], np.round(exact[saturated]))


# ---- threads and kernel paths --------------------------------------------------------

def _train_step_results(layer, x, mask):
    y, backprop = layer._train_forward(x, True, mask)
    for v in layer.trainable_weights:
        v.grad = None
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    dx = backprop(dy)
    return [y, dx] + [v.grad.copy() for v in layer.trainable_weights]


@pytest.mark.parametrize("factory", [
    lambda: layers.LSTM(24, return_sequences=True),
    lambda: layers.LSTM(10, return_sequences=True),
    lambda: layers.GRU(24, return_sequences=True),
    lambda: layers.GRU(24, reset_after=False),
    lambda: layers.SimpleRNN(24, return_sequences=True)])
@pytest.mark.parametrize("batch", [150, 29])
def test_threads_and_kernel_paths_agree(factory, batch):
    """Threads split the batch rows (2 threads: 75 + 75 or 14 + 15 rows, 3 threads: 9 +
    10 + 10 rows for 29, micro-tiles starting at other rows): the same bits. 30 steps
    give every case the work for 3 threads (rnn.c: SHARE_MIN_WORK)."""
    set_random_seed(3)
    layer = factory()
    x = rng.normal(size=(batch, 30, 40)).astype(np.float32)
    mask = rng.random((batch, 30)) > 0.2
    layer(x)
    threads, path = keras.get_num_threads(), keras.get_kernel_path()
    try:
        keras.set_num_threads(1)
        one = _train_step_results(layer, x, mask)
        for n_threads in (2, 3):
            keras.set_num_threads(n_threads)
            more = _train_step_results(layer, x, mask)
            for a, b in zip(one, more):
                np.testing.assert_array_equal(a, b)
        if path == "avx512":   # the wider GEMM tile sums in the AVX2 tile's order
            keras.set_kernel_path("avx2")
            for a, b in zip(one, _train_step_results(layer, x, mask)):
                np.testing.assert_array_equal(a, b)
        keras.set_kernel_path("generic")
        generic = _train_step_results(layer, x, mask)
        for a, b in zip(one, generic):   # weight gradients sum ~1000 terms: scaled atol
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))
    finally:
        keras.set_num_threads(threads)
        keras.set_kernel_path(path)



def _stack_step(stack, x, dy, handed_on):
    """Outputs, input gradients and weight gradients of a training step through the
    layers of `stack`, each given its neighbour's output (and gradient) as it is, or
    (handed_on False) as a C-contiguous copy."""
    hand = (lambda a: a) if handed_on else np.ascontiguousarray
    outputs, backprops = [], []
    for layer in stack:
        for v in layer.trainable_weights:
            v.grad = None
        x, backprop = layer._train_forward(hand(x) if outputs else x, True)
        outputs.append(x)
        backprops.append(backprop)
    grads = []
    for backprop in reversed(backprops):
        dy = backprop(hand(dy))
        grads.append(dy)
    return outputs + grads + [v.grad.copy() for layer in stack for v in layer.trainable_weights]


def test_stacked_layers_hand_sequences_on_time_major_with_the_bits_of_copies():
    """In training a layer returning sequences gives its time-major states seen
    batch-major (no copy), the layer above reads them in place and hands its input
    gradient back the same way: the same bits as batch-major copies."""
    set_random_seed(4)
    stack = [layers.LSTM(12, return_sequences=True), layers.GRU(9, return_sequences=True),
             layers.SimpleRNN(7, return_sequences=True), layers.LSTM(5)]
    x = rng.normal(size=(6, 11, 3)).astype(np.float32)
    h = x
    for layer in stack:
        h = layer(h)
    dy = rng.normal(size=(6, 5)).astype(np.float32)
    handed = _stack_step(stack, x, dy, handed_on=True)
    for y in handed[:3]:   # time-major buffers seen batch-major
        assert y.transpose(1, 0, 2).flags.c_contiguous and not y.flags.c_contiguous
    copied = _stack_step(stack, x, dy, handed_on=False)
    for a, b in zip(handed, copied):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(stack[0](x)), handed[0])   # inference copies


def test_rnn_backward_reads_a_time_major_output_gradient_without_a_pool():
    """Without a work pool the kernel reads the output gradient where it lies, in either
    layout: the same bits."""
    from pylayers._kernels import rnn as rnn_kernels
    args = _lstm_forward_args(batch=5, steps=7, inputs=4, units=6)
    tape = rnn_kernels.lstm_forward(*args)
    kernel, recurrent, bias = args[1:4]
    dy_tm = rng.standard_normal((7, 5, 6)).astype(np.float32)
    results = []
    for dy in (dy_tm.transpose(1, 0, 2), np.ascontiguousarray(dy_tm.transpose(1, 0, 2))):
        dh, dc = np.ones((5, 6), np.float32), np.ones((5, 6), np.float32)
        grads = [np.zeros_like(kernel), np.zeros_like(recurrent), np.zeros_like(bias)]
        dx = rnn_kernels.lstm_backward(tape, kernel, recurrent, bias, 3, 2, dy, dh, dc,
                                       *grads, True)
        results.append([dx, dh, dc] + grads)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)

# ---- stateful, initial state, dropout -------------------------------------------------

def test_stateful_carries_states_until_reset():
    layer = layers.LSTM(3, stateful=True, batch_input_shape=(2, 4, 2))
    x = seq(2, 8, 2).astype(np.float32)
    whole = layers.LSTM(3, return_sequences=False)
    whole(x)
    layer(x[:, :4])
    layer.set_weights(whole.get_weights())
    layer.reset_states()
    layer(x[:, :4])
    np.testing.assert_allclose(layer(x[:, 4:]), whole(x), rtol=1e-6, atol=1e-6)
    layer.reset_states()
    np.testing.assert_allclose(layer(x[:, :4]), whole(x[:, :4]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch size"):
        layer(x[:1, :4])


def test_initial_state_is_used():
    layer = layers.GRU(3)
    x = seq(2, 4, 2).astype(np.float32)
    h0 = np.ones((2, 3), dtype=np.float32)
    assert not np.allclose(layer(x, initial_state=[h0]), layer(x))
    with reference_mode():
        reference = layer(x.astype(np.float64), initial_state=h0)
    np.testing.assert_allclose(layer(x, initial_state=h0), reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="initial states"):
        layer(x, initial_state=[np.ones((2, 4))])


def test_dropout_only_in_training():
    layer = layers.LSTM(4, dropout=0.5, recurrent_dropout=0.5)
    x = seq(3, 5, 2).astype(np.float32)
    np.testing.assert_array_equal(layer(x), layer(x, training=False))
    assert not np.allclose(layer(x, training=True), layer(x))


def test_unroll_is_accepted():
    x = seq(2, 3, 2).astype(np.float32)
    layer = layers.SimpleRNN(2, unroll=True)
    assert layer(x).shape == (2, 2) and layer.get_config()["unroll"] is True


# ---- Keras layouts, shapes, configs, errors -----------------------------------------

@pytest.mark.parametrize("factory, count", [
    (lambda: layers.LSTM(5), 260), (lambda: layers.GRU(5), 210),
    (lambda: layers.GRU(5, reset_after=False), 195), (lambda: layers.SimpleRNN(5), 65)])
def test_keras_parameter_counts(factory, count):
    layer = factory()
    layer(np.zeros((1, 2, 7), dtype=np.float32))
    assert layer.count_params() == count


def test_lstm_weights_live_on_the_cell_with_keras_initial_values():
    keras.utils.set_random_seed(1)
    layer = layers.LSTM(4)
    layer(np.zeros((1, 2, 3), dtype=np.float32))
    kernel, recurrent, bias = layer.get_weights()
    assert [w.name for w in layer.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert layer.weights == layer.cell.weights
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)   # orthogonal rows
    assert layer.units == 4 and layer.cell.units == 4


@pytest.mark.parametrize("cls, kwargs, out_shape, n_weights", [
    (layers.LSTM, {"units": 3, "return_sequences": True}, (2, 4, 3), 3),
    (layers.GRU, {"units": 3, "reset_after": False, "go_backwards": True}, (2, 3), 3),
    (layers.SimpleRNN, {"units": 3, "use_bias": False, "activation": "relu"}, (2, 3), 2),
    (layers.LSTM, {"units": 2, "dropout": 0.1, "recurrent_dropout": 0.2,
                   "kernel_regularizer": "l2", "unit_forget_bias": False}, (2, 2), 3),
])
def test_run_layer_test(cls, kwargs, out_shape, n_weights):
    run_layer_test(cls, kwargs, (2, 4, 5), out_shape, expected_num_trainable_weights=n_weights)


def test_rnn_with_cell_round_trips_its_config():
    layer = layers.RNN(layers.GRUCell(3, reset_after=False), return_sequences=True)
    x = seq(2, 3, 4).astype(np.float32)
    y = layer(x)
    clone = layers.RNN.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)
    assert clone.get_config() == layer.get_config()


def test_output_shapes_and_masks():
    layer = layers.LSTM(3, return_sequences=True, return_state=True)
    assert layer.compute_output_shape((None, None, 4)) == [(None, None, 3), (None, 3), (None, 3)]
    mask = np.ones((2, 5), dtype=bool)
    assert layer.compute_mask(None, mask)[0] is mask
    assert layers.GRU(2).compute_mask(None, mask) is None


@pytest.mark.parametrize("make, message", [
    (lambda: layers.LSTM(3)(np.zeros((2, 5), dtype=np.float32)), "expected ndim=3"),
    (lambda: layers.LSTM(-3), "units=-3|got -3"),
    (lambda: layers.GRU(2, dropout=1.5), "dropout"),
    (lambda: layers.SimpleRNN(2)(np.zeros((2, 0, 3), dtype=np.float32)), "at least one time step"),
])
def test_bad_arguments_and_inputs(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_feature_count_is_a_clear_error_before_any_change():
    layer = layers.LSTM(3)
    layer(np.zeros((1, 2, 4), dtype=np.float32))
    before = layer.get_weights()
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        layer(np.zeros((1, 2, 5), dtype=np.float32))
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_variable_time_steps_in_a_model():
    model = keras.Sequential([layers.InputLayer(input_shape=(None, 3)),
                              layers.GRU(4, return_sequences=True), layers.SimpleRNN(2)])
    for steps in (1, 6, 11):
        assert model.predict(seq(2, steps, 3), verbose=0).shape == (2, 2)


def test_a_stacked_lstm_learns_the_adding_problem():
    """Adding problem: the sum of the two marked values of a random sequence."""
    keras.utils.set_random_seed(3)
    data = np.random.default_rng(3)
    n, steps = 1024, 12
    values = data.uniform(0, 1, size=(n, steps))
    marks = np.zeros((n, steps))
    for row in marks:
        row[data.choice(steps, 2, replace=False)] = 1
    x = np.stack([values, marks], axis=-1).astype(np.float32)
    y = (values * marks).sum(axis=1, keepdims=True).astype(np.float32)
    model = keras.Sequential([layers.LSTM(16, return_sequences=True, input_shape=(None, 2)),
                              layers.LSTM(8), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    baseline = float(np.mean((y - y.mean()) ** 2))      # ~0.17: predicting the mean
    assert history.history["loss"][-1] < 0.1 * baseline
    assert history.history["loss"][-1] < 0.25 * history.history["loss"][0]


# ---- wrappers -----------------------------------------------------------------------

@pytest.mark.parametrize("merge_mode, width", [("concat", 6), ("sum", 3), ("mul", 3), ("ave", 3)])
def test_bidirectional_merges_a_forward_and_a_reversed_run(merge_mode, width):
    layer = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode=merge_mode)
    x = seq(2, 4, 5).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 4, width) and layer.count_params() == 2 * 4 * (3 * (5 + 3) + 3)
    forward = layers.LSTM(3, return_sequences=True, weights=layer.forward_layer.get_weights())(x)
    backward = layers.LSTM(3, return_sequences=True,
                           weights=layer.backward_layer.get_weights())(x[:, ::-1])[:, ::-1]
    expected = {"concat": np.concatenate([forward, backward], -1), "sum": forward + backward,
                "mul": forward * backward, "ave": (forward + backward) / 2}[merge_mode]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((None, None, 5)) == (None, None, width)


def test_bidirectional_states_config_and_errors():
    layer = layers.Bidirectional(layers.GRU(2, return_state=True), merge_mode=None)
    y_forward, y_backward, h_forward, h_backward = layer(seq(3, 4, 2).astype(np.float32))
    np.testing.assert_array_equal(y_forward, h_forward)
    np.testing.assert_array_equal(y_backward, h_backward)
    assert layer.compute_output_shape((None, 4, 2)) == [(None, 2)] * 4
    assert [w.name for w in layer.weights] == ["kernel", "recurrent_kernel", "bias"] * 2
    clone = layers.Bidirectional.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="Invalid merge mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="recurrent"):
        layers.Bidirectional(layers.Dense(2))


def test_bidirectional_in_a_model_with_embedding_masks():
    model = keras.Sequential([layers.InputLayer(shape=(None,), dtype="int32"),
                              layers.Embedding(30, 4, mask_zero=True),
                              layers.Bidirectional(layers.LSTM(3)), layers.Dense(1)])
    short = np.array([[5, 2, 9]])
    padded = np.array([[5, 2, 9, 0, 0]])
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(short, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_time_distributed_applies_the_layer_to_every_step():
    inner = layers.Dense(3)
    layer = layers.TimeDistributed(inner)
    x = seq(2, 4, 5).astype(np.float32)
    np.testing.assert_allclose(layer(x), inner(x.reshape(8, 5)).reshape(2, 4, 3), rtol=1e-6)
    assert layer.compute_output_shape((None, None, 5)) == (None, None, 3)
    run_layer_test(layers.TimeDistributed, {"layer": layers.Dense(2)}, (2, 3, 4), (2, 3, 2),
                   expected_num_trainable_weights=2)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        layer(np.zeros((2, 5), dtype=np.float32))


# ---- parity with real Keras (tests/fixtures/make_rnn_fixtures.py) ---------------------

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "rnn"


def _outputs(out):
    return out if isinstance(out, list) else [out]


LAYER_FIXTURES = sorted(set(FIXTURES.glob("*.npz")) - {FIXTURES / "embedding_mask_zero_lstm.npz"})


@pytest.mark.parametrize("path", LAYER_FIXTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "float64_reference"])
def test_outputs_and_states_match_keras(path, reference):
    data = np.load(path)
    spec = json.loads(str(data["spec"]))
    layer = getattr(layers, spec["class"])(**spec["kwargs"])
    if "wrap" in spec:
        layer = getattr(layers, spec["wrap"])(layer, **spec["wrap_kwargs"])
    x = data["x"]
    layer(x)
    layer.set_weights([data[f"weight_{i}"] for i in range(len(layer.weights))])
    mask = data["mask"] if "mask" in data else None
    with reference_mode() if reference else contextlib.nullcontext():
        out = _outputs(layer(x.astype(np.float64) if reference else x, mask=mask))
    expected = [data[f"output_{i}"] for i in range(len(out))]
    assert f"output_{len(out)}" not in data
    for got, want in zip(out, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_embedding_mask_zero_matches_keras():
    data = np.load(FIXTURES / "embedding_mask_zero_lstm.npz")
    embedding = layers.Embedding(12, 3, mask_zero=True, weights=[data["table"]])
    lstm = layers.LSTM(4, return_sequences=True, return_state=True)
    lstm.build((None, 6, 3))
    lstm.set_weights([data[f"weight_{i}"] for i in range(3)])
    embedded = embedding(data["indices"])
    np.testing.assert_allclose(embedded, data["embedded"], rtol=1e-6)
    np.testing.assert_array_equal(embedding.compute_mask(data["indices"], None), data["mask"])
    for got, i in zip(lstm(embedded, mask=data["mask"]), range(3)):
        np.testing.assert_allclose(got, data[f"output_{i}"], rtol=1e-5, atol=1e-5)


def test_reused_work_arrays_never_change_a_live_backprop():
    """Kernel work arrays are pooled per layer: a second forward while the first one's
    backprop is alive must not disturb it."""
    layer = layers.LSTM(3, return_sequences=True)
    x1, x2 = seq(2, 4, 2).astype(np.float32), seq(2, 4, 2).astype(np.float32)
    dy = np.ones((2, 4, 3), dtype=np.float32)
    layer(x1)

    def gradients(backprop):
        layer.cell.kernel.grad = None
        return backprop(dy), layer.cell.kernel.grad.copy()
    y1, backprop1 = layer._train_forward(x1, True)
    expected = gradients(backprop1)
    y2, backprop2 = layer._train_forward(x2, True)
    for got, want in zip(gradients(backprop1), expected):
        np.testing.assert_array_equal(got, want)
    del backprop1, backprop2
    np.testing.assert_array_equal(layer._train_forward(x1, True)[0], y1)


# ---- regressions found by tests/reliability (kernel fuzzing) ------------------------------

def test_relu_recurrence_propagates_nan_like_the_reference():
    """The fused relu used to turn NaN into 0, so a NaN input vanished from the output."""
    layer = layers.SimpleRNN(3, activation="relu", return_sequences=True)
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    x[0, 1, 0] = np.nan
    layer(x)
    got = np.asarray(layer(x))
    with reference_mode():
        expected = np.asarray(layer(x.astype(np.float64)))
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-4,
                               atol=1e-5)


def _lstm_forward_args(batch=2, steps=3, inputs=2, units=3):
    f = lambda *s: rng.standard_normal(s).astype(np.float32)   # noqa: E731
    return [f(batch, steps, inputs), f(inputs, 4 * units), f(units, 4 * units), f(4 * units),
            None, 3, 2, f(batch, units), f(batch, units)]


@pytest.mark.parametrize("index, value, error, match", [
    (1, None, ValueError, "lstm_forward: kernel is required"),
    (2, None, ValueError, "lstm_forward: recurrent_kernel must be a 2-D"),
    (7, "noncontiguous", TypeError, "lstm_forward: initial state h must be a C-contiguous"),
    (5, 4, ValueError, "lstm_forward: unknown activation code 4"),
    (4, np.array([["a"] * 3] * 2), TypeError, "lstm_forward: mask must be"),
    (0, "2d", ValueError, "lstm_forward: x must be a 3-D"),
])
def test_rnn_kernels_name_the_function_and_argument(index, value, error, match):
    """These used to segfault (None weights), read freed copies (non-contiguous states)
    or raise AttributeError (found by kernel fuzzing)."""
    from pylayers._kernels import rnn as rnn_kernels
    args = _lstm_forward_args()
    if isinstance(value, str):
        value = np.repeat(args[index], 2, axis=1)[:, ::2] if value == "noncontiguous" \
            else args[index][:, 0]
    args[index] = value
    with pytest.raises(error, match=match):
        rnn_kernels.lstm_forward(*args)


def test_rnn_backward_refuses_a_malformed_tape():
    from pylayers._kernels import rnn as rnn_kernels
    args = _lstm_forward_args()
    tape = rnn_kernels.lstm_forward(*args)
    kernel, recurrent, bias = args[1:4]
    bad_tape = tape[:2] + (np.ascontiguousarray(tape[2][:, :, :4]),) + tape[3:]
    dh, dc = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="lstm_backward: tape gates has shape"):
        rnn_kernels.lstm_backward(bad_tape, kernel, recurrent, bias, 3, 2, None, dh, dc,
                                  None, None, None, True)
    dkernel = np.zeros_like(kernel)
    dkernel.flags.writeable = False
    with pytest.raises(ValueError, match="lstm_backward: dkernel is read-only"):
        rnn_kernels.lstm_backward(tape, kernel, recurrent, bias, 3, 2, None, dh, dc,
                                  dkernel, None, None, True)
