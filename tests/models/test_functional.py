"""The functional API: graphs, shared layers, multiple inputs and outputs, frozen
layers, summary text against real Keras, configs, and clear errors."""
import contextlib
import io
import pathlib

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "summaries"
rng = np.random.default_rng(0)


def advance_names(**counts):
    """Consume default names so ours match a fixture recorded after other models."""
    for prefix, count in counts.items():
        for _ in range(count):
            keras.backend.unique_name(prefix)


def merge_model():
    a = keras.Input(shape=(8,))
    b = keras.Input(shape=(8,))
    da = layers.Dense(4)(a)
    db = layers.Dense(4)(b)
    merged = layers.Concatenate()([layers.Add()([da, db]), layers.Subtract()([da, db]),
                                   layers.Multiply()([da, db])])
    return keras.Model(inputs=[a, b], outputs=layers.Dense(1)(merged))


def test_summary_of_branching_model_equals_keras_text(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    keras.backend.clear_session()
    advance_names(functional=19, input_layer=12, dense=23)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        merge_model().summary()
    assert out.getvalue() == (FIXTURES / "further_functional_merge.piped.txt").read_text()


def test_merge_model_trains_and_predicts_lists():
    model = merge_model()
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(64, 16)).astype("float32")
    y = x[:, :1] * 0.5
    history = model.fit([x[:, :8], x[:, 8:]], y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict([x[:5, :8], x[:5, 8:]], verbose=0).shape == (5, 1)
    assert [type(layer).__name__ for layer in model.layers][:2] == ["InputLayer", "InputLayer"]


def two_in_two_out():
    left, right = keras.Input(shape=(3,), name="left"), keras.Input(shape=(3,), name="right")
    shared = layers.Dense(4, activation="tanh", name="shared")
    joined = layers.Concatenate()([shared(left), shared(right)])
    out_a = layers.Dense(2, activation="softmax", name="out_a")(joined)
    out_b = layers.Dense(1, name="out_b")(joined)
    return keras.Model(inputs=[left, right], outputs=[out_a, out_b]), shared


def test_shared_layer_gradient_is_the_sum_of_both_uses():
    model, shared = two_in_two_out()
    model.compile(optimizer="sgd", loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    xs = [rng.normal(size=(5, 3)).astype("float32") for _ in range(2)]
    ys = [np.eye(2, dtype="float32")[[0, 1, 1, 0, 1]], rng.normal(size=(5, 1)).astype("float32")]
    for v in model.trainable_weights:
        v.zero_grad()
    preds, backward = model._forward_for_loss(xs, training=True)
    d_preds = []
    for loss, weight, y, p in zip(model._output_losses, model._loss_weights, ys, preds):
        d_preds.append(weight * loss.forward_backward(y, p)[1])
    backward(d_preds)
    analytic = shared.kernel.grad.astype(np.float64).copy()

    def total_loss():
        outs = model._forward_for_loss(xs, training=False)[0]
        return sum(w * float(loss(y, p)) for loss, w, y, p in
                   zip(model._output_losses, model._loss_weights, ys, outs))
    numeric = np.zeros_like(analytic)
    kernel = shared.kernel.value
    for index in np.ndindex(kernel.shape):
        original = kernel[index]
        kernel[index] = original + 1e-2
        upper = total_loss()
        kernel[index] = original - 1e-2
        lower = total_loss()
        kernel[index] = original
        numeric[index] = (upper - lower) / 2e-2
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)
    assert len(shared._inbound_nodes) == 2


def test_two_output_model_fits_with_dicts_and_reports_each_loss():
    model, _ = two_in_two_out()
    model.compile(optimizer="adam", loss={"out_a": "categorical_crossentropy", "out_b": "mse"},
                  metrics={"out_a": ["accuracy"]})
    xs = {"left": rng.normal(size=(32, 3)), "right": rng.normal(size=(32, 3))}
    ys = {"out_a": np.eye(2)[rng.integers(0, 2, 32)], "out_b": rng.normal(size=(32, 1))}
    history = model.fit(xs, ys, epochs=2, batch_size=8, verbose=0)
    assert {"loss", "out_a_loss", "out_b_loss", "out_a_accuracy"} <= set(history.history)
    preds = model.predict(xs, verbose=0)
    assert [p.shape for p in preds] == [(32, 2), (32, 1)]
    for predicted, called in zip(preds, model(xs)):   # predict's lean path = the full forward
        np.testing.assert_array_equal(predicted, called)


def test_predict_hands_on_every_output_of_a_multi_output_layer():
    inputs = keras.Input((6, 3))
    sequence, h, c = layers.LSTM(4, return_sequences=True, return_state=True)(inputs)
    model = keras.Model(inputs, [layers.Dense(2)(h), c, sequence])
    x = rng.normal(size=(5, 6, 3)).astype("float32")
    head, c_out, sequence_out = model.predict(x, verbose=0)
    expected_sequence, expected_h, expected_c = model.layers[1](x)
    np.testing.assert_array_equal(sequence_out, expected_sequence)
    np.testing.assert_array_equal(c_out, expected_c)
    np.testing.assert_array_equal(head, model.layers[-1](expected_h))


def test_frozen_layers_stay_bitwise_while_the_head_trains():
    base = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(4,), name="features"),
                             layers.Dense(3, activation="softmax")])
    extractor = keras.Model(inputs=base.input, outputs=base.get_layer("features").output)
    extractor.trainable = False
    head = layers.Dense(2, activation="softmax")(extractor.output)
    model = keras.Model(inputs=extractor.input, outputs=head)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    frozen = [w.copy() for w in base.get_layer("features").get_weights()]
    head_before = model.layers[-1].get_weights()[0].copy()
    model.fit(rng.normal(size=(64, 4)), np.arange(64) % 2, epochs=2, verbose=0)
    for before, after in zip(frozen, base.get_layer("features").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head_before, model.layers[-1].get_weights()[0])


