"""A Sequential model's compiled inference plan (pylayers.layers.inference): predict runs
it for every shape of input it has seen (its last two), and it must answer exactly as
the layer-by-layer forward, see weight changes, never hand out its own buffers, and step
aside for a second thread."""
import threading

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers
from pylayers._kernels.dense import DenseChain
from pylayers.layers.buffers import aligned_empty
from pylayers.ops import reference_mode


def cnn():
    return [layers.InputLayer(shape=(12, 12, 2)), layers.Conv2D(6, 3, activation="relu"),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(5, activation="softmax")]


def mixed():
    """Steps of every kind: compiled, views, and layers that run their own _infer
    (BatchNormalization, a Dense on rank-3 input, PReLU)."""
    return [layers.InputLayer(shape=(16, 3)),
            layers.Conv1D(4, 3, padding="same", activation="tanh"), layers.BatchNormalization(), layers.AveragePooling1D(2), layers.Dense(6),
            layers.PReLU(), layers.Reshape((48,)), layers.Dropout(0.5), layers.ReLU(),
            layers.Dense(7), layers.LeakyReLU(0.2), layers.Dense(3), layers.Softmax()]


def mlp():
    return [layers.InputLayer(shape=(20,)), layers.Dense(16, activation="relu"),
            layers.Dense(4, activation="sigmoid")]


def deep_mlp():
    """Four Dense layers in a row, one without a bias: one DenseChain call."""
    return [layers.InputLayer(shape=(30,)), layers.Dense(24, activation="relu"),
            layers.Dense(16, activation="tanh", use_bias=False), layers.Dense(12),
            layers.Dense(4, activation="softmax")]


MODELS = {"cnn": cnn, "mixed": mixed, "mlp": mlp, "deep_mlp": deep_mlp}


def built(name):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(MODELS[name]())
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(4)
    for layer in model.layers:   # non-zero biases, non-trivial moving statistics
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.standard_normal(layer.bias.shape) * 0.3)
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
    return model


def inputs(model, n, seed=0):
    shape = model._input_layer.batch_shape[1:]
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def layer_by_layer(model, x):
    """The forward pass without the plan (what training's forward computes)."""
    return model._forward_for_loss([x], training=False)[0][0]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 5])
def test_the_plan_answers_as_the_layer_by_layer_forward(name, n):
    model = built(name)
    x = inputs(model, n)
    y = model.predict(x, batch_size=n, verbose=0)
    assert model._plans[x.shape] is not None
    np.testing.assert_array_equal(y, layer_by_layer(model, x))
    with reference_mode():
        expected = model.predict(x.astype(np.float64), batch_size=n, verbose=0)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


# (inputs, units, activation, bias) per layer
CHAINS = {
    # softmax in the middle and last, a layer without bias, narrow and small layers
    "mixed": [(700, 600, "relu", True), (600, 12, "softmax", True), (12, 520, "tanh", False),
              (520, 512, "sigmoid", True), (512, 10, "softmax", True)],
    # two wide layers in a row, each thread reading in the second only the columns it
    # finished in the first: no barrier between them
    "mlp": [(784, 512, "relu", True), (512, 512, "relu", True), (512, 10, "softmax", True)],
}


@pytest.mark.parametrize("rows", [1, 3, 8, 9])
@pytest.mark.parametrize("name", CHAINS)
def test_a_few_rows_chain_runs_in_one_region_with_the_bits_of_the_layers(name, rows,
                                                                          restore_threads):
    """Up to 8 rows, a DenseChain runs its layers in one parallel region (gemm.c:
    pl_sgemm_rows_chain): wide layers split into depth slices and columns among the
    threads, each finishing its columns (bias, activation), a softmax layer finished
    whole, a narrow layer on one thread. The same bits as the layers' own kernel calls,
    on 1, 2 and 3 threads, call after call (a thread runs ahead where no barrier holds
    it); 9 rows go layer by layer."""
    from pylayers._kernels import dense
    from pylayers._kernels.dense import ACTIVATION_CODES as CODES
    from pylayers.ops.variable import Variable
    rng = np.random.default_rng(5)
    spec = CHAINS[name]
    links = [(f"d{i}", Variable(rng.standard_normal((k, n)).astype(np.float32) * 0.1),
              Variable(rng.standard_normal(n).astype(np.float32)) if bias else None,
              CODES[act], 0.0) for i, (k, n, act, bias) in enumerate(spec)]
    x = rng.standard_normal((rows, spec[0][0])).astype(np.float32)
    expected = x
    for _, kernel, bias, act, _ in links:
        out = np.empty((rows, kernel.value.shape[1]), np.float32)
        dense.dense_forward(expected, kernel.value, None if bias is None else bias.value, act,
                            0.0, out)
        expected = out
    for threads in (1, 2, 3):
        keras.set_num_threads(threads)
        chain = DenseChain(links, rows, aligned_empty)
        for _ in range(30):
            np.testing.assert_array_equal(chain.run(x, np.empty((rows, 10), np.float32)),
                                          expected)


