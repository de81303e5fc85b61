"""Sequential: construction, shape inference, summary text against real Keras 3."""
import io
import pathlib
import contextlib

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "summaries"


def summary_text(model, line_length=None):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.summary(line_length=line_length)
    return out.getvalue()


def brief_mlp():
    keras.backend.clear_session()
    return keras.Sequential([
        layers.Dense(64, activation="relu", input_shape=(784,)),
        layers.Dense(10, activation="softmax"),
    ])


@pytest.mark.parametrize("variant, width", [("piped", None), ("cols120", 88)])
def test_summary_of_brief_mlp_equals_keras_text(variant, width, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    expected = (FIXTURES / f"seed1_mlp.{variant}.txt").read_text()
    assert summary_text(brief_mlp(), width) == expected


def test_summary_of_custom_and_activation_models_equals_keras_text(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    keras.backend.clear_session()
    for _ in range(7):   # the fixture's names come from a run with earlier models
        keras.backend.unique_name("sequential")
    for _ in range(10):
        keras.backend.unique_name("dense")
    keras.backend.unique_name("activation")
    keras.backend.unique_name("activation")

    class MyCustomLayer(layers.Layer):
        def __init__(self, output_dim, **kwargs):
            super().__init__(**kwargs)
            self.output_dim = output_dim

        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.output_dim),
                                          initializer="uniform", trainable=True)

        def call(self, inputs):
            return keras.ops.matmul(inputs, self.kernel)

    model = keras.Sequential([layers.InputLayer(input_shape=(10,)), MyCustomLayer(output_dim=5),
                              layers.Activation("relu"), layers.Dense(1, activation="sigmoid")])
    assert summary_text(model) == (FIXTURES / "seed8_custom_layer.piped.txt").read_text()


def test_summary_of_unbuilt_model_shows_question_marks():
    model = keras.Sequential([layers.Dense(3)])
    text = summary_text(model)
    assert "│ ?" in text and "0 (unbuilt)" in text


def test_sequential_add_pop_layers_and_input_layer_excluded():
    model = keras.Sequential()
    model.add(layers.InputLayer(shape=(10,)))
    model.add(layers.Dense(4, name="a"))
    model.add(layers.Dense(2, name="b"))
    assert [layer.name for layer in model.layers] == ["a", "b"]
    assert model.count_params() == 10 * 4 + 4 + 4 * 2 + 2
    assert model.get_layer("b") is model.layers[1] and model.get_layer(index=0).name == "a"
    model.pop()
    assert [layer.name for layer in model.layers] == ["a"]
    assert model.predict(np.zeros((3, 10)), verbose=0).shape == (3, 4)


def test_sequential_rejects_non_layers_and_duplicate_names():
    with pytest.raises(TypeError, match="Only instances of `keras.Layer`"):
        keras.Sequential([lambda x: x])
    with pytest.raises(ValueError, match="unique names.*'twin'"):
        keras.Sequential([layers.Dense(2, name="twin"), layers.Dense(2, name="twin")])


def test_shape_inference_runs_before_data_arrives():
    model = keras.Sequential([layers.InputLayer(shape=(None, 6)), layers.Dense(3),
                              layers.Reshape((-1,)), layers.Activation("relu")])
    assert model._output_shapes[model.layers[-1].name] == (None, None)
    model = keras.Sequential([layers.Dense(4, input_shape=(2, 3)), layers.Flatten()])
    assert model._output_shapes[model.layers[-1].name] == (None, 8)


def test_model_inside_model_trains_as_a_layer():
    inner = keras.Sequential([layers.Dense(4, activation="tanh", input_shape=(3,))])
    outer = keras.Sequential([inner, layers.Dense(1)])
    outer.compile(optimizer="sgd", loss="mse")
    before = inner.get_weights()[0].copy()
    outer.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1, verbose=0)
    assert not np.array_equal(before, inner.get_weights()[0])
    assert len(outer.trainable_weights) == 4


def test_inputs_and_outputs_are_the_symbolic_tensors_once_built():
    model = keras.Sequential([layers.Dense(2)])
    with pytest.raises(AttributeError, match="no defined input"):
        model.inputs
    model.build((None, 3))
    assert model.inputs == [model.input] and model.input.shape == (None, 3)
    assert model.outputs == [model.output] and model.output.shape == (None, 2)
    functional = keras.Model(model.input, model.output)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(functional.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("activation", ["relu", "gelu", "softmax"])
def test_predict_runs_each_layers_lean_inference_with_the_forward_values(activation):
    """predict takes the lean path (no backprops) when no layer makes masks: the same
    values as a float64 numpy forward, for 3-D inputs (Dense on the last axis), fused and
    unfused activations, and as the layers' training-free forward."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([layers.Dense(7, activation=activation, input_shape=(5, 4)),
                              layers.Flatten(), layers.Dense(3)])
    x = np.random.default_rng(4).standard_normal((6, 5, 4)).astype(np.float32)
    (w1, b1), (w2, b2) = model.layers[0].get_weights(), model.layers[2].get_weights()
    z = x.astype(np.float64) @ w1 + b1
    if activation == "relu":
        h = np.maximum(z, 0)
    elif activation == "softmax":
        h = np.exp(z - z.max(-1, keepdims=True))
        h = h / h.sum(-1, keepdims=True)
    else:
        from math import erf
        h = 0.5 * z * (1 + np.vectorize(erf)(z / np.sqrt(2)))
    expected = h.reshape(6, 35) @ w2 + b2
    predicted = model.predict(x, verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)
    forward = model._forward_for_loss([x], training=False)[0][0]
    np.testing.assert_array_equal(predicted, forward)