def test_nested_sequential_inside_functional_model():
    inner = keras.Sequential([layers.Dense(5, activation="relu", input_shape=(3,)), layers.Dense(2)])
    x = keras.Input(shape=(3,))
    model = keras.Model(x, layers.Activation("softmax")(inner(x)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = inner.get_weights()[0].copy()
    model.fit(rng.normal(size=(16, 3)), np.arange(16) % 2, verbose=0)
    assert not np.array_equal(before, inner.get_weights()[0])


def test_functional_model_as_a_layer_gives_its_graph_output_shape():
    inputs = keras.Input((5,))
    inner = keras.Model(inputs, layers.Dense(4, activation="tanh")(inputs))
    assert inner.compute_output_shape((7, 5)) == (7, 4)
    with pytest.raises(ValueError, match="incompatible"):
        inner.compute_output_shape((7, 6))
    outer = keras.Sequential([keras.Input((5,)), inner, layers.Dense(3)])
    assert outer.layers[-1].kernel.shape == (4, 3)
    x = rng.normal(size=(2, 5)).astype("float32")
    np.testing.assert_allclose(inner.call(x), inner.predict(x, verbose=0), rtol=1e-6)
    expected = np.tanh(x @ inner.layers[1].kernel.numpy() + inner.layers[1].bias.numpy())
    np.testing.assert_allclose(outer.predict(x, verbose=0),
                               expected @ outer.layers[-1].kernel.numpy(), rtol=1e-5, atol=1e-6)


def test_subclassed_model_trains_like_the_same_sequential():
    class TwoLayer(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(8, activation="relu")
            self.out = layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    x = rng.normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    subclassed = TwoLayer()
    subclassed(x[:1])
    assert subclassed._built_input_shape == (None, 3)   # its build_config, as Keras saves it
    sequential = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(3,)), layers.Dense(1)])
    sequential.set_weights(subclassed.get_weights())
    for model in (subclassed, sequential):
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        keras.utils.set_random_seed(0)
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert len(subclassed.trainable_weights) == 4
    for a, b in zip(subclassed.get_weights(), sequential.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_save_load(tmp_path):
    model = merge_model()
    model.compile(optimizer="adam", loss="mse")
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    model.save(tmp_path / "f.keras")
    restored = keras.models.load_model(tmp_path / "f.keras")
    xs = [rng.normal(size=(4, 8)).astype("float32") for _ in range(2)]
    np.testing.assert_array_equal(restored.predict(xs, verbose=0), model.predict(xs, verbose=0))


def test_graph_errors_are_clear():
    a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
    out = layers.Dense(2)(layers.Add()([a, b]))
    with pytest.raises(ValueError, match="Graph disconnected"):
        keras.Model(inputs=a, outputs=out)
    x = keras.Input(shape=(3,))
    y = layers.Dense(2, name="same")(layers.Dense(3, name="same")(x))
    with pytest.raises(ValueError, match='"same" is used 2 times'):
        keras.Model(x, y)
    with pytest.raises(TypeError, match="KerasTensors"):
        keras.Model(inputs=x, outputs=np.zeros(3))


def test_wrong_inputs_to_fit_and_predict():
    model = merge_model()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="expects 2 input"):
        model.predict(np.zeros((2, 8)), verbose=0)
    with pytest.raises(ValueError, match=r"expected shape=\(None, 8\), found shape=\(2, 9\)"):
        model.predict([np.zeros((2, 8)), np.zeros((2, 9))], verbose=0)
    with pytest.raises(ValueError, match="incompatible shapes"):
        layers.Add()([keras.Input(shape=(3,)), keras.Input(shape=(4,))])


def test_masks_flow_through_the_graph_as_in_the_same_sequential():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> Dense: padded steps are skipped
    by the LSTM and weigh nothing in the loss, exactly as in the Sequential model."""
    inputs = keras.Input((None,), dtype="int32")
    hidden = layers.LSTM(3, return_sequences=True)(layers.Embedding(12, 4, mask_zero=True)(inputs))
    functional = keras.Model(inputs, layers.Dense(1)(hidden))
    sequential = keras.Sequential([keras.Input((None,), dtype="int32"),
                                   layers.Embedding(12, 4, mask_zero=True),
                                   layers.LSTM(3, return_sequences=True), layers.Dense(1)])
    sequential.set_weights(functional.get_weights())
    x = np.array([[3, 7, 2, 0, 0], [5, 1, 0, 0, 0], [4, 4, 4, 4, 9]])
    np.testing.assert_array_equal(functional.predict(x[:1], verbose=0)[:, :3],
                                  functional.predict(x[:1, :3], verbose=0))
    y = rng.normal(size=(3, 5, 1)).astype("float32")
    for model in (functional, sequential):
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    for a, b in zip(functional.get_weights(), sequential.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    y_ignored = y.copy()
    y_ignored[0, 3:] = 100.0      # targets at padded steps do not matter
    before = functional.get_weights()
    losses = []
    for targets in (y, y_ignored):
        functional.set_weights(before)
        losses.append(functional.evaluate(x, targets, verbose=0))
    assert losses[0] == losses[1]