def test_the_plan_reads_the_weights_of_the_moment():
    model = built("cnn")
    x = inputs(model, 2)
    before = model.predict(x, verbose=0)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    after_assign = model.predict(x, verbose=0)
    assert not np.array_equal(before, after_assign)
    np.testing.assert_array_equal(after_assign, layer_by_layer(model, x))
    model.fit(x, np.zeros((2, 5), np.float32), epochs=2, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer_by_layer(model, x))


def test_consecutive_dense_layers_run_as_one_call():
    model = built("deep_mlp")
    x = inputs(model, 3)
    model.predict(x, verbose=0)
    assert len(model._plans[x.shape]._calls) == 1
    model = built("mixed")   # Dense, PReLU, ..., Dense, LeakyReLU, Dense: no two in a row
    model.predict(inputs(model, 3), verbose=0)
    assert len(model._plans[(3, 16, 3)]._calls) == len(model.layers)


def test_a_weight_replaced_by_a_new_array_is_read_and_checked():
    model = built("deep_mlp")
    x = inputs(model, 3)
    model.predict(x, verbose=0)
    dense = model.layers[2]
    dense.kernel.value = dense.kernel.value * 2.0   # another array, not assigned in place
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer_by_layer(model, x))
    good = dense.kernel.value
    for bad, found in ((np.ones((12, 16), np.float32), r"shape \(12, 16\) and dtype float32"),
                       (good.astype(np.float64), r"shape \(16, 12\) and dtype float64"),
                       (np.asfortranarray(good), "not readable in place")):
        dense.kernel.value = bad
        with pytest.raises(ValueError, match=f"Dense layer '{dense.name}': kernel .*{found}"):
            model.predict(x, verbose=0)
    dense.kernel.value = good
    last = model.layers[-1]
    last.bias.value = last.bias.value[:3]
    with pytest.raises(ValueError, match=f"Dense layer '{last.name}': bias of shape \\(3,\\)"):
        model.predict(x, verbose=0)


def test_no_output_shares_memory_with_the_plan_or_another_output():
    model = built("mlp")
    x = inputs(model, 10)
    first = model.predict(x[:1], batch_size=1, verbose=0)
    kept = first.copy()
    model.predict(x[1:2], batch_size=1, verbose=0)
    np.testing.assert_array_equal(first, kept)
    batched = model.predict(x, batch_size=4, verbose=0)   # batches of 4, 4 and 2
    one_by_one = np.concatenate([model.predict(x[i:i + 1], verbose=0) for i in range(10)])
    np.testing.assert_array_equal(batched, one_by_one)


def test_the_plan_steps_aside_while_another_call_is_inside():
    model = built("cnn")
    x = inputs(model, 3)
    expected = model.predict(x, verbose=0)
    plan = model._plans[x.shape]
    with plan._lock:   # as if another thread were running it
        assert plan.run(x) is None
        np.testing.assert_array_equal(model.predict(x, verbose=0), expected)


