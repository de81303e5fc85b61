"""Losses: values against Keras-made fixtures, gradients against float64 central
differences, the fused softmax/sigmoid gradients against the chain rule, and errors."""
import os

import numpy as np
import pytest

from pylayers import losses

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "optim")
LOSS_DATA = np.load(os.path.join(FIXTURES, "losses.npz"))

# case name -> our loss (same class and arguments as tests/fixtures/make_optim_fixtures.py)
KERAS_CASES = {
    "cce": losses.CategoricalCrossentropy(),
    "cce_weighted": losses.CategoricalCrossentropy(),
    "cce_unnormalized": losses.CategoricalCrossentropy(),
    "cce_clipped": losses.CategoricalCrossentropy(),
    "cce_logits": losses.CategoricalCrossentropy(from_logits=True),
    "cce_smoothing": losses.CategoricalCrossentropy(label_smoothing=0.2),
    "cce_extreme_logits": losses.CategoricalCrossentropy(from_logits=True),
    "cce_sum": losses.CategoricalCrossentropy(reduction="sum"),
    "cce_mean_sw": losses.CategoricalCrossentropy(reduction="mean_with_sample_weight"),
    "scce": losses.SparseCategoricalCrossentropy(),
    "scce_column": losses.SparseCategoricalCrossentropy(),
    "scce_logits": losses.SparseCategoricalCrossentropy(from_logits=True),
    "scce_ignore": losses.SparseCategoricalCrossentropy(ignore_class=2),
    "scce_sequence": losses.SparseCategoricalCrossentropy(from_logits=True),
    "scce_extreme_logits": losses.SparseCategoricalCrossentropy(from_logits=True),
    "bce": losses.BinaryCrossentropy(),
    "bce_rank1_labels": losses.BinaryCrossentropy(),
    "bce_logits": losses.BinaryCrossentropy(from_logits=True),
    "bce_smoothing": losses.BinaryCrossentropy(label_smoothing=0.1),
    "bce_extreme_logits": losses.BinaryCrossentropy(from_logits=True),
    "bce_clipped": losses.BinaryCrossentropy(),
    "mse": losses.MeanSquaredError(),
    "mse_rank1": losses.MeanSquaredError(),
    "mae": losses.MeanAbsoluteError(),
    "huber": losses.Huber(delta=0.5),
    "kld": losses.KLDivergence(),
    "hinge_binary": losses.Hinge(),
    "hinge_signed": losses.Hinge(),
}


def keras_case(case):
    weight_key = f"{case}/sample_weight"
    weight = LOSS_DATA[weight_key] if weight_key in LOSS_DATA.files else None
    return LOSS_DATA[f"{case}/y_true"], LOSS_DATA[f"{case}/y_pred"], weight


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_value_matches_keras(case):
    y_true, y_pred, weight = keras_case(case)
    expected = float(LOSS_DATA[f"{case}/value"])
    loss = KERAS_CASES[case]
    assert loss(y_true, y_pred, sample_weight=weight) == pytest.approx(expected, rel=2e-6,
                                                                       abs=1e-6)
    value, gradient = loss.forward_backward(y_true, y_pred, sample_weight=weight)
    assert value == pytest.approx(expected, rel=2e-6, abs=1e-6)
    assert gradient.shape == np.shape(y_pred) and gradient.dtype == np.float32
    assert np.all(np.isfinite(gradient))


# ---- finite differences ---------------------------------------------------------------

def numeric_gradient(loss, y_true, y_pred, sample_weight, step=1e-6):
    y_pred = np.array(y_pred, dtype=np.float64)
    gradient = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        saved = y_pred[index]
        y_pred[index] = saved + step
        up = loss(y_true, y_pred, sample_weight=sample_weight)
        y_pred[index] = saved - step
        down = loss(y_true, y_pred, sample_weight=sample_weight)
        y_pred[index] = saved
        gradient[index] = (up - down) / (2 * step)
    return gradient