def test_threads_predicting_at_once_each_get_their_own_answer():
    model = built("cnn")
    xs = [inputs(model, 1, seed) for seed in range(4)]
    expected = [layer_by_layer(model, x).copy() for x in xs]
    wrong = []

    def predict_many(i):
        for _ in range(60):
            if not np.array_equal(model.predict(xs[i], verbose=0), expected[i]):
                wrong.append(i)
    threads = [threading.Thread(target=predict_many, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_plans_follow_the_stack_and_keep_two_shapes():
    model = built("mlp")
    for n in (1, 2, 3):
        model.predict(inputs(model, n), batch_size=n, verbose=0)
    assert sorted(model._plans) == [(2, 20), (3, 20)]
    model.add(layers.Dense(2))
    assert model.predict(inputs(model, 3), batch_size=3, verbose=0).shape == (3, 2)
    model.pop()
    assert model.predict(inputs(model, 3), batch_size=3, verbose=0).shape == (3, 4)


def test_inputs_the_kernels_cannot_read_as_they_are_are_converted_or_refused():
    model = built("mlp")
    x = inputs(model, 4)
    expected = model.predict(x, verbose=0)
    for variant in (x.astype(np.float64), np.asfortranarray(x), x.tolist()):
        np.testing.assert_array_equal(model.predict(variant, verbose=0), expected)
    with pytest.raises(ValueError, match="expected shape=\\(None, 20\\), found shape=\\(4, 19\\)"):
        model.predict(x[:, :19], verbose=0)
    keras.config.enable_check_numerics()
    try:
        with pytest.raises(ValueError, match="x"):
            model.predict(np.full_like(x, np.nan), verbose=0)
    finally:
        keras.config.disable_check_numerics()


def test_masking_models_run_without_a_plan():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.InputLayer(shape=(None,)),
                              layers.Embedding(9, 3, mask_zero=True), layers.LSTM(4)])
    x = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]], np.float32)
    y = model.predict(x, verbose=0)
    assert model._plans.get(x.shape) is None
    np.testing.assert_allclose(y[0], model.predict(x[:1, :2], verbose=0)[0], rtol=1e-6)


def test_call_and_predict_on_batch_take_the_plan_and_training_does_not():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(8, activation="relu"),
                              layers.Dropout(0.5), layers.Dense(3)])
    x1, x2 = inputs(model, 2, seed=1), inputs(model, 2, seed=2)
    expected = layer_by_layer(model, x1).copy()
    first = model(x1)
    np.testing.assert_array_equal(first, expected)
    model(x2)
    np.testing.assert_array_equal(first, expected)   # not overwritten by the next call
    np.testing.assert_array_equal(model.predict_on_batch(x1), expected)
    assert not np.array_equal(model(x1, training=True), expected)   # dropout is on
    for variable in model.trainable_weights:
        variable.zero_grad()
    with keras.ops.Tape(watch=model.trainable_weights) as tape:
        out = model(x1)
        assert isinstance(out, keras.ops.Tensor)   # recorded, not planned
        tape.backward(out, np.ones(out.shape, np.float32))
    assert all(np.any(variable.grad) for variable in model.trainable_weights)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, "4"])
def test_bad_batch_sizes_are_refused_on_the_fast_path_too(batch_size):
    model = built("mlp")
    x = inputs(model, 2)
    model.predict(x, verbose=0)   # a plan for this shape
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=batch_size, verbose=0)


def test_a_dense_chain_refuses_bad_arrays_by_layer_before_writing():
    model = built("deep_mlp")
    dense = model.layers
    links = [(layer.name, layer.kernel, layer.bias if layer.use_bias else None, *layer._fused)
             for layer in dense]
    chain = DenseChain(links, 3, aligned_empty)
    x, out = inputs(model, 3), np.full((3, 4), 7.0, np.float32)
    np.testing.assert_array_equal(chain.run(x, out), layer_by_layer(model, x))
    first, last = dense[0].name, dense[-1].name
    unaligned = np.frombuffer(np.zeros(3 * 30 * 4 + 1, np.uint8)[1:].data,
                              np.float32).reshape(3, 30)
    bad_calls = [(x[:2], out, f"'{first}': input of shape \\(2, 30\\); this chain takes "
                              "\\(3, 30\\)"),
                 (x.astype(np.float64), out, f"'{first}': the input is not a C-contiguous float32"),
                 (np.asfortranarray(x), out, f"'{first}': the input is not a C-contiguous"),
                 (x, out[:, :3], f"'{last}': the output is not a writable C-contiguous"),
                 (x, np.zeros((3, 5), np.float32), f"'{last}': output of shape \\(3, 5\\)"),
                 (unaligned, out, f"'{first}' to '{last}': the input or output data is "
                                  "not aligned")]
    out[...] = 7.0
    for bad_x, bad_out, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            chain.run(bad_x, bad_out)
    assert np.all(out == 7.0)
    with pytest.raises(ValueError, match=f"layer '{dense[2].name}' takes 16 features; the "
                                         "layer before it gives 24"):
        DenseChain([links[0], links[2]], 3, aligned_empty)
    for no_links, rows in (([], 3), (links, 0)):
        with pytest.raises(ValueError, match="DenseChain: needs at least one layer and rows > 0"):
            DenseChain(no_links, rows, aligned_empty)