def smooth_inputs():
    """(loss, y_true, y_pred, sample_weight) away from kinks and clipping bounds."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(5, 4))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    one_hot = np.eye(4)[[0, 3, 1, 1, 2]]
    labels = np.array([0, 3, 1, 1, 2])
    weights = rng.uniform(0.5, 1.5, size=5)
    binary = rng.integers(0, 2, size=(5, 3)).astype(float)
    unit = rng.uniform(0.05, 0.95, size=(5, 3))
    y_reg = rng.normal(size=(5, 3))
    offset = rng.choice([-1, 1], size=(5, 3)) * rng.uniform(0.1, 0.4, size=(5, 3))
    far = rng.choice([-1, 1], size=(5, 3)) * rng.uniform(0.7, 2.0, size=(5, 3))
    return {
        "cce": (losses.CategoricalCrossentropy(), one_hot, probs * 2, weights),
        "cce_smoothing": (losses.CategoricalCrossentropy(label_smoothing=0.3), one_hot,
                          probs, None),
        "cce_logits": (losses.CategoricalCrossentropy(from_logits=True), one_hot * 0.7,
                       logits, weights),
        "cce_axis0": (losses.CategoricalCrossentropy(axis=0), one_hot.T, probs.T, None),
        "scce": (losses.SparseCategoricalCrossentropy(), labels, probs, weights),
        "scce_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), labels,
                        logits, None),
        "scce_ignore": (losses.SparseCategoricalCrossentropy(ignore_class=1), labels,
                        probs, weights),
        "scce_ignore_sum": (losses.SparseCategoricalCrossentropy(ignore_class=1,
                                                                 reduction="sum"),
                            labels, logits ** 2 + 0.1, None),
        "bce": (losses.BinaryCrossentropy(), binary, unit, weights),
        "bce_logits": (losses.BinaryCrossentropy(from_logits=True), binary, logits[:, :3],
                       None),
        "bce_smoothing": (losses.BinaryCrossentropy(label_smoothing=0.2), binary, unit, None),
        "mse": (losses.MeanSquaredError(), y_reg, y_reg + offset, weights),
        "mse_mean_sw": (losses.MeanSquaredError(reduction="mean_with_sample_weight"), y_reg,
                        y_reg + far, weights),
        "mae": (losses.MeanAbsoluteError(), y_reg, y_reg + offset, None),
        "huber": (losses.Huber(delta=0.5), y_reg, y_reg + np.where(
            np.abs(offset) < 0.25, offset, far), weights),
        "kld": (losses.KLDivergence(), probs, probs[::-1], None),
        "hinge": (losses.Hinge(), binary, far * 0.3 + 0.05, weights),
    }


@pytest.mark.parametrize("case", sorted(smooth_inputs()))
def test_forward_backward_matches_finite_differences(case):
    loss, y_true, y_pred, weight = smooth_inputs()[case]
    value, gradient = loss.forward_backward(y_true, y_pred, sample_weight=weight)
    assert value == pytest.approx(loss(y_true, y_pred, sample_weight=weight), rel=1e-12)
    expected = numeric_gradient(loss, y_true, y_pred, weight)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)


def test_clipped_probability_has_zero_gradient():
    loss = losses.CategoricalCrossentropy()
    y_true = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    y_pred = np.array([[0.6, 1e-9, 0.4], [0.3, 0.4, 0.3]])
    _, gradient = loss.forward_backward(y_true, y_pred)
    np.testing.assert_array_equal(gradient[0], 0.0)
    assert np.all(gradient[1] != 0.0)
    _, binary_gradient = losses.BinaryCrossentropy().forward_backward(
        np.array([[1.0], [1.0]]), np.array([[1.0], [0.5]]))
    assert binary_gradient[0, 0] == 0.0 and binary_gradient[1, 0] < 0


# ---- fused gradients ------------------------------------------------------------------

def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def through_softmax(probs, d_probs):
    """Chain rule through softmax: J^T d, J = diag(p) - p p^T, row by row."""
    return probs * (d_probs - np.sum(d_probs * probs, axis=-1, keepdims=True))


@pytest.mark.parametrize("loss,y_true", [
    (losses.CategoricalCrossentropy(), np.eye(4)[[0, 3, 1, 2, 2]]),
    (losses.CategoricalCrossentropy(label_smoothing=0.1), np.eye(4)[[0, 3, 1, 2, 2]]),
    (losses.SparseCategoricalCrossentropy(), np.array([0, 3, 1, 2, 2])),
    (losses.SparseCategoricalCrossentropy(ignore_class=3), np.array([0, 3, 1, 2, 2])),
])
def test_fused_softmax_gradient_is_the_chain_rule(loss, y_true):
    logits = np.random.default_rng(6).normal(size=(5, 4))
    probs = softmax(logits)
    weight = np.linspace(0.5, 1.5, 5)
    value, d_probs = loss.forward_backward(y_true, probs, sample_weight=weight)
    fused_value, d_logits = loss.fused_backward(y_true, probs, "softmax", sample_weight=weight)
    assert fused_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(d_logits, through_softmax(probs, d_probs.astype(np.float64)),
                               rtol=1e-5, atol=1e-7)
    logits_loss = type(loss)(**{**loss.get_config(), "from_logits": True})
    logits_value, d_logits_direct = logits_loss.forward_backward(y_true, logits,
                                                                 sample_weight=weight)
    assert logits_value == pytest.approx(value, rel=1e-6)
    np.testing.assert_allclose(d_logits, d_logits_direct, rtol=1e-5, atol=1e-7)


def general_fused_backward(loss, y_true, probs):
    """The numpy path of fused_backward, which the compiled one must equal."""
    from pylayers.losses.losses import _Crossentropy
    return _Crossentropy.fused_backward(loss, y_true, probs, "softmax")


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean"])
@pytest.mark.parametrize("labels_as", [np.int64, np.int32, "column", np.uint8])
def test_compiled_sparse_softmax_crossentropy_equals_the_numpy_path(reduction, labels_as):
    rng = np.random.default_rng(11)
    probs = softmax(rng.normal(size=(37, 10)) * 4).astype(np.float32)
    probs[3, 2] = 0.0                  # a label's probability clipped to 1e-7
    labels = rng.integers(0, 10, size=37)
    labels[3] = 2
    y_true = labels[:, None] if labels_as == "column" else labels.astype(labels_as)
    loss = losses.SparseCategoricalCrossentropy(reduction=reduction)
    assert loss._fusible_in_c(y_true, probs, "softmax", None)
    value, d_logits = loss.fused_backward(y_true, probs, "softmax")
    general_value, general_d_logits = general_fused_backward(loss, y_true, probs)
    assert value == pytest.approx(general_value, rel=1e-12)
    assert d_logits.dtype == np.float32
    np.testing.assert_array_equal(d_logits, general_d_logits)
    scale = 1.0 if reduction == "sum" else 1.0 / 37
    expected = scale * -np.log(np.clip(probs[np.arange(37), labels].astype(np.float64)
                                       / probs.astype(np.float64).sum(-1),
                                       float(np.float32(1e-7)), float(np.float32(1 - 1e-7))))
    assert value == pytest.approx(expected.sum(), rel=1e-12)


def test_compiled_sparse_softmax_crossentropy_keeps_nan_and_reports_bad_labels():
    loss = losses.SparseCategoricalCrossentropy()
    probs = np.full((4, 3), 1 / 3, np.float32)
    probs[1, 0] = np.nan
    value, d_logits = loss.fused_backward(np.array([0, 1, 2, 0]), probs, "softmax")
    assert np.isnan(value) and np.isnan(d_logits[1, 0]) and np.isfinite(d_logits[0]).all()
    for bad in (3, -1):
        with pytest.raises(ValueError, match=rf"integers in \[0, 3\).*\[{bad}\]"):
            loss.fused_backward(np.array([0, bad, 2, 0]), probs, "softmax")


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean"])
@pytest.mark.parametrize("shape", [(37, 1), (37, 5), (4, 6, 3), (9,)])
def test_compiled_mean_squared_error_equals_the_numpy_path(reduction, shape):
    from pylayers.losses.losses import Loss
    rng = np.random.default_rng(12)
    y_pred = rng.normal(size=shape).astype(np.float32)
    y_true = rng.normal(size=shape).astype(np.float32)
    loss = losses.MeanSquaredError(reduction=reduction)
    value, gradient = loss.forward_backward(y_true, y_pred)
    general_value, general_gradient = Loss.forward_backward(loss, y_true, y_pred)
    assert value == pytest.approx(general_value, rel=1e-12)
    assert gradient.shape == shape and gradient.dtype == np.float32
    np.testing.assert_array_equal(gradient, general_gradient)
    y_pred[0] = np.nan
    assert np.isnan(loss.forward_backward(y_true, y_pred)[0])


def test_fused_sigmoid_gradient_is_the_chain_rule():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(6, 2))
    probs = 1 / (1 + np.exp(-logits))
    y_true = rng.integers(0, 2, size=(6, 2)).astype(float)
    loss = losses.BinaryCrossentropy()
    value, d_probs = loss.forward_backward(y_true, probs)
    fused_value, d_logits = loss.fused_backward(y_true, probs, "sigmoid")
    assert fused_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(d_logits, d_probs * probs * (1 - probs), rtol=1e-5, atol=1e-7)


def test_fused_gradient_differs_from_clipped_only_where_clipped():
    loss = losses.CategoricalCrossentropy()
    y_true = np.array([[0.0, 1.0, 0.0]])
    probs = np.array([[1.0 - 2e-8, 1e-8, 1e-8]])
    _, d_logits = loss.fused_backward(y_true, probs, "softmax")
    np.testing.assert_allclose(d_logits, probs - y_true, rtol=1e-6)
    _, d_probs = loss.forward_backward(y_true, probs)
    np.testing.assert_array_equal(d_probs, 0.0)


def test_fused_backward_is_none_when_not_fusible():
    y, p = np.eye(3), np.full((3, 3), 1 / 3)
    assert losses.CategoricalCrossentropy(from_logits=True).fused_backward(y, p, "softmax") \
        is None
    assert losses.CategoricalCrossentropy().fused_backward(y, p, "relu") is None
    assert losses.CategoricalCrossentropy(axis=0).fused_backward(y, p, "softmax") is None
    assert losses.BinaryCrossentropy().fused_backward(y, p, "softmax") is None
    assert losses.MeanSquaredError().fused_backward(y, p, "linear") is None

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))
    assert losses.BinaryCrossentropy().fused_backward(y, p, sigmoid) is not None


@pytest.mark.parametrize("loss,y_true", [
    (losses.CategoricalCrossentropy(from_logits=True), np.eye(3)[[0, 2]]),
    (losses.SparseCategoricalCrossentropy(from_logits=True), np.array([0, 2])),
])
def test_logits_of_1e4_are_stable(loss, y_true):
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 1e4 - 1.0]])
    value, gradient = loss.forward_backward(y_true, logits)
    # row 0 is certain and right (loss 0); row 1 puts 1e4 - 1 on the label: loss ~1.3133
    assert value == pytest.approx((0.0 + np.log1p(np.exp(1.0))) / 2, rel=1e-9)
    expected_row_1 = (softmax(logits[1:]) - np.eye(3)[[2]]) / 2
    np.testing.assert_allclose(gradient[1:], expected_row_1, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(gradient[0], 0.0, atol=1e-12)


def test_binary_logits_of_1e4_are_stable():
    loss = losses.BinaryCrossentropy(from_logits=True)
    value, gradient = loss.forward_backward(np.array([[1.0], [0.0]]),
                                            np.array([[-1e4], [-1e4]]))
    assert value == pytest.approx(1e4 / 2)
    np.testing.assert_allclose(gradient, [[-0.5], [0.0]], atol=1e-12)


# ---- shapes, errors, lookup -----------------------------------------------------------

def test_label_shape_alignment_follows_keras():
    probs = np.array([[0.3], [0.8]])
    bce = losses.BinaryCrossentropy()
    assert bce(np.array([0.0, 1.0]), probs) == pytest.approx(bce(np.array([[0.0], [1.0]]),
                                                                 probs))
    scce = losses.SparseCategoricalCrossentropy()
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert scce(np.array([[1], [0]]), p) == pytest.approx(scce(np.array([1, 0]), p))


@pytest.mark.parametrize("loss,y_true,y_pred,match", [
    (losses.CategoricalCrossentropy(), np.zeros((4, 3)), np.zeros((4, 2)),
     r"CategoricalCrossentropy 'categorical_crossentropy'.*\(4, 3\).*\(4, 2\)"),
    (losses.MeanSquaredError(), np.zeros((4, 3)), np.zeros((4, 1)), r"\(4, 3\).*\(4, 1\)"),
    (losses.SparseCategoricalCrossentropy(), np.eye(3), np.full((3, 3), 1 / 3),
     r"SparseCategoricalCrossentropy.*\(3, 3\).*\(3, 3\)"),
    (losses.SparseCategoricalCrossentropy(), np.array([0, 3]), np.full((2, 3), 1 / 3),
     r"\[0, 3\).*\[3\]"),
    (losses.SparseCategoricalCrossentropy(), np.array([0, -1]), np.full((2, 3), 1 / 3),
     r"\[-1\]"),
    (losses.SparseCategoricalCrossentropy(), np.array([0.5, 1]), np.full((2, 3), 1 / 3),
     r"\[0.5\]"),
])
def test_bad_shapes_and_labels_raise(loss, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        loss(y_true, y_pred)
    with pytest.raises(ValueError, match=match):
        loss.forward_backward(y_true, y_pred)


def test_ignored_labels_may_be_out_of_range():
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert loss(np.array([1, -1]), p) == pytest.approx(-np.log(0.8))


def test_bad_sample_weight_raises():
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\)"):
        losses.MeanSquaredError()(np.zeros((4, 2)), np.zeros((4, 2)), sample_weight=np.ones(3))


def test_function_forms_give_per_sample_values():
    y_true, y_pred, _ = keras_case("cce")
    values = losses.categorical_crossentropy(y_true, y_pred)
    assert values.shape == (6,)
    assert float(np.mean(values)) == pytest.approx(float(LOSS_DATA["cce/value"]), rel=2e-6)
    assert losses.mse(np.zeros((2, 3)), np.ones((2, 3))).tolist() == [1.0, 1.0]
    assert losses.get(losses.mse).name == "mean_squared_error"


@pytest.mark.parametrize("name,cls", [
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("CategoricalCrossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy), ("bce", losses.BinaryCrossentropy),
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("MSE", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
    ("huber", losses.Huber), ("kl_divergence", losses.KLDivergence),
    ("kld", losses.KLDivergence), ("hinge", losses.Hinge),
])
def test_get_by_name(name, cls):
    assert type(losses.get(name)) is cls


def test_get_other_identifiers():
    loss = losses.Huber(delta=2.0)
    assert losses.get(loss) is loss
    assert losses.get(None) is None
    clone = losses.get(losses.serialize(loss))
    assert isinstance(clone, losses.Huber) and clone.delta == 2.0
    with pytest.raises(ValueError, match=r"'cross_entropy'.*binary_crossentropy"):
        losses.get("cross_entropy")

    def custom(y_true, y_pred):
        return np.mean(np.abs(y_true - y_pred) ** 3, axis=-1)
    wrapped = losses.get(custom)
    assert wrapped.name == "custom"
    assert wrapped(np.zeros((2, 2)), np.ones((2, 2))) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="gradient"):
        wrapped.forward_backward(np.zeros((2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize("y_true_shape,y_pred_shape,cls", [
    ((8, 1), (8, 1), losses.BinaryCrossentropy),
    ((8,), (8, 5), losses.SparseCategoricalCrossentropy),
    ((8, 1), (8, 5), losses.SparseCategoricalCrossentropy),
    ((8, 5), (8, 5), losses.CategoricalCrossentropy),
])
def test_resolve_crossentropy_from_shapes(y_true_shape, y_pred_shape, cls):
    assert type(losses.resolve("crossentropy", y_true_shape, y_pred_shape)) is cls
    assert type(losses.resolve("mse", y_true_shape, y_pred_shape)) is losses.MeanSquaredError


@pytest.mark.parametrize("loss", [
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    losses.SparseCategoricalCrossentropy(ignore_class=0), losses.BinaryCrossentropy(),
    losses.MeanSquaredError(), losses.MeanAbsoluteError(), losses.Huber(delta=3.0),
    losses.KLDivergence(), losses.Hinge(reduction="sum"),
])
def test_config_round_trip(loss):
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    assert config["name"] == loss.name and "reduction" in config


def test_reduction_none_returns_values_and_bad_reduction_raises():
    loss = losses.MeanSquaredError(reduction="none")
    assert loss(np.zeros((3, 2)), np.ones((3, 2))).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="reduction"):
        loss.forward_backward(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="average")
